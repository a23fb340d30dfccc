"""core.loaders on real files built in tmp_path, the bundled digits and the installed Fashion-MNIST."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core import loaders
from core.errors import ConfigError, DatasetError
from core.loaders import load_dataset

ECG_TRAIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "ecg5000" / "ECG5000_TRAIN.txt"
FASHION_DIR = Path(os.environ.get("LILAW_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def png_bytes(size=(8, 6), mode="L", value=128, fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    color = value if mode == "L" else (value, 255 - value, 0)
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def folder_zip(path: Path, top: str = "") -> Path:
    members = {f"{top}{cls}/img{i}.png": png_bytes(value=40 * i) for cls in ("cat", "dog") for i in range(3)}
    return make_zip(path, members)


# ---------------------------------------------------------------- built-ins


def test_digits_builtin():
    data = load_dataset("digits")
    assert data.modality == "image"
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == np.uint8
    assert data.x.max() == 255 and data.x.min() == 0
    assert data.class_names == [str(c) for c in range(10)]
    assert data.y.dtype == np.int64 and set(data.y) == set(range(10))
    assert data.sample_ids[:2] == ["digits-0", "digits-1"] and len(set(data.sample_ids)) == 1797


def test_digits_resized_and_limited():
    data = load_dataset("digits", image_size=16, limit=200)
    assert data.x.shape == (200, 1, 16, 16)
    assert np.bincount(data.y).min() >= 19
    assert load_dataset("digits", limit=200).sample_ids == data.sample_ids


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_fashion_mnist_builtin_stratified_limit():
    data = load_dataset("fashion-mnist", limit=1000)
    assert data.x.shape == (1000, 1, 28, 28) and data.x.dtype == np.uint8
    assert np.bincount(data.y, minlength=10).tolist() == [100] * 10
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.test is not None and data.test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(data.test.y).tolist() == [1000] * 10
    assert data.sample_ids == load_dataset(f"fashion-mnist:{FASHION_DIR}", limit=1000).sample_ids


def test_fashion_mnist_from_idx_dir(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.arange(4 * 9, dtype=np.uint8).reshape(4, 3, 3))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 1], dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 3, 3), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 4], dtype=np.uint8))
    data = load_dataset(f"fashion-mnist:{tmp_path}")
    assert data.x.shape == (4, 1, 3, 3) and data.x[1, 0, 0, 0] == 9
    assert data.y.tolist() == [0, 1, 2, 1] and data.test.y.tolist() == [3, 4]


def test_fashion_mnist_bad_idx(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3), dtype=np.uint8))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09\x01")
    with pytest.raises(DatasetError, match="data bytes do not match"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(DatasetError, match="bad magic"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"fashion-mnist:{tmp_path / 'missing'}")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="unknown built-in"):
        load_dataset("cifar-11")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")


def test_bad_options():
    with pytest.raises(ConfigError):
        load_dataset("digits", image_size=0)
    with pytest.raises(ConfigError):
        load_dataset("digits", limit=1)
    with pytest.raises(ConfigError):
        load_dataset("digits", modality="audio")
    with pytest.raises(DatasetError, match="not tabular"):
        load_dataset("digits", modality="tabular")


# ---------------------------------------------------------------- image zips


def test_imagefolder_zip(tmp_path):
    data = load_dataset(folder_zip(tmp_path / "pets.zip"))
    assert data.name == "pets" and data.modality == "image"
    assert data.x.shape == (6, 1, 6, 8) and data.x.dtype == np.uint8
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert data.sample_ids[0] == "cat/img0.png"
    assert data.x[1, 0, 0, 0] == 40
    assert data.is_mislabeled is None


def test_imagefolder_zip_under_top_folder_mixed_modes_and_sizes(tmp_path):
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


def test_default_size_capped(tmp_path):
    members = {f"{c}/{i}.png": png_bytes(size=(448, 300)) for c in "ab" for i in range(2)}
    assert load_dataset(make_zip(tmp_path / "big.zip", members)).x.shape == (4, 1, 150, 224)


def test_sixteen_bit_images_scaled(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(buffer, format="PNG")
    members = {"a/x.png": buffer.getvalue(), "b/y.png": png_bytes(size=(4, 4), value=7)}
    data = load_dataset(make_zip(tmp_path / "deep.zip", members))
    assert data.x[:, 0, 0, 0].tolist() == [255, 7]


def test_labels_csv_zip(tmp_path):
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
def test_labels_csv_errors(tmp_path, csv, message):
    members = {"labels.csv": csv.encode(), "a.png": png_bytes(), "b.png": png_bytes()}
    with pytest.raises(DatasetError, match=message):
        load_dataset(make_zip(tmp_path / "bad.zip", members))


def test_unreadable_image(tmp_path):
    members = {"a/ok.png": png_bytes(), "b/broken.png": b"\x89PNG\r\n\x1a\n garbage"}
    with pytest.raises(DatasetError, match=r"b/broken.png is not a readable image"):
        load_dataset(make_zip(tmp_path / "broken.zip", members))


def test_truncated_image(tmp_path):
    members = {"a/ok.png": png_bytes(), "b/cut.png": png_bytes(size=(64, 64), fmt="BMP")[:200]}
    with pytest.raises(DatasetError, match="cut.png"):
        load_dataset(make_zip(tmp_path / "cut.zip", members))


def test_pixel_budget(tmp_path):
    with pytest.raises(DatasetError, match="more than 100 pixels"):
        load_dataset(folder_zip(tmp_path / "pets.zip"), max_pixels=100)


def test_image_outside_class_folder(tmp_path):
    members = {"a/x.png": png_bytes(), "loose.png": png_bytes()}
    with pytest.raises(DatasetError, match="'loose.png' is not inside a class folder"):
        load_dataset(make_zip(tmp_path / "loose.zip", members))


def test_single_class_zip(tmp_path):
    with pytest.raises(DatasetError, match="at least 2 classes"):
        load_dataset(make_zip(tmp_path / "one.zip", {"a/x.png": png_bytes(), "a/y.png": png_bytes()}))


def test_zip_without_images(tmp_path):
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(make_zip(tmp_path / "empty.zip", {"readme.txt": b"hi"}))


def test_path_traversal(tmp_path):
    members = {"a/x.png": png_bytes(), "../evil/y.png": png_bytes()}
    with pytest.raises(DatasetError, match="unsafe path"):
        load_dataset(make_zip(tmp_path / "evil.zip", members))
    with pytest.raises(DatasetError, match="unsafe path"):
        load_dataset(make_zip(tmp_path / "abs.zip", {"a/x.png": png_bytes(), "/etc/y.png": png_bytes()}))


def test_zip_bomb(tmp_path):
    members = {"a/x.png": png_bytes(), "b/bomb.png": bytes(20 * 1024**2)}
    with pytest.raises(DatasetError, match="zip bomb"):
        load_dataset(make_zip(tmp_path / "bomb.zip", members))


def test_zip_member_count_and_total_size(tmp_path, monkeypatch):
    archive = folder_zip(tmp_path / "pets.zip")
    monkeypatch.setattr(loaders, "MAX_ZIP_MEMBERS", 5)
    with pytest.raises(DatasetError, match="6 members"):
        load_dataset(archive)
    monkeypatch.setattr(loaders, "MAX_ZIP_MEMBERS", 200_000)
    monkeypatch.setattr(loaders, "MAX_ZIP_UNCOMPRESSED", 100)
    with pytest.raises(DatasetError, match="expands to"):
        load_dataset(archive)


def test_not_a_zip_and_corrupt_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"this is not a zip")
    with pytest.raises(DatasetError, match="not a readable zip"):
        load_dataset(tmp_path / "fake.zip")
    good = folder_zip(tmp_path / "good.zip").read_bytes()
    (tmp_path / "corrupt.zip").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="corrupt.zip"):
        load_dataset(tmp_path / "corrupt.zip")


def test_corrupt_member_data(tmp_path):
    members = {"cat/img0.png": png_bytes(), "dog/img0.png": png_bytes()}
    data = bytearray(make_zip(tmp_path / "pets.zip", members, zipfile.ZIP_STORED).read_bytes())
    offset = data.index(b"IDAT")
    data[offset : offset + 4] = b"XXXX"
    (tmp_path / "flipped.zip").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="'cat/img0.png' cannot be read: Bad CRC-32"):
        load_dataset(tmp_path / "flipped.zip")


def test_format_sniffed_without_suffix(tmp_path):
    blob = tmp_path / "blob"
    blob.write_bytes(folder_zip(tmp_path / "pets.zip").read_bytes())
    assert load_dataset(blob).class_names == ["cat", "dog"]
    np.savez(tmp_path / "arrays.npz", x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    blob.write_bytes((tmp_path / "arrays.npz").read_bytes())
    assert load_dataset(blob).modality == "tabular"


def test_unknown_suffix(tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"\x00\x01 spreadsheet")
    with pytest.raises(DatasetError, match="unrecognised format"):
        load_dataset(tmp_path / "data.xlsx")


# ---------------------------------------------------------------- npz


def test_npz_tabular_with_flags(tmp_path):
    path = tmp_path / "tab.npz"
    np.savez(path, x=np.arange(12, dtype=np.float64).reshape(4, 3), y=np.array([2, 10, 2, 10]), flags=[0, 1, 0, 0])
    data = load_dataset(path)
    assert data.modality == "tabular" and data.x.dtype == np.float32 and data.x.shape == (4, 3)
    assert data.class_names == ["2", "10"] and data.y.tolist() == [0, 1, 0, 1]
    assert data.sample_ids == ["0", "1", "2", "3"]
    assert data.is_mislabeled.tolist() == [False, True, False, False]


def test_npz_images_timeseries_and_string_labels(tmp_path):
    labels = np.array(["b", "a", "b"])
    np.savez(tmp_path / "gray.npz", x=np.zeros((3, 5, 5), dtype=np.uint8), y=labels)
    gray = load_dataset(tmp_path / "gray.npz")
    assert gray.modality == "image" and gray.x.shape == (3, 1, 5, 5)
    assert gray.class_names == ["a", "b"] and gray.y.tolist() == [1, 0, 1]
    np.savez(tmp_path / "hwc.npz", x=np.zeros((3, 5, 6, 3), dtype=np.int64), y=labels)
    assert load_dataset(tmp_path / "hwc.npz").x.shape == (3, 3, 5, 6)
    assert load_dataset(tmp_path / "hwc.npz", image_size=4).x.shape == (3, 3, 4, 4)
    np.savez(tmp_path / "ts.npz", x=np.zeros((3, 2, 7), dtype=np.float32), y=labels, is_mislabeled=[True, False, False])
    series = load_dataset(tmp_path / "ts.npz")
    assert series.modality == "timeseries" and series.x.shape == (3, 2, 7)
    assert series.is_mislabeled.tolist() == [True, False, False]
    np.savez(tmp_path / "flat.npz", x=np.zeros((3, 7)), y=labels)
    assert load_dataset(tmp_path / "flat.npz", modality="timeseries").x.shape == (3, 1, 7)


def test_npz_sample_ids(tmp_path):
    np.savez(tmp_path / "ids.npz", x=np.zeros((2, 2)), y=[0, 1], sample_ids=np.array(["u1", "u2"]))
    assert load_dataset(tmp_path / "ids.npz").sample_ids == ["u1", "u2"]
    np.savez(tmp_path / "dup.npz", x=np.zeros((2, 2)), y=[0, 1], sample_ids=np.array(["u1", "u1"]))
    with pytest.raises(DatasetError, match="occurs more than once"):
        load_dataset(tmp_path / "dup.npz")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1])}, "one label per row"),
        ({"x": np.zeros((3, 2))}, "lacks array"),
        ({"x": np.zeros(3), "y": np.array([0, 1, 0])}, "expected numeric"),
        ({"x": np.zeros((3, 4, 4, 4)), "y": np.array([0, 1, 0])}, "expected numeric"),
        ({"x": np.zeros((3, 4, 5, 7), np.uint8), "y": np.array([0, 1, 0])}, "channel axis"),
        ({"x": np.full((3, 4, 4), 300), "y": np.array([0, 1, 0])}, "0..255"),
        ({"x": np.array([[0.0], [np.nan], [1.0]]), "y": np.array([0, 1, 0])}, "sample 1 has NaN"),
        ({"x": np.zeros((3, 2)), "y": np.array([1, 1, 1])}, "at least 2 classes"),
        ({"x": np.zeros((3, 2)), "y": np.array([0.0, np.nan, 1.0])}, "row 2 is missing"),
        ({"x": np.zeros((1, 2)), "y": np.array([0])}, "at least 2 are needed"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1, 0]), "flags": np.array([0, 2, 1])}, "0/1"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1, 0]), "flags": np.array([0, 1])}, "2 is_mislabeled flags"),
        ({"x": np.array(["a", "b", "c"]).reshape(3, 1), "y": np.array([0, 1, 0])}, "expected numeric"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_npz_object_array_is_not_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(tmp_path / "obj.npz")


# ---------------------------------------------------------------- csv / parquet


def test_csv_tabular_with_ids_and_flags(tmp_path):
    frame = pd.DataFrame(
        {"sample_id": ["r1", "r2", "r3"], "f1": [0.5, 1.5, 2.5], "f2": [1, 2, 3],
         "label": ["yes", "no", "yes"], "is_mislabeled": [False, True, False]}
    )  # fmt: skip
    frame.to_csv(tmp_path / "rows.csv", index=False)
    data = load_dataset(tmp_path / "rows.csv")
    assert data.name == "rows" and data.modality == "tabular"
    assert data.x.tolist() == [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]] and data.x.dtype == np.float32
    assert data.class_names == ["no", "yes"] and data.y.tolist() == [1, 0, 1]
    assert data.sample_ids == ["r1", "r2", "r3"]
    assert data.is_mislabeled.tolist() == [False, True, False]
    frame.to_parquet(tmp_path / "rows.parquet")
    parquet = load_dataset(tmp_path / "rows.parquet")
    assert parquet.x.tolist() == data.x.tolist() and parquet.sample_ids == data.sample_ids


def test_csv_content_hash_ids_are_stable_and_unique(tmp_path):
    (tmp_path / "a.csv").write_text("f1,f2,label\n1,2,0\n3,4,1\n1,2,1\n")
    first = load_dataset(tmp_path / "a.csv").sample_ids
    assert len(first[0]) == 16 and first[2] == f"{first[0]}-1" and len(set(first)) == 3
    (tmp_path / "b.csv").write_text("f1,f2,label\n3.0,4.0,0\n1,2,1\n9,9,0\n")
    second = load_dataset(tmp_path / "b.csv").sample_ids
    assert second[0] == first[1] and second[1] == first[0]


def test_timeseries_by_name_and_keyword(tmp_path):
    (tmp_path / "beats.ts.csv").write_text("label,t0,t1,t2\n1,0.1,0.2,0.3\n2,0.3,0.2,0.1\n")
    data = load_dataset(tmp_path / "beats.ts.csv")
    assert data.name == "beats" and data.modality == "timeseries" and data.x.shape == (2, 1, 3)
    (tmp_path / "beats.csv").write_text((tmp_path / "beats.ts.csv").read_text())
    assert load_dataset(tmp_path / "beats.csv", modality="timeseries").x.shape == (2, 1, 3)
    assert load_dataset(tmp_path / "beats.csv").modality == "tabular"


@pytest.mark.skipif(not ECG_TRAIN.is_file(), reason="ECG5000 is not available")
def test_ecg5000_csv(tmp_path):
    raw = np.loadtxt(ECG_TRAIN)
    frame = pd.DataFrame(raw[:, 1:], columns=[f"t{i}" for i in range(140)])
    frame.insert(0, "label", raw[:, 0])
    frame.to_csv(tmp_path / "ecg5000.ts.csv", index=False)
    data = load_dataset(tmp_path / "ecg5000.ts.csv")
    assert data.modality == "timeseries" and data.x.shape == (500, 1, 140)
    assert data.class_names == ["1", "2", "3", "4", "5"]
    assert np.bincount(data.y).tolist() == [292, 177, 10, 19, 2]
    assert np.allclose(data.x[:, 0, :], raw[:, 1:], atol=1e-6)
    assert len(set(data.sample_ids)) == 500


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("f1,f2\n1,2\n3,4\n", "lacks column"),
        ("f1,label\n1,a\n2,\n", "row 2: label is missing"),
        ("f1,label\n1,a\n2,a\n", "at least 2 classes"),
        ("f1,label\n1,a\nx,b\n", "'f1' are not numeric"),
        ("f1,label\n1,a\n,b\n", "data row 2, column 'f1'"),
        ("f1,label\n1,a\ninf,b\n", "data row 2, column 'f1'"),
        ("f1,label\n1e300,a\n1,b\n", "too large for float32"),
        ("label\na\nb\n", "no feature columns"),
        ("sample_id,f1,label\nq,1,a\nq,2,b\n", "'q' occurs more than once"),
        ("sample_id,f1,label\nq,1,a\n,2,b\n", "sample_id is missing"),
        ("f1,label\n1,a\n", "at least 2 are needed"),
        ("", "is empty"),
        ('f1,label\n1,"a\n', "not a readable CSV"),
    ],
)
def test_csv_errors(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / "bad.csv")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet"):
        load_dataset(tmp_path / "bad.parquet")


def test_parquet_nullable_label(tmp_path):
    frame = pd.DataFrame({"f": [1.0, 2.0, 3.0], "label": pd.array([1, None, 2], dtype="Int64")})
    frame.to_parquet(tmp_path / "nulls.parquet")
    with pytest.raises(DatasetError, match="row 2"):
        load_dataset(tmp_path / "nulls.parquet")
