"""Datasets and their versions: created from an uploaded blob or a built-in name, read back with
their versions, and told which samples are known to be mislabeled.

A dataset is named per owner; uploading under an existing name adds a version. A version is
created only from a file that `core.loaders.load_dataset` read without error, with one `Sample`
row per sample, all in one transaction (an uploaded file's: `core.services.ingest`).
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Iterable
from itertools import islice
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from core.dataset import AuditDataset, content_hashes
from core.errors import DatasetError
from core.loaders import BUILTINS, FALSE_TEXTS, TRUE_TEXTS, load_dataset
from core.services import ConflictError, NotFoundError
from core.services.blobs import BUILTIN_PREFIX
from core.store.models import Dataset, DatasetVersion, Sample

MAX_SAMPLE_ID_LENGTH = Sample.__table__.c.sample_id.type.length
SAMPLE_INSERT_CHUNK = 10_000


def list_datasets(session: Session, owner_id: int) -> list[Dataset]:
    statement = (
        select(Dataset).where(Dataset.owner_id == owner_id).options(selectinload(Dataset.versions)).order_by(Dataset.id)
    )
    return list(session.scalars(statement))


def get_dataset(session: Session, owner_id: int, dataset_id: int) -> Dataset:
    statement = (
        select(Dataset)
        .where(Dataset.id == dataset_id, Dataset.owner_id == owner_id)
        .options(selectinload(Dataset.versions))
        .execution_options(populate_existing=True)
    )
    dataset = session.scalar(statement)
    if dataset is None:
        raise NotFoundError(f"dataset {dataset_id} not found")
    return dataset


def get_version(
    session: Session, owner_id: int, dataset_id: int, version: int | None = None, *, lock: bool = False
) -> DatasetVersion:
    """A version of the owner's dataset; the latest when `version` is None. With `lock`, the
    dataset is locked first (`lock_dataset`): what a new version is built from stays the latest
    until the caller's transaction ends."""
    if lock:
        lock_dataset(session, owner_id, dataset_id)
    statement = (
        select(DatasetVersion)
        .join(Dataset)
        .where(Dataset.id == dataset_id, Dataset.owner_id == owner_id)
        .order_by(DatasetVersion.version.desc())
        .limit(1)
    )
    if version is not None:
        statement = statement.where(DatasetVersion.version == version)
    found = session.scalar(statement)
    if found is None:
        missing = "not found" if version is None else f"has no version {version}"
        raise NotFoundError(f"dataset {dataset_id} {missing}")
    return found


def require_ready(version: DatasetVersion) -> None:
    """Refuse what needs a version's samples while its file is still being ingested."""
    if version.status != "ready":
        raise ConflictError(
            f"version {version.version} of dataset {version.dataset_id} is still being ingested: "
            "try again once the dataset's status is ready"
        )


def lock_dataset(session: Session, owner_id: int, dataset_id: int) -> None:
    """Serialize the writers of the dataset's versions until the transaction ends: on Postgres a
    row lock (`SELECT ... FOR UPDATE`) that a second append waits on, then reads the version the
    first one stored; SQLite's writers are serialized already (the API begins IMMEDIATE). A
    separate statement: `FOR UPDATE` on a query with ORDER BY ... LIMIT would hand the waiting
    transaction the row it saw before, not the new latest version."""
    locked = session.scalar(
        select(Dataset.id).where(Dataset.id == dataset_id, Dataset.owner_id == owner_id).with_for_update()
    )
    if locked is None:
        raise NotFoundError(f"dataset {dataset_id} not found")


def create_builtin(session: Session, owner_id: int, name: str, builtin: str) -> Dataset:
    """A new version of the owner's dataset `name` holding a built-in dataset (`core.loaders.BUILTINS`)."""
    if builtin not in BUILTINS:
        raise DatasetError(f"unknown built-in dataset {builtin!r}; built-ins are {', '.join(BUILTINS)}")
    loaded = load_dataset(builtin)
    return add_version(
        session, owner_id, name, loaded, blob_sha256=_content_sha256(loaded), blob_uri=f"{BUILTIN_PREFIX}{builtin}"
    )


def parse_flags_csv(data: bytes) -> dict[str, bool | None]:
    """Known flags from CSV text with a header `sample_id,is_mislabeled`; an empty flag means unknown."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError("the flags CSV is not valid UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        missing = {"sample_id", "is_mislabeled"} - set(reader.fieldnames or ())
        if missing:
            raise DatasetError(f"the flags CSV lacks column(s) {', '.join(sorted(missing))}")
        return collect_flags(
            (row["sample_id"] or "", _flag(row["is_mislabeled"] or "", line)) for line, row in enumerate(reader, start=2)
        )
    except csv.Error as error:
        raise DatasetError(f"the flags CSV is malformed: {error}") from None


def collect_flags(pairs: Iterable[tuple[str, bool | None]]) -> dict[str, bool | None]:
    """(sample_id, flag) pairs as a dict; a sample id given twice is an error."""
    flags: dict[str, bool | None] = {}
    for sample_id, flag in pairs:
        if sample_id in flags:
            raise DatasetError(f"sample id {sample_id!r} is given more than once")
        flags[sample_id] = flag
    return flags


def set_flags(session: Session, version: DatasetVersion, flags: dict[str, bool | None]) -> int:
    """Set `is_mislabeled` of the named samples (None = unknown); every id must be in the version.
    Returns the number of samples updated."""
    if not flags:
        raise DatasetError("no flags given")
    known = set(session.scalars(select(Sample.sample_id).where(Sample.dataset_version_id == version.id)))
    unknown = [sample_id for sample_id in flags if sample_id not in known]
    if unknown:
        shown = ", ".join(repr(sample_id) for sample_id in unknown[:5])
        raise DatasetError(f"{len(unknown)} sample id(s) are not in this dataset version: {shown}")
    table = Sample.__table__
    statement = (
        update(table)
        .where(table.c.dataset_version_id == version.id, table.c.sample_id == bindparam("b_sample_id"))
        .values(is_mislabeled=bindparam("b_flag"))
    )
    session.execute(statement, [{"b_sample_id": sample_id, "b_flag": flag} for sample_id, flag in flags.items()])
    return len(flags)


def flag_counts(session: Session, version: DatasetVersion) -> tuple[int, int]:
    """How many samples of the version have a known flag, and how many of those are mislabeled."""
    known, mislabeled = session.execute(
        select(func.count(Sample.is_mislabeled), func.count().filter(Sample.is_mislabeled.is_(True))).where(
            Sample.dataset_version_id == version.id
        )
    ).one()
    return known, mislabeled


def add_version(
    session: Session,
    owner_id: int,
    name: str,
    loaded: AuditDataset,
    *,
    blob_sha256: str,
    blob_uri: str,
    flags: list[bool | None] | None = None,
    hashes: list[str] | None = None,
    source_paths: list[str | None] | None = None,
    parent_version: int | None = None,
    change: dict[str, Any] | None = None,
    into: DatasetVersion | None = None,
    samples_uri: str | None = None,
    sample_segments: list[dict[str, Any]] | None = None,
) -> Dataset:
    """The next version of the owner's dataset `name` (created when new) holding `loaded`, with
    one `Sample` row per sample; or, with `into`, that ingesting version of it made ready.
    `flags` are the known flags (default: the loaded ones), `hashes` the samples' content hashes
    (default: computed from `loaded`), `source_paths` their ids in the file where they kept
    another (`core.services.sample_identity`) and `samples_uri` the shard of their decoded
    samples (`core.services.ingest`), or `sample_segments` the segments of shards that hold
    them (`core.services.version_samples`)."""
    dataset = lock_dataset_by_name(session, owner_id, name, completing=into)
    described = {
        "blob_sha256": blob_sha256, "blob_uri": blob_uri, "format": loaded.meta.get("format", "unknown"),
        "modality": loaded.modality, "num_samples": len(loaded), "num_classes": loaded.num_classes,
        "class_names": loaded.class_names, "parent_version": parent_version, "change": change, "status": "ready",
        "samples_uri": samples_uri, "sample_segments": sample_segments,
    }  # fmt: skip
    if into is None:
        latest = session.scalar(select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_id == dataset.id))
        version = DatasetVersion(dataset_id=dataset.id, version=(latest or 0) + 1, **described)
        session.add(version)
    else:
        version = into
        for key, value in described.items():
            setattr(version, key, value)
    dataset.status, dataset.ingest_percent, dataset.ingest_error = "ready", 100, None
    _flush(session, name)
    if flags is None:
        flags = [None] * len(loaded) if loaded.is_mislabeled is None else loaded.is_mislabeled.tolist()
    if hashes is None:
        hashes = content_hashes(loaded.x)
    if source_paths is None:
        source_paths = [None] * len(loaded)
    rows = (
        {
            "dataset_version_id": version.id,
            "sample_index": index,
            "sample_id": sample_id,
            "label": label,
            "is_mislabeled": flag,
            "content_hash": digest,
            "source_path": source_path,
        }
        for index, (sample_id, label, flag, digest, source_path) in enumerate(
            zip(loaded.sample_ids, loaded.y.tolist(), flags, hashes, source_paths, strict=True)
        )
    )
    # A chunk of row dicts at a time: all of a large version's at once would cost ~1 KB a sample.
    while chunk := list(islice(rows, SAMPLE_INSERT_CHUNK)):
        session.execute(insert(Sample), chunk)
    return get_dataset(session, owner_id, dataset.id)


def lock_dataset_by_name(
    session: Session, owner_id: int, name: str, *, completing: DatasetVersion | None = None
) -> Dataset:
    """The owner's dataset `name` (created when new), locked until the transaction ends, so that
    two uploads under one name get versions n+1 and n+2, not one a unique-key conflict. A new
    version is refused (`ConflictError`) while one of the dataset other than `completing` is
    still being ingested."""
    dataset = session.scalar(
        select(Dataset).where(Dataset.owner_id == owner_id, Dataset.name == name).with_for_update()
    )
    if dataset is None:
        dataset = Dataset(owner_id=owner_id, name=name)
        session.add(dataset)
        _flush(session, name)
        return dataset
    others = select(DatasetVersion.version).where(
        DatasetVersion.dataset_id == dataset.id, DatasetVersion.status == "ingesting"
    )
    if completing is not None:
        others = others.where(DatasetVersion.id != completing.id)
    ingesting = session.scalar(others.limit(1))
    if ingesting is not None:
        raise ConflictError(
            f"dataset {name!r} is still ingesting version {ingesting}: try again once its status is ready"
        )
    return dataset


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:
        raise ConflictError(f"dataset {name!r} was changed by another request; try again") from None


def check_sample_ids(loaded: AuditDataset) -> None:
    too_long = next((sample_id for sample_id in loaded.sample_ids if len(sample_id) > MAX_SAMPLE_ID_LENGTH), None)
    if too_long is not None:
        raise DatasetError(f"sample id {too_long[:40]!r}... is longer than {MAX_SAMPLE_ID_LENGTH} characters")


def _content_sha256(loaded: AuditDataset) -> str:
    digest = hashlib.sha256(loaded.x.tobytes())
    digest.update(loaded.y.tobytes())
    return digest.hexdigest()


def _flag(text: str | None, line: int) -> bool | None:
    value = (text or "").strip().lower()
    if not value:
        return None
    if value in TRUE_TEXTS:
        return True
    if value in FALSE_TEXTS:
        return False
    raise DatasetError(f"flags CSV line {line}: is_mislabeled {text!r} is not one of true/false/1/0/yes/no")
