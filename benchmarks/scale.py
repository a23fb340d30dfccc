"""Datasets larger than memory, through the running service: ingest and a 1-epoch audit of
synthetic image datasets of growing size, with the peak memory of each process.

    .venv/bin/python benchmarks/scale.py [--sizes 20000,100000,400000] [--image-size 64] [--batch-size 256]
        [--train-image-size 32] [--ingest-only]

For each size: a zip of PNGs (Fashion-MNIST's training images, tiled to the size and upscaled
bilinearly to --image-size, class folders; digits when Fashion-MNIST is not installed) is written
to a scratch dir; the service is started there as `lilaw-audit up` starts it (the API, the audit
worker, the ingest worker; embedded SQLite and broker), the zip uploaded with the light client,
which waits for the ingest (timed: ingest images/s, and `GET /datasets/{id}` latency while it
runs), then a 1-epoch audit with the small CNN is submitted and waited for (audit images/s: the
samples over the job's training seconds, and over its wall time). The stored samples are at
--image-size; the audit's model trains at --train-image-size (`image_size` of the job: each
batch read from the store is resized), so that a shared CPU gets through 100k images; --ingest-only
skips the audit (its columns print "-"). Every 0.2 s the resident set (VmRSS) of each process and its
children is read from /proc; the peaks are printed.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from api.client import LilawClient  # noqa: E402
from cli.stack import free_port, process_commands  # noqa: E402
from core.settings import Settings  # noqa: E402
from migrations import upgrade_database  # noqa: E402
from worker.celery_app import declare_queues  # noqa: E402

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
PROCESSES = ("api", "worker", "ingest")


def base_images() -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N, 28, 28] images and their labels: Fashion-MNIST's training split, else digits."""
    images = FASHION_MNIST / "train-images-idx3-ubyte.gz"
    if images.is_file():
        with gzip.open(images) as file:
            x = np.frombuffer(file.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
        with gzip.open(FASHION_MNIST / "train-labels-idx1-ubyte.gz") as file:
            y = np.frombuffer(file.read(), dtype=np.uint8, offset=8)
        return x, y
    from core.loaders import load_dataset

    digits = load_dataset("digits")
    return digits.x[:, 0], digits.y


def write_zip(path: Path, size: int, image_size: int) -> float:
    """A class-folder zip of `size` PNGs (stored: PNG is compressed already); returns seconds."""
    started = time.perf_counter()
    x, y = base_images()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for i in range(size):
            image = Image.fromarray(x[i % len(x)]).resize((image_size, image_size), Image.Resampling.BILINEAR)
            png = io.BytesIO()
            image.save(png, format="PNG", compress_level=1)
            archive.writestr(f"{y[i % len(y)]}/{i}.png", png.getvalue())
    return time.perf_counter() - started


def tree_rss_mib(pid: int) -> float:
    """VmRSS of the process and its descendants, MiB."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status") as status:
                total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


class PeakRss:
    def __init__(self, processes: dict[str, subprocess.Popen]):
        self.processes = processes
        self.peaks = {name: 0.0 for name in processes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, process in self.processes.items():
                self.peaks[name] = max(self.peaks[name], tree_rss_mib(process.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_size(
    size: int, image_size: int, batch_size: int, train_image_size: int, scratch: Path, ingest_only: bool = False
) -> dict:
    data_dir = scratch / f"data-{size}"
    zip_path = scratch / f"synthetic-{size}.zip"
    write_seconds = write_zip(zip_path, size, image_size)
    settings = Settings(data_dir=data_dir, max_decoded_pixels=size * image_size * image_size + 1)
    env = {
        **os.environ, "LILAW_DATA_DIR": str(data_dir), "LILAW_MAX_DECODED_PIXELS": str(settings.max_decoded_pixels),
        "LILAW_SCHEDULE_TICK_S": "3600", "LILAW_INLINE_INGEST_MAX_BYTES": str(2**20),
    }  # fmt: skip
    data_dir.mkdir(parents=True)
    upgrade_database(settings.resolved_database_url)
    declare_queues(settings)
    key = subprocess.run(
        [sys.executable, "-m", "cli", "create-key", "--owner", "scale"], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    commands = process_commands(settings, "127.0.0.1", port, beat=False)
    logs = {name: open(scratch / f"{name}-{size}.log", "wb") for name in commands}
    processes = {
        name: subprocess.Popen(command, env=env, stdout=logs[name], stderr=subprocess.STDOUT, start_new_session=True)
        for name, command in commands.items()
    }
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url)
        with PeakRss(processes) as rss, LilawClient(url, key, timeout=600) as client:
            polls: list[float] = []
            last = [time.perf_counter()]

            def timed(_dataset) -> None:
                now = time.perf_counter()
                polls.append(now - last[0])
                last[0] = now

            started = time.perf_counter()
            dataset = client.upload_dataset(zip_path, name=f"synthetic-{size}", on_progress=timed, poll_seconds=0.2)
            ingest_seconds = time.perf_counter() - started
            ingest_rss = dict(rss.peaks)
            audit = None if ingest_only else _run_audit(client, dataset.id, size, batch_size, train_image_size)
        # A poll's own latency: its interval less the client's sleep.
        latencies = sorted(max(0.0, interval - 0.2) for interval in polls[1:]) or [0.0]
        return {
            "size": size, "zip_mib": zip_path.stat().st_size / 2**20, "write_seconds": write_seconds,
            "ingest_seconds": ingest_seconds, "ingest_images_s": size / ingest_seconds,
            "get_dataset_p95_ms": 1000 * latencies[int(0.95 * (len(latencies) - 1))], "polls": len(polls),
            "audit": audit, "rss_ingest_mib": ingest_rss, "rss_peak_mib": dict(rss.peaks),
        }  # fmt: skip
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs.values():
            log.close()


def _run_audit(client: LilawClient, dataset_id: int, size: int, batch_size: int, train_image_size: int) -> dict:
    """A 1-epoch small-CNN audit of the dataset, waited for: its training and wall seconds and images/s."""
    job = client.submit_audit(
        dataset_id, epochs=1, batch_size=batch_size, model="small-cnn", image_size=train_image_size
    )
    started = time.perf_counter()
    job = client.wait(job.id, poll_seconds=1.0)
    audit_wall = time.perf_counter() - started
    if job.status.value != "succeeded":
        raise RuntimeError(f"the audit of {size} images ended {job.status.value}: {job.error}")
    train_seconds = job.result["timings"]["train_seconds"]
    return {
        "train_seconds": train_seconds, "audit_images_s": size / train_seconds,
        "audit_wall_seconds": audit_wall, "audit_wall_images_s": size / audit_wall,
    }  # fmt: skip


def _wait_healthy(url: str) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the API did not answer at {url}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000,400000")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-image-size", type=int, default=32)
    parser.add_argument("--scratch", type=Path, default=None, help="default: a temporary directory, removed after")
    parser.add_argument("--ingest-only", action="store_true", help="upload and ingest only, no audit")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
        print("| images | zip MiB | ingest s | ingest img/s | GET dataset p95 ms | train s | audit img/s (train) |"
              " audit img/s (wall) | peak RSS MiB: API / audit worker / ingest worker |")
        print("|---|---|---|---|---|---|---|---|---|")
        for size in (int(text) for text in args.sizes.split(",")):
            row = run_size(
                size, args.image_size, args.batch_size, args.train_image_size, Path(scratch), args.ingest_only
            )
            peaks, audit = row["rss_peak_mib"], row["audit"]
            audit_cells = (
                "- | - | -" if audit is None else
                f"{audit['train_seconds']:.1f} | {audit['audit_images_s']:.0f} | {audit['audit_wall_images_s']:.0f}"
            )  # fmt: skip
            print(
                f"| {size} | {row['zip_mib']:.0f} | {row['ingest_seconds']:.1f} | {row['ingest_images_s']:.0f} | "
                f"{row['get_dataset_p95_ms']:.0f} ({row['polls']} polls) | {audit_cells} | "
                f"{peaks['api']:.0f} / {peaks['worker']:.0f} / {peaks['ingest']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
