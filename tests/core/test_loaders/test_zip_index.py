"""core.loaders.safe_zip.ZipIndex: the compact member list reads what zipfile reads (names, bytes,
zip64 archives, stubs before the archive) and refuses what it refuses, with the same messages."""

from __future__ import annotations

import struct
import zipfile

import pytest

from core.errors import DatasetError
from core.loaders import load_dataset
from core.loaders.safe_zip import open_zip, open_zip_index, read_member

MEMBERS = {
    "cat/a.png": b"stored bytes " * 50,
    "dog/b.png": b"deflated bytes " * 400,
    "dog/sub/c.txt": b"",
    "dir/": b"",
    "caf\u00e9/d.png": b"utf-8 name",
}


def _write(path, members=MEMBERS, compression=zipfile.ZIP_DEFLATED, comment=b""):
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            method = zipfile.ZIP_STORED if name.startswith("cat/") else compression
            archive.writestr(name, data, compress_type=method)
        archive.comment = comment
    return path


def _same_as_zipfile(path):
    with zipfile.ZipFile(path) as archive, open_zip_index(path) as index:
        infos = archive.infolist()
        assert index.names == [info.filename for info in infos]
        assert index.file_size.tolist() == [info.file_size for info in infos]
        for i, info in enumerate(infos):
            assert index.read(i, path.name) == archive.read(info)


@pytest.mark.parametrize("comment", [b"", b"an archive comment"])
def test_stored_and_deflated_members_read_as_zipfile_reads_them(tmp_path, comment):
    _same_as_zipfile(_write(tmp_path / "mixed.zip", comment=comment))


def test_archive_after_a_stub(tmp_path):
    data = _write(tmp_path / "plain.zip").read_bytes()
    (tmp_path / "stub.zip").write_bytes(b"#!/bin/sh self-extractor stub\n" + data)
    _same_as_zipfile(tmp_path / "stub.zip")


def test_other_methods_read_through_zipfile(tmp_path):
    _same_as_zipfile(_write(tmp_path / "bz.zip", compression=zipfile.ZIP_BZIP2))


def test_zip64_end_record_of_many_members(tmp_path):
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(70_000):
            archive.writestr(f"c{i % 2}/{i}.bin", str(i).encode())
    assert b"PK\x06\x06" in path.read_bytes()[-200:]
    with open_zip_index(path) as index:
        assert len(index) == 70_000
        assert index.names[69_999] == "c1/69999.bin"
        assert index.read(69_999, path.name) == b"69999"


def _member_error(path, index_of=0):
    """The messages of the zipfile reader and of the index reader for one member."""
    messages = []
    with open_zip(path) as archive:
        with pytest.raises(DatasetError) as raised:
            read_member(archive, archive.infolist()[index_of], path.name)
        messages.append(raised.value.message)
    with open_zip_index(path) as index:
        with pytest.raises(DatasetError) as raised:
            index.read(index_of, path.name)
        messages.append(raised.value.message)
    return messages


def test_bad_crc_and_short_member(tmp_path):
    data = bytearray(_write(tmp_path / "good.zip").read_bytes())
    at = data.index(b"stored bytes")
    data[at : at + 6] = b"STORED"
    (tmp_path / "crc.zip").write_bytes(bytes(data))
    zipfile_message, index_message = _member_error(tmp_path / "crc.zip")
    expected = "crc.zip: member 'cat/a.png' cannot be read: Bad CRC-32 for file 'cat/a.png'"
    assert index_message == zipfile_message == expected

    data = bytearray(_write(tmp_path / "good.zip").read_bytes())
    central = data.index(b"PK\x01\x02")  # the first member's file size, 24 bytes into its record
    struct.pack_into("<L", data, central + 24, len(MEMBERS["cat/a.png"]) + 10)
    (tmp_path / "short.zip").write_bytes(bytes(data))
    zipfile_message, index_message = _member_error(tmp_path / "short.zip")
    assert index_message == zipfile_message == "short.zip: member 'cat/a.png' does not match its declared size"


def test_corrupt_deflate_data(tmp_path):
    data = bytearray(_write(tmp_path / "good.zip").read_bytes())
    with zipfile.ZipFile(tmp_path / "good.zip") as archive:
        info = archive.getinfo("dog/b.png")
    start = info.header_offset + 30 + len(b"dog/b.png")
    data[start : start + 8] = b"\xff" * 8
    (tmp_path / "inflate.zip").write_bytes(bytes(data))
    zipfile_message, index_message = _member_error(tmp_path / "inflate.zip", index_of=1)
    assert index_message == zipfile_message
    assert "member 'dog/b.png' cannot be read" in index_message


def test_member_over_the_allowed_size_refused_before_reading(tmp_path):
    path = _write(tmp_path / "big.zip")
    with open_zip_index(path) as index, pytest.raises(DatasetError, match="labels file 'dog/b.png' expands to 6000"):
        index.read(1, path.name, max_bytes=100, what="labels file")


@pytest.mark.parametrize("name", ["../evil.png", "/abs.png", "C:/win.png", "a\\..\\b.png"])
def test_unsafe_names(tmp_path, name):
    path = _write(tmp_path / "unsafe.zip", {"cat/a.png": b"x", name: b"y"})
    with pytest.raises(DatasetError, match="unsafe path") as raised:
        open_zip_index(path)
    with pytest.raises(DatasetError) as expected:
        open_zip(path)
    assert raised.value.message == expected.value.message


def test_encrypted_flag(tmp_path):
    data = bytearray(_write(tmp_path / "good.zip").read_bytes())
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 1)  # the second member's record
    struct.pack_into("<H", data, central + 8, struct.unpack_from("<H", data, central + 8)[0] | 0x1)
    (tmp_path / "locked.zip").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="member 'dog/b.png' is encrypted"):
        open_zip_index(tmp_path / "locked.zip")
    with pytest.raises(DatasetError, match="member 'dog/b.png' is encrypted"):
        load_dataset(tmp_path / "locked.zip")


def test_not_a_zip_and_truncated_directory_as_zipfile_says(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"this is not a zip")
    with pytest.raises(DatasetError, match="fake.zip is not a readable zip archive: File is not a zip file"):
        open_zip_index(tmp_path / "fake.zip")
    data = _write(tmp_path / "good.zip").read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: data.index(b"PK\x01\x02") + 20] + data[-22:])
    with pytest.raises(DatasetError) as raised:
        open_zip_index(tmp_path / "cut.zip")
    with pytest.raises(DatasetError) as expected:
        open_zip(tmp_path / "cut.zip")
    assert raised.value.message == expected.value.message
