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
# Qwen2-VL/2.5-VL's processor refuses wider ratios: transformers
# src/transformers/models/qwen2_vl/image_processing_qwen2_vl.py, smart_resize() raises
# "absolute aspect ratio must be smaller than 200" when max(h, w) / min(h, w) > 200.
MAX_ASPECT_RATIO = 200
# Smaller than this carries nothing a question can ask about (a 1x1 "image" is a placeholder);
# smart_resize would blow it up to its 56x56 minimum without adding any content.
DEFAULT_MIN_SIDE = 8
# Formats and modes a trainer reads as they are; anything else is re-encoded as PNG at import.
KEPT_FORMATS = frozenset({"PNG", "JPEG"})
KEPT_MODES = frozenset({"RGB", "L"})


class BadImage(ValueError):
    """The record's image cannot be read; the record is set aside with this message."""


@dataclass(frozen=True)
class Decoded:
    """One decode of a record's image: the file's format and mode, and 8-bit RGB pixels."""

    image: Image.Image
    format: str | None
    mode: str
    size: tuple[int, int]
    frames: int = 1  # more than one: an animation


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
            frames = int(getattr(image, "n_frames", 1) or 1)
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
    return Decoded(rgb, fmt, mode, (width, height), frames)


def check_trainable(decoded: Decoded, min_side: int = DEFAULT_MIN_SIDE) -> None:
    """Raise BadImage for an image the trainer cannot use as it stands: an animation (a record
    holds one still image; which frame a question means is unknown, so none is picked), a side
    under ``min_side`` pixels, or an aspect ratio Qwen's processor refuses (> 200)."""
    width, height = decoded.size
    if decoded.frames > 1:
        raise BadImage(f"animated image: {decoded.frames} frames; a record holds one still image")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise BadImage(
            f"aspect ratio {max(width, height) / min(width, height):.0f} of {width}x{height} exceeds "
            f"{MAX_ASPECT_RATIO}, which Qwen2.5-VL's processor refuses"
        )
    if min(width, height) < min_side:
        raise BadImage(f"too small: {width}x{height}, a side under min_side={min_side} pixels")


def trainable_bytes(
    data: bytes, min_side: int = DEFAULT_MIN_SIDE, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS
) -> tuple[bytes, Decoded]:
    """``data`` as a trainer can read it, and its decode; raises BadImage.

    PNG and JPEG in RGB or greyscale stay byte for byte what the source had; anything else
    (CMYK, palettes, transparency, 16-bit, TIFF, WebP, ...) becomes a PNG of its faithful RGB
    (:func:`to_rgb`), so no later reader applies a naive ``convert("RGB")`` of its own.
    """
    decoded = decode(data, max_decode_pixels)
    check_trainable(decoded, min_side)
    if decoded.format in KEPT_FORMATS and decoded.mode in KEPT_MODES:
        return data, decoded
    return to_png(decoded.image), decoded


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
