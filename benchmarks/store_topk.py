"""Latency of the suspects API's reads on a large job: top-100, deep pages, filters, one sample's
dynamics, and the cost of writing and deleting the job.

    .venv/bin/python benchmarks/store_topk.py [--samples 1000000] [--epochs 10] [--repeats 20]
        [--backend postgresql|sqlite] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Builds a scratch database (a new Postgres database, dropped afterwards, or a temporary SQLite
file), migrates it, stores a dataset version of `--samples` samples, `--epochs` epochs of
dynamics and the scores of one job through the store's writers (`write_scores` refreshes the
planner statistics), then times each read (median of `--repeats` warm runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.store_write import create_job, synthetic_epoch  # noqa: E402
from core.dynamics import SPLIT_VAL  # noqa: E402
from core.store import (  # noqa: E402
    AuditJob,
    delete_job,
    make_engine,
    make_session_factory,
    sample_dynamics,
    session_scope,
    top_suspects,
    write_epoch,
    write_scores,
)
from migrations import upgrade_database  # noqa: E402


@contextmanager
def scratch_database(backend: str, server: str):
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield make_url(f"sqlite:///{directory}/topk.db")
        return
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"lilaw_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield admin.url.set(database=name)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def store_samples(engine, version_id: int, num_samples: int) -> None:
    labels = np.arange(num_samples) % 10
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        if engine.dialect.name == "postgresql":
            lines = "".join(f"{version_id}\t{i}\ts{i:07d}\t{labels[i]}\n" for i in range(num_samples))
            with raw.cursor() as cursor, cursor.copy(
                "COPY samples (dataset_version_id, sample_index, sample_id, label) FROM STDIN"
            ) as copy:
                copy.write(lines)
        else:
            raw.executemany(
                "INSERT INTO samples (dataset_version_id, sample_index, sample_id, label) VALUES (?, ?, ?, ?)",
                ((version_id, i, f"s{i:07d}", int(labels[i])) for i in range(num_samples)),
            )


def seeded_job(url: str, num_samples: int):
    """The database at `url` migrated, a job over a new version of `num_samples` samples:
    (engine, session factory, job id)."""
    upgrade_database(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    job_id = create_job(engine)
    with sessions() as session:
        version_id = session.get(AuditJob, job_id).dataset_version_id
    store_samples(engine, version_id, num_samples)
    return engine, sessions, job_id


def median_ms(read: Callable[[], object], repeats: int) -> float:
    read()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        timings.append(time.perf_counter() - started)
    return 1000 * statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    n = args.samples

    with scratch_database(args.backend, args.postgres) as url:
        engine, sessions, job_id = seeded_job(url, n)

        writes = []
        started = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            dynamics = synthetic_epoch(n, epoch=epoch, seed=epoch)
            epoch_started = time.perf_counter()
            with session_scope(sessions) as session:
                write_epoch(session, job_id, dynamics)
            writes.append(time.perf_counter() - epoch_started)
        dynamics_seconds = time.perf_counter() - started
        default_score = np.random.default_rng(0).random(n).astype(np.float32)
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(-default_score)] = np.arange(1, n + 1)
        started = time.perf_counter()
        with session_scope(sessions) as session:
            write_scores(session, job_id, {"w_alpha": default_score}, default_score, rank)
        scores_seconds = time.perf_counter() - started

        reads: dict[str, Callable[[Session], object]] = {
            "top 100": lambda s: top_suspects(s, job_id, limit=100),
            f"top 100 after rank {n // 2:,}": lambda s: top_suspects(s, job_id, limit=100, after_rank=n // 2),
            "top 100, label = 3": lambda s: top_suspects(s, job_id, limit=100, label=3),
            "top 100, predicted = 3": lambda s: top_suspects(s, job_id, limit=100, predicted=3),
            "top 100, split = val": lambda s: top_suspects(s, job_id, limit=100, split=SPLIT_VAL),
            "top 100, label = 3, predicted = 7": lambda s: top_suspects(s, job_id, limit=100, label=3, predicted=7),
            "one sample's dynamics": lambda s: sample_dynamics(s, job_id, n // 3),
        }
        latencies = {}
        for name, read in reads.items():
            with sessions() as session:
                latencies[name] = median_ms(lambda: read(session), args.repeats)

        started = time.perf_counter()
        with session_scope(sessions) as session:
            delete_job(session, job_id)
        delete_seconds = time.perf_counter() - started
        engine.dispose()

    rows = n * args.epochs
    print(f"{args.backend}: {n:,} samples x {args.epochs} epochs = {rows:,} dynamics rows\n")
    print(f"write dynamics: {rows / dynamics_seconds:,.0f} rows/s "
          f"(per epoch of {n:,}: median {statistics.median(writes):.2f} s)")
    print(f"write scores:   {n / scores_seconds:,.0f} rows/s")
    print(f"delete job:     {1000 * delete_seconds:,.0f} ms\n")
    print(f"| {'read (median of ' + str(args.repeats) + ')':<36} | {'ms':>8} |")
    print(f"|{'-' * 38}|{'-' * 10}|")
    for name, milliseconds in latencies.items():
        print(f"| {name:<36} | {milliseconds:>8.1f} |")

if __name__ == "__main__":
    main()
