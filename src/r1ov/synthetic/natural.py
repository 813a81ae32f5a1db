"""Natural-looking scenes built from primitives: sun, clouds, trees, houses, cars and people.

Trees and houses stand in a back row, cars and people in a front row; boxes are the pixel
extents of what is drawn, and the caption is written from the object counts.
"""

from __future__ import annotations

import random
from typing import Any

from PIL import Image, ImageDraw

from r1ov.synthetic.draw import BLACK, canvas, first_applicable, make_record, multiple_choice

KIND = "natural"
WIDTH, HEIGHT = 320, 240
HORIZON, BACK_BASE, FRONT_BASE = 130, 172, 226
SIZES = {"tree": (30, 62), "house": (62, 56), "car": (56, 26), "person": (14, 36)}  # width, height
ROWS = {BACK_BASE: ("tree", "house"), FRONT_BASE: ("car", "person")}
PLURAL = {"tree": "trees", "house": "houses", "car": "cars", "person": "people", "cloud": "clouds", "sun": "suns"}
PALETTE = ((200, 40, 40), (40, 90, 200), (230, 170, 30), (90, 90, 90), (120, 60, 160))
SKY_BANDS = ((34, 90), (130, 190), (230, 286))  # x ranges of sky object centres
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")


def _place(rng: random.Random, labels: list[str], base: int) -> list[dict[str, Any]]:
    """Left-to-right, non-overlapping positions along one row."""
    widths = [SIZES[name][0] for name in labels]
    spare = WIDTH - 16 - sum(widths) - 6 * len(labels)
    cuts = sorted(rng.randint(0, max(spare, 0)) for _ in labels)
    objects, x, previous = [], 8, 0
    for name, width, cut in zip(labels, widths, cuts, strict=True):
        x += cut - previous
        previous = cut
        height = SIZES[name][1]
        objects.append({"label": name, "box": [x, base - height, x + width, base]})
        x += width + 6
    return objects


def _build(rng: random.Random) -> list[dict[str, Any]]:
    # Sky objects take distinct bands so none hides another and counts stay unambiguous.
    bands = rng.sample(SKY_BANDS, 3)
    objects = []
    if rng.random() < 0.7:
        cx, cy, r = rng.randint(*bands.pop()), rng.randint(28, 60), rng.randint(14, 20)
        objects.append({"label": "sun", "box": [cx - r, cy - r, cx + r, cy + r]})
    for _ in range(rng.randint(0, 2)):
        cx, cy = rng.randint(*bands.pop()), rng.randint(24, 90)
        objects.append({"label": "cloud", "box": [cx - 26, cy - 10, cx + 26, cy + 10]})
    for base, names in ROWS.items():
        while True:
            labels = [name for name in names for _ in range(rng.randint(0, 3 if name != "house" else 2))]
            if sum(SIZES[n][0] + 6 for n in labels) <= WIDTH - 16:
                break
        rng.shuffle(labels)
        objects += _place(rng, labels, base)
    return objects


def _draw_object(draw: ImageDraw.ImageDraw, rng: random.Random, obj: dict[str, Any]) -> None:
    x0, y0, x1, y1 = obj["box"]
    cx = (x0 + x1) // 2
    name = obj["label"]
    if name == "sun":
        draw.ellipse([x0, y0, x1, y1], fill=(255, 205, 40), outline=(240, 160, 20), width=2)
    elif name == "cloud":
        for dx, dy, r in ((-14, 2, 10), (0, -3, 12), (14, 2, 10)):
            draw.ellipse([cx + dx - r, (y0 + y1) // 2 + dy - r, cx + dx + r, (y0 + y1) // 2 + dy + r], fill="white")
    elif name == "tree":
        draw.rectangle([cx - 4, y1 - 22, cx + 4, y1], fill=(110, 70, 35))
        draw.ellipse([x0, y0, x1, y1 - 16], fill=rng.choice(((34, 120, 50), (50, 140, 60), (30, 100, 40))))
    elif name == "house":
        wall = rng.choice(PALETTE)
        draw.rectangle([x0 + 4, y0 + 24, x1 - 4, y1], fill=wall, outline=BLACK)
        draw.polygon([(x0, y0 + 25), (cx, y0), (x1, y0 + 25)], fill=(150, 50, 40), outline=BLACK)
        draw.rectangle([cx - 6, y1 - 18, cx + 6, y1], fill=(90, 60, 30))
        draw.rectangle([x0 + 10, y0 + 31, x0 + 20, y0 + 40], fill=(200, 230, 255), outline=BLACK)
    elif name == "car":
        body = rng.choice(PALETTE)
        draw.rectangle([x0, y0 + 9, x1, y1 - 7], fill=body, outline=BLACK)
        draw.polygon([(x0 + 12, y0 + 9), (x0 + 18, y0), (x1 - 18, y0), (x1 - 10, y0 + 9)], fill=body, outline=BLACK)
        for wx in (x0 + 13, x1 - 13):
            draw.ellipse([wx - 7, y1 - 14, wx + 7, y1], fill=(30, 30, 30))
    elif name == "person":
        shirt = rng.choice(PALETTE)
        draw.ellipse([cx - 5, y0, cx + 5, y0 + 10], fill=(235, 195, 160))
        draw.rectangle([cx - 6, y0 + 10, cx + 6, y0 + 24], fill=shirt)
        draw.line([(cx - 3, y0 + 24), (cx - 4, y1)], fill=BLACK, width=3)
        draw.line([(cx + 3, y0 + 24), (cx + 4, y1)], fill=BLACK, width=3)


def _render(rng: random.Random, objects: list[dict[str, Any]]) -> Image.Image:
    sunny = any(o["label"] == "sun" for o in objects)
    image, draw = canvas(WIDTH, HEIGHT, (150, 200, 245) if sunny else (185, 200, 215))
    draw.rectangle([0, HORIZON, WIDTH, HEIGHT], fill=(120, 180, 90))
    draw.rectangle([0, BACK_BASE + 14, WIDTH, HEIGHT - 4], fill=(150, 150, 150))  # the road
    for obj in objects:
        _draw_object(draw, rng, obj)
    return image


def _counts(objects: list[dict[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys(PLURAL, 0)
    for obj in objects:
        counts[obj["label"]] += 1
    return counts


def caption(objects: list[dict[str, Any]]) -> str:
    """'A sunny scene with two trees, one house and one car.' from the object list."""
    counts = _counts(objects)
    parts = [
        f"{NUMBER_WORDS[counts[name]]} {name if counts[name] == 1 else PLURAL[name]}"
        for name in ("tree", "house", "car", "person", "cloud")
        if counts[name]
    ]
    listed = ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else (parts[0] if parts else "open fields")
    return f"{'A sunny' if counts['sun'] else 'An overcast'} outdoor scene with {listed}."


# ----------------------------------------------------------------------------- questions
# Each template: (rng, objects) -> (question, answer, options), or None when it does not apply.


def count(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, list[str] | None]:
    name = rng.choice(("tree", "house", "car", "person", "cloud"))
    return f"How many {PLURAL[name]} are in the picture?", str(_counts(objects)[name]), None


def presence(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, list[str] | None]:
    name = rng.choice(("sun", "tree", "house", "car", "person"))
    article = "the" if name == "sun" else "a"
    return f"Is there {article} {name} in the picture?", "yes" if _counts(objects)[name] else "no", None


def total(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, list[str] | None]:
    a, b = rng.sample(("tree", "house", "car", "person"), 2)
    counts = _counts(objects)
    return f"How many {PLURAL[a]} and {PLURAL[b]} are there in total?", str(counts[a] + counts[b]), None


def most_common(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, list[str] | None] | None:
    counts = {name: _counts(objects)[name] for name in ("tree", "house", "car", "person")}
    ranked = sorted(counts.values(), reverse=True)
    if ranked[0] == ranked[1]:  # no single most common kind of object
        return None
    answer = max(counts, key=counts.__getitem__)
    options, letter = multiple_choice(rng, PLURAL[answer], [PLURAL[n] for n in counts])
    return "Which kind of object appears most often in the picture?", letter, options


TEMPLATES = {f.__name__: f for f in (count, presence, total, most_common)}


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    objects = _build(rng)
    template, (question, answer, options) = first_applicable(rng, TEMPLATES, objects)
    n = len(objects)
    return make_record(
        KIND,
        image=_render(rng, objects),
        question=question,
        answer=answer,
        options=options,
        ground_truth={"kind": KIND, "objects": objects, "caption": caption(objects)},
        difficulty="easy" if n <= 4 else "medium" if n <= 7 else "hard",
        category="Deduction",
        template=template,
    )
