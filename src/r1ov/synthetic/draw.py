"""Drawing and record helpers shared by the synthetic generators.

Everything here is deterministic: the only font is Pillow's bundled default (Aileron,
rendered by the FreeType that ships inside the Pillow wheel), no system fonts, no clocks,
so the same seed gives the same PNG bytes on every machine with the same Pillow.
"""

from __future__ import annotations

import io
import logging
import math
import random
from collections.abc import Callable
from functools import lru_cache
from typing import Any, TypeVar

from PIL import Image, ImageDraw, ImageFont

from r1ov.data.records import new_record

log = logging.getLogger(__name__)

T = TypeVar("T")
Point = tuple[float, float]

# The bundled face has no glyphs for Ω, π or ², so labels spell them out ("6 ohm").
BLACK, WHITE, GRAY, LIGHT = (20, 20, 20), (255, 255, 255), (120, 120, 120), (225, 225, 225)

DIFFICULTIES = ("easy", "medium", "hard")


@lru_cache(maxsize=16)
def font(size: int = 12) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled default face at ``size`` pixels (never a system font)."""
    face = ImageFont.load_default(size=size)
    if not isinstance(face, ImageFont.FreeTypeFont):
        # Pillow without FreeType falls back to a fixed bitmap font: still deterministic,
        # but the bytes differ from FreeType builds, so say so once.
        log.warning("Pillow has no FreeType; synthetic images use the bitmap font and differ from other builds")
    return face


def canvas(width: int, height: int, color: tuple[int, int, int] = WHITE) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", (width, height), color)
    return image, ImageDraw.Draw(image)


def png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata chunks, so identical pixels give identical bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def label(
    draw: ImageDraw.ImageDraw,
    xy: Point,
    text: str,
    size: int = 12,
    fill: tuple[int, int, int] = BLACK,
    anchor: str = "mm",
) -> None:
    """Text anchored at ``xy`` (default: centred)."""
    draw.text(xy, text, font=font(size), fill=fill, anchor=anchor)


def text_width(text: str, size: int = 12) -> int:
    left, _, right, _ = font(size).getbbox(text)
    return int(right - left)


def arrow(draw: ImageDraw.ImageDraw, points: list[Point], fill: tuple[int, int, int] = BLACK, width: int = 2) -> None:
    """A polyline with an arrowhead at its last point."""
    draw.line(points, fill=fill, width=width)
    (x0, y0), (x1, y1) = points[-2], points[-1]
    angle = math.atan2(y1 - y0, x1 - x0)
    head = 7.0
    left = (x1 - head * math.cos(angle - 0.45), y1 - head * math.sin(angle - 0.45))
    right = (x1 - head * math.cos(angle + 0.45), y1 - head * math.sin(angle + 0.45))
    draw.polygon([(x1, y1), left, right], fill=fill)


def fmt(value: float) -> str:
    """A number as an answer string: '12', '2.5', '0.75' (no float noise, no trailing zeros)."""
    rounded = round(float(value), 4)
    if rounded == int(rounded):
        return str(int(rounded))
    return f"{rounded:.4f}".rstrip("0").rstrip(".")


def money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def multiple_choice(rng: random.Random, correct: str, distractors: list[str], k: int = 4) -> tuple[list[str], str]:
    """Shuffled option texts (no letters) and the letter of the correct one."""
    pool = sorted({d for d in distractors if d != correct})
    options = [correct, *rng.sample(pool, min(k - 1, len(pool)))]
    rng.shuffle(options)
    return options, chr(ord("A") + options.index(correct))


def numeric_distractors(rng: random.Random, value: float, n: int = 6) -> list[str]:
    """Plausible wrong numbers near ``value``, positive and with at most two decimals."""
    candidates = {value + d for d in (-2, -1, -0.5, 0.5, 1, 2)} | {value * 2, value / 2}
    texts = {fmt(c) for c in candidates if c > 0 and abs(c * 100 - round(c * 100)) < 1e-9}
    texts.discard(fmt(value))
    return rng.sample(sorted(texts), min(n, len(texts)))


def make_record(
    kind: str,
    *,
    image: Image.Image,
    question: str,
    answer: str,
    ground_truth: dict[str, Any],
    difficulty: str,
    category: str,
    template: str,
    options: list[str] | None = None,
) -> dict[str, Any]:
    """A synthetic record: source ``synthetic/<kind>``, image_type ``kind``, PNG bytes."""
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty {difficulty!r} is not one of {DIFFICULTIES}")
    return new_record(
        source=f"synthetic/{kind}",
        question=question,
        image_type=kind,
        image=png(image),
        options=options,
        answer=answer,
        ground_truth=ground_truth,
        metadata={"kind": kind, "difficulty": difficulty, "category": category, "template": template},
    )


def first_applicable(rng: random.Random, templates: dict[str, Callable[..., T | None]], *args: Any) -> tuple[str, T]:
    """Try question templates in a seeded random order; the first that applies (not None) wins.

    Templates are sorted by name before shuffling so the draw depends only on the seed.
    """
    names = sorted(templates)
    rng.shuffle(names)
    for name in names:
        result = templates[name](rng, *args)
        if result is not None:
            return name, result
    raise ValueError(f"no question template applies (tried {names})")
