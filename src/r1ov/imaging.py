"""Decoding record images, with a clear error for corrupt bytes."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image, UnidentifiedImageError

from r1ov import storage


class BadImage(ValueError):
    """The record's image cannot be read; the record is set aside with this message."""


def image_bytes(record: dict[str, Any]) -> bytes:
    if record.get("image"):
        return record["image"]
    if record.get("image_uri"):
        return storage.read_bytes(record["image_uri"])
    raise BadImage("record has neither image bytes nor image_uri")


def load_image(record: dict[str, Any], max_pixels: int | None = None) -> Image.Image:
    """The record's image as RGB, downscaled (aspect kept) to at most ``max_pixels``."""
    try:
        image = Image.open(io.BytesIO(image_bytes(record)))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise BadImage(f"corrupt image: {exc}") from exc
    image = image.convert("RGB")
    if max_pixels and image.width * image.height > max_pixels:
        scale = (max_pixels / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    return image


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
