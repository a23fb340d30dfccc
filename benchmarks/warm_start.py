"""Warm start vs full re-audit: a dataset grows, is it enough to re-audit from the previous model?

    python -m benchmarks.warm_start [--samples 10000] [--epochs 10] [--warm-epochs 1,2,3] [--noise uniform:0.3]
                                    [--base-fraction 0.8] [--mitigation-epochs 2] [--seed 0] [--out FILE]

Fashion-MNIST (Debian's dataset-fashion-mnist package), a stratified subset of `--samples`. Noise
is injected once, seeded, on all samples, so the base and the grown dataset share their labels;
the base is the first `--base-fraction` of the samples, the grown dataset all of them.

1. Audit the base for `--epochs` epochs: its trained weights and its final α, β, δ.
2. Full re-audit of the grown dataset: `--epochs` epochs from random init (cold).
3. Warm-started re-audits of the grown dataset from (1), k epochs for each k in `--warm-epochs`,
   and, for reference, cold re-audits of the same k epochs.
4. Two cheap mitigations of a warm start at `--mitigation-epochs` epochs: the classifier head
   reset to its fresh init, and a 3× learning rate.

Prints one markdown table: epochs, wall seconds of the re-audit (run_audit: training, scoring and
the test-split predictions; training alone in parentheses), its wall time against the full
re-audit, test accuracy (the 10,000 Fashion-MNIST test images), and AUROC / AUPRC (mislabeled = positive) of
the default score on all samples, on the old (base) samples and on the new ones. Same seed
everywhere.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from core.audit import AuditConfig, AuditResult, prepare_dataset, run_audit
from core.checkpoints import WarmStart
from core.loaders import load_dataset
from core.metrics import detection_metrics
from core.models import build_model


def warm_start_of(result: AuditResult) -> WarmStart:
    """The trained weights and final α, β, δ of an audit (trajectory columns: step, epoch, α, β, δ)."""
    state = {name: tensor.detach().cpu().clone() for name, tensor in result.model.state_dict().items()}
    return WarmStart(model_state=state, lilaw_values=tuple(float(v) for v in result.trajectory[-1, 2:]))


def with_fresh_head(warm: WarmStart, result: AuditResult, seed: int) -> WarmStart:
    """The warm start with the classifier head (`head.*`, the built-in CNNs) at its fresh, seeded init."""
    dataset = result.dataset
    torch.manual_seed(seed)
    fresh = build_model(result.model_name, dataset.modality, dataset.input_shape, dataset.num_classes).state_dict()
    state = {name: fresh[name] if name.startswith("head.") else tensor for name, tensor in warm.model_state.items()}
    return WarmStart(model_state=state, lilaw_values=warm.lilaw_values)


def measure(label: str, epochs: int, seconds: float, result: AuditResult, flags: np.ndarray, old: np.ndarray) -> dict:
    score = result.default_scores
    row = {"variant": label, "epochs": epochs, "seconds": seconds, "train_seconds": result.timings["train_seconds"],
           "test_top1": (result.test_metrics or {}).get("top1")}
    for part, mask in (("all", np.ones_like(old)), ("old", old), ("new", ~old)):
        metrics = detection_metrics(score[mask], flags[mask])
        row[f"auroc_{part}"], row[f"auprc_{part}"] = metrics["auroc"], metrics["auprc_mislabeled"]
    return row


def run(args) -> tuple[dict, list[dict]]:
    config = AuditConfig(epochs=args.epochs, batch_size=args.batch_size, inject_noise=args.noise, seed=args.seed)
    dataset = prepare_dataset(load_dataset("fashion-mnist", limit=args.samples), config)
    config = replace(config, inject_noise=None)  # the noise is in `dataset` already: never inject it twice
    flags = dataset.is_mislabeled
    n_base = int(round(args.base_fraction * len(dataset)))
    old = np.arange(len(dataset)) < n_base
    base = dataset.subset(np.arange(n_base))

    started = time.perf_counter()
    base_result = run_audit(base, config)
    base_seconds = time.perf_counter() - started
    warm = warm_start_of(base_result)
    setup = {"samples": len(dataset), "base_samples": n_base, "new_samples": len(dataset) - n_base,
             "noise": args.noise, "num_flipped": int(flags.sum()), "model": base_result.model_name,
             "epochs": args.epochs, "base_seconds": base_seconds, "base_lilaw_values": warm.lilaw_values,
             "base_auroc_old": detection_metrics(base_result.default_scores, base.is_mislabeled)["auroc"],
             "base_auprc_old": detection_metrics(base_result.default_scores, base.is_mislabeled)["auprc_mislabeled"]}

    def audit(label: str, epochs: int, start: WarmStart | None, **changes) -> dict:
        started = time.perf_counter()
        result = run_audit(dataset, replace(config, epochs=epochs, **changes), warm_start=start)
        return measure(label, epochs, time.perf_counter() - started, result, flags, old)

    rows = [audit("full re-audit (cold)", args.epochs, None)]
    for k in args.warm_epochs:
        rows.append(audit("warm start", k, warm))
    for k in args.warm_epochs:
        rows.append(audit("cold, same epochs", k, None))
    k = args.mitigation_epochs
    if k:
        rows.append(audit("warm start, head reset", k, with_fresh_head(warm, base_result, args.seed)))
        rows.append(audit(f"warm start, lr {3 * config.lr:g}", k, warm, lr=3 * config.lr))
    for row in rows:
        row["time_ratio"] = row["seconds"] / rows[0]["seconds"]
    return setup, rows


def print_table(setup: dict, rows: list[dict]) -> None:
    alpha, beta, delta = setup["base_lilaw_values"]
    print(f"\nFashion-MNIST, {setup['samples']} samples ({setup['base_samples']} old + {setup['new_samples']} new), "
          f"{setup['noise']} ({setup['num_flipped']} flipped), {setup['model']}")
    print(f"Base audit: {setup['epochs']} epochs, {setup['base_seconds']:.0f} s, final α β δ = "
          f"{alpha:.3f} {beta:.3f} {delta:.3f}, AUROC / AUPRC on its samples {setup['base_auroc_old']:.4f} / "
          f"{setup['base_auprc_old']:.4f}\n")
    print("| re-audit of the grown dataset | epochs | wall s (training) | time vs full | test top-1 | AUROC all "
          "| AUPRC all | AUROC old | AUPRC old | AUROC new | AUPRC new |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        top1 = f"{row['test_top1']:.4f}" if row["test_top1"] is not None else "–"
        print(f"| {row['variant']} | {row['epochs']} | {row['seconds']:.1f} ({row['train_seconds']:.1f}) | "
              f"{row['time_ratio']:.2f}× | {top1} | "
              + " | ".join(f"{row[f'{metric}_{part}']:.4f}" for part in ("all", "old", "new") for metric in ("auroc", "auprc"))
              + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=10_000, help="Fashion-MNIST subset size")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of the base audit and of the full re-audit")
    parser.add_argument("--warm-epochs", type=lambda text: [int(k) for k in text.split(",")], default=[1, 2, 3])
    parser.add_argument("--mitigation-epochs", type=int, default=2, help="0: skip the mitigation rows")
    parser.add_argument("--noise", default="uniform:0.3")
    parser.add_argument("--base-fraction", type=float, default=0.8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the raw results as JSON")
    args = parser.parse_args()

    setup, rows = run(args)
    print_table(setup, rows)
    if args.out:
        args.out.write_text(json.dumps({"setup": setup, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
