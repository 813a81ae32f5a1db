"""Geometry figures (image type ``math``): right triangles, rectangles, circles, triangles, trapezoids.

Lengths come from Pythagorean triples where a square root is involved, so answers are whole
numbers; circles use pi = 3.14, stated in the question and in the facts.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from PIL import Image, ImageDraw

from r1ov.synthetic.draw import BLACK, canvas, fmt, label, make_record

KIND = "math"
WIDTH, HEIGHT = 320, 256
# Primitive triples with legs at most 1:3.5 apart (flatter triangles are hard to read), scaled up to 60.
PRIMITIVE = ((3, 4, 5), (5, 12, 13), (8, 15, 17), (7, 24, 25), (20, 21, 29), (12, 35, 37), (28, 45, 53))
TRIPLES = tuple((a * k, b * k, c * k) for a, b, c in PRIMITIVE for k in range(1, 60 // c + 1))
PI = 3.14
DRAW = (90, 90, 200)


def _triple(rng: random.Random) -> tuple[int, int, int]:
    a, b, c = rng.choice(TRIPLES)
    return (a, b, c) if rng.random() < 0.5 else (b, a, c)


# ----------------------------------------------------------------------------- figures
# Each problem: rng -> (figure, facts, unknown, question, answer, strategy, difficulty).

Problem = tuple[str, dict[str, float], str, str, str, str, str]


def hypotenuse(rng: random.Random) -> Problem:
    a, b, c = _triple(rng)
    question = "In the right triangle, the legs are a and b. What is the length of the hypotenuse c?"
    strategy = "Pythagorean theorem: c = sqrt(a^2 + b^2)"
    return "right_triangle", {"a": a, "b": b}, "c", question, str(c), strategy, "easy"


def leg(rng: random.Random) -> Problem:
    a, b, c = _triple(rng)
    question = "In the right triangle, leg a and hypotenuse c are given. What is the length of leg b?"
    strategy = "Pythagorean theorem rearranged: b = sqrt(c^2 - a^2)"
    return "right_triangle", {"a": a, "c": c}, "b", question, str(b), strategy, "medium"


def triangle_area(rng: random.Random) -> Problem:
    a = rng.randint(2, 30)
    b = rng.randint(max(2, (a + 2) // 3), min(30, 3 * a))  # at most 3:1, so the figure stays readable
    question = "What is the area of the right triangle with legs a and b?"
    strategy = "Area of a right triangle: A = a * b / 2"
    return "right_triangle", {"a": a, "b": b}, "area", question, fmt(a * b / 2), strategy, "easy"


def _sides(rng: random.Random) -> tuple[int, int]:
    w = rng.randint(2, 40)
    return w, rng.randint(max(2, (w + 3) // 4), min(30, 4 * w))  # at most 4:1


def rectangle_area(rng: random.Random) -> Problem:
    w, h = _sides(rng)
    strategy = "Area of a rectangle: A = width * height"
    question = "What is the area of the rectangle?"
    return "rectangle", {"width": w, "height": h}, "area", question, str(w * h), strategy, "easy"


def rectangle_perimeter(rng: random.Random) -> Problem:
    w, h = _sides(rng)
    strategy = "Perimeter of a rectangle: P = 2 * (width + height)"
    question = "What is the perimeter of the rectangle?"
    return "rectangle", {"width": w, "height": h}, "perimeter", question, str(2 * (w + h)), strategy, "easy"


def rectangle_diagonal(rng: random.Random) -> Problem:
    w, h, d = _triple(rng)
    strategy = "The diagonal splits the rectangle into right triangles: d = sqrt(width^2 + height^2)"
    question = "What is the length of the diagonal d of the rectangle?"
    return "rectangle", {"width": w, "height": h}, "d", question, str(d), strategy, "medium"


def _circle_facts(rng: random.Random) -> tuple[dict[str, float], float, str]:
    """Radius or diameter (the figure shows whichever is given), the radius, the first step."""
    if rng.random() < 0.5:
        r = rng.randint(1, 40)
        return {"r": r, "pi": PI}, r, ""
    d = 2 * rng.randint(1, 40)  # even, so the radius is whole
    return {"d": d, "pi": PI}, d / 2, "r = d / 2, then "


def circle_area(rng: random.Random) -> Problem:
    facts, r, first = _circle_facts(rng)
    strategy = f"Area of a circle: {first}A = pi * r^2 with pi = 3.14"
    question = "What is the area of the circle? Use pi = 3.14."
    return "circle", facts, "area", question, fmt(PI * r * r), strategy, "medium" if first else "easy"


def circle_circumference(rng: random.Random) -> Problem:
    facts, r, first = _circle_facts(rng)
    strategy = f"Circumference of a circle: {first}C = 2 * pi * r with pi = 3.14"
    question = "What is the circumference of the circle? Use pi = 3.14."
    return "circle", facts, "circumference", question, fmt(2 * PI * r), strategy, "medium" if first else "easy"


def third_angle(rng: random.Random) -> Problem:
    a = rng.randint(25, 100)
    b = rng.randint(25, 155 - a)  # leaves C >= 25 degrees
    strategy = "The angles of a triangle sum to 180 degrees: C = 180 - A - B"
    question = "In triangle ABC, angles A and B are marked. What is angle C, in degrees?"
    return "triangle_angles", {"A": a, "B": b}, "C", question, str(180 - a - b), strategy, "easy"


def trapezoid_area(rng: random.Random) -> Problem:
    a = rng.randint(6, 40)
    b, h = rng.randint(2, a - 2), rng.randint(max(2, a // 4), a)
    strategy = "Area of a trapezoid: A = (a + b) / 2 * h"
    question = "The trapezoid has parallel sides a and b and height h. What is its area?"
    return "trapezoid", {"a": a, "b": b, "h": h}, "area", question, fmt((a + b) * h / 2), strategy, "medium"


PROBLEMS: dict[str, Callable[[random.Random], Problem]] = {
    f.__name__: f
    for f in (
        hypotenuse, leg, triangle_area, rectangle_area, rectangle_perimeter,
        rectangle_diagonal, circle_area, circle_circumference, third_angle, trapezoid_area,
    )
}  # fmt: skip


# ----------------------------------------------------------------------------- drawing


def _right_triangle(draw: ImageDraw.ImageDraw, facts: dict[str, float], unknown: str) -> None:
    a = facts.get("a", 0)
    b = facts.get("b") or math.sqrt(facts["c"] ** 2 - a**2)
    scale = min(200 / b, 170 / a)
    ox, oy = 80, 215
    top, right = (ox, oy - a * scale), (ox + b * scale, oy)
    draw.polygon([(ox, oy), top, right], outline=DRAW, width=3)
    draw.rectangle([ox, oy - 12, ox + 12, oy], outline=BLACK, width=1)  # right-angle mark
    values = {"a": facts.get("a"), "b": facts.get("b"), "c": facts.get("c")}

    def text(name: str) -> str:
        if values[name] is not None:
            return f"{name} = {fmt(values[name])}"
        return f"{name} = ?" if name == unknown else name

    label(draw, (ox - 8, (oy + top[1]) / 2), text("a"), size=13, anchor="rm")
    label(draw, ((ox + right[0]) / 2, oy + 14), text("b"), size=13)
    label(draw, ((top[0] + right[0]) / 2 + 10, (top[1] + right[1]) / 2 - 10), text("c"), size=13, anchor="lm")


def _rectangle(draw: ImageDraw.ImageDraw, facts: dict[str, float], unknown: str) -> None:
    w, h = facts["width"], facts["height"]
    scale = min(210 / w, 160 / h)
    x0, y0 = (WIDTH - w * scale) / 2 - 10, (HEIGHT - h * scale) / 2 - 6
    x1, y1 = x0 + w * scale, y0 + h * scale
    draw.rectangle([x0, y0, x1, y1], outline=DRAW, width=3)
    label(draw, ((x0 + x1) / 2, y1 + 14), f"width = {fmt(w)}", size=13)
    label(draw, (x1 + 6, (y0 + y1) / 2), f"height = {fmt(h)}", size=13, anchor="lm")
    if unknown == "d":
        draw.line([(x0, y1), (x1, y0)], fill=BLACK, width=2)
        label(draw, ((x0 + x1) / 2 - 8, (y0 + y1) / 2 - 10), "d = ?", size=13, anchor="rm")


def _circle(draw: ImageDraw.ImageDraw, facts: dict[str, float], unknown: str) -> None:
    cx, cy, radius = WIDTH // 2, HEIGHT // 2, 90
    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=DRAW, width=3)
    draw.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], fill=BLACK)
    if "r" in facts:
        draw.line([(cx, cy), (cx + radius, cy)], fill=BLACK, width=2)
        label(draw, (cx + radius / 2, cy - 12), f"r = {fmt(facts['r'])}", size=13)
    else:
        draw.line([(cx - radius, cy), (cx + radius, cy)], fill=BLACK, width=2)
        label(draw, (cx + radius / 2, cy - 12), f"d = {fmt(facts['d'])}", size=13)


def _triangle_angles(draw: ImageDraw.ImageDraw, facts: dict[str, float], unknown: str) -> None:
    a, b = math.radians(facts["A"]), math.radians(facts["B"])
    # Law of sines on a unit base, then scaled to fit the canvas.
    side_b = math.sin(b) / math.sin(math.pi - a - b)
    apex = (side_b * math.cos(a), side_b * math.sin(a))
    xs = (0.0, 1.0, apex[0])
    span_x, span_y = max(xs) - min(xs), apex[1]
    scale = min(240 / span_x, 180 / span_y)
    ox = (WIDTH - span_x * scale) / 2 - min(xs) * scale
    oy = 220
    pa, pb, pc = (ox, oy), (ox + scale, oy), (ox + apex[0] * scale, oy - apex[1] * scale)
    draw.polygon([pa, pb, pc], outline=DRAW, width=3)
    label(draw, (pa[0] - 8, pa[1] + 6), "A", size=13)
    label(draw, (pb[0] + 8, pb[1] + 6), "B", size=13)
    label(draw, (pc[0], pc[1] - 10), "C", size=13)

    def inside(p: tuple[float, float], toward: list[tuple[float, float]]) -> tuple[float, float]:
        tx = sum(q[0] for q in toward) / 2
        ty = sum(q[1] for q in toward) / 2
        d = math.hypot(tx - p[0], ty - p[1]) or 1
        return p[0] + (tx - p[0]) / d * 30, p[1] + (ty - p[1]) / d * 30

    label(draw, inside(pa, [pb, pc]), f"{fmt(facts['A'])}°", size=12)
    label(draw, inside(pb, [pa, pc]), f"{fmt(facts['B'])}°", size=12)
    label(draw, inside(pc, [pa, pb]), "?", size=13)


def _trapezoid(draw: ImageDraw.ImageDraw, facts: dict[str, float], unknown: str) -> None:
    a, b, h = facts["a"], facts["b"], facts["h"]
    scale = min(240 / a, 160 / h)
    x0, y1 = (WIDTH - a * scale) / 2, 206
    x1, y0 = x0 + a * scale, y1 - h * scale
    inset = (a - b) * scale / 2
    draw.polygon([(x0, y1), (x1, y1), (x1 - inset, y0), (x0 + inset, y0)], outline=DRAW, width=3)
    hx = x0 + inset
    for y in range(int(y0), int(y1), 8):  # dashed height
        draw.line([(hx, y), (hx, min(y + 4, y1))], fill=BLACK, width=1)
    label(draw, ((x0 + x1) / 2, y1 + 14), f"a = {fmt(a)}", size=13)
    label(draw, ((x0 + x1) / 2, y0 - 12), f"b = {fmt(b)}", size=13)
    label(draw, (hx + 6, (y0 + y1) / 2), f"h = {fmt(h)}", size=13, anchor="lm")


FIGURES = {
    "right_triangle": _right_triangle,
    "rectangle": _rectangle,
    "circle": _circle,
    "triangle_angles": _triangle_angles,
    "trapezoid": _trapezoid,
}


def _render(figure: str, facts: dict[str, float], unknown: str) -> Image.Image:
    image, draw = canvas(WIDTH, HEIGHT)
    FIGURES[figure](draw, facts, unknown)
    return image


def generate(rng: random.Random, index: int) -> dict[str, Any]:
    template = rng.choice(sorted(PROBLEMS))
    figure, facts, unknown, question, answer, strategy, difficulty = PROBLEMS[template](rng)
    return make_record(
        KIND,
        image=_render(figure, facts, unknown),
        question=question,
        answer=answer,
        ground_truth={"kind": KIND, "figure": figure, "facts": facts, "strategy": strategy},
        difficulty=difficulty,
        category="Mathematics",
        template=template,
    )
