"""core.loaders.safe_zip: unsafe, oversized, unreadable and corrupt zips are refused."""

from __future__ import annotations

import zipfile

import pytest

from core.errors import DatasetError
from core.loaders import load_dataset, safe_zip


def test_path_traversal(tmp_path, png_bytes, make_zip):
    members = {"a/x.png": png_bytes(), "../evil/y.png": png_bytes()}
    with pytest.raises(DatasetError, match="unsafe path"):
        load_dataset(make_zip(tmp_path / "evil.zip", members))
    with pytest.raises(DatasetError, match="unsafe path"):
        load_dataset(make_zip(tmp_path / "abs.zip", {"a/x.png": png_bytes(), "/etc/y.png": png_bytes()}))


def test_zip_bomb(tmp_path, png_bytes, make_zip):
    members = {"a/x.png": png_bytes(), "b/bomb.png": bytes(20 * 1024**2)}
    with pytest.raises(DatasetError, match="zip bomb"):
        load_dataset(make_zip(tmp_path / "bomb.zip", members))


def test_zip_member_count_and_total_size(tmp_path, monkeypatch, folder_zip):
    archive = folder_zip(tmp_path / "pets.zip")
    monkeypatch.setattr(safe_zip, "MAX_ZIP_MEMBERS", 5)
    with pytest.raises(DatasetError, match="6 members"):
        load_dataset(archive)
    monkeypatch.setattr(safe_zip, "MAX_ZIP_MEMBERS", 200_000)
    monkeypatch.setattr(safe_zip, "MAX_ZIP_UNCOMPRESSED", 100)
    with pytest.raises(DatasetError, match="expands to"):
        load_dataset(archive)


def test_not_a_zip_and_corrupt_zip(tmp_path, folder_zip):
    (tmp_path / "fake.zip").write_bytes(b"this is not a zip")
    with pytest.raises(DatasetError, match="not a readable zip"):
        load_dataset(tmp_path / "fake.zip")
    good = folder_zip(tmp_path / "good.zip").read_bytes()
    (tmp_path / "corrupt.zip").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="corrupt.zip"):
        load_dataset(tmp_path / "corrupt.zip")


def test_corrupt_member_data(tmp_path, png_bytes, make_zip):
    members = {"cat/img0.png": png_bytes(), "dog/img0.png": png_bytes()}
    data = bytearray(make_zip(tmp_path / "pets.zip", members, zipfile.ZIP_STORED).read_bytes())
    offset = data.index(b"IDAT")
    data[offset : offset + 4] = b"XXXX"
    (tmp_path / "flipped.zip").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="'cat/img0.png' cannot be read: Bad CRC-32"):
        load_dataset(tmp_path / "flipped.zip")
