"""The worker's whole path against `run_audit` alone on the same job, side by side in one run.

    .venv/bin/python -m benchmarks.worker_overhead [--dataset fashion-mnist] [--samples 10000]
        [--epochs 5] [--repeats 3] [--backend sqlite postgresql] [--profile FILE]

One dataset version (a stratified `--samples` subset of the built-in dataset, loaded with
`core.loaders`, stored as the version's npz blob with one `Sample` row per sample) and one
`AuditConfig`. Each round runs, in turn: `run_audit` alone on the dataset loaded from that blob
(its load not timed), then `execute_job` (claim, load and check the version, every epoch's
dynamics and progress written, checkpoints, heartbeats, the model, scores and metrics) on a
real data directory and database per backend (a temporary SQLite file; a scratch Postgres
database, dropped afterwards). Medians over the rounds and the ratio to `run_audit` alone, of
wall time and of this process's CPU time (less disturbed by other load on a shared machine; a
Postgres server's own CPU is not in it).
Target: <= 1.05x. `--profile FILE` also runs one more SQLite job under cProfile and prints the
functions with the most cumulative time outside training (the file keeps the full stats).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.dynamics_logging import LoggedAudit
from benchmarks.store_topk import scratch_database
from core.audit import AuditConfig, run_audit
from core.loaders import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--noise", default="uniform:0.3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--profile", type=Path, help="write cProfile stats of one more SQLite job here")
    args = parser.parse_args()

    source = load_dataset(args.dataset, limit=args.samples)
    config = AuditConfig(epochs=args.epochs, batch_size=args.batch_size, inject_noise=args.noise)
    with contextlib.ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        postgres_url = (
            stack.enter_context(scratch_database("postgresql", args.postgres)) if "postgresql" in args.backend else None
        )
        blob = root / "dataset.npz"
        np.savez(blob, x=source.x, y=source.y, sample_ids=np.array(source.sample_ids))
        dataset = load_dataset(blob)  # what the worker trains on: the version's blob
        urls = {"sqlite": f"sqlite:///{root}/audit.db", "postgresql": postgres_url}
        audits = {b: LoggedAudit(urls[b], dataset, blob, root / b) for b in args.backend}
        run_audit(dataset, replace(config, epochs=1))  # warm-up: the first training in a process is slower
        times: dict[str, list[float]] = {"run_audit": [], **{b: [] for b in audits}}
        cpu: dict[str, list[float]] = {name: [] for name in times}
        writes: dict[str, list[float]] = {b: [] for b in audits}
        for _ in range(args.repeats):
            started, cpu_started = time.perf_counter(), time.process_time()
            run_audit(dataset, config)
            times["run_audit"].append(time.perf_counter() - started)
            cpu["run_audit"].append(time.process_time() - cpu_started)
            print(f"run_audit: {times['run_audit'][-1]:.2f} s wall, {cpu['run_audit'][-1]:.2f} s CPU", flush=True)
            for backend, audit in audits.items():
                cpu_started = time.process_time()
                wall, write = audit.run(config)
                cpu[backend].append(time.process_time() - cpu_started)
                times[backend].append(wall)
                writes[backend].append(write / wall)
                print(f"execute_job {backend}: {wall:.2f} s wall, {cpu[backend][-1]:.2f} s CPU", flush=True)
        if args.profile:
            audit = audits.get("sqlite") or next(iter(audits.values()))
            profiler = cProfile.Profile()
            profiler.runcall(audit.run, config)
            profiler.dump_stats(args.profile)
        for audit in audits.values():
            audit.engine.dispose()

    base, cpu_base = statistics.median(times["run_audit"]), statistics.median(cpu["run_audit"])
    print(f"\n{args.dataset}, {len(dataset):,} samples, {args.epochs} epochs, batch {args.batch_size}, noise "
          f"{args.noise}; {args.repeats} interleaved rounds, medians (runs: s)\n")
    print("| path | wall s (median) | runs | wall vs run_audit | median of per-round ratios "
          "| process CPU s (median) | CPU vs run_audit | dynamics writes / wall |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    print(f"| run_audit alone | {base:.2f} | {_runs(times['run_audit'])} | 1.000x | | {cpu_base:.2f} | 1.000x | |")
    for backend in audits:
        median, cpu_median = statistics.median(times[backend]), statistics.median(cpu[backend])
        paired = statistics.median(job / plain for job, plain in zip(times[backend], times["run_audit"]))
        share = 100 * statistics.median(writes[backend])
        print(f"| execute_job, {backend} | {median:.2f} | {_runs(times[backend])} | {median / base:.3f}x "
              f"| {paired:.3f}x | {cpu_median:.2f} | {cpu_median / cpu_base:.3f}x | {share:.2f}% |")
    if args.profile:
        print_breakdown(pstats.Stats(str(args.profile)), args.profile)


# The worker path's own work on the training thread: (label, module file, function), cumulative.
PIECES = (
    ("claim the job", "job_claims.py", "claim"),
    ("load and check the version", "audit_runs.py", "_load_version"),
    ("per-epoch dynamics + progress transaction", "audit_runs.py", "on_epoch"),
    ("throttled progress updates", "audit_runs.py", "on_progress"),
    ("cancel checks (should_stop)", "job_claims.py", "should_stop"),
    ("stage updates", "job_claims.py", "set_stage"),
    ("per-epoch checkpoints", "checkpoints.py", "save_checkpoint"),
    ("noisy labels file", "artifacts.py", "write_labels"),
    ("class probabilities file", "artifacts.py", "write_probabilities"),
    ("model file", "artifacts.py", "write_model"),
    ("final scores", "dynamics_writer.py", "write_scores"),
    ("final trajectory", "dynamics_writer.py", "write_trajectory"),
    ("final metrics", "dynamics_writer.py", "write_metrics"),
)


def print_breakdown(stats: pstats.Stats, path: Path) -> None:
    """Where the profiled job's time went outside `run_audit`'s own work (the training thread;
    the heartbeat thread is not profiled, it only competes for the GIL)."""
    cumulative: dict[tuple[str, str], float] = {}
    for (file, _, function), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = (Path(file).name, function)
        cumulative[key] = cumulative.get(key, 0.0) + cum
    total = cumulative.get(("audit_runs.py", "execute_job"), 0.0)
    print(f"\ncProfile of one more execute_job, sqlite ({path}): {total:.2f} s under the profiler\n")
    print("| worker path piece | s | share of the job |")
    print("|---|---:|---:|")
    own = 0.0
    for label, file, function in PIECES:
        seconds = cumulative.get((file, function), 0.0)
        own += seconds
        print(f"| {label} | {seconds:.3f} | {100 * seconds / total:.2f}% |")
    print(f"| **all of the above** | {own:.3f} | {100 * own / total:.2f}% |")
    print(f"| run_audit (less the callbacks and checkpoints above) | "
          f"{cumulative.get(('audit.py', 'run_audit'), 0.0) - sum(cumulative.get((f, n), 0.0) for _, f, n in PIECES[2:7]):.3f} | |")


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
