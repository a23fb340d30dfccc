"""The review loop, measured: a team reviews the top suspects of an audit, its verdicts go back
into the next re-audit as the trusted set, and the next round reviews the re-audit's top
unreviewed suspects.

    .venv/bin/python -m benchmarks.review_loop --out docs/review_loop.json

Setup: a stratified Fashion-MNIST subset (`--samples`, default 10,000; the test split is not
used), `--noise` injected once (default 3% instance-dependent), the default audit otherwise
(LiLAW, `aum`, split calibration). Round 1 reviews the top `--per-round` (200) suspects of a
first audit. The injected truth answers for the reviewers: a flipped sample is relabelled to its
true label, any other sample is kept. Rounds 2.. review the top unreviewed suspects of a
re-audit, made in one of three ways:

- ignore: the verdicts only remove the reviewed samples from the ranking. The re-audit trains
  as the first audit did (same labels, seed and split), so its ranking is the first audit's and
  the benchmark reuses it instead of training it again (CPU training here is deterministic).
- lilaw-trusted: every sample reviewed so far, with its reviewed label, is the trusted set
  (`run_audit(trusted=...)`): LiLAW's meta-validation split instead of the random 10%.
- fbr-trusted: the same trusted set as Feature-Based Reweighting's clean subset
  (`weighting="fbr"`), ranked by the run's default score; the table also gives what its
  `fbr_agreement` score would have put in the same round's top list.
- relabel: the re-audit trains on the corrected labels (what re-auditing a version made by
  `POST /datasets/{id}/versions/relabel` does), with the usual random meta-validation split.
- relabel-trusted: the corrected labels, and the reviewed samples as the trusted set too.

Per round: precision@k of the round's reviewed list (the share of real errors among them) and
the errors left unfound after the round.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.audit import AuditConfig, NoisyLabels, prepare_dataset, run_audit
from core.loaders import load_dataset

CONDITIONS = ("ignore", "lilaw-trusted", "fbr-trusted", "relabel", "relabel-trusted")
TRUSTED_CONDITIONS = ("lilaw-trusted", "fbr-trusted", "relabel-trusted")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def top_unreviewed(rank: np.ndarray, reviewed: np.ndarray, k: int) -> np.ndarray:
    """The `k` most suspicious samples (lowest rank) not reviewed yet."""
    order = np.argsort(rank, kind="stable")
    return order[~reviewed[order]][:k]


def top_by_score(score: np.ndarray, reviewed: np.ndarray, k: int) -> np.ndarray:
    """The `k` highest finite scores among the unreviewed samples."""
    values = np.where(np.isfinite(score) & ~reviewed, score, -np.inf)
    return np.argsort(-values, kind="stable")[:k]


def review(chosen: np.ndarray, noisy: NoisyLabels, trusted: dict[int, int]) -> int:
    """The truth's verdicts on `chosen`: kept with its label or relabelled to the true one, added
    to `trusted`; returns how many were errors."""
    for i in chosen.tolist():
        trusted[i] = int(noisy.true_labels[i])
    return int(noisy.is_mislabeled[chosen].sum())


def corrected(noisy: NoisyLabels, trusted: dict[int, int]) -> NoisyLabels:
    """The labels after the reviewers' relabels: each reviewed sample carries its verdict's label."""
    labels = noisy.labels.copy()
    reviewed = np.fromiter(trusted, dtype=np.int64, count=len(trusted))
    labels[reviewed] = np.fromiter(trusted.values(), dtype=np.int64, count=len(trusted))
    return NoisyLabels(labels, labels != noisy.true_labels, noisy.true_labels)


def run_loop(condition: str, first_rank: np.ndarray, noisy: NoisyLabels, dataset, config: AuditConfig,
             args) -> dict:
    flips = int(noisy.is_mislabeled.sum())
    reviewed = np.zeros(len(dataset), dtype=bool)
    trusted: dict[int, int] = {}
    rounds, found, rank = [], 0, first_rank
    for round_number in range(1, args.rounds + 1):
        entry: dict = {"round": round_number}
        if round_number > 1 and condition != "ignore":
            run_config = replace(config, weighting="fbr") if condition == "fbr-trusted" else config
            started = time.perf_counter()
            labels = corrected(noisy, trusted) if condition.startswith("relabel") else noisy
            verdicts = dict(trusted) if condition in TRUSTED_CONDITIONS else None
            result = run_audit(dataset, run_config, noisy_labels=labels, trusted=verdicts)
            entry["audit_seconds"] = round(time.perf_counter() - started, 1)
            rank = result.rank
            if "fbr_agreement" in result.scores or result.fbr is not None:
                agreement = result.scores.get("fbr_agreement", result.fbr_agreement_score)
                alt = top_by_score(agreement, reviewed, args.per_round)
                entry["fbr_agreement_precision"] = float(noisy.is_mislabeled[alt].mean())
            log(f"{condition} round {round_number}: re-audit {entry['audit_seconds']} s, trusted {len(trusted)}")
        chosen = top_unreviewed(rank, reviewed, args.per_round)
        errors = review(chosen, noisy, trusted)
        reviewed[chosen] = True
        found += errors
        entry.update(precision=errors / len(chosen), errors_found=errors, errors_left=flips - found,
                     trusted_before=int(reviewed.sum()) - len(chosen))
        rounds.append(entry)
        log(f"{condition} round {round_number}: precision@{args.per_round} {entry['precision']:.3f}, "
            f"errors left {entry['errors_left']}")
    return {"condition": condition, "rounds": rounds}


def table(output: dict) -> str:
    k = output["setup"]["per_round"]
    rounds = output["setup"]["rounds"]
    head = "| re-audits | " + " | ".join(f"round {r}: P@{k} / errors left" for r in range(1, rounds + 1)) + " |"
    lines = [head, "|---|" + "---:|" * rounds]
    for loop in output["loops"]:
        cells = [f"{r['precision']:.3f} / {r['errors_left']}" for r in loop["rounds"]]
        lines.append(f"| {loop['condition']} | " + " | ".join(cells) + " |")
    fbr = next((loop for loop in output["loops"] if loop["condition"] == "fbr-trusted"), None)
    if fbr is not None:
        cells = [f"{r['fbr_agreement_precision']:.3f}" if "fbr_agreement_precision" in r else "(first audit)"
                 for r in fbr["rounds"]]
        lines.append("| fbr-trusted runs ranked by `fbr_agreement` (P@k only) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--noise", default="instance:0.03")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    conditions = [name for name in args.conditions.split(",") if name]
    unknown = sorted(set(conditions) - set(CONDITIONS))
    if unknown:
        parser.error(f"unknown conditions {unknown}; use {', '.join(CONDITIONS)}")

    started = time.perf_counter()
    dataset = replace(load_dataset("fashion-mnist", limit=args.samples), test=None)
    config = AuditConfig(epochs=args.epochs, batch_size=args.batch_size, inject_noise=args.noise, seed=args.seed)
    drawn = prepare_dataset(dataset, config)
    noisy = NoisyLabels(drawn.y, drawn.is_mislabeled, drawn.true_labels)
    log(f"{len(dataset)} samples, {int(noisy.is_mislabeled.sum())} flips ({args.noise})")
    first_started = time.perf_counter()
    first = run_audit(dataset, config, noisy_labels=noisy)
    first_seconds = round(time.perf_counter() - first_started, 1)
    log(f"first audit: {first_seconds} s")
    loops = [run_loop(condition, first.rank, noisy, dataset, config, args) for condition in conditions]
    output = {
        "setup": {"dataset": "fashion-mnist", "samples": len(dataset), "noise": args.noise,
                  "flips": int(noisy.is_mislabeled.sum()), "epochs": args.epochs, "batch_size": args.batch_size,
                  "per_round": args.per_round, "rounds": args.rounds, "seed": args.seed,
                  "default_score": first.default_score, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "first_audit_seconds": first_seconds,
                  "total_seconds": round(time.perf_counter() - started, 1)},
        "loops": loops,
    }
    print(table(output))
    if args.out:
        args.out.write_text(json.dumps(output, indent=2) + "\n")


if __name__ == "__main__":
    main()
