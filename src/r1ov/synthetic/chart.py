"""Bar and line charts with value labels, one or two series, and reading/arithmetic questions.

Values within a series are distinct, so "highest" and "lowest" always name one category,
and every bar or point carries its value, so answers are readable from the picture.
"""

from __future__ import annotations

import math
import random
from typing import Any

from PIL import Image

from r1ov.synthetic.draw import BLACK, GRAY, LIGHT, canvas, label, make_record, multiple_choice

KIND = "chart"
WIDTH, HEIGHT = 320, 240
LEFT, RIGHT, TOP, BOTTOM = 42, 306, 46, 204
COLORS = ((66, 114, 196), (237, 125, 49))

# title, category noun, categories, series names (first one used when there is one series)
THEMES = (
    ("Monthly sales", "month", ("Jan", "Feb", "Mar", "Apr", "May", "Jun"), ("2023", "2024")),
    ("Fruit sold", "fruit", ("Apple", "Pear", "Plum", "Kiwi", "Fig", "Lime"), ("Shop A", "Shop B")),
    ("Visitors per day", "day", ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat"), ("Week 1", "Week 2")),
    ("Votes per option", "option", ("A", "B", "C", "D", "E", "F"), ("Round 1", "Round 2")),
)


def _build(rng: random.Random) -> tuple[str, dict[str, Any]]:
    title, noun, categories, names = rng.choice(THEMES)
    chart_type = rng.choice(("bar", "line"))
    n = rng.randint(3, 6)
    n_series = 2 if chart_type == "bar" and rng.random() < 0.3 else 1
    series = [{"name": names[s], "values": rng.sample(range(2, 41), n)} for s in range(n_series)]
    return noun, {"kind": KIND, "chart_type": chart_type, "title": title, "x": list(categories[:n]), "series": series}


def _render(chart: dict[str, Any]) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT)
    label(draw, (WIDTH // 2, 18), chart["title"], size=14)
    top_value = max(max(s["values"]) for s in chart["series"])
    y_max = math.ceil(top_value * 1.15 / 10) * 10  # headroom: value labels stay clear of the legend

    def y_of(value: float) -> float:
        return BOTTOM - (BOTTOM - TOP) * value / y_max

    for tick in range(0, y_max + 1, 10):
        y = y_of(tick)
        draw.line([(LEFT, y), (RIGHT, y)], fill=LIGHT, width=1)
        label(draw, (LEFT - 5, y), str(tick), size=10, fill=GRAY, anchor="rm")
    draw.line([(LEFT, TOP - 4), (LEFT, BOTTOM), (RIGHT, BOTTOM)], fill=BLACK, width=2)
    slot = (RIGHT - LEFT) / len(chart["x"])
    n_series = len(chart["series"])
    for i, name in enumerate(chart["x"]):
        label(draw, (LEFT + slot * (i + 0.5), BOTTOM + 10), name, size=11)
    for s, series in enumerate(chart["series"]):
        color = COLORS[s]
        if chart["chart_type"] == "bar":
            bar = slot * 0.7 / n_series
            for i, value in enumerate(series["values"]):
                x0 = LEFT + slot * i + slot * 0.15 + bar * s
                draw.rectangle([x0, y_of(value), x0 + bar, BOTTOM - 1], fill=color)
                label(draw, (x0 + bar / 2, y_of(value) - 7), str(value), size=10)
        else:
            points = [(LEFT + slot * (i + 0.5), y_of(v)) for i, v in enumerate(series["values"])]
            draw.line(points, fill=color, width=2)
            for (x, y), value in zip(points, series["values"], strict=True):
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
                label(draw, (x, y - 10), str(value), size=10)
    if n_series > 1:
        for s, series in enumerate(chart["series"]):
            x = RIGHT - 120 + 62 * s
            draw.rectangle([x, 34, x + 8, 42], fill=COLORS[s])
            label(draw, (x + 11, 38), series["name"], size=10, anchor="lm")
    return image


# ----------------------------------------------------------------------------- questions
# Each template: (rng, chart, noun) -> (question, answer, options, category).


def _series(rng: random.Random, chart: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """A series and the phrase that names it in a question ('' when there is only one)."""
    series = rng.choice(chart["series"])
    return series, (f" for {series['name']}" if len(chart["series"]) > 1 else "")


def highest(rng: random.Random, chart: dict[str, Any], noun: str) -> tuple[str, str, list[str] | None, str]:
    series, which = _series(rng, chart)
    answer = chart["x"][series["values"].index(max(series["values"]))]
    question = f"Which {noun} has the highest value{which} in the chart?"
    if rng.random() < 0.5:
        options, letter = multiple_choice(rng, answer, chart["x"])
        return question, letter, options, "Deduction"
    return question, answer, None, "Deduction"


def lowest(rng: random.Random, chart: dict[str, Any], noun: str) -> tuple[str, str, list[str] | None, str]:
    series, which = _series(rng, chart)
    answer = chart["x"][series["values"].index(min(series["values"]))]
    return f"Which {noun} has the lowest value{which} in the chart?", answer, None, "Deduction"


def value_of(rng: random.Random, chart: dict[str, Any], noun: str) -> tuple[str, str, list[str] | None, str]:
    series, which = _series(rng, chart)
    i = rng.randrange(len(chart["x"]))
    return f"What is the value of {chart['x'][i]}{which}?", str(series["values"][i]), None, "Deduction"


def difference(rng: random.Random, chart: dict[str, Any], noun: str) -> tuple[str, str, list[str] | None, str]:
    series, which = _series(rng, chart)
    a, b = rng.sample(range(len(chart["x"])), 2)
    answer = abs(series["values"][a] - series["values"][b])
    question = f"What is the difference between the values of {chart['x'][a]} and {chart['x'][b]}{which}?"
    return question, str(answer), None, "Mathematics"


def total(rng: random.Random, chart: dict[str, Any], noun: str) -> tuple[str, str, list[str] | None, str]:
    series, which = _series(rng, chart)
    return f"What is the sum of all values{which} in the chart?", str(sum(series["values"])), None, "Mathematics"


TEMPLATES = {f.__name__: f for f in (highest, lowest, value_of, difference, total)}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    noun, chart = _build(rng)
    template = rng.choice(sorted(TEMPLATES))
    question, answer, options, category = TEMPLATES[template](rng, chart, noun)
    points = len(chart["x"]) * len(chart["series"])
    return make_record(
        KIND,
        image=_render(chart),
        question=question,
        answer=answer,
        options=options,
        ground_truth=chart,
        difficulty="easy" if points <= 4 else "medium" if points <= 6 else "hard",
        category=category,
        template=template,
    )
