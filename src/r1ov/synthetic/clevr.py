"""Mini-CLEVR: 3-6 shaded objects on a grey floor, with counting and attribute questions.

Cubes are drawn in oblique projection, spheres with radial shading, cylinders as a body with
an elliptic top; metal objects carry a white specular highlight, rubber ones stay matte.
Attribute questions name an object by the fewest attributes that single it out.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

from PIL import Image, ImageDraw

from r1ov.synthetic.draw import canvas, first_applicable, make_record

KIND = "clevr"
WIDTH, HEIGHT = 320, 240
COLORS = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
SHAPES = ("cube", "sphere", "cylinder")
SIZES = {"small": 34, "large": 58}  # box edge in pixels
MATERIALS = ("metal", "rubber")
ATTRIBUTES = ("size", "color", "material", "shape")
PLURAL = {"cube": "cubes", "sphere": "spheres", "cylinder": "cylinders"}

Color = tuple[int, int, int]


def _shade(color: Color, factor: float) -> Color:
    """Darker below 1, lighter above 1 (towards white)."""
    if factor <= 1:
        return tuple(int(c * factor) for c in color)  # type: ignore[return-value]
    return tuple(int(c + (255 - c) * (factor - 1)) for c in color)  # type: ignore[return-value]


def _near(a: list[int], b: list[int], gap: int) -> bool:
    return a[0] < b[2] + gap and b[0] < a[2] + gap and a[1] < b[3] + gap and b[1] < a[3] + gap


def _build(rng: random.Random) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    target = rng.randint(3, 6)
    # Random placement can leave no room for the last large object; start over then.
    for attempt in itertools.count():
        if len(objects) == target:
            break
        if attempt and attempt % 200 == 0:
            objects = []
        size = rng.choice(sorted(SIZES))
        edge = SIZES[size]
        x0, y0 = rng.randint(12, WIDTH - 12 - edge), rng.randint(44, HEIGHT - 10 - edge)
        box = [x0, y0, x0 + edge, y0 + edge]
        # Keep a gap between objects so each one is seen whole and counts are unambiguous.
        if any(_near(box, o["box"], gap=8) for o in objects):
            continue
        objects.append(
            {
                "shape": rng.choice(SHAPES),
                "color": rng.choice(sorted(COLORS)),
                "size": size,
                "material": rng.choice(MATERIALS),
                "box": box,
            }
        )
    return sorted(objects, key=lambda o: (o["box"][3], o["box"][0]))  # back to front


def _highlight(draw: ImageDraw.ImageDraw, x: float, y: float, radius: float) -> None:
    for step in range(4, 0, -1):
        r = radius * step / 4
        level = 255 - 12 * step
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(level, level, level))


def _sphere(draw: ImageDraw.ImageDraw, obj: dict[str, Any], base: Color) -> None:
    x0, y0, x1, y1 = obj["box"]
    metal = obj["material"] == "metal"
    # Concentric discs shifted towards the light (upper left): a cheap radial gradient.
    for step in range(10):
        t = step / 10
        inset = (x1 - x0) / 2 * t
        shift = inset * 0.35
        factor = 0.55 + 0.6 * t if metal else 0.7 + 0.4 * t
        draw.ellipse(
            [x0 + inset - shift, y0 + inset - shift, x1 - inset - shift, y1 - inset - shift], fill=_shade(base, factor)
        )
    if metal:
        _highlight(draw, x0 + (x1 - x0) * 0.35, y0 + (y1 - y0) * 0.32, (x1 - x0) * 0.09)


def _cube(draw: ImageDraw.ImageDraw, obj: dict[str, Any], base: Color) -> None:
    x0, y0, x1, y1 = obj["box"]
    d = (x1 - x0) * 0.25
    draw.polygon([(x0, y0 + d), (x0 + d, y0), (x1, y0), (x1 - d, y0 + d)], fill=_shade(base, 1.35))
    draw.polygon([(x1 - d, y0 + d), (x1, y0), (x1, y1 - d), (x1 - d, y1)], fill=_shade(base, 0.6))
    draw.rectangle([x0, y0 + d, x1 - d, y1], fill=base)
    if obj["material"] == "metal":
        _highlight(draw, x0 + (x1 - x0) * 0.25, y0 + d + (y1 - y0) * 0.2, (x1 - x0) * 0.08)
        draw.line([(x0 + 3, y1 - 3), (x1 - d - 3, y0 + d + 3)], fill=_shade(base, 1.25), width=2)


def _cylinder(draw: ImageDraw.ImageDraw, obj: dict[str, Any], base: Color) -> None:
    x0, y0, x1, y1 = obj["box"]
    cap = (y1 - y0) * 0.3
    width = x1 - x0
    # Vertical bands light to dark left to right give the body its roundness.
    draw.ellipse([x0, y1 - cap, x1, y1], fill=_shade(base, 0.75))
    bands = 8
    for band in range(bands):
        factor = 1.25 - 0.6 * band / (bands - 1)
        bx0, bx1 = x0 + width * band / bands, x0 + width * (band + 1) / bands
        draw.rectangle([bx0, y0 + cap / 2, bx1, y1 - cap / 2], fill=_shade(base, factor))
    draw.ellipse([x0, y0, x1, y0 + cap], fill=_shade(base, 1.3))
    if obj["material"] == "metal":
        draw.rectangle([x0 + width * 0.18, y0 + cap, x0 + width * 0.26, y1 - cap * 0.8], fill=_shade(base, 1.7))
        _highlight(draw, x0 + width * 0.3, y0 + cap / 2, width * 0.07)


DRAWERS = {"sphere": _sphere, "cube": _cube, "cylinder": _cylinder}


def _render(objects: list[dict[str, Any]]) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT)
    for y in range(HEIGHT):  # floor: lighter far away, darker near the camera
        level = int(170 - 45 * y / HEIGHT)
        draw.line([(0, y), (WIDTH, y)], fill=(level, level, level + 3))
    for obj in objects:
        x0, _, x1, y1 = obj["box"]
        draw.ellipse([x0 + 2, y1 - 6, x1 + 6, y1 + 4], fill=(95, 95, 98))  # contact shadow
        DRAWERS[obj["shape"]](draw, obj, COLORS[obj["color"]])
    return image


# ----------------------------------------------------------------------------- questions
# Each template: (rng, objects) -> (question, answer, category), or None when it does not apply.


def _matching(objects: list[dict[str, Any]], **attrs: str) -> list[dict[str, Any]]:
    return [o for o in objects if all(o[k] == v for k, v in attrs.items())]


def _phrase(attrs: dict[str, str]) -> str:
    """'the large metal cube', 'the small red object' (CLEVR word order)."""
    words = [attrs[a] for a in ("size", "color", "material") if a in attrs]
    return "the " + " ".join([*words, attrs.get("shape", "object")])


def _describe(rng: random.Random, objects: list[dict[str, Any]], asked: str) -> tuple[dict[str, Any], str] | None:
    """An object and the shortest phrase (without ``asked``) that picks out only it."""
    others = [a for a in ATTRIBUTES if a != asked]
    for obj in rng.sample(objects, len(objects)):
        for n in range(1, len(others) + 1):
            for subset in itertools.combinations(others, n):
                attrs = {a: obj[a] for a in subset}
                if len(_matching(objects, **attrs)) == 1:
                    return obj, _phrase(attrs)
    return None


def count_color(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str]:
    color = rng.choice([o["color"] for o in objects] + sorted(COLORS))
    return f"How many {color} objects are there?", str(len(_matching(objects, color=color))), "Mathematics"


def count_shape(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str]:
    shape = rng.choice(SHAPES)
    return f"How many {PLURAL[shape]} are there?", str(len(_matching(objects, shape=shape))), "Mathematics"


def count_material(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str]:
    material = rng.choice(MATERIALS)
    answer = str(len(_matching(objects, material=material)))
    return f"How many {material} objects are there?", answer, "Mathematics"


def count_size_shape(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str]:
    size, shape = rng.choice(sorted(SIZES)), rng.choice(SHAPES)
    answer = str(len(_matching(objects, size=size, shape=shape)))
    return f"How many {size} {PLURAL[shape]} are there?", answer, "Mathematics"


def total(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str]:
    return "How many objects are there in total?", str(len(objects)), "Mathematics"


def _query(asked: str):
    def query(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str] | None:
        found = _describe(rng, objects, asked)
        if found is None:
            return None
        obj, phrase = found
        question = f"What {asked} is {phrase}?" if asked != "material" else f"What material is {phrase} made of?"
        return question, obj[asked], "Deduction"

    query.__name__ = f"query_{asked}"
    return query


def compare(rng: random.Random, objects: list[dict[str, Any]]) -> tuple[str, str, str]:
    a, b = rng.sample(SHAPES, 2)
    more = len(_matching(objects, shape=a)) > len(_matching(objects, shape=b))
    return f"Are there more {PLURAL[a]} than {PLURAL[b]}?", "yes" if more else "no", "Deduction"


TEMPLATES = {
    f.__name__: f
    for f in (
        count_color, count_shape, count_material, count_size_shape, total, compare,
        _query("color"), _query("shape"), _query("material"), _query("size"),
    )
}  # fmt: skip


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    objects = _build(rng)
    template, (question, answer, category) = first_applicable(rng, TEMPLATES, objects)
    n = len(objects)
    return make_record(
        KIND,
        image=_render(objects),
        question=question,
        answer=answer,
        ground_truth={"kind": KIND, "objects": objects},
        difficulty="easy" if n <= 3 else "medium" if n <= 5 else "hard",
        category=category,
        template=template,
    )
