"""Pillow images to uint8 [N, C, H, W] arrays: decoding, grayscale or RGB, and resizing."""

from __future__ import annotations

import io
from collections import Counter

import numpy as np
from PIL import Image, ImageOps

from core.errors import DatasetError

MAX_DEFAULT_IMAGE_SIDE = 224
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def open_image(data: bytes, where: str) -> Image.Image:
    """The image's header only: its size is known, its pixels are not decoded yet (see `load_image`)."""
    try:
        return Image.open(io.BytesIO(data))
    except Exception as exc:  # Pillow's format plugins raise many exception types
        raise DatasetError(f"{where} is not a readable image: {exc}") from None


def decoded_bytes(image: Image.Image) -> int:
    """What the opened image's pixels take once decoded, from its header: 1 byte per pixel of
    "1"/"L"/"P", 4 of "I"/"F", 2 per band of the 16-bit modes, 1 per band otherwise."""
    per_pixel = {"1": 1, "L": 1, "P": 1, "I": 4, "F": 4}.get(image.mode)
    if per_pixel is None:
        per_pixel = len(image.getbands()) * (2 if image.mode.startswith("I;16") else 1)
    return image.width * image.height * per_pixel


def load_image(image: Image.Image, where: str) -> Image.Image:
    """Decode the pixels of an opened image, turned upright by its EXIF orientation."""
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # Pillow's format plugins raise many exception types
        raise DatasetError(f"{where} is not a readable image: {exc}") from None


def stack_images(images: list[Image.Image], image_size: int | None) -> np.ndarray:
    """One array of all images: L when every one is grayscale, else RGB, resized to one size."""
    gray = all(image.mode in GRAYSCALE_MODES for image in images)
    width, height = (image_size, image_size) if image_size else _default_size(images)
    x = np.empty((len(images), 1 if gray else 3, height, width), dtype=np.uint8)
    for i, image in enumerate(images):
        converted = _to_gray(image) if gray else image.convert("RGB")
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted)
        x[i] = pixels[None] if gray else pixels.transpose(2, 0, 1)
    return x


def _to_gray(image: Image.Image) -> Image.Image:
    if image.mode in ("1", "L", "LA"):
        return image.convert("L")
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.max(initial=0) > 255:
        pixels = pixels * (255 / 65535)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def _default_size(images: list[Image.Image]) -> tuple[int, int]:
    width, height = Counter(image.size for image in images).most_common(1)[0][0]
    longest = max(width, height)
    if longest <= MAX_DEFAULT_IMAGE_SIDE:
        return width, height
    scale = MAX_DEFAULT_IMAGE_SIDE / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_array(x: np.ndarray, image_size: int | None) -> np.ndarray:
    """uint8 [N, C, H, W] images resized (bilinear) to `image_size` squared; None keeps them as they are."""
    if image_size is None or x.shape[2:] == (image_size, image_size):
        return x
    out = np.empty((len(x), x.shape[1], image_size, image_size), dtype=np.uint8)
    for i, sample in enumerate(x):
        image = Image.fromarray(sample[0] if x.shape[1] == 1 else sample.transpose(1, 2, 0))
        pixels = np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))
        out[i] = pixels[None] if x.shape[1] == 1 else pixels.transpose(2, 0, 1)
    return out
