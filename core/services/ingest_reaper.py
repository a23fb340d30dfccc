"""Ingests whose worker was lost: the ingest task's heartbeat, and the reaper that starts such an
ingest once more or fails it, so that no dataset stays 'ingesting' for ever.

The broker does not always give a lost ingest back: late acks re-deliver the task of a killed
prefork child, but kombu's SQLAlchemy transport never re-delivers the message of a lost worker,
and Redis only after its visibility timeout, which outlasts the longest job (about a day).

- While the ingest task runs `ingest.run_ingest` it beats (`IngestHeartbeat`): a thread touches
  the version's heartbeat file, `<data dir>/ingest-heartbeats/<version id>`, every sixth of
  `settings.ingest_stale_s`. The file is removed when the run returns; a worker killed with it
  (OOM, machine lost) leaves it behind, its modification time frozen. A run that raises leaves it
  too: the task's failure handler fails the ingest, and if even that cannot reach the database
  the heartbeat goes stale and the reaper does it.
- `reap_lost_ingests` (beat's `lilaw.reap_lost_ingests`, every third of `ingest_stale_s`): an
  'ingesting' version whose heartbeat is older than `ingest_stale_s` lost its worker. The first
  time, when its blob is still there, its task is sent again: the stale heartbeat is replaced by a
  `<version id>.requeued` mark, so the version counts as waiting until the new run beats. Else (it
  was requeued before, or its file is gone) the ingest is failed with `LOST_MESSAGE`
  (`ingest.fail_ingest`: the version removed, its blob too unless another version refers to it,
  the dataset 'failed' with the message).
- A version with no heartbeat has not started: its message waits in the ingest queue, where the
  ingest worker takes one upload at a time, for as long as the uploads before it take; or the
  broker lost it (a Redis restarted without persistence). One still waiting
  `settings.resend_waiting_after_s` after its upload has its task sent again, with the `.requeued`
  mark (which counts the sends), and again after as long again, then twice as long, ... since the
  last send, in case that copy was lost too. Progress (`ingest_percent`) cannot tell a wait from a
  lost message, nor a live worker storing a million sample rows, which reports no percent while it
  does.
- So a version's task may arrive twice. The heartbeat file is also the run's claim: a run creates
  it exclusively, and one that finds it fresh leaves the ingest to the run that beats
  (`IngestRunningElsewhere`); a copy that arrives after the run finds the version ready.

The heartbeat is a file, not a column: the data dir is shared by the API and every worker already
(blobs, shards), it needs no schema change, and a beat never waits on the ingest's own long
transaction that stores the sample rows (on SQLite that one holds the database's write lock).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.services import ingest
from core.settings import Settings
from core.store.models import DatasetVersion, utcnow

LOST_MESSAGE = "the ingest stopped: its worker was lost; upload the file again"
HEARTBEAT_DIR = "ingest-heartbeats"
REQUEUED_SUFFIX = ".requeued"

logger = logging.getLogger(__name__)


def heartbeat_dir(settings: Settings) -> Path:
    return settings.data_dir / HEARTBEAT_DIR


def heartbeat_path(settings: Settings, version_id: int) -> Path:
    """The file an ingest of the version touches while it runs."""
    return heartbeat_dir(settings) / str(int(version_id))


def requeued_path(settings: Settings, version_id: int) -> Path:
    """The mark of a version whose ingest the reaper sent again: it holds how many times, and its
    modification time is the last send's."""
    return heartbeat_dir(settings) / f"{int(version_id)}{REQUEUED_SUFFIX}"


class IngestRunningElsewhere(Exception):
    """Another run of the version's ingest holds its heartbeat (a copy of its task arrived)."""


class IngestHeartbeat:
    """Claims the version's ingest and keeps its heartbeat file fresh while the ingest inside the
    `with` block runs; removes it, and the reaper's mark, when the block ends without an exception.
    Entering raises `IngestRunningElsewhere` while another run's heartbeat is fresh; a stale one
    (its run is gone) is taken over."""

    def __init__(self, settings: Settings, version_id: int):
        self.path = heartbeat_path(settings, version_id)
        self.requeued = requeued_path(settings, version_id)
        self.interval_s = settings.ingest_stale_s / 6
        self.stale_s = settings.ingest_stale_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-ingest-{version_id}", daemon=True)

    def __enter__(self) -> IngestHeartbeat:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            if not _modified_before(self.path, time.time() - self.stale_s):
                raise IngestRunningElsewhere(f"the ingest of dataset version {self.path.name} is running") from None
            self.touch()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None:  # the version is ready, failed or gone: nothing left to watch
            self.path.unlink(missing_ok=True)
            self.requeued.unlink(missing_ok=True)

    def touch(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.touch()
            except OSError:
                logger.exception("heartbeat of the ingest at %s failed", self.path)


def reap_lost_ingests(
    sessions: sessionmaker[Session], settings: Settings, requeue: Callable[[int], object]
) -> dict[str, list[int]]:
    """Ingesting versions whose heartbeat is older than `settings.ingest_stale_s` are sent again
    once (`requeue` sends the ingest task of a version id) while their blob is there; a lost run's
    version sent before, or with its file gone, is failed with `LOST_MESSAGE`. Versions that have not
    started `settings.resend_waiting_after_s` after their upload are sent again, and again after as
    long again since that send, twice as long, ... Returns the version ids of each outcome.
    The heartbeats and marks of versions no longer ingesting are removed once stale themselves."""
    with sessions() as session:
        rows = session.execute(
            select(DatasetVersion.id, DatasetVersion.blob_uri, DatasetVersion.created_at).where(
                DatasetVersion.status == ingest.INGESTING
            )
        ).all()
    ingesting = {version_id: blob_uri for version_id, blob_uri, _ in rows}
    waited_since = {version_id: created_at for version_id, _, created_at in rows}
    stale_before = time.time() - settings.ingest_stale_s
    uploaded_before = utcnow() - timedelta(seconds=settings.resend_waiting_after_s)
    now = time.time()
    _forget_settled(settings, set(ingesting), stale_before)
    reaped: dict[str, list[int]] = {"requeued": [], "failed": []}
    for version_id, blob_uri in ingesting.items():
        beat = heartbeat_path(settings, version_id)
        mark = requeued_path(settings, version_id)
        if not beat.exists():
            sends, last_send = _sends(mark)
            if sends:
                waiting_long = now - last_send > settings.resend_waiting_after_s * 2 ** (sends - 1)
            else:
                waiting_long = waited_since[version_id] < uploaded_before
            if waiting_long and (settings.data_dir / blob_uri).is_file():
                _requeue(beat, mark, version_id, requeue, stale_before)
                reaped["requeued"].append(version_id)
            continue  # not started yet (its message waits, or was sent again)
        if not _modified_before(beat, stale_before):
            continue  # running
        if not mark.exists() and (settings.data_dir / blob_uri).is_file():
            beat.unlink(missing_ok=True)
            _requeue(beat, mark, version_id, requeue, stale_before, lost_beat=True)
            reaped["requeued"].append(version_id)
        else:
            ingest.fail_ingest(sessions, settings, version_id, LOST_MESSAGE)
            beat.unlink(missing_ok=True)
            mark.unlink(missing_ok=True)
            reaped["failed"].append(version_id)
    if reaped["requeued"] or reaped["failed"]:
        logger.warning("reaped lost ingests (dataset version ids): %s", reaped)
    return reaped


def _requeue(
    beat: Path, mark: Path, version_id: int, requeue: Callable[[int], object], stale_before: float,
    lost_beat: bool = False,
) -> None:
    """Send the version's task again under the `.requeued` mark, its count of sends one more; a send
    the broker refuses leaves things as they were (a lost run's stale beat put back), for the next
    reap to retry."""
    sends, last_send = _sends(mark)
    mark.parent.mkdir(parents=True, exist_ok=True)
    mark.write_text(str(sends + 1))
    try:
        requeue(version_id)
    except BaseException:
        if sends:
            mark.write_text(str(sends))
            os.utime(mark, (last_send, last_send))
        else:
            mark.unlink(missing_ok=True)
        if lost_beat:
            beat.touch()
            os.utime(beat, (stale_before - 1, stale_before - 1))
        raise


def _sends(mark: Path) -> tuple[int, float]:
    """(how many times the version's task was sent again, when last) from its mark; (0, 0) with none."""
    try:
        count, sent_at = mark.read_text().strip(), mark.stat().st_mtime
    except FileNotFoundError:
        return 0, 0.0
    return (int(count) if count.isdigit() else 1), sent_at  # an empty mark (older reapers'): one send


def _forget_settled(settings: Settings, ingesting: set[int], stale_before: float) -> None:
    """Remove the stale heartbeats and marks of versions that are no longer ingesting (a fresh
    file may belong to a version made since `ingesting` was read)."""
    directory = heartbeat_dir(settings)
    for path in directory.iterdir() if directory.is_dir() else ():
        name = path.name.removesuffix(REQUEUED_SUFFIX)
        if name.isdigit() and int(name) not in ingesting and _modified_before(path, stale_before):
            path.unlink(missing_ok=True)


def _modified_before(path: Path, moment: float) -> bool:
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:
        return False
