"""Pillow images to uint8 [N, C, H, W] arrays: decoding, grayscale or RGB, and resizing."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from core.errors import DatasetError
from core.loaders.limits import MAX_DECODED_IMAGE_BYTES, MAX_IMAGE_PIXELS
from core.sample_store import memory_sink

if TYPE_CHECKING:
    from core.loaders.source import FileSource

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


def upright_size(image: Image.Image) -> tuple[int, int]:
    """The opened image's size once turned upright by its EXIF orientation (`load_image`), from its header."""
    try:
        orientation = image.getexif().get(0x0112)
    except Exception:  # a broken EXIF block: `load_image` says so, or leaves the image as it is
        orientation = None
    return (image.height, image.width) if orientation in (5, 6, 7, 8) else image.size


class ImageBudget:
    """The budgets of one file's images, checked from each header before anything is decoded:
    one image's pixels, `source.max_pixels` in all and, where the images are held in memory (the
    source has no sink), `MAX_DECODED_IMAGE_BYTES` in all."""

    def __init__(self, where: str, source: FileSource):
        self.where, self.source = where, source
        self.pixels = self.bytes = 0

    def check(self, image: Image.Image, place: str, at: str) -> None:
        """`place` names the image (as an error about it alone begins); `at` says where the
        totals ran over."""
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise DatasetError(
                f"{place} is {image.width}x{image.height} pixels, more than the {MAX_IMAGE_PIXELS} allowed per image"
            )
        self.pixels += image.width * image.height
        self.bytes += decoded_bytes(image)
        if self.pixels > self.source.max_pixels:
            raise DatasetError(f"{self.where}: the images hold more than {self.source.max_pixels} pixels in all (at {at})")
        if self.source.sink is None and self.bytes > MAX_DECODED_IMAGE_BYTES:
            raise DatasetError(f"{self.where}: the images decode to more than {MAX_DECODED_IMAGE_BYTES} bytes in all (at {at})")


def decode_all(
    count: int, opened: Callable[[int], tuple[Image.Image, str]], source: FileSource,
    check: Callable[[int, Image.Image], None],
) -> np.ndarray:
    """Images 0..count−1 (`opened(i)`: image i with its header read, not decoded, and where it is)
    as uint8 [N, C, H, W] in the source's sink: a first pass reads every header (`check(i, image)`
    enforces the budgets before anything is decoded) and fixes the layout, a second decodes one
    image at a time into the sink. The progress: 10% the headers, 90% the decoding."""
    headers = HeaderTally()
    for i in range(count):
        if i % 256 == 0:
            source.progress(i, 10 * count)
        image, _ = opened(i)
        check(i, image)
        headers.add(image.mode, upright_size(image))
        image.close()
    layout = headers.layout(source.image_size)
    sink = (source.sink or memory_sink)((count, *layout.shape), np.dtype(np.uint8))
    try:
        for i in range(count):
            if i % 256 == 0:
                source.progress(count + 9 * i, 10 * count)
            image, where = opened(i)
            sink.put(i, layout.pixels(load_image(image, where)))
        return sink.finish()
    except BaseException:
        sink.discard()
        raise


def load_image(image: Image.Image, where: str) -> Image.Image:
    """Decode the pixels of an opened image, turned upright by its EXIF orientation."""
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # Pillow's format plugins raise many exception types
        raise DatasetError(f"{where} is not a readable image: {exc}") from None


def stack_images(images: list[Image.Image], image_size: int | None) -> np.ndarray:
    """One array of all images: L when every one is grayscale, else RGB, resized to one size."""
    headers = HeaderTally()
    for image in images:
        headers.add(image.mode, image.size)
    layout = headers.layout(image_size)
    x = np.empty((len(images), *layout.shape), dtype=np.uint8)
    for i, image in enumerate(images):
        x[i] = layout.pixels(image)
    return x


class ImageLayout:
    """The one shape every image of a dataset is stored at: grayscale (1 channel) when every image
    is, else RGB, at one width and height."""

    def __init__(self, gray: bool, width: int, height: int):
        self.gray, self.width, self.height = gray, width, height

    @property
    def shape(self) -> tuple[int, int, int]:
        return (1 if self.gray else 3, self.height, self.width)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """A decoded image as uint8 [C, H, W] of this layout."""
        converted = _to_gray(image) if self.gray else image.convert("RGB")
        if converted.size != (self.width, self.height):
            converted = converted.resize((self.width, self.height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted)
        return pixels[None] if self.gray else pixels.transpose(2, 0, 1)


class HeaderTally:
    """What the layout of images needs of their headers, counted as they are read (not a record
    per image): whether all are grayscale, and how many have each size."""

    def __init__(self) -> None:
        self.gray = True
        self.sizes: Counter[tuple[int, int]] = Counter()

    def add(self, mode: str, size: tuple[int, int]) -> None:
        self.gray = self.gray and mode in GRAYSCALE_MODES
        self.sizes[size] += 1

    def layout(self, image_size: int | None) -> ImageLayout:
        """`image_size` squared, or by default the most common size (the first seen of equally
        common ones) with its longer side capped at 224; grayscale when every image is."""
        width, height = (image_size, image_size) if image_size else _default_size(self.sizes)
        return ImageLayout(self.gray, width, height)


def _to_gray(image: Image.Image) -> Image.Image:
    if image.mode in ("1", "L", "LA"):
        return image.convert("L")
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.max(initial=0) > 255:
        pixels = pixels * (255 / 65535)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def _default_size(sizes: Counter[tuple[int, int]]) -> tuple[int, int]:
    width, height = sizes.most_common(1)[0][0]
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
