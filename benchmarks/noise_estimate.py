"""The label-error estimate (`core.noise_estimate`, GET /jobs/{id}/noise-estimate) against
injected noise: estimated vs true error count, overall and per given label.

    python -m benchmarks.noise_estimate [--cases digits-uniform10,...] [--seeds 0,1]
        [--fashion-seeds 0] [--fashion-samples 3000] [--epochs 8] [--fashion-epochs 2]
        [--cross-fit 2] [--batch-size 128] [--out FILE.json]

Every case draws the noise with `core.noise` (uniform: to any other class; asymmetric: c → c+1),
runs one LiLAW audit as the service does (default model, `run_audit`) with K-fold cross-fitting,
and estimates the errors twice, as the service would for that audit: from the audit's final
class probabilities (what a job without cross-fitting stores) and from the out-of-sample ones
(a job with `cross_fit` K). Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from core.audit import AuditConfig, run_audit
from core.loaders import load_dataset
from core.noise_estimate import estimate_noise, with_reviews

CASES = {
    "digits-uniform10": ("digits", "uniform:0.1"),
    "digits-uniform30": ("digits", "uniform:0.3"),
    "digits-asym10": ("digits", "asymmetric:0.1"),
    "digits-asym30": ("digits", "asymmetric:0.3"),
    "fmnist-uniform10": ("fashion-mnist", "uniform:0.1"),
    "fmnist-uniform30": ("fashion-mnist", "uniform:0.3"),
    "fmnist-asym10": ("fashion-mnist", "asymmetric:0.1"),
    "fmnist-asym30": ("fashion-mnist", "asymmetric:0.3"),
}
SOURCES = ("final", "out_of_sample")


def run_case(case: str, seed: int, args, datasets: dict) -> dict:
    name, noise = CASES[case]
    fashion = name == "fashion-mnist"
    if name not in datasets:
        datasets[name] = load_dataset(name, limit=args.fashion_samples if fashion else None)
    config = AuditConfig(
        epochs=args.fashion_epochs if fashion else args.epochs, batch_size=args.batch_size, inject_noise=noise,
        seed=seed, cross_fit=args.cross_fit,
    )
    started = time.perf_counter()
    audit = run_audit(datasets[name], config)
    seconds = time.perf_counter() - started
    given, flags = audit.dataset.y, audit.dataset.is_mislabeled
    classes = audit.dataset.num_classes
    out = {
        "case": case, "seed": seed, "samples": len(given), "seconds": round(seconds, 1),
        "true": int(flags.sum()), "true_by_class": np.bincount(given[flags], minlength=classes).tolist(),
    }
    for source, probs in (("final", audit.final_probs), ("out_of_sample", audit.oos_probs)):
        noise_counts = with_reviews(estimate_noise(probs, given, classes), {})
        out[source] = round(noise_counts.errors, 1)
        out[f"{source}_by_class"] = noise_counts.errors_by_class.round(1).tolist()
    return out


def overall_table(rows: list[dict], folds: int) -> str:
    lines = [
        f"| case | seed | samples | true errors | estimate, final probabilities | ratio | estimate, {folds}-fold out of sample | ratio | audit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['seed']} | {row['samples']} | {row['true']} | {row['final']:.0f} | "
            f"{row['final'] / row['true']:.2f} | {row['out_of_sample']:.0f} | {row['out_of_sample'] / row['true']:.2f} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines)


def per_class_table(rows: list[dict]) -> str:
    """Per case and source, every given label's estimate / true count (means over the seeds)."""
    classes = len(rows[0]["true_by_class"])
    lines = [
        "| case | source | " + " | ".join(f"class {c}" for c in range(classes)) + " | mean abs. error per class |",
        "|---|---|" + "---|" * classes + "---|",
    ]
    for case in dict.fromkeys(row["case"] for row in rows):
        of_case = [row for row in rows if row["case"] == case]
        true = np.mean([row["true_by_class"] for row in of_case], axis=0)
        for source in SOURCES:
            estimated = np.mean([row[f"{source}_by_class"] for row in of_case], axis=0)
            cells = " | ".join(f"{e:.0f} / {t:.0f}" for e, t in zip(estimated, true))
            lines.append(f"| {case} | {source} | {cells} | {np.abs(estimated - true).mean():.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--seeds", default="0,1", help="seeds of the digits cases")
    parser.add_argument("--fashion-seeds", default="0", help="seeds of the Fashion-MNIST cases")
    parser.add_argument("--fashion-samples", type=int, default=3000, help="a stratified subset of the training split")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the digits audits")
    parser.add_argument("--fashion-epochs", type=int, default=2)
    parser.add_argument("--cross-fit", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    datasets: dict = {}
    rows = []
    for case in args.cases.split(","):
        seeds = args.fashion_seeds if CASES[case][0] == "fashion-mnist" else args.seeds
        for seed in (int(s) for s in seeds.split(",")):
            rows.append(run_case(case, seed, args, datasets))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress, one row per audit
    print(f"## Label-error estimate against injected noise ({time.perf_counter() - started:.0f} s in all)\n")
    print(overall_table(rows, args.cross_fit))
    print("\nPer given label, estimate / true errors (means over the seeds):\n")
    print(per_class_table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
