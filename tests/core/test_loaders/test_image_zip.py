"""core.loaders.image_zip on real zips built in tmp_path: class folders and images plus labels.csv."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.errors import DatasetError
from core.loaders import load_dataset


def test_imagefolder_zip(tmp_path, folder_zip):
    data = load_dataset(folder_zip(tmp_path / "pets.zip"))
    assert data.name == "pets" and data.modality == "image"
    assert data.x.shape == (6, 1, 6, 8) and data.x.dtype == np.uint8
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.sample_ids[0] == "cat/img0.png"
    assert data.x[1, 0, 0, 0] == 40
    assert data.is_mislabeled is None


def test_imagefolder_zip_under_top_folder_mixed_modes_and_sizes(tmp_path, png_bytes, make_zip):
    members = {
        "root/1/a.png": png_bytes(size=(10, 10)),
        "root/1/b.jpg": png_bytes(size=(10, 10), mode="RGB", fmt="JPEG"),
        "root/10/c.png": png_bytes(size=(20, 30)),
        "root/2/d.bmp": png_bytes(size=(10, 10), fmt="BMP"),
        "root/2/notes.txt": b"not an image",
        "__MACOSX/root/1/._a.png": b"junk",
    }
    data = load_dataset(make_zip(tmp_path / "mixed.zip", members))
    assert data.class_names == ["1", "2", "10"]
    assert data.x.shape == (4, 3, 10, 10)
    assert data.sample_ids == ["root/1/a.png", "root/1/b.jpg", "root/10/c.png", "root/2/d.bmp"]
    assert data.y.tolist() == [0, 0, 2, 1]
    assert data.meta["skipped_members"] == ["root/2/notes.txt"]
    assert load_dataset(tmp_path / "mixed.zip", image_size=5).x.shape == (4, 3, 5, 5)


def test_default_size_capped(tmp_path, png_bytes, make_zip):
    members = {f"{c}/{i}.png": png_bytes(size=(448, 300)) for c in "ab" for i in range(2)}
    assert load_dataset(make_zip(tmp_path / "big.zip", members)).x.shape == (4, 1, 150, 224)


def test_sixteen_bit_images_scaled(tmp_path, png_bytes, make_zip):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(buffer, format="PNG")
    members = {"a/x.png": buffer.getvalue(), "b/y.png": png_bytes(size=(4, 4), value=7)}
    data = load_dataset(make_zip(tmp_path / "deep.zip", members))
    assert data.x[:, 0, 0, 0].tolist() == [255, 7]


def test_labels_csv_zip(tmp_path, png_bytes, make_zip):
    csv = "file,label,is_mislabeled\nimgs/a.png,bird,0\nimgs/b.png,plane,true\nimgs/c.png,bird,no\n"
    members = {"top/labels.csv": csv.encode(), **{f"top/imgs/{n}.png": png_bytes() for n in "abcd"}}
    data = load_dataset(make_zip(tmp_path / "labelled.zip", members))
    assert data.class_names == ["bird", "plane"] and data.y.tolist() == [0, 1, 0]
    assert data.sample_ids == ["top/imgs/a.png", "top/imgs/b.png", "top/imgs/c.png"]
    assert data.is_mislabeled.tolist() == [False, True, False]
    assert data.meta["format"] == "images+labels.csv"
    assert data.meta["skipped_members"] == ["top/imgs/d.png"]


@pytest.mark.parametrize(
    ("csv", "message"),
    [
        ("file,label\na.png,x\nb.png,\n", "row 2: label is empty"),
        ("file,label\na.png,x\nb.png,x\n", "at least 2 classes"),
        ("file,label\na.png,x\nzzz.png,y\n", "'zzz.png' is not in the archive"),
        ("file,label\na.png,x\na.png,y\n", "listed twice"),
        ("file,klass\na.png,x\nb.png,y\n", "lacks column"),
        ("file,label,is_mislabeled\na.png,x,maybe\nb.png,y,0\n", "is_mislabeled 'maybe'"),
    ],
)
def test_labels_csv_errors(tmp_path, csv, message, png_bytes, make_zip):
    members = {"labels.csv": csv.encode(), "a.png": png_bytes(), "b.png": png_bytes()}
    with pytest.raises(DatasetError, match=message):
        load_dataset(make_zip(tmp_path / "bad.zip", members))


def test_unreadable_image(tmp_path, png_bytes, make_zip):
    members = {"a/ok.png": png_bytes(), "b/broken.png": b"\x89PNG\r\n\x1a\n garbage"}
    with pytest.raises(DatasetError, match=r"b/broken.png is not a readable image"):
        load_dataset(make_zip(tmp_path / "broken.zip", members))


def test_truncated_image(tmp_path, png_bytes, make_zip):
    members = {"a/ok.png": png_bytes(), "b/cut.png": png_bytes(size=(64, 64), fmt="BMP")[:200]}
    with pytest.raises(DatasetError, match="cut.png"):
        load_dataset(make_zip(tmp_path / "cut.zip", members))


def test_pixel_budget(tmp_path, folder_zip):
    with pytest.raises(DatasetError, match="more than 100 pixels"):
        load_dataset(folder_zip(tmp_path / "pets.zip"), max_pixels=100)


def test_image_outside_class_folder(tmp_path, png_bytes, make_zip):
    members = {"a/x.png": png_bytes(), "loose.png": png_bytes()}
    with pytest.raises(DatasetError, match="'loose.png' is not inside a class folder"):
        load_dataset(make_zip(tmp_path / "loose.zip", members))


def test_single_class_zip(tmp_path, png_bytes, make_zip):
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_dataset(make_zip(tmp_path / "one.zip", {"a/x.png": png_bytes(), "a/y.png": png_bytes()}))


def test_zip_without_images(tmp_path, make_zip):
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(make_zip(tmp_path / "empty.zip", {"readme.txt": b"hi"}))


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_names_junk_and_folder_labels_read_as_zipfile_lists_them(tmp_path, png_bytes):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, value in [("dog/b.png", 10), ("cat/a.png", 20), ("cat/a.png", 30), ("dog /c.png", 40)]:
            archive.writestr(name, png_bytes(value=value))
        for junk in ("__MACOSX/cat/._a.png", "cat/.hidden.png", "cat/Thumbs.db", "cat/notes.txt", "cat/"):
            archive.writestr(junk, b"not an image")
    data = load_dataset(path)
    # sorted by name; of the two cat/a.png, the last; "dog " is the class "dog"
    assert data.sample_ids == ["cat/a.png", "dog /c.png", "dog/b.png"]
    assert data.x[:, 0, 0, 0].tolist() == [30, 40, 10]
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 1, 1]
    assert data.meta["skipped_members"] == ["cat/notes.txt"]
