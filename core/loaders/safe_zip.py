"""Zip archives opened only once their member list passes the checks of the package docstring
(paths, encryption, member count, total size, compression ratio), and read one member at a time
into memory, never extracted."""

from __future__ import annotations

import re
import zipfile
import zlib
from pathlib import Path

from core.errors import DatasetError
from core.loaders.limits import MAX_MEMBER_BYTES

# ImageNet's 1.28 M training images fit; the member list (a few hundred bytes per member) is the
# one part of a zip held in memory whole.
MAX_ZIP_MEMBERS = 2_000_000
MAX_ZIP_UNCOMPRESSED = 4 * 1024**3
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1024**2


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path.name} is not a readable zip archive: {exc}") from None
    try:
        _check_zip_safety(archive, path.name)
    except DatasetError:
        archive.close()
        raise
    return archive


def _check_zip_safety(archive: zipfile.ZipFile, where: str) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"{where} has {len(infos)} members, more than the {MAX_ZIP_MEMBERS} allowed")
    total = 0
    for info in infos:
        _check_member(info, where)
        total += info.file_size
    if total > MAX_ZIP_UNCOMPRESSED:
        raise DatasetError(f"{where} expands to {total} bytes, more than the {MAX_ZIP_UNCOMPRESSED} allowed")


def _check_member(info: zipfile.ZipInfo, where: str) -> None:
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(f"{where}: member {name!r} has an unsafe path (absolute or with '..')")
    if info.flag_bits & 0x1:
        raise DatasetError(f"{where}: member {name!r} is encrypted")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
        raise DatasetError(
            f"{where}: member {name!r} is compressed {ratio:.0f}:1, more than the "
            f"{MAX_COMPRESSION_RATIO}:1 allowed (zip bomb?)"
        )


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, max_bytes: int = MAX_MEMBER_BYTES, what: str = "member"
) -> bytes:
    """The member's bytes; refused before a byte is inflated when its declared size is over
    `max_bytes`, and never more than that size read (a member that inflates past its declared
    size is refused too)."""
    if info.file_size > max_bytes:
        raise DatasetError(
            f"{where}: {what} {info.filename!r} expands to {info.file_size} bytes, more than the "
            f"{max_bytes} allowed"
        )
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{where}: member {info.filename!r} cannot be read: {exc}") from None
    if len(data) != info.file_size:
        raise DatasetError(f"{where}: member {info.filename!r} does not match its declared size")
    return data
