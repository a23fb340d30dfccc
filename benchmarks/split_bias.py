"""Split bias: does the meta-validation split crowd the top of the ranking, and which fix removes it?

    python -m benchmarks.split_bias [--cases fmnist-uniform30,fmnist-asym20,fmnist-instance3,ecg-uniform2]
                                    [--seeds 0,1] [--samples 5000] [--epochs 4] [--ecg-epochs 8]
                                    [--batch-size 128] [--ecg-dir DIR] [--out FILE.json]

LiLAW's validation samples are never trained on and are scored out of sample at every epoch's
end, so with a fixed split they get lower margins than trained samples of the same label quality.
For every case and seed this draws the noise once and trains LiLAW twice on the same labels: with
today's fixed split (`val_split="fixed"`) and with the rotating one (`val_split="rotate"`). The
per-split calibration (`split_calibration=True`) changes no training, only the scores after it,
so it is applied to both runs' scores here exactly as `core.audit.run_audit` applies it:

    fixed        today's behaviour
    calibrated   (a) fixed split, scores mapped to their quantile within their split group
    rotating     (b) rotating split
    rot+cal      (a)+(b)

Reported for the default score (aum of the LiLAW run): AUROC, AUPRC (mislabeled positive),
precision@100 and precision@#flips, and the share of "val" samples (the last epoch's validation
split, as the service shows it) in the top 100 and the top #flips, against their share among the
true flips (about 10% for a random split). Means ± std over the seeds; markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.detection import load
from core.audit import AuditConfig, NoisyLabels, prepare_dataset, run_audit
from core.dynamics import SPLIT_VAL
from core.metrics import detection_metrics
from core.scores import calibrate_within_groups, rank_scores, split_groups

CASES = {
    "fmnist-uniform30": ("fashion-mnist", "uniform:0.3"),
    "fmnist-asym20": ("fashion-mnist", "asymmetric:0.2"),
    "fmnist-instance3": ("fashion-mnist", "instance:0.03"),
    "ecg-uniform2": ("ecg5000", "uniform:0.02"),
}
VARIANTS = ("fixed", "calibrated", "rotating", "rot+cal")
COLUMNS = ("auroc", "auprc", "p@100", "p@flips", "val top100", "val top flips", "val flips")
def measure(score: np.ndarray, split: np.ndarray, flags: np.ndarray) -> dict:
    order = np.argsort(rank_scores(score), kind="stable")
    n_flips = int(flags.sum())
    val = split == SPLIT_VAL
    metrics = detection_metrics(score, flags, ks=(100,))
    return {
        "auroc": metrics["auroc"], "auprc": metrics["auprc_mislabeled"],
        "p@100": metrics["precision_at_k"][100], "p@flips": metrics["precision_at_noise_count"],
        "val top100": float(val[order[:100]].mean()), "val top flips": float(val[order[:n_flips]].mean()),
        "val flips": float(val[flags].mean()),
    }


def run_seed(case: str, seed: int, args) -> dict:
    dataset_name, noise = CASES[case]
    clean = load(dataset_name, args)
    epochs = args.ecg_epochs if dataset_name == "ecg5000" else args.epochs
    base = AuditConfig(epochs=epochs, batch_size=args.batch_size, inject_noise=noise, seed=seed,
                       val_split="fixed", split_calibration=False)
    noisy = prepare_dataset(clean, base)
    drawn = NoisyLabels(noisy.y, noisy.is_mislabeled, noisy.true_labels)
    flags = drawn.is_mislabeled
    out, seconds = {}, {}
    for val_split, (plain, calibrated) in (("fixed", ("fixed", "calibrated")), ("rotate", ("rotating", "rot+cal"))):
        started = time.perf_counter()
        audit = run_audit(clean, replace(base, val_split=val_split), noisy_labels=drawn)
        seconds[val_split] = time.perf_counter() - started
        score = audit.scores["aum"]
        out[plain] = measure(score, audit.split, flags)
        groups = split_groups(audit.history)
        out[calibrated] = measure(calibrate_within_groups({"aum": score}, groups)["aum"], audit.split, flags)
    return {"seed": seed, "num_flipped": int(flags.sum()), "samples": len(noisy), "seconds": seconds, "variants": out}


def mean_std(values: list[float]) -> str:
    values = np.asarray(values, dtype=np.float64)
    return f"{values.mean():.3f}" + (f" ± {values.std():.3f}" if len(values) > 1 else "")


def print_case(case: str, runs: list[dict]) -> None:
    dataset_name, noise = CASES[case]
    flips = ", ".join(str(r["num_flipped"]) for r in runs)
    print(f"\n### {case} ({dataset_name}, {noise}; {runs[0]['samples']} samples, flips per seed: {flips})\n")
    print("| variant | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---|" * len(COLUMNS))
    for variant in VARIANTS:
        cells = [mean_std([r["variants"][variant][c] for r in runs]) for c in COLUMNS]
        print(f"| {variant} | " + " | ".join(cells) + " |")


def print_overall(results: dict) -> None:
    print("\n### All cases (mean over cases and seeds)\n")
    print("| variant | auroc | auprc | val top100 − val flips | val top flips − val flips |")
    print("|---|---|---|---|---|")
    for variant in VARIANTS:
        rows = [r["variants"][variant] for runs in results.values() for r in runs]
        cells = [np.mean([m["auroc"] for m in rows]), np.mean([m["auprc"] for m in rows]),
                 np.mean([m["val top100"] - m["val flips"] for m in rows]),
                 np.mean([m["val top flips"] - m["val flips"] for m in rows])]
        print(f"| {variant} | " + " | ".join(f"{c:+.3f}" if i >= 2 else f"{c:.3f}" for i, c in enumerate(cells)) + " |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--samples", type=int, default=5000, help="Fashion-MNIST images")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--ecg-epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--ecg-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ecg5000"))
    parser.add_argument("--out", default=None, help="also write the raw results as JSON")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}: use some of {sorted(CASES)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"## Split bias: default score aum, {args.epochs} epochs (ECG {args.ecg_epochs}), seeds {seeds}")
    results = {}
    for case in cases:
        results[case] = [run_seed(case, seed, args) for seed in seeds]
        print_case(case, results[case])
    print_overall(results)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
