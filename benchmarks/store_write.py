"""Rows per second of one epoch of dynamics written to the store, by write path, side by side.

    .venv/bin/python benchmarks/store_write.py [--samples 100000] [--repeats 5]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch Postgres database (dropped afterwards) and a scratch SQLite file, migrates
both, and times `write_epoch` (binary COPY built with numpy on Postgres, executemany on SQLite)
against psycopg's row-by-row COPY (`write_row`, text and binary) on the same data, the paths
taking turns on fresh epochs; then a redelivered epoch (delete of its rows + insert).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import Connection, create_engine, delete, make_url, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.dynamics import FLOAT_FIELDS, EpochDynamics  # noqa: E402
from core.store import AuditJob, DatasetVersion, Dataset, Owner, SampleEpoch  # noqa: E402
from core.store import create_job_partition, make_engine, write_epoch  # noqa: E402
from migrations import upgrade_database  # noqa: E402

COLUMNS = ("job_id", "epoch", "sample_index", "split", *FLOAT_FIELDS[:7], "predicted", *FLOAT_FIELDS[7:])


def synthetic_epoch(num_samples: int, epoch: int = 1, seed: int = 0) -> EpochDynamics:
    rng = np.random.default_rng(seed)
    floats = {name: rng.random(num_samples, dtype=np.float32) for name in FLOAT_FIELDS}
    return EpochDynamics(
        epoch=epoch,
        sample_index=np.arange(num_samples, dtype=np.int64),
        split=(rng.random(num_samples) < 0.1).astype(np.uint8),
        predicted=rng.integers(0, 10, num_samples),
        **floats,
    )


def write_rows(connection: Connection, job_id: int, dynamics: EpochDynamics, binary: bool) -> None:
    connection.execute(delete(SampleEpoch).where(SampleEpoch.job_id == job_id, SampleEpoch.epoch == dynamics.epoch))
    columns = [
        np.full(len(dynamics), job_id).tolist() if name == "job_id"
        else np.full(len(dynamics), dynamics.epoch).tolist() if name == "epoch"
        else getattr(dynamics, name).tolist()
        for name in COLUMNS
    ]
    statement = f"COPY sample_epochs ({', '.join(COLUMNS)}) FROM STDIN" + (" (FORMAT BINARY)" if binary else "")
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        if binary:
            copy.set_types(["int4", "int4", "int4", "int2", *["float4"] * 7, "int4", "float4", "float4"])
        for row in zip(*columns):
            copy.write_row(row)


def time_paths(engine, paths: dict[str, Callable[[Connection, EpochDynamics], None]], dynamics: list[EpochDynamics],
               repeats: int) -> dict[str, float]:
    """Median seconds per path; the paths take turns, each writing a fresh epoch every round."""
    timings: dict[str, list[float]] = {label: [] for label in paths}
    epochs = iter(dynamics)
    for _ in range(repeats):
        for label, write in paths.items():
            epoch = next(epochs)
            started = time.perf_counter()
            with engine.begin() as connection:
                write(connection, epoch)
            timings[label].append(time.perf_counter() - started)
    return {label: statistics.median(values) for label, values in timings.items()}


def time_redelivery(engine, job_id: int, dynamics: EpochDynamics, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        with engine.begin() as connection:
            write_epoch(connection, job_id, dynamics)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def create_job(engine) -> int:
    with engine.begin() as connection:
        owner = connection.execute(Owner.__table__.insert().values(name="bench").returning(Owner.id)).scalar_one()
        dataset = connection.execute(
            Dataset.__table__.insert().values(owner_id=owner, name="bench").returning(Dataset.id)
        ).scalar_one()
        version = connection.execute(
            DatasetVersion.__table__.insert()
            .values(dataset_id=dataset, version=1, blob_sha256="0" * 64, blob_uri="-", format="npz",
                    modality="tabular", num_samples=0, num_classes=10, class_names=[])
            .returning(DatasetVersion.id)
        ).scalar_one()
        job_id = connection.execute(
            AuditJob.__table__.insert()
            .values(owner_id=owner, dataset_version_id=version, config={}, status="running", epoch=0, step=0)
            .returning(AuditJob.id)
        ).scalar_one()
        create_job_partition(connection, job_id)
    return job_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()
    template = synthetic_epoch(args.samples)
    dynamics = [replace(template, epoch=epoch) for epoch in range(1, 3 * args.repeats + 1)]

    admin = create_engine(make_url(args.postgres).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"lilaw_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    results: list[tuple[str, str, float]] = []
    try:
        url = make_url(args.postgres).set(database=name)
        upgrade_database(url)
        engine = make_engine(url)
        job_id = create_job(engine)
        paths = {
            "write_epoch (numpy binary COPY)": lambda c, d: write_epoch(c, job_id, d),
            "COPY write_row, text": lambda c, d: write_rows(c, job_id, d, binary=False),
            "COPY write_row, binary": lambda c, d: write_rows(c, job_id, d, binary=True),
        }
        for label, elapsed in time_paths(engine, paths, dynamics, args.repeats).items():
            results.append(("postgres", label, elapsed))
        results.append(("postgres", "write_epoch, redelivered epoch", time_redelivery(engine, job_id, dynamics[0], args.repeats)))
        engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{directory}/bench.db"
        upgrade_database(url)
        engine = make_engine(url)
        job_id = create_job(engine)
        paths = {"write_epoch (executemany)": lambda c, d: write_epoch(c, job_id, d)}
        for label, elapsed in time_paths(engine, paths, dynamics, args.repeats).items():
            results.append(("sqlite", label, elapsed))
        results.append(("sqlite", "write_epoch, redelivered epoch", time_redelivery(engine, job_id, dynamics[0], args.repeats)))
        engine.dispose()

    print(f"one epoch of {args.samples:,} rows, median of {args.repeats} (transaction: job check, delete, insert, commit)\n")
    print(f"| {'backend':<8} | {'path':<32} | {'seconds':>8} | {'rows/s':>10} |")
    print(f"|{'-' * 10}|{'-' * 34}|{'-' * 10}|{'-' * 12}|")
    for backend, label, elapsed in results:
        print(f"| {backend:<8} | {label:<32} | {elapsed:>8.3f} | {args.samples / elapsed:>10,.0f} |")


if __name__ == "__main__":
    main()
