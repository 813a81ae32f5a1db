"""Tables: a titled grid of names and whole numbers, with lookup and arithmetic questions.

Values within a column are distinct, so "largest" and "smallest" always name one row.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image

from r1ov.synthetic.draw import BLACK, LIGHT, canvas, label, make_record, multiple_choice

KIND = "table"
WIDTH = 320
ROW_H, FIRST_W, CELL_W = 28, 84, 52

# title, row header, row names, numeric columns
THEMES = (
    ("Quarterly sales", "Name", ("Ann", "Bob", "Carla", "Dev", "Eva", "Farid", "Gus"), ("Q1", "Q2", "Q3", "Q4")),
    ("Rainfall (mm)", "City", ("Oslo", "Lima", "Pune", "Kyiv", "Perth", "Quito", "Rome"), ("Jan", "Feb", "Mar", "Apr")),
    ("Store inventory", "Product", ("Pens", "Cups", "Lamps", "Mugs", "Socks", "Books"), ("Price", "Stock", "Sold")),
    ("League table", "Team", ("Lions", "Hawks", "Bears", "Owls", "Foxes", "Wolves"), ("Won", "Lost", "Drawn")),
)  # fmt: skip


def _build(rng: random.Random) -> tuple[str, dict[str, Any]]:
    title, header, names, columns = rng.choice(THEMES)
    n_rows, n_cols = rng.randint(3, 5), rng.randint(2, len(columns))
    rows = rng.sample(names, n_rows)
    values = [rng.sample(range(1, 100), n_rows) for _ in range(n_cols)]  # distinct per column
    table = {
        "kind": KIND,
        "columns": [header, *columns[:n_cols]],
        "rows": [[name, *(str(values[c][r]) for c in range(n_cols))] for r, name in enumerate(rows)],
    }
    return title, table


def _render(title: str, table: dict[str, Any]) -> Image.Image:
    n_rows = len(table["rows"])
    height = max(224, 60 + ROW_H * (n_rows + 1))
    image, draw = canvas(WIDTH, height)
    widths = [FIRST_W] + [CELL_W] * (len(table["columns"]) - 1)
    left = (WIDTH - sum(widths)) // 2
    top = (height - ROW_H * (n_rows + 1)) // 2 + 10
    label(draw, (WIDTH // 2, top - 20), title, size=14)
    draw.rectangle([left, top, left + sum(widths), top + ROW_H], fill=LIGHT)
    for r, row in enumerate([table["columns"], *table["rows"]]):
        x = left
        for c, (cell, width) in enumerate(zip(row, widths, strict=True)):
            y = top + r * ROW_H
            draw.rectangle([x, y, x + width, y + ROW_H], outline=BLACK, width=1)
            if c == 0:
                label(draw, (x + 6, y + ROW_H // 2), cell, size=12, anchor="lm")
            else:
                label(draw, (x + width // 2, y + ROW_H // 2), cell, size=12)
            x += width
    return image


# ----------------------------------------------------------------------------- questions
# Each template: (rng, table) -> (question, answer, options, category).


def _column(table: dict[str, Any], name: str) -> list[int]:
    index = table["columns"].index(name)
    return [int(row[index]) for row in table["rows"]]


def lookup(rng: random.Random, table: dict[str, Any]) -> tuple[str, str, list[str] | None, str]:
    row = rng.choice(table["rows"])
    c = rng.randrange(1, len(table["columns"]))
    return f"What is the value of {table['columns'][c]} for {row[0]}?", row[c], None, "Deduction"


def largest(rng: random.Random, table: dict[str, Any]) -> tuple[str, str, list[str] | None, str]:
    column = rng.choice(table["columns"][1:])
    values = _column(table, column)
    answer = table["rows"][values.index(max(values))][0]
    question = f"Which {table['columns'][0].lower()} has the largest value in the {column} column?"
    if rng.random() < 0.5:
        options, letter = multiple_choice(rng, answer, [row[0] for row in table["rows"]])
        return question, letter, options, "Deduction"
    return question, answer, None, "Deduction"


def smallest(rng: random.Random, table: dict[str, Any]) -> tuple[str, str, list[str] | None, str]:
    column = rng.choice(table["columns"][1:])
    values = _column(table, column)
    answer = table["rows"][values.index(min(values))][0]
    question = f"Which {table['columns'][0].lower()} has the smallest value in the {column} column?"
    return question, answer, None, "Deduction"


def column_total(rng: random.Random, table: dict[str, Any]) -> tuple[str, str, list[str] | None, str]:
    column = rng.choice(table["columns"][1:])
    return f"What is the sum of the {column} column?", str(sum(_column(table, column))), None, "Mathematics"


def difference(rng: random.Random, table: dict[str, Any]) -> tuple[str, str, list[str] | None, str]:
    column = rng.choice(table["columns"][1:])
    values = _column(table, column)
    a, b = rng.sample(range(len(values)), 2)
    if values[a] < values[b]:
        a, b = b, a
    first, second = table["rows"][a][0], table["rows"][b][0]
    question = f"How much greater is the {column} of {first} than the {column} of {second}?"
    return question, str(values[a] - values[b]), None, "Mathematics"


TEMPLATES = {f.__name__: f for f in (lookup, largest, smallest, column_total, difference)}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    title, table = _build(rng)
    template = rng.choice(sorted(TEMPLATES))
    question, answer, options, category = TEMPLATES[template](rng, table)
    cells = len(table["rows"]) * (len(table["columns"]) - 1)
    return make_record(
        KIND,
        image=_render(title, table),
        question=question,
        answer=answer,
        options=options,
        ground_truth=table,
        difficulty="easy" if cells <= 8 else "medium" if cells <= 12 else "hard",
        category=category,
        template=template,
    )
