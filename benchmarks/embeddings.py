"""Embeddings mode vs full training: time and mislabel detection on the same noisy data.

    OMP_NUM_THREADS=1 python -m benchmarks.embeddings [--samples 5000] [--epochs 2] [--noise uniform:0.3]

The audited data: a stratified subset of Fashion-MNIST's train split with injected noise.
Variants, each a full `run_audit` (LiLAW, every score):

- full training: the small CNN trained on the images (the default model of 28 px images);
- embeddings, random backbone: timm's `test_resnet`, randomly initialised, weights saved to a file;
- embeddings, in-domain backbone: the same network first trained (plain loss, clean labels) on a
  subset of Fashion-MNIST's *test* split, disjoint from the audited samples, then frozen. A
  stand-in for pretrained weights, which this machine has none of: it is optimistic (same
  domain, clean labels) where ImageNet weights on product photos would be less so.

For embeddings mode the time is split into computing the features (first run) and the audit of
the head; a second run with the same backbone reads the cached features. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import timm
import torch

from core.audit import AuditConfig, run_audit
from core.engine import Trainer, TrainConfig
from core.loaders import load_dataset

BACKBONE = "test_resnet"
IMAGE_SIZE = 32


def random_backbone(path: Path) -> Path:
    torch.manual_seed(0)
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), path)
    return path


def in_domain_backbone(path: Path, samples: int, epochs: int) -> tuple[Path, float]:
    """`BACKBONE` trained on the clean test split (as RGB, the layout the backbone embeds), saved."""
    test = load_dataset("fashion-mnist").test
    index = np.random.default_rng(0).choice(len(test), size=min(samples, len(test)), replace=False)
    rgb = replace(test.subset(index), x=np.repeat(test.x[index], 3, axis=1))
    started = time.perf_counter()
    config = TrainConfig(model=BACKBONE, epochs=epochs, batch_size=128, weighting="none", val_fraction=0.0,
                         image_size=IMAGE_SIZE, record_dynamics=False)  # fmt: skip
    trainer = Trainer(rgb, config)
    trainer.fit()
    torch.save(trainer.model.state_dict(), path)
    return path, time.perf_counter() - started


def audit_row(name: str, dataset, config: AuditConfig, cache: Path) -> dict:
    started = time.perf_counter()
    result = run_audit(dataset, config, embeddings_dir=cache)
    total = time.perf_counter() - started
    embed = result.timings.get("embeddings_seconds", 0.0)
    metrics = result.detection["aggregate"][result.default_score]
    return {"variant": name, "embed_s": embed, "audit_s": total - embed, "total_s": total,
            "auroc": metrics["auroc"], "auprc": metrics["auprc_mislabeled"],
            "cached": result.dataset.meta.get("embeddings", {}).get("cached", False)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--noise", default="uniform:0.3")
    parser.add_argument("--backbone-samples", type=int, default=5000, help="test-split images the in-domain backbone trains on")
    parser.add_argument("--backbone-epochs", type=int, default=2)
    args = parser.parse_args()

    dataset = load_dataset("fashion-mnist", limit=args.samples)
    dataset = replace(dataset, test=None)  # the test split trains the in-domain backbone
    common = {"epochs": args.epochs, "batch_size": 128, "inject_noise": args.noise, "device": "cpu"}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows.append(audit_row("full training (small-cnn, 28 px)", dataset, AuditConfig(**common), tmp / "cache"))
        random_weights = random_backbone(tmp / "random.pth")
        trained_weights, pretrain_s = in_domain_backbone(tmp / "in-domain.pth", args.backbone_samples, args.backbone_epochs)
        for label, weights in (("random", random_weights), ("in-domain", trained_weights)):
            for head in ("linear", "mlp"):
                config = AuditConfig(**common, embeddings_backbone=BACKBONE, embeddings_weights=str(weights),
                                     embeddings_head=head, image_size=IMAGE_SIZE)  # fmt: skip
                row = audit_row(f"embeddings, {label} {BACKBONE}, {head} head", dataset, config, tmp / "cache")
                row["variant"] += " (features cached)" if row["cached"] else ""
                rows.append(row)
    print(f"Fashion-MNIST train subset of {len(dataset)}, {args.noise} noise, {args.epochs} epochs, default score aum; "
          f"in-domain backbone pre-trained in {pretrain_s:.1f} s ({args.backbone_samples} test images, "
          f"{args.backbone_epochs} epochs)\n")  # fmt: skip
    print("| variant | features (s) | audit (s) | total (s) | AUROC | AUPRC (mislabeled) |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['variant']} | {row['embed_s']:.1f} | {row['audit_s']:.1f} | {row['total_s']:.1f} | "
              f"{row['auroc']:.3f} | {row['auprc']:.3f} |")  # fmt: skip


if __name__ == "__main__":
    main()
