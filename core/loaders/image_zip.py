"""Zips of images, labelled by class folders (``cls_a/img1.png``, optionally all under one
top-level folder) or by a ``labels.csv`` (``file,label[,is_mislabeled]``) at the root or in the
single top-level folder. Sample ids are the member paths."""

from __future__ import annotations

import io
import posixpath
import zipfile

import numpy as np
import pandas as pd
from PIL import Image

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders.images import ImageBudget, decode_all, open_image
from core.loaders.limits import MAX_LABELS_CSV_BYTES
from core.loaders.safe_zip import open_zip, read_member
from core.loaders.source import FileSource
from core.loaders.tabular import read_csv, require_columns
from core.loaders.validation import make_dataset, parse_flags

IMAGE_SUFFIXES = frozenset(Image.registered_extensions())


def load_image_zip(source: FileSource) -> AuditDataset:
    path = source.path
    with open_zip(path) as archive:
        files = {
            info.filename: info
            for info in sorted(archive.infolist(), key=lambda info: info.filename)
            if not info.is_dir() and not _is_junk(info.filename)
        }
        labels_csv = _find_labels_csv(list(files))
        if labels_csv is not None:
            entries, flags = _entries_from_labels_csv(archive, files, labels_csv, path.name)
            layout = "images+labels.csv"
        else:
            entries, flags = _entries_from_folders(list(files), path.name), None
            layout = "imagefolder"
        members = [member for member, _ in entries]
        x = _decode_images(archive, [files[m] for m in members], path.name, source)
    used = set(members)
    skipped = [name for name in files if name not in used and name != labels_csv]
    return make_dataset(
        name=source.name,
        modality="image",
        x=x,
        labels=[label for _, label in entries],
        sample_ids=members,
        flags=flags,
        where=path.name,
        meta={"source": str(path), "format": layout, "skipped_members": skipped},
    )


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts) or parts[-1] == "Thumbs.db"


def _is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _find_labels_csv(names: list[str]) -> str | None:
    tops = {name.split("/")[0] for name in names}
    allowed = {"labels.csv"} | ({f"{tops.pop()}/labels.csv"} if len(tops) == 1 else set())
    return next((name for name in names if name in allowed), None)


def _entries_from_folders(names: list[str], where: str) -> list[tuple[str, str]]:
    """(member, label) of each image, labelled by its class folder; deeper sub-folders belong to it."""
    images = [name for name in names if _is_image_name(name)]
    if not images:
        raise DatasetError(f"{where} holds no images (and no labels.csv)")
    parts = [name.split("/") for name in images]
    strip = len({p[0] for p in parts}) == 1 and all(len(p) >= 3 for p in parts)
    entries = []
    for name, pieces in zip(images, parts, strict=True):
        pieces = pieces[1:] if strip else pieces
        if len(pieces) < 2:
            raise DatasetError(
                f"{where}: image {name!r} is not inside a class folder; expected "
                "class_name/image.png (ImageFolder layout) or a labels.csv"
            )
        entries.append((name, pieces[0]))
    return entries


def _entries_from_labels_csv(archive: zipfile.ZipFile, files: dict, labels_csv: str, where: str):
    """(member, label) of each row of `labels_csv`, whose paths are relative to it, and its flags."""
    place = f"{where}:{labels_csv}"
    data = read_member(archive, files[labels_csv], where, max_bytes=MAX_LABELS_CSV_BYTES, what="labels file")
    frame = read_csv(io.BytesIO(data), place, dtype=str, keep_default_na=False)
    frame.columns = [str(column).strip() for column in frame.columns]
    require_columns(frame, ("file", "label"), place)
    base = posixpath.dirname(labels_csv)
    entries, seen = [], set()
    for row, (file, label) in enumerate(zip(frame["file"], frame["label"], strict=True), start=1):
        member = _resolve_member(file, base, files, f"{place} row {row}")
        if member in seen:
            raise DatasetError(f"{place} row {row}: file {file!r} is listed twice")
        seen.add(member)
        entries.append((member, label))
    flags = parse_flags(frame["is_mislabeled"].to_numpy(), place) if "is_mislabeled" in frame else None
    return entries, flags


def _resolve_member(file, base: str, files: dict, where: str) -> str:
    text = "" if pd.isna(file) else str(file).strip()
    if not text:
        raise DatasetError(f"{where}: empty file name")
    for candidate in (posixpath.normpath(posixpath.join(base, text)), posixpath.normpath(text)):
        if candidate in files:
            return candidate
    raise DatasetError(f"{where}: file {text!r} is not in the archive")


def _decode_images(archive: zipfile.ZipFile, infos, where: str, source: FileSource) -> np.ndarray:
    """The members' images; each one's size is read from its header, so that the budgets (one
    image's pixels, `max_pixels` and, when they are held in memory, the decoded bytes of all of
    them) stop the load before an image over them is decoded."""
    budget = ImageBudget(where, source)

    def opened(i: int) -> tuple[Image.Image, str]:
        place = f"{where}:{infos[i].filename}"
        return open_image(read_member(archive, infos[i], where), place), place

    def check(i: int, image: Image.Image) -> None:
        budget.check(image, f"{where}:{infos[i].filename}", repr(infos[i].filename))

    return decode_all(len(infos), opened, source, check)
