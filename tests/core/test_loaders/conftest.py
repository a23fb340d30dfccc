"""Builders of real image zips in tmp_path, for the loader tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image


def _png_bytes(size=(8, 6), mode="L", value=128, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    color = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def _make_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _folder_zip(path: Path, top: str = "") -> Path:
    """Class folders cat/ and dog/ of three 8x6 grayscale PNGs each, img<i>.png of value 40 * i."""
    members = {f"{top}{cls}/img{i}.png": _png_bytes(value=40 * i) for cls in ("cat", "dog") for i in range(3)}
    return _make_zip(path, members)


@pytest.fixture
def png_bytes():
    return _png_bytes


@pytest.fixture
def make_zip():
    return _make_zip


@pytest.fixture
def folder_zip():
    return _folder_zip
