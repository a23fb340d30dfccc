"""Small files that claim or expand to much more than they hold: a zip whose labels.csv inflates
far past its own size, PNGs of 13000x13000 pixels, an .npz whose header claims a huge shape.
Built without ever holding the expanded data in memory."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

HUGE_SIDE = 13_000


def labels_bomb_zip(path: Path, expanded_bytes: int) -> Path:
    """A zip with two tiny PNGs and a labels.csv of about `expanded_bytes` (compressed ~8:1, under
    the ratio check), streamed into the archive."""
    rows = b"".join(b"images/%09d.png,%s\n" % (i, b"cat" if i % 3 else b"dog") for i in range(20_000))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("a.png", png_bytes(4, 4))
        archive.writestr("b.png", png_bytes(4, 4))
        with archive.open("labels.csv", "w") as member:
            member.write(b"file,label\na.png,cat\nb.png,dog\n")
            written = 0
            while written < expanded_bytes:
                member.write(rows)
                written += len(rows)
    return path


def png_bytes(width: int, height: int) -> bytes:
    """A valid grayscale PNG of zeros, compressed row by row."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    compressor = zlib.compressobj(1)
    rows = b"\0" * (width + 1) * 500
    parts = [compressor.compress(rows) for _ in range(height // 500)]
    parts += [compressor.compress(b"\0" * (width + 1) * (height % 500)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def huge_png_zip(path: Path, count: int = 3) -> Path:
    huge = png_bytes(HUGE_SIDE, HUGE_SIDE)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"{'cat' if i % 2 else 'dog'}/big{i}.png", huge)
    return path


def huge_shape_npz(path: Path) -> Path:
    """x.npy's header claims 10^12 x 1000 float64 values; 64 bytes follow it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 1000)})
    labels = io.BytesIO()
    np.save(labels, np.arange(10) % 2)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + b"\0" * 64)
        archive.writestr("y.npy", labels.getvalue())
    return path
