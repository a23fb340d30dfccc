"""Zips of images, labelled by class folders (``cls_a/img1.png``, optionally all under one
top-level folder) or by a ``labels.csv`` (``file,label[,is_mislabeled]``) at the root or in the
single top-level folder. Sample ids are the member paths.

The member list is a `ZipIndex` (names and numpy arrays), and the per-image bookkeeping numpy
arrays of member numbers and label codes, so that a zip of a million images costs little more
than its names in memory."""

from __future__ import annotations

import io
import posixpath

import numpy as np
import pandas as pd
from PIL import Image

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders.images import ImageBudget, decode_all, open_image
from core.loaders.limits import MAX_LABELS_CSV_BYTES
from core.loaders.safe_zip import ZipIndex, open_zip_index
from core.loaders.source import FileSource
from core.loaders.tabular import read_csv, require_columns
from core.loaders.validation import CodedLabels, make_dataset, parse_flags

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())


def load_image_zip(source: FileSource, archive: ZipIndex | None = None) -> AuditDataset:
    """The zip at `source.path` (already open as `archive`, which this closes, when given)."""
    path = source.path
    with archive if archive is not None else open_zip_index(path) as archive:
        files = _listed_files(archive)  # member numbers, sorted by name
        names = [archive.names[i] for i in files]
        labels_csv = _find_labels_csv(names)
        if labels_csv is not None:
            members, labels, flags = _entries_from_labels_csv(archive, names, files, labels_csv, path.name)
            layout = "images+labels.csv"
        else:
            members, labels = _entries_from_folders(names, path.name)
            flags, layout = None, "imagefolder"
        x = _decode_images(archive, files[members], path.name, source)
    used = np.zeros(len(names), dtype=bool)
    used[members] = True
    skipped = [name for name, is_used in zip(names, used.tolist(), strict=True) if not is_used and name != labels_csv]
    sample_ids = [names[m] for m in members.tolist()]
    return make_dataset(
        name=source.name,
        modality="image",
        x=x,
        labels=labels,
        sample_ids=sample_ids,
        flags=flags,
        where=path.name,
        meta={"source": str(path), "format": layout, "skipped_members": skipped},
    )


def _listed_files(archive: ZipIndex) -> np.ndarray:
    """The numbers of the members that are files and not junk, in the order of their names; of
    members of one name, the last (as `ZipFile` keeps it)."""
    names = archive.names
    kept = np.fromiter(
        (i for i, name in enumerate(names) if not name.endswith("/") and not _is_junk(name)), dtype=np.int64
    )
    keys = np.empty(len(kept), dtype=object)
    keys[:] = [names[i] for i in kept.tolist()]
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    return kept[order][np.append(keys[:-1] != keys[1:], True)] if len(kept) else kept


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts) or parts[-1] == "Thumbs.db"


def _is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _find_labels_csv(names: list[str]) -> str | None:
    tops = {name.split("/", 1)[0] for name in names}
    allowed = {"labels.csv"} | ({f"{tops.pop()}/labels.csv"} if len(tops) == 1 else set())
    return next((name for name in names if name in allowed), None)


def _entries_from_folders(names: list[str], where: str) -> tuple[np.ndarray, CodedLabels]:
    """The positions in `names` of the images, and their labels: their class folders; deeper
    sub-folders belong to them."""
    images = np.fromiter((i for i, name in enumerate(names) if _is_image_name(name)), dtype=np.int64)
    if not len(images):
        raise DatasetError(f"{where} holds no images (and no labels.csv)")
    tops = {names[i].split("/", 1)[0] for i in images.tolist()}
    strip = len(tops) == 1 and all(names[i].count("/") >= 2 for i in images.tolist())
    folders: dict[str, int] = {}
    codes = np.empty(len(images), dtype=np.int64)
    for k, i in enumerate(images.tolist()):
        pieces = names[i].split("/", 2 if strip else 1)
        if len(pieces) < 2:
            raise DatasetError(
                f"{where}: image {names[i]!r} is not inside a class folder; expected "
                "class_name/image.png (ImageFolder layout) or a labels.csv"
            )
        codes[k] = folders.setdefault(pieces[1 if strip else 0], len(folders))
    return images, CodedLabels(codes, list(folders))


def _entries_from_labels_csv(archive: ZipIndex, names: list[str], files: np.ndarray, labels_csv: str, where: str):
    """The positions in `names` of the rows of `labels_csv` (whose paths are relative to it), their
    labels and their flags."""
    place = f"{where}:{labels_csv}"
    position = {name: k for k, name in enumerate(names)}
    data = archive.read(int(files[position[labels_csv]]), where, max_bytes=MAX_LABELS_CSV_BYTES, what="labels file")
    frame = read_csv(io.BytesIO(data), place, dtype=str, keep_default_na=False)
    frame.columns = [str(column).strip() for column in frame.columns]
    require_columns(frame, ("file", "label"), place)
    base = posixpath.dirname(labels_csv)
    members, seen = [], set()
    for row, file in enumerate(frame["file"], start=1):
        member = _resolve_member(file, base, position, f"{place} row {row}")
        if member in seen:
            raise DatasetError(f"{place} row {row}: file {file!r} is listed twice")
        seen.add(member)
        members.append(position[member])
    flags = parse_flags(frame["is_mislabeled"].to_numpy(), place) if "is_mislabeled" in frame else None
    return np.array(members, dtype=np.int64), list(frame["label"]), flags


def _resolve_member(file, base: str, files, where: str) -> str:
    text = "" if pd.isna(file) else str(file).strip()
    if not text:
        raise DatasetError(f"{where}: empty file name")
    for candidate in (posixpath.normpath(posixpath.join(base, text)), posixpath.normpath(text)):
        if candidate in files:
            return candidate
    raise DatasetError(f"{where}: file {text!r} is not in the archive")


def _decode_images(archive: ZipIndex, members: np.ndarray, where: str, source: FileSource) -> np.ndarray:
    """The members' images; each one's size is read from its header, so that the budgets (one
    image's pixels, `max_pixels` and, when they are held in memory, the decoded bytes of all of
    them) stop the load before an image over them is decoded."""
    budget = ImageBudget(where, source)

    def opened(i: int) -> tuple[Image.Image, str]:
        member = int(members[i])
        place = f"{where}:{archive.names[member]}"
        return open_image(archive.read(member, where), place), place

    def check(i: int, image: Image.Image) -> None:
        name = archive.names[int(members[i])]
        budget.check(image, f"{where}:{name}", repr(name))

    return decode_all(len(members), opened, source, check)
