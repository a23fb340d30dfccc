"""Training throughput: plain training vs LiLAW with dynamics capture, side by side in one run.

    python -m benchmarks.overhead [--samples 10000] [--epochs 2] [--batch-size 128] [--repeats 3]

Same model, batch size and data for every variant; the variants are interleaved and repeated
and the median taken, so drift of a shared machine hits them alike. Target: LiLAW with
dynamics capture at >= 0.75x the images/s of plain training.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from core.engine import Trainer, TrainConfig
from core.lilaw import LilawConfig
from core.loaders import load_dataset

VARIANTS = {
    "plain (no dynamics)": TrainConfig(weighting="none", record_dynamics=False),
    "plain + dynamics capture": TrainConfig(weighting="none"),
    "LiLAW + dynamics, meta batch 32": TrainConfig(weighting="lilaw", lilaw=LilawConfig(meta_batch_size=32, warmup_epochs=0)),
    "LiLAW + dynamics, meta batch 128": TrainConfig(weighting="lilaw", lilaw=LilawConfig(meta_batch_size=128, warmup_epochs=0)),
}


def images_per_second(dataset, config: TrainConfig) -> float:
    trainer = Trainer(dataset, config)
    started = time.perf_counter()
    result = trainer.fit()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    del result
    return config.epochs * len(trainer.train_index) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, limit=args.samples)
    common = dict(epochs=args.epochs, batch_size=args.batch_size, model=args.model, image_size=args.image_size,
                  device=args.device, val_fraction=0.1)
    # Warm-up run so that one-time costs (allocator, kernels, thread pools) hit no variant.
    images_per_second(dataset, replace(VARIANTS["plain (no dynamics)"], **{**common, "epochs": 1}))
    samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):
        for name, variant in VARIANTS.items():
            samples[name].append(images_per_second(dataset, replace(variant, **common)))

    base = statistics.median(samples["plain (no dynamics)"])
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"\n{args.dataset}, {len(dataset)} samples, batch {args.batch_size}, {args.epochs} epochs x {args.repeats} "
          f"repeats, model {args.model or 'default'}, device {device}, torch threads {torch.get_num_threads()}\n")
    print(f"| variant | images/s (median) | vs plain |")
    print(f"|---|---:|---:|")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
