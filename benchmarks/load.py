"""Read-route latency under concurrent users, against the real API over loopback.

    .venv/bin/python benchmarks/load.py [--users 20] [--requests 1000] [--backends sqlite,postgresql]
        [--api-workers 2 | 1,2] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

For each backend: a scratch data dir (and a scratch Postgres database, dropped afterwards), a
small real audit (digits, 300 samples, 3 epochs, a small CNN on the CPU) uploaded and written
as the worker writes it, then the API started with uvicorn on 127.0.0.1 with `--api-workers`
processes (2, as `lilaw-audit up` starts it; `1,2` runs both, one after the other, on the same
data), on the embedded broker (no worker is needed for reads). `--users` concurrent clients send `--requests` requests in all,
spread evenly over the read routes (the job, a page of suspects, the review queue, one sample's
dynamics, a thumbnail), each asking for a sample of its own. Prints req/s and p50/p95/p99 per
route, backend and process count. Nothing leaves loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, make_url, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.auth import create_api_key  # noqa: E402
from core.audit import AuditConfig, run_audit  # noqa: E402
from core.loaders import load_dataset  # noqa: E402
from core.noise import apply_noise  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.store import make_engine, make_session_factory, session_scope  # noqa: E402
from core.store.dynamics_writer import metric_rows, write_epoch, write_metrics, write_scores, write_trajectory  # noqa: E402
from core.store.models import AuditJob, JobStatus  # noqa: E402
from migrations import upgrade_database  # noqa: E402

SAMPLES = 300
EPOCHS = 3
ROUTES = ("job", "suspects", "queue", "dynamics", "thumbnail")


def route_path(route: str, job_id: int, sample: int) -> str:
    return {
        "job": f"/jobs/{job_id}",
        "suspects": f"/jobs/{job_id}/suspects?limit=50",
        "queue": f"/jobs/{job_id}/review-queue?limit=30",
        "dynamics": f"/jobs/{job_id}/samples/{sample}/dynamics",
        "thumbnail": f"/jobs/{job_id}/samples/{sample}/thumbnail.png",
    }[route]


@contextmanager
def scratch_database(backend: str, server: str, data_dir: Path):
    if backend == "sqlite":
        yield None  # the embedded database in the data dir
        return
    admin = create_engine(make_url(server).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    name = f"lilaw_load_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()


def audit_digits(directory: Path):
    noisy = apply_noise(load_dataset("digits", limit=SAMPLES), "uniform", 0.3, seed=0)
    path = directory / "noisy-digits.npz"
    np.savez(path, x=noisy.x, y=noisy.y, sample_ids=np.array(noisy.sample_ids))
    epochs = []
    config = AuditConfig(model="small-cnn", epochs=EPOCHS, batch_size=64, seed=0, device="cpu")
    result = run_audit(load_dataset(path), config, on_epoch=epochs.append)
    return path, result, epochs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_api(env: dict[str, str], workers: int = 1):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--workers", str(workers)],
        env={**os.environ, **env}, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the API did not start")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def seed(url: str, settings: Settings, npz: Path, result, epochs) -> tuple[str, int]:
    """An owner key, the dataset uploaded and a job submitted through the API, its results
    written as the worker writes them."""
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        key = create_api_key(session, "load")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        dataset = http.post("/datasets", files={"file": (npz.name, npz.read_bytes())}).raise_for_status().json()
        job_id = http.post("/jobs", json={"dataset_id": dataset["id"], "epochs": EPOCHS}).raise_for_status().json()["id"]
    with session_scope(sessions) as session:
        for dynamics in epochs:
            write_epoch(session, job_id, dynamics)
        write_trajectory(session, job_id, result.trajectory)
        write_scores(session, job_id, result.scores, result.default_scores, result.rank)
        if result.detection is not None:
            write_metrics(session, job_id, metric_rows(result.detection))
        job = session.get(AuditJob, job_id)
        job.status, job.epoch = JobStatus.SUCCEEDED, EPOCHS
        job.result = {"timings": result.timings, "model": result.model_name}
    engine.dispose()
    return key, job_id


async def load(url: str, key: str, job_id: int, users: int, requests: int) -> tuple[dict[str, list[float]], float]:
    latencies: dict[str, list[float]] = defaultdict(list)
    plan = [(ROUTES[i % len(ROUTES)], (i * 37) % SAMPLES) for i in range(requests)]
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits
    ) as client:
        for route in ROUTES:  # one warm-up request per route (the first thumbnail renders them all)
            (await client.get(route_path(route, job_id, 0))).raise_for_status()
        queue: asyncio.Queue = asyncio.Queue()
        for item in plan:
            queue.put_nowait(item)

        async def user() -> None:
            while not queue.empty():
                route, sample = queue.get_nowait()
                started = time.perf_counter()
                response = await client.get(route_path(route, job_id, sample))
                latencies[route].append(time.perf_counter() - started)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(users)))
        return latencies, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--api-workers", default="2",
                        help="uvicorn worker processes, or a comma-separated list to compare (default: as `lilaw-audit up`)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        npz, result, epochs = audit_digits(Path(scratch))
        for backend in args.backends.split(","):
            data_dir = Path(scratch) / backend
            data_dir.mkdir()
            with scratch_database(backend, args.postgres, data_dir) as database_url:
                env = {"LILAW_DATA_DIR": str(data_dir)}
                if database_url:
                    env["LILAW_DATABASE_URL"] = database_url
                os.environ.pop("LILAW_DATABASE_URL", None)
                os.environ.update(env)  # what Settings reads, here and in the server
                settings = Settings()
                upgrade_database(settings.resolved_database_url)
                seeded = None
                for workers in [int(count) for count in args.api_workers.split(",")]:
                    with running_api(env, workers) as url:
                        seeded = seeded or seed(url, settings, npz, result, epochs)
                        latencies, elapsed = asyncio.run(load(url, *seeded, args.users, args.requests))
                    everything = [value for values in latencies.values() for value in values]
                    for route in (*ROUTES, "all"):
                        values = everything if route == "all" else latencies[route]
                        rows.append((
                            backend, workers, route, len(values), len(values) / elapsed,
                            percentile(values, 50), percentile(values, 95), percentile(values, 99),
                        ))  # fmt: skip
    print(f"\n{args.users} concurrent users, {args.requests} requests per backend and API process count\n")
    print("| backend | API processes | route | requests | req/s | p50 ms | p95 ms | p99 ms |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for backend, workers, route, count, rate, p50, p95, p99 in rows:
        print(f"| {backend} | {workers} | {route} | {count} | {rate:.0f} | {p50:.0f} | {p95:.0f} | {p99:.0f} |")


if __name__ == "__main__":
    main()
