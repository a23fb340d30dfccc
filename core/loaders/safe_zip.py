"""Zip archives opened only once their member list passes the checks of the package docstring
(paths, encryption, member count, total size, compression ratio), and read one member at a time
into memory, never extracted.

`open_zip` gives a `zipfile.ZipFile`; `open_zip_index` a `ZipIndex`, the same member list held
as arrays (a zip of a million images would otherwise cost ~600 bytes a member in `ZipInfo`
objects), parsed from the central directory with zipfile's rules and read from each member's
local header (stored and deflate; anything else, or an archive this parser does not take, goes
through zipfile, so that errors and results stay zipfile's)."""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from array import array
from pathlib import Path

import numpy as np

from core.errors import DatasetError
from core.loaders.limits import MAX_MEMBER_BYTES

# ImageNet's 1.28 M training images fit; the member list (its names and a few numbers a member in
# a `ZipIndex`) is the one part of a zip held in memory whole.
MAX_ZIP_MEMBERS = 2_000_000
MAX_ZIP_UNCOMPRESSED = 4 * 1024**3
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1024**2

_READ_ERRORS = (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, zlib.error)


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
        _check_member(info.filename, info.flag_bits, info.file_size, info.compress_size, where)
        total += info.file_size
    _check_total(total, where)


def _check_total(total: int, where: str) -> None:
    if total > MAX_ZIP_UNCOMPRESSED:
        raise DatasetError(f"{where} expands to {total} bytes, more than the {MAX_ZIP_UNCOMPRESSED} allowed")


def _check_member(name: str, flag_bits: int, file_size: int, compress_size: int, where: str) -> None:
    if _is_unsafe_path(name):
        raise DatasetError(f"{where}: member {name!r} has an unsafe path (absolute or with '..')")
    if flag_bits & 0x1:
        raise DatasetError(f"{where}: member {name!r} is encrypted")
    ratio = file_size / max(compress_size, 1)
    if file_size >= RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
        raise DatasetError(
            f"{where}: member {name!r} is compressed {ratio:.0f}:1, more than the "
            f"{MAX_COMPRESSION_RATIO}:1 allowed (zip bomb?)"
        )


def _is_unsafe_path(name: str) -> bool:
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in re.split(r"[\\/]", name)


def read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, max_bytes: int = MAX_MEMBER_BYTES, what: str = "member"
) -> bytes:
    """The member's bytes; refused before a byte is inflated when its declared size is over
    `max_bytes`, and never more than that size read (a member that inflates past its declared
    size is refused too)."""
    _check_declared_size(info.filename, info.file_size, where, max_bytes, what)
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except _READ_ERRORS as exc:
        raise DatasetError(f"{where}: member {info.filename!r} cannot be read: {exc}") from None
    return _checked_size(data, info.filename, info.file_size, where)


def _check_declared_size(name: str, file_size: int, where: str, max_bytes: int, what: str) -> None:
    if file_size > max_bytes:
        raise DatasetError(f"{where}: {what} {name!r} expands to {file_size} bytes, more than the {max_bytes} allowed")


def _checked_size(data: bytes, name: str, file_size: int, where: str) -> bytes:
    if len(data) != file_size:
        raise DatasetError(f"{where}: member {name!r} does not match its declared size")
    return data


class ZipIndex:
    """A checked zip's members, in central-directory order: `names[i]` (as zipfile decodes them)
    and numpy arrays of their sizes, methods, flags, CRCs and local-header offsets; `read(i, ...)`
    is `read_member` of member i. A context manager, like `ZipFile`."""

    def __init__(self, path: Path, names: list[str], fields: dict[str, np.ndarray], archive: zipfile.ZipFile | None):
        self.path = path
        self.names = names
        self.file_size = fields["file_size"]
        self.compress_size = fields["compress_size"]
        self.header_offset = fields["header_offset"]
        self.method = fields["method"]
        self.flag_bits = fields["flag_bits"]
        self.crc = fields["crc"]
        self._archive = archive  # set: members are read through zipfile
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()

    def __len__(self) -> int:
        return len(self.names)

    def __enter__(self) -> ZipIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()
        if self._archive is not None:
            self._archive.close()

    def read(self, i: int, where: str, max_bytes: int = MAX_MEMBER_BYTES, what: str = "member") -> bytes:
        name, file_size = self.names[i], int(self.file_size[i])
        if self._archive is not None or self.method[i] not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            if self._archive is None:
                self._archive = zipfile.ZipFile(self.path)
            return read_member(self._archive, self._archive.infolist()[i], where, max_bytes, what)
        _check_declared_size(name, file_size, where, max_bytes, what)
        try:
            data = self._read_local(i, name, file_size)
        except _READ_ERRORS as exc:
            raise DatasetError(f"{where}: member {name!r} cannot be read: {exc}") from None
        return _checked_size(data, name, file_size, where)

    def _read_local(self, i: int, name: str, file_size: int) -> bytes:
        """Member i's bytes as `ZipFile.open(info).read(file_size + 1)` gives them, or its error."""
        fd, offset, flag_bits = self._file.fileno(), int(self.header_offset[i]), int(self.flag_bits[i])
        header = os.pread(fd, _LOCAL_HEADER.size, offset)
        if len(header) != _LOCAL_HEADER.size:
            raise zipfile.BadZipFile("Truncated file header")
        signature, _, _, local_flags, *_, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        if signature != b"PK\x03\x04":
            raise zipfile.BadZipFile("Bad magic number for file header")
        local_name = os.pread(fd, name_length, offset + _LOCAL_HEADER.size)
        if flag_bits & 0x20:
            raise NotImplementedError("compressed patched data (flag bit 5)")
        if flag_bits & 0x40:
            raise NotImplementedError("strong encryption (flag bit 6)")
        if local_name.decode("utf-8" if local_flags & 0x800 else "cp437") != name:
            raise zipfile.BadZipFile(f"File name in directory {name!r} and header {local_name!r} differ.")
        compress_size = int(self.compress_size[i])
        raw = os.pread(fd, compress_size, offset + _LOCAL_HEADER.size + name_length + extra_length)
        if len(raw) != compress_size:
            raise EOFError
        if self.method[i] == zipfile.ZIP_STORED:
            data = raw[:file_size]
        else:  # inflated no further than the declared size, as zipfile does
            inflater = zlib.decompressobj(-15)
            data = inflater.decompress(raw, file_size)
            if not inflater.unconsumed_tail:
                data = (data + inflater.flush())[:file_size]
        if zlib.crc32(data) != int(self.crc[i]):
            raise zipfile.BadZipFile(f"Bad CRC-32 for file {name!r}")
        return data


def open_zip_index(path: Path) -> ZipIndex:
    """`path`'s members as a `ZipIndex`, once they pass the checks `open_zip` makes (same errors)."""
    try:
        with open(path, "rb") as file:
            names, fields = _parse_central_directory(file)
    except (_UnusualZip, OSError):
        archive = open_zip(path)  # reads it, or raises zipfile's reason
        try:
            return ZipIndex(path, *_fields_of(archive), archive)
        except BaseException:
            archive.close()
            raise
    _check_index_safety(names, fields, path.name)
    return ZipIndex(path, names, fields, None)


def _check_index_safety(names: list[str], fields: dict[str, np.ndarray], where: str) -> None:
    """`_check_zip_safety` over arrays: the same first offending member, the same message."""
    if len(names) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"{where} has {len(names)} members, more than the {MAX_ZIP_MEMBERS} allowed")
    file_size, compress_size, flag_bits = fields["file_size"], fields["compress_size"], fields["flag_bits"]
    bad = (flag_bits & 0x1).astype(bool)
    bad |= (file_size >= RATIO_CHECK_MIN_BYTES) & (file_size / np.maximum(compress_size, 1) > MAX_COMPRESSION_RATIO)
    first = int(np.argmax(bad)) if bad.any() else len(names)
    first = next((i for i in range(first) if _is_unsafe_path(names[i])), first)
    if first < len(names):
        _check_member(names[first], int(flag_bits[first]), int(file_size[first]), int(compress_size[first]), where)
    _check_total(int(file_size.sum()), where)


def _fields_of(archive: zipfile.ZipFile) -> tuple[list[str], dict[str, np.ndarray]]:
    infos = archive.infolist()
    columns = {
        "file_size": (np.int64, "file_size"), "compress_size": (np.int64, "compress_size"),
        "header_offset": (np.int64, "header_offset"), "method": (np.uint16, "compress_type"),
        "flag_bits": (np.uint16, "flag_bits"), "crc": (np.uint32, "CRC"),
    }  # fmt: skip
    fields = {
        key: np.fromiter((getattr(info, attr) for info in infos), dtype=dtype, count=len(infos))
        for key, (dtype, attr) in columns.items()
    }
    return [info.filename for info in infos], fields


class _UnusualZip(Exception):
    """An archive `_parse_central_directory` leaves to zipfile (which reads it or says why not)."""


# zipfile's layouts (APPNOTE.TXT 4.3.7, 4.3.12, 4.3.14-16) and its limit on the version to extract.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")
_MAX_EXTRACT_VERSION = 63
_U32 = 0xFFFF_FFFF


def _parse_central_directory(file) -> tuple[list[str], dict[str, np.ndarray]]:
    """The members of the zip open in `file`, as zipfile's `_RealGetContents` reads them; raises
    `_UnusualZip` for anything it would not read the same way (zipfile then reads it)."""
    start, size, concat = _central_directory_span(file)
    file.seek(start)
    data = file.read(size)
    if len(data) != size:
        raise _UnusualZip
    names: list[str] = []
    sizes = {key: array("q") for key in ("file_size", "compress_size", "header_offset")}
    method, flags, crcs = array("H"), array("H"), array("I")
    position = 0
    while position < size:
        if position + _CENTRAL.size > size:
            raise _UnusualZip
        record = _CENTRAL.unpack_from(data, position)
        (signature, _, _, extract_version, _, flag_bits, compress_type, _, _, crc, compress_size, file_size,
         name_length, extra_length, comment_length, _, _, _, header_offset) = record  # fmt: skip
        if signature != b"PK\x01\x02" or extract_version > _MAX_EXTRACT_VERSION:
            raise _UnusualZip
        name_start = position + _CENTRAL.size
        try:
            name = data[name_start : name_start + name_length].decode("utf-8" if flag_bits & 0x800 else "cp437")
        except UnicodeDecodeError:
            raise _UnusualZip from None
        if "\x00" in name:  # zipfile cuts the name there, and compares the header's with the uncut one
            raise _UnusualZip
        if extra_length:
            extra = data[name_start + name_length : name_start + name_length + extra_length]
            file_size, compress_size, header_offset = _zip64_extra(extra, file_size, compress_size, header_offset)
        names.append(name)
        sizes["file_size"].append(file_size)
        sizes["compress_size"].append(compress_size)
        sizes["header_offset"].append(header_offset + concat)
        method.append(compress_type)
        flags.append(flag_bits)
        crcs.append(crc)
        position = name_start + name_length + extra_length + comment_length
    fields = {key: np.array(values, dtype=np.int64) for key, values in sizes.items()}
    fields["method"] = np.array(method, dtype=np.uint16)
    fields["flag_bits"] = np.array(flags, dtype=np.uint16)
    fields["crc"] = np.array(crcs, dtype=np.uint32)
    return names, fields


def _central_directory_span(file) -> tuple[int, int, int]:
    """(start, size) of the central directory and the bytes before the archive (`concat`: a
    self-extractor's stub), from the end record and, where there is one, the zip64 end record."""
    file.seek(0, os.SEEK_END)
    file_size = file.tell()
    if file_size < _END.size:
        raise _UnusualZip
    file.seek(file_size - _END.size)
    record = file.read(_END.size)
    location = file_size - _END.size
    if not (record.startswith(b"PK\x05\x06") and record.endswith(b"\x00\x00")):
        search_start = max(file_size - (1 << 16) - _END.size, 0)
        file.seek(search_start)
        tail = file.read()
        found = tail.rfind(b"PK\x05\x06")
        record = tail[found : found + _END.size]
        if found < 0 or len(record) != _END.size:
            raise _UnusualZip
        location = search_start + found
    *_, size, offset, _ = _END.unpack(record)
    zip64 = _zip64_end(file, location)
    if zip64 is not None:
        size, offset = zip64
    concat = location - size - offset - (_END64.size + _END64_LOCATOR.size if zip64 is not None else 0)
    if offset + concat < 0:
        raise _UnusualZip
    return offset + concat, size, concat


def _zip64_end(file, location: int) -> tuple[int, int] | None:
    """(size, offset) of the central directory from the zip64 end record before the end record
    at `location`, or None where there is none (zipfile's `_EndRecData64`)."""
    if location < _END64_LOCATOR.size:
        return None
    file.seek(location - _END64_LOCATOR.size)
    signature, disk, _, disks = _END64_LOCATOR.unpack(file.read(_END64_LOCATOR.size))
    if signature != b"PK\x06\x07":
        return None
    if disk != 0 or disks > 1:
        raise _UnusualZip
    if location < _END64_LOCATOR.size + _END64.size:
        return None
    file.seek(location - _END64_LOCATOR.size - _END64.size)
    signature, *_, size, offset = _END64.unpack(file.read(_END64.size))
    return None if signature != b"PK\x06\x06" else (size, offset)


def _zip64_extra(extra: bytes, file_size: int, compress_size: int, header_offset: int) -> tuple[int, int, int]:
    """The member's sizes and offset with the zip64 extra field's values where the central
    directory has 0xFFFFFFFF (zipfile's `ZipInfo._decodeExtra`)."""
    while len(extra) >= 4:
        kind, length = struct.unpack_from("<HH", extra)
        if length + 4 > len(extra):
            raise _UnusualZip
        if kind == 0x0001:
            values = extra[4 : length + 4]
            wanted = [file_size == _U32, compress_size == _U32, header_offset == _U32]
            if len(values) < 8 * sum(wanted):
                raise _UnusualZip
            found = iter(struct.unpack_from(f"<{sum(wanted)}Q", values))
            file_size, compress_size, header_offset = (
                next(found) if want else value for want, value in zip(wanted, (file_size, compress_size, header_offset))
            )
        extra = extra[length + 4 :]
    return file_size, compress_size, header_offset
