"""The memory a download and an embeddings pass of a segmented dataset version take, against the
size of its samples: read from the shards a chunk at a time, and (as before) read whole first.

    .venv/bin/python -m benchmarks.download_memory [--sizes 50000,200000] [--image-side 32] [--features 64]
        [--tasks npz,csv,embeddings,table-upload]

For each size N a scratch dir gets a version's samples as a relabel with removals and an append
leave them: two shards, read as three segments (`SegmentedRows`): N images uint8 [3, S, S] (a
smooth pattern with noise, so that deflate runs at a realistic speed) and N table rows float32
[F]. Each measurement runs in a fresh process, which opens the segments and then reads its peak
resident set (VmHWM, reset through /proc/self/clear_refs) before and after the work:

- npz download: `core.loaders.writers.npz_file` of the images, every chunk taken and dropped
  (what the API streams to the client), as `core.services.version_downloads` calls it (shard
  rows read with explicit reads);
- csv download: `writers.table_file` of the table rows, the same way;
- embeddings pass: `core.embeddings.cache_key` and `compute_features` of the images (the features
  written to a .npy file) with a stand-in backbone (average pooling to 4x4 and one linear layer:
  the pass's memory is in reading the images and writing the features, not in the model, and
  timm's smallest network takes about 1 ms an image on this machine's CPUs);
- csv of a table upload: the CSV download of a version that is a table upload (a CSV of N rows:
  sample_id, label and F features written with 5 significant digits, and the shard of its float32
  samples), its uploaded values read back from the file a chunk of rows at a time
  (`version_downloads.UploadedRows`), every sample in the file's order.

"whole first" is the same work after `np.asarray` of the segments, what downloads and embeddings
did before; for the table upload, what its download did before (`old_uploaded_rows`: the file
loaded whole for its ids, read whole again as text, and a dict of every sample's values). Prints a
markdown table: data size (the samples' float32 size; the CSV's size is in the work's name), peak
growth, and seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.sample_store import Segment, open_segments

TASKS = ("npz", "csv", "embeddings", "table-upload")
WORK = {"table-upload": "csv of a table upload"}  # the work's name in the table, where not the task's
CHUNK_ROWS = 8192  # rows generated at a time when writing the shards


def write_version(directory: Path, size: int, side: int, features: int) -> None:
    """Shards of 1.1 N images and of 1.1 N table rows, and the segments (N rows, with a gap) of both."""
    rng = np.random.default_rng(0)
    first, second = int(size * 0.75), size - int(size * 0.75)
    for kind, row_shape, dtype in (("images", (3, side, side), np.uint8), ("table", (features,), np.float32)):
        for name, count in (("a", first + size // 10), ("b", second)):
            shard = np.lib.format.open_memmap(directory / f"{kind}-{name}.npy", "w+", dtype, (count, *row_shape))
            for start in range(0, count, CHUNK_ROWS):
                rows = min(CHUNK_ROWS, count - start)
                if dtype == np.uint8:
                    base = np.linspace(0, 200, side * side).reshape(1, 1, side, side)
                    block = base + rng.integers(0, 40, (rows, *row_shape))
                else:
                    block = rng.standard_normal((rows, *row_shape))
                shard[start : start + rows] = block.astype(dtype)
            shard.flush()
            del shard
    gap = size // 10  # rows of the first shard left out, as a relabel's removals leave them
    segments = {
        kind: [
            Segment(f"{kind}-a.npy", 0, first // 2).as_json(),
            Segment(f"{kind}-a.npy", first // 2 + gap, first + gap).as_json(),
            Segment(f"{kind}-b.npy", 0, second).as_json(),
        ]
        for kind in ("images", "table")
    }
    (directory / "segments.json").write_text(json.dumps(segments))
    write_table_upload(directory, size, features)


def write_table_upload(directory: Path, size: int, features: int) -> None:
    """upload.csv (sample_id, label, f0..f{F-1}: N rows) and upload.npy, the shard of its samples."""
    import pandas as pd

    rng = np.random.default_rng(1)
    shard = np.lib.format.open_memmap(directory / "upload.npy", "w+", np.float32, (size, features))
    with (directory / "upload.csv").open("w") as file:
        for start in range(0, size, CHUNK_ROWS):
            rows = min(CHUNK_ROWS, size - start)
            block = rng.standard_normal((rows, features))
            frame = pd.DataFrame(block, columns=[f"f{i}" for i in range(features)])
            frame.insert(0, "label", [str(i % 10) for i in range(start, start + rows)])
            frame.insert(0, "sample_id", [f"row-{i}" for i in range(start, start + rows)])
            frame.to_csv(file, index=False, header=start == 0, float_format="%.5g", lineterminator="\n")
            shard[start : start + rows] = block.astype(np.float32)
    shard.flush()
    del shard


def old_uploaded_rows(path: Path, sample_ids: list[str]) -> tuple[list[str], dict[str, list]]:
    """What a table upload's download did before: the file loaded (for its ids in row order), read
    whole again as text, and {sample id: its values} of every sample."""
    import pandas as pd

    from core.loaders import load_dataset

    loaded = load_dataset(path)
    frame = pd.read_csv(path, sep=",", dtype=str, keep_default_na=False)
    frame.columns = [str(column).strip() for column in frame.columns]
    features = [column for column in frame.columns if column not in ("label", "sample_id", "is_mislabeled")]
    values = frame[features].to_numpy(dtype=object).tolist()
    row_of = {file_id: row for row, file_id in enumerate(loaded.sample_ids)}
    file_ids = {sample_id: sample_id for sample_id in sample_ids}  # as the upload's sample rows give them
    return features, {sample_id: values[row_of[file_id]] for sample_id, file_id in file_ids.items()
                      if file_id in row_of}  # fmt: skip


def _peak_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def measure(directory: Path, task: str, whole: bool) -> dict:
    """In this process: the task on the version in `directory`; its peak memory growth."""
    import torch
    from torch import nn

    from core.dataset import AuditDataset
    from core.embeddings import Backbone, cache_key, compute_features
    from core.loaders import writers
    from core.loaders.tabular import uploaded_values
    from core.services.version_downloads import UploadedRows
    from core.services.version_samples import read_explicitly

    torch.set_num_threads(2)
    segments = json.loads((directory / "segments.json").read_text())
    kind = "table" if task in ("csv", "table-upload") else "images"
    if task == "table-upload":  # the upload's shard, as `samples_dataset` opens it
        x = read_explicitly(np.load(directory / "upload.npy", mmap_mode="r"))
        ids = [f"row-{i}" for i in range(len(x))]
    else:
        x = open_segments(directory, [Segment.from_json(s) for s in segments[kind]])
        ids = [f"sample-{i}" for i in range(len(x))]
    count = len(x)
    dataset = AuditDataset(
        name="bench", modality="tabular" if kind == "table" else "image", x=x, y=np.arange(count) % 10,
        class_names=[str(c) for c in range(10)], sample_ids=ids,
    )  # fmt: skip
    model = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 64)).eval()
    backbone = Backbone("stand-in", directory / "none", image_size=None, batch_size=256, device="cpu")
    if task == "embeddings":
        with torch.inference_mode():  # torch's own first-call allocations are not the pass's
            model(torch.zeros((backbone.batch_size, *x.shape[1:])))
    _reset_peak()
    before = _peak_kib()
    started = time.perf_counter()
    if task == "table-upload":
        pass  # the samples are read only where a row has no uploaded values: never, here
    elif whole:
        dataset.x = np.asarray(x)
    else:
        dataset.x = read_explicitly(x)
    written, digest = 0, hashlib.sha256()  # the table upload's bytes, the same both ways
    if task == "table-upload" and whole:
        names, rows = old_uploaded_rows(directory / "upload.csv", dataset.sample_ids)
        for chunk in writers.table_file(dataset, names, lambda index: rows.get(dataset.sample_ids[index])):
            written += len(chunk)
            digest.update(chunk)
    elif task == "table-upload":
        values = uploaded_values(directory / "upload.csv", "csv")
        with UploadedRows(values, np.arange(count, dtype=np.int64), directory, "upload.csv") as rows:
            for chunk in writers.table_file(dataset, values.feature_names, rows):
                written += len(chunk)
                digest.update(chunk)
    elif task == "npz":
        written = sum(len(chunk) for chunk in writers.npz_file(dataset))
    elif task == "csv":
        names = [f"f{i}" for i in range(x.shape[1])]
        written = sum(len(chunk) for chunk in writers.table_file(dataset, names, lambda index: None))
    else:
        path = directory / f"features-{cache_key(dataset.x, backbone, 'none')}.npy"
        compute_features(model, dataset.x, backbone, path, None)
        written = path.stat().st_size
        path.unlink()
    seconds = time.perf_counter() - started
    return {"growth_mib": (_peak_kib() - before) / 1024, "seconds": seconds, "data_mib": x.nbytes / 2**20,
            "written_mib": written / 2**20, "sha256": digest.hexdigest()}  # fmt: skip


def run(sizes: list[int], side: int, features: int, tasks: list[str]) -> None:
    print("| samples | work | samples' size (MiB) | peak growth, streamed (MiB) | peak growth, whole first (MiB) "
          "| seconds streamed / whole |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for size in sizes:
        with tempfile.TemporaryDirectory(prefix="download-memory-") as scratch:
            directory = Path(scratch)
            write_version(directory, size, side, features)
            file_mib = (directory / "upload.csv").stat().st_size / 2**20
            for task in tasks:
                streamed, whole = (_in_child(directory, task, whole) for whole in (False, True))
                if task == "table-upload" and streamed["sha256"] != whole["sha256"]:
                    raise RuntimeError(f"the streamed download of the table upload differs from the old one at {size}")
                work = WORK.get(task, task) + (f" ({file_mib:.0f} MiB file)" if task == "table-upload" else "")
                print(
                    f"| {size:,} | {work} | {streamed['data_mib']:.0f} | {streamed['growth_mib']:.0f} "
                    f"| {whole['growth_mib']:.0f} | {streamed['seconds']:.1f} / {whole['seconds']:.1f} |",
                    flush=True,
                )


def _in_child(directory: Path, task: str, whole: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.download_memory", "--child", str(directory), task]
    done = subprocess.run(command + (["--whole"] if whole else []), capture_output=True, text=True, check=False,
                          cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{task} failed: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50000,200000")
    parser.add_argument("--image-side", type=int, default=32)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--child", nargs=2, metavar=("DIR", "TASK"), help=argparse.SUPPRESS)
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1], args.whole)))
        return
    tasks = args.tasks.split(",")
    if unknown := set(tasks) - set(TASKS):
        parser.error(f"unknown task(s): {', '.join(sorted(unknown))}")
    run([int(size) for size in args.sizes.split(",")], args.image_side, args.features, tasks)


if __name__ == "__main__":
    main()
