"""Mislabel detection: every score of one LiLAW run vs confident learning on 5-fold probabilities.

    python -m benchmarks.detection [--cases fmnist-uniform50,fmnist-asym40,fmnist-instance30,ecg-uniform30]
                                    [--samples 20000] [--epochs 10] [--folds 5] [--out docs/detection.json]

For each case: inject seeded noise, run one LiLAW audit (all dynamics scores come from that one
run), then train the same model for the same epochs on K folds with plain loss and score the
out-of-sample probabilities with cleanlab's self-confidence. Prints one markdown table per case
(AUROC, AUPRC with mislabeled as positive, precision at k = number of flips) and the wall times.

Fashion-MNIST comes from Debian's dataset-fashion-mnist package; ECG5000 from the repository's
shared data folder when present (--ecg-dir).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.audit import AuditConfig, cross_fit_probabilities, prepare_dataset, run_audit
from core.dataset import AuditDataset
from core.loaders import load_dataset
from core.metrics import detection_metrics
from core.scores import compute_scores, epoch_scores

CASES = {
    "fmnist-uniform50": ("fashion-mnist", "uniform:0.5"),
    "fmnist-asym40": ("fashion-mnist", "asymmetric:0.4"),
    "fmnist-instance30": ("fashion-mnist", "instance:0.3"),
    "ecg-uniform30": ("ecg5000", "uniform:0.3"),
}
# Aggregation windows tried against the default (every epoch): after the warm-up epoch only.
WINDOWS = {"w_alpha epochs 2-last": ("w_alpha", 2), "aum epochs 2-last": ("aum", 2)}
# Whole extra runs, reported by their default score: does LiLAW training, or a larger meta
# batch, change detection quality?
RUN_VARIANTS = {"plain training (weighting none)": {"weighting": "none"},
                "LiLAW, meta batch 128": {"meta_batch_size": 128}}


def load_ecg5000(ecg_dir: Path) -> AuditDataset:
    rows = np.concatenate([np.loadtxt(ecg_dir / name, delimiter="\t", dtype=np.float32)
                           for name in ("ECG5000_TRAIN_from_rda.tsv", "ECG5000_TEST_from_rda.tsv")])
    labels = rows[:, 0].astype(np.int64) - 1
    return AuditDataset(
        name="ecg5000", modality="timeseries", x=rows[:, None, 1:].copy(), y=labels,
        class_names=[str(c) for c in range(1, 6)], sample_ids=[f"ecg-{i}" for i in range(len(rows))],
    )


def load(name: str, args) -> AuditDataset:
    if name == "ecg5000":
        return load_ecg5000(Path(args.ecg_dir))
    return load_dataset(name, limit=args.samples)


def evaluate(scores: dict[str, np.ndarray], flags: np.ndarray) -> dict[str, dict]:
    return {name: detection_metrics(score, flags) for name, score in scores.items()}


def run_case(case: str, args) -> dict:
    dataset_name, noise = CASES[case]
    epochs = args.ecg_epochs if dataset_name == "ecg5000" else args.epochs
    config = AuditConfig(epochs=epochs, batch_size=args.batch_size, inject_noise=noise, seed=args.seed)
    dataset = prepare_dataset(load(dataset_name, args), config)
    flags = dataset.is_mislabeled
    clean_config = replace(config, inject_noise=None)  # noise already applied above

    started = time.perf_counter()
    audit = run_audit(dataset, clean_config)
    lilaw_seconds = time.perf_counter() - started

    started = time.perf_counter()
    oos = cross_fit_probabilities(dataset, clean_config, args.folds)
    cross_fit_seconds = time.perf_counter() - started

    scores = dict(audit.scores)
    for label, (name, first) in WINDOWS.items():
        scores[label] = compute_scores(audit.history, first_epoch=first)[name]
    for epoch in (3, epochs):
        scores[f"w_alpha epoch {epoch}"] = epoch_scores(audit.history, epoch)["w_alpha"]
    scores[f"cleanlab self-confidence ({args.folds}-fold)"] = compute_scores(
        audit.history, oos_probs=oos, labels=dataset.y)["cl_self_confidence"]
    for label, changes in RUN_VARIANTS.items():
        lilaw = replace(clean_config.lilaw, meta_batch_size=changes.get("meta_batch_size", clean_config.lilaw.meta_batch_size))
        variant = run_audit(dataset, replace(clean_config, weighting=changes.get("weighting", "lilaw"), lilaw=lilaw))
        scores[f"{variant.default_score}, {label}"] = variant.default_scores
    return {
        "case": case, "samples": len(dataset), "noise": noise, "num_flipped": int(flags.sum()), "epochs": epochs,
        "model": audit.model_name, "default_score": audit.default_score,
        "lilaw_seconds": lilaw_seconds, "cross_fit_seconds": cross_fit_seconds,
        "test_top1": (audit.test_metrics or {}).get("top1"),
        "metrics": evaluate(scores, flags),
    }


def print_case(result: dict) -> None:
    print(f"\n### {result['case']}: {result['samples']} samples, {result['noise']} ({result['num_flipped']} flipped), "
          f"{result['model']}, {result['epochs']} epochs")
    print(f"LiLAW run (all dynamics scores): {result['lilaw_seconds']:.0f} s; "
          f"cleanlab cross-fitting: {result['cross_fit_seconds']:.0f} s "
          f"({result['lilaw_seconds'] / result['cross_fit_seconds']:.2f}x the compute)\n")
    print("| score | AUROC | AUPRC (mislabeled +) | precision@#flips |")
    print("|---|---:|---:|---:|")
    ordered = sorted(result["metrics"].items(), key=lambda item: -(item[1]["auroc"] or 0))
    for name, metrics in ordered:
        marker = " (default)" if name == result["default_score"] else ""
        print(f"| {name}{marker} | {metrics['auroc']:.4f} | {metrics['auprc_mislabeled']:.4f} | "
              f"{metrics['precision_at_noise_count']:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--samples", type=int, default=20_000, help="Fashion-MNIST subset size")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--ecg-epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ecg-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ecg5000"))
    parser.add_argument("--out", type=Path, help="also write the raw results as JSON")
    args = parser.parse_args()

    results = []
    for case in args.cases.split(","):
        results.append(run_case(case, args))
        print_case(results[-1])
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
