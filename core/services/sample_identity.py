"""A re-uploaded sample keeps its identity when only its id changed: matched by content hash.

Fixing a label in a class-folder zip means moving the image to the right folder, which changes its
member path, the sample's id. Uploading the fixed zip under the dataset's name would then show the
image as one sample removed and another added, and the decisions made on it (which belong to the
sample id) would no longer attach. So a sample of the upload whose id the dataset's latest version
does not hold, and whose content matches exactly one sample of that version that the upload no
longer holds by id, takes that sample's id; its id in the file is kept as `Sample.source_path`.
Content that several samples share on either side is left alone: which one moved is not known.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.models import Dataset, DatasetVersion, Sample

# How many carried ids a version's `change` lists.
LISTED_IDS = 100


@dataclass(frozen=True)
class Identities:
    sample_ids: list[str]  # the ids the uploaded samples get
    source_paths: list[str | None]  # each one's id in the file, where it took another
    carried: list[tuple[str, str]]  # (kept id, id in the file)

    def change(self, source: str) -> dict | None:
        """The version's `change` when ids were carried over, else None."""
        if not self.carried:
            return None
        return {
            "kind": "upload",
            "source": source,
            "num_carried_ids": len(self.carried),
            "carried_ids": [{"sample_id": kept, "file": file} for kept, file in self.carried[:LISTED_IDS]],
        }


def carried_identities(
    session: Session, owner_id: int, name: str, sample_ids: list[str], hashes: list[str]
) -> Identities:
    """The ids an upload of the owner's dataset `name` gives its samples (`sample_ids` as loaded,
    `hashes` their content hashes): see the module's docstring."""
    previous = _latest_samples(session, owner_id, name)
    uploaded = set(sample_ids)
    vanished: dict[str, list[str]] = {}
    for sample_id, digest in previous.items():
        if sample_id not in uploaded and digest is not None:
            vanished.setdefault(digest, []).append(sample_id)
    new_hashes = Counter(digest for sample_id, digest in zip(sample_ids, hashes) if sample_id not in previous)
    ids, sources, carried = list(sample_ids), [None] * len(sample_ids), []
    for index, (sample_id, digest) in enumerate(zip(sample_ids, hashes)):
        if sample_id in previous or new_hashes[digest] != 1 or len(vanished.get(digest, ())) != 1:
            continue
        kept = vanished[digest][0]
        ids[index], sources[index] = kept, sample_id
        carried.append((kept, sample_id))
    return Identities(sample_ids=ids, source_paths=sources, carried=carried)


def _latest_samples(session: Session, owner_id: int, name: str) -> dict[str, str | None]:
    """{sample id: content hash} of the latest ready version of the owner's dataset `name` (empty when new)."""
    latest = (
        select(DatasetVersion.id)
        .join(Dataset)
        .where(Dataset.owner_id == owner_id, Dataset.name == name, DatasetVersion.status == "ready")
        .order_by(DatasetVersion.version.desc())
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(select(Sample.sample_id, Sample.content_hash).where(Sample.dataset_version_id == latest))
    return dict(rows.all())
