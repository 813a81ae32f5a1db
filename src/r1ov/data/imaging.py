"""Decoding record images: once per record, safely, into faithful 8-bit RGB.

Every way an image can be unusable ends in :class:`BadImage` with a one-line reason, so a
stage sets the record aside and goes on: unreadable, empty or truncated bytes, and images
whose header promises more pixels than ``max_decode_pixels`` (decompression bombs, refused
before their pixels are allocated). Modes a plain ``convert("RGB")`` gets wrong are mapped
by value range: 16-bit and 32-bit integer images scale to 8 bits instead of clipping to
white, float images by their range, transparency is laid on white, CMYK and palettes convert.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from r1ov.data import storage

# PIL's own default (2x this raises DecompressionBombError): ~89.5 megapixels.
DEFAULT_MAX_DECODE_PIXELS = 89_478_485


class BadImage(ValueError):
    """The record's image cannot be read; the record is set aside with this message."""


@dataclass(frozen=True)
class Decoded:
    """One decode of a record's image: the file's format and mode, and 8-bit RGB pixels."""

    image: Image.Image
    format: str | None
    mode: str
    size: tuple[int, int]


def image_bytes(record: dict[str, Any]) -> bytes:
    if record.get("image"):
        return record["image"]
    if record.get("image_uri"):
        try:
            return storage.read_bytes(record["image_uri"])
        except OSError as exc:
            raise BadImage(f"cannot read {record['image_uri']}: {exc}") from exc
    raise BadImage("record has neither image bytes nor image_uri")


def _scaled_to_8bit(array: np.ndarray, full_scale: float | None) -> Image.Image:
    values = array.astype(np.float64)
    finite = values[np.isfinite(values)]
    if full_scale is None:  # float data: [0, 1] is intensity; anything else is stretched
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if low >= 0 and high <= 1:
            low, high = 0.0, 1.0
    else:
        low, high = 0.0, full_scale
    scaled = np.clip((np.nan_to_num(values, nan=low) - low) / max(high - low, 1e-12), 0, 1) * 255
    return Image.fromarray(np.round(scaled).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with the same look: what a person viewing the file would see."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        image = _scaled_to_8bit(np.asarray(image), 65535.0)
    elif mode == "I":
        array = np.asarray(image)
        peak = float(array.max()) if array.size else 0.0
        image = _scaled_to_8bit(array, 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else None)
    elif mode == "F":
        image = _scaled_to_8bit(np.asarray(image), None)
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode(data: bytes, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> Decoded:
    """Open, bound-check and convert ``data`` in one pass; raises BadImage."""
    if not data:
        raise BadImage("corrupt image: zero bytes")
    try:
        with warnings.catch_warnings():
            # Our own bound (below) decides; PIL's warning between 1x and 2x its limit is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_decode_pixels:
                raise BadImage(
                    f"decompression bomb: {width}x{height} pixels exceeds max_decode_pixels={max_decode_pixels}"
                )
            fmt, mode = image.format, image.mode
            image.load()
            image = ImageOps.exif_transpose(image) or image
            rgb = to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise BadImage(f"decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError, ValueError, TypeError) as exc:
        if isinstance(exc, BadImage):
            raise
        raise BadImage(f"corrupt image: {type(exc).__name__}: {exc}") from exc
    if rgb.width == 0 or rgb.height == 0:
        raise BadImage("corrupt image: zero width or height")
    return Decoded(rgb, fmt, mode, (width, height))


def downscale(image: Image.Image, max_pixels: int | None) -> Image.Image:
    """Aspect-preserving shrink to at most ``max_pixels`` (unchanged when already small)."""
    if not max_pixels or image.width * image.height <= max_pixels:
        return image
    scale = (max_pixels / (image.width * image.height)) ** 0.5
    return image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))


def load_image(record: dict[str, Any], max_pixels: int | None = None) -> Image.Image:
    """The record's image as RGB, downscaled (aspect kept) to at most ``max_pixels``."""
    return downscale(decode(image_bytes(record)).image, max_pixels)


def to_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
