"""What the worker's dynamics logging costs, Postgres and SQLite side by side in one run.

    .venv/bin/python -m benchmarks.dynamics_logging [--rows 100000 1000000] [--repeats 3]
        [--audit digits] [--audit-limit N] [--audit-epochs 10]
        [--topk-samples 1000000] [--topk-epochs 3] [--postgres URL]
    .venv/bin/python -m benchmarks.dynamics_logging --scale [--scale-samples 1000000]
        [--scale-epochs 20] [--postgres URL]

1. Rows per second of `write_epoch` (one epoch of N samples in one transaction: delete, insert,
   commit), first writes and rewrites of a redelivered epoch (`benchmarks.store_write`).
2. A small real audit: wall time of `run_audit` alone against `execute_job` (the worker's whole
   path: per-epoch dynamics and progress writes, heartbeats, checkpoints, the model, scores and
   metrics) on each backend, the runs taking turns, best of the repeats (the least disturbed by
   other load); and the share of each job's wall time spent in its per-epoch dynamics
   transactions, measured within the same run (median). Target: logging < 5% of the audit.
3. Latency of the top-100 suspects of an N-sample job (median of warm reads): the store query
   and the results service the API endpoint calls (`benchmarks.store_topk`). Target: < 100 ms
   on Postgres at 10^6 samples.

`--scale` measures instead a whole large job's logging on Postgres alone: `--scale-epochs`
epochs of `--scale-samples` synthetic samples written through `write_epoch`, each in its own
transaction as the worker's per-epoch callback does, then the final `write_scores`; then the
top-100 suspects and one sample's dynamics (store query and the results service behind each
endpoint; median of warm reads, a different sample each read). The job's time is not run but
estimated, and said so: the measured samples/s of a real `run_audit` (default config: small-cnn
at 28x28, LiLAW with dynamics; Fashion-MNIST subset, 2 epochs, including its scoring) on this
CPU, times samples x epochs; and, since that rate suffers most from other load on a shared
machine, a second estimate from `--reference-rate` (default 4,000: the LiLAW + dynamics
training rate of benchmarks/overhead.py on a quiet run of this CPU). Targets: writes < 3% of that time, top-100 < 50 ms, one sample's
dynamics < 20 ms. The scratch database is dropped afterwards.
"""

import argparse
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
from sqlalchemy import insert

from benchmarks.store_topk import median_ms, scratch_database, seeded_job
from benchmarks.store_write import create_job, synthetic_epoch, time_paths, time_redelivery
from core.audit import AuditConfig, run_audit
from core.dataset import AuditDataset
from core.loaders import load_dataset
from core.services import results
from core.services.artifacts import job_artifacts
from core.services.audit_runs import execute_job
from core.settings import Settings
from core.store import (
    AuditJob,
    Dataset,
    DatasetVersion,
    Owner,
    Sample,
    make_engine,
    make_session_factory,
    sample_dynamics,
    session_scope,
    top_suspects,
    write_epoch,
    write_scores,
)
from core.store.partitions import partition_name
from migrations import upgrade_database

BACKENDS = ("postgresql", "sqlite")


def writer_rows_per_second(backend: str, server: str, num_rows: int, repeats: int) -> tuple[float, float]:
    """(first write, rewrite) rows/s of one epoch of `num_rows` samples."""
    template = synthetic_epoch(num_rows)
    epochs = [replace(template, epoch=epoch) for epoch in range(1, repeats + 1)]
    with scratch_database(backend, server) as url:
        upgrade_database(url)
        engine = make_engine(url)
        job_id = create_job(engine)
        first = time_paths(engine, {"write": lambda c, d: write_epoch(c, job_id, d)}, epochs, repeats)["write"]
        rewrite = time_redelivery(engine, job_id, epochs[0], repeats)
        engine.dispose()
    return num_rows / first, num_rows / rewrite


class LoggedAudit:
    """A scratch database holding `dataset` as a dataset version, ready to run jobs over it."""

    def __init__(self, url, dataset: AuditDataset, blob: Path, data_dir: Path):
        upgrade_database(url)
        self.engine = make_engine(url, sqlite_begin="IMMEDIATE")
        self.sessions = make_session_factory(self.engine)
        self.settings = Settings(data_dir=data_dir)
        with session_scope(self.sessions) as session:
            self.owner = Owner(name=f"bench-{uuid.uuid4().hex[:8]}")
            self.version = DatasetVersion(
                dataset=Dataset(owner=self.owner, name=dataset.name), version=1, blob_sha256="0" * 64,
                blob_uri=str(blob), format="npz", modality=dataset.modality, num_samples=len(dataset),
                num_classes=dataset.num_classes, class_names=dataset.class_names,
            )  # fmt: skip
            session.add(self.version)
            session.flush()
            session.execute(
                insert(Sample),
                [
                    {"dataset_version_id": self.version.id, "sample_index": i, "sample_id": id_, "label": int(label)}
                    for i, (id_, label) in enumerate(zip(dataset.sample_ids, dataset.y))
                ],
            )

    def run(self, config: AuditConfig) -> tuple[float, float]:
        """(wall seconds of execute_job, seconds in per-epoch dynamics transactions)."""
        with session_scope(self.sessions) as session:
            job = AuditJob(owner_id=self.owner.id, dataset_version_id=self.version.id, config=config.to_dict())
            session.add(job)
        started = time.perf_counter()
        execute_job(self.sessions, job.id, self.settings)
        wall = time.perf_counter() - started
        with self.sessions() as session:
            timings = session.get(AuditJob, job.id).result["timings"]
        return wall, timings["dynamics_write_seconds"]


def audit_overhead(args, directory: Path) -> dict[str, dict[str, float]]:
    dataset = load_dataset(args.audit, limit=args.audit_limit)
    blob = directory / "dataset.npz"
    np.savez(blob, x=dataset.x, y=dataset.y, sample_ids=np.array(dataset.sample_ids))
    config = AuditConfig(epochs=args.audit_epochs, batch_size=64, inject_noise="uniform:0.3")
    run_audit(dataset, replace(config, epochs=1))  # warm-up: the first training in a process is slower
    with scratch_database("postgresql", args.postgres) as postgres_url:
        audits = {
            "postgresql": LoggedAudit(postgres_url, dataset, blob, directory / "pg"),
            "sqlite": LoggedAudit(f"sqlite:///{directory}/audit.db", dataset, blob, directory / "sqlite"),
        }
        plain, logged = [], {backend: [] for backend in audits}
        for _ in range(args.repeats):
            started = time.perf_counter()
            run_audit(dataset, config)
            plain.append(time.perf_counter() - started)
            for backend, audit in audits.items():
                logged[backend].append(audit.run(config))
        for audit in audits.values():
            audit.engine.dispose()
    baseline = min(plain)
    report = {}
    for backend, runs in logged.items():
        wall = min(wall for wall, _ in runs)
        writes = statistics.median(write / wall for wall, write in runs)
        report[backend] = {"plain": baseline, "job": wall, "write_share": writes, "samples": len(dataset)}
    return report


def topk_latency(backend: str, server: str, num_samples: int, epochs: int, repeats: int) -> dict[str, float]:
    """Milliseconds of the top-100 suspects: the store query and the results service's page."""
    with scratch_database(backend, server) as url, tempfile.TemporaryDirectory() as data_dir:
        engine, sessions, job_id = seeded_job(url, num_samples)
        for epoch in range(1, epochs + 1):
            with session_scope(sessions) as session:
                write_epoch(session, job_id, synthetic_epoch(num_samples, epoch=epoch, seed=epoch))
        score = np.random.default_rng(0).random(num_samples).astype(np.float32)
        rank = np.empty(num_samples, dtype=np.int64)
        rank[np.argsort(-score)] = np.arange(1, num_samples + 1)
        with session_scope(sessions) as session:
            write_scores(session, job_id, {"w_alpha": score}, score, rank)
        with sessions() as session:
            job = session.get(AuditJob, job_id)
            artifacts = job_artifacts(Settings(data_dir=Path(data_dir)), job)
            latency = {
                "store": median_ms(lambda: top_suspects(session, job_id, limit=100), repeats),
                "service": median_ms(lambda: results.suspects_page(session, job, artifacts, limit=100), repeats),
            }
        engine.dispose()
    return latency


def audit_samples_per_second(samples: int = 4_000, epochs: int = 2) -> float:
    """Sample-epochs per second of a whole default `run_audit` (training and scoring) on this
    machine; without the test split, which a job's samples do not pay for."""
    dataset = replace(load_dataset("fashion-mnist", limit=samples), test=None)
    run_audit(dataset, AuditConfig(epochs=1))  # warm-up
    started = time.perf_counter()
    run_audit(dataset, AuditConfig(epochs=epochs))
    return len(dataset) * epochs / (time.perf_counter() - started)


def logging_at_scale(server: str, num_samples: int, epochs: int, repeats: int) -> dict[str, float]:
    """A whole job's dynamics and scores written on Postgres, then the reads of its results."""
    measured: dict[str, float] = {}
    with scratch_database("postgresql", server) as url, tempfile.TemporaryDirectory() as data_dir:
        engine, sessions, job_id = seeded_job(url, num_samples)
        epoch_seconds = []
        for epoch in range(1, epochs + 1):
            dynamics = synthetic_epoch(num_samples, epoch=epoch, seed=epoch)  # drawn outside the timing
            started = time.perf_counter()
            with session_scope(sessions) as session:
                write_epoch(session, job_id, dynamics)
            epoch_seconds.append(time.perf_counter() - started)
        score = np.random.default_rng(0).random(num_samples).astype(np.float32)
        rank = np.empty(num_samples, dtype=np.int64)
        rank[np.argsort(-score)] = np.arange(1, num_samples + 1)
        started = time.perf_counter()
        with session_scope(sessions) as session:
            write_scores(session, job_id, {"w_alpha": score}, score, rank)
        measured["scores_seconds"] = time.perf_counter() - started
        measured["epoch_seconds"] = sum(epoch_seconds)
        measured["slowest_epoch"] = max(epoch_seconds)
        with engine.connect() as connection:
            measured["table_bytes"] = connection.exec_driver_sql(
                f"SELECT pg_total_relation_size('{partition_name(job_id)}')"
            ).scalar_one()
        picks = iter(np.random.default_rng(1).integers(0, num_samples, 10 * repeats + 10).tolist())
        with sessions() as session:
            job = session.get(AuditJob, job_id)
            artifacts = job_artifacts(Settings(data_dir=Path(data_dir)), job)
            measured["top_store"] = median_ms(lambda: top_suspects(session, job_id, limit=100), repeats)
            measured["top_service"] = median_ms(
                lambda: results.suspects_page(session, job, artifacts, limit=100), repeats
            )
            measured["sample_store"] = median_ms(lambda: sample_dynamics(session, job_id, next(picks)), repeats)
            measured["sample_service"] = median_ms(
                lambda: results.sample_history(session, job, next(picks), artifacts), repeats
            )
            rows = len(sample_dynamics(session, job_id, 0))
        if rows != epochs:
            raise RuntimeError(f"one sample has {rows} dynamics rows, expected {epochs}")
        engine.dispose()
    return measured


def print_scale(args) -> None:
    rate = audit_samples_per_second()
    measured = logging_at_scale(args.postgres, args.scale_samples, args.scale_epochs, 20)
    rows = args.scale_samples * args.scale_epochs
    job_seconds = rows / rate
    writes = measured["epoch_seconds"] + measured["scores_seconds"]
    table = [
        ("default audit on this CPU (Fashion-MNIST 4,000, 2 epochs): samples x epochs / s", f"{rate:,.0f}"),
        (f"estimated job time, {args.scale_samples:,} samples x {args.scale_epochs} epochs, s", f"{job_seconds:,.0f}"),
        (f"write_epoch x {args.scale_epochs} ({rows:,} rows), s", f"{measured['epoch_seconds']:.1f}"),
        ("  rows/s", f"{rows / measured['epoch_seconds']:,.0f}"),
        ("  slowest epoch, s", f"{measured['slowest_epoch']:.2f}"),
        ("write_scores (final), s", f"{measured['scores_seconds']:.1f}"),
        ("dynamics + scores writes / estimated job time", f"{100 * writes / job_seconds:.2f}%"),
        (f"  the same at {args.reference_rate:,.0f} samples x epochs / s (--reference-rate)",
         f"{100 * writes * args.reference_rate / rows:.2f}%"),
        ("job's dynamics partition on disk, GiB", f"{measured['table_bytes'] / 2**30:.2f}"),
        ("top-100 suspects: store, ms", f"{measured['top_store']:.1f}"),
        ("  results service (the endpoint's call), ms", f"{measured['top_service']:.1f}"),
        ("one sample's dynamics: store, ms", f"{measured['sample_store']:.1f}"),
        ("  results service (the endpoint's call), ms", f"{measured['sample_service']:.1f}"),
    ]
    width = max(len(label) for label, _ in table)
    print(f"\nPostgres, {args.scale_samples:,} samples x {args.scale_epochs} epochs of synthetic dynamics; "
          f"reads: median of 20 warm reads (one sample: a random sample each read)\n")
    print(f"| {'':<{width}} | {'postgresql':>12} |")
    print(f"|{'-' * (width + 2)}|{'-' * 14}|")
    for label, value in table:
        print(f"| {label:<{width}} | {value:>12} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--audit", default="digits", help="a built-in dataset or a file for the real audit")
    parser.add_argument("--audit-limit", type=int, help="audit a stratified subset of this many samples")
    parser.add_argument("--audit-epochs", type=int, default=10)
    parser.add_argument("--topk-samples", type=int, default=1_000_000)
    parser.add_argument("--topk-epochs", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--scale", action="store_true", help="a whole large job's logging on Postgres (see above)")
    parser.add_argument("--scale-samples", type=int, default=1_000_000)
    parser.add_argument("--scale-epochs", type=int, default=20)
    parser.add_argument("--reference-rate", type=float, default=4_000.0,
                        help="a second job-time estimate: training samples x epochs / s on a quiet machine")
    args = parser.parse_args()
    if args.scale:
        print_scale(args)
        return

    table: list[tuple[str, dict[str, str]]] = []
    for num_rows in args.rows:
        speeds = {b: writer_rows_per_second(b, args.postgres, num_rows, args.repeats) for b in BACKENDS}
        table.append((f"write_epoch, {num_rows:,} rows: rows/s", {b: f"{s[0]:,.0f}" for b, s in speeds.items()}))
        table.append((f"  rewrite (redelivered epoch): rows/s", {b: f"{s[1]:,.0f}" for b, s in speeds.items()}))

    with tempfile.TemporaryDirectory() as directory:
        audit = audit_overhead(args, Path(directory))
    samples = next(iter(audit.values()))["samples"]
    name = f"{args.audit} ({samples:,} samples, {args.audit_epochs} epochs)"
    table.append((f"audit {name}: run_audit alone, s", {b: f"{r['plain']:.1f}" for b, r in audit.items()}))
    table.append(("  execute_job (worker path), s", {b: f"{r['job']:.1f}" for b, r in audit.items()}))
    table.append(("  worker path / run_audit", {b: f"{r['job'] / r['plain']:.3f}" for b, r in audit.items()}))
    table.append(("  dynamics writes / job wall time", {b: f"{100 * r['write_share']:.2f}%" for b, r in audit.items()}))

    topk = {b: topk_latency(b, args.postgres, args.topk_samples, args.topk_epochs, 20) for b in BACKENDS}
    label = f"top-100 suspects, {args.topk_samples:,}-sample job: store, ms"
    table.append((label, {b: f"{t['store']:.1f}" for b, t in topk.items()}))
    table.append(("  results service (the endpoint's call), ms", {b: f"{t['service']:.1f}" for b, t in topk.items()}))

    width = max(len(label) for label, _ in table)
    print(f"\n{args.repeats} runs each: rows/s and write shares are medians, audit times the best run; "
          f"top-100: median of 20 warm reads\n")
    print(f"| {'':<{width}} | {'postgresql':>12} | {'sqlite':>12} |")
    print(f"|{'-' * (width + 2)}|{'-' * 14}|{'-' * 14}|")
    for label, values in table:
        print(f"| {label:<{width}} | {values['postgresql']:>12} | {values['sqlite']:>12} |")


if __name__ == "__main__":
    main()
