"""Mislabel detection at low noise: the default score of one LiLAW run against the strongest
baseline (5-fold confident learning, AUM of a plain run), over several seeds.

    python -m benchmarks.detection [--cases fmnist-instance1,fmnist-instance3,fmnist-asym2,ecg-uniform2 | all]
                                    [--seeds 0,1,2] [--samples N] [--epochs 10] [--ecg-epochs 15]
                                    [--cl-epochs E] [--ecg-cl-epochs E] [--folds 5 | 0] [--batch-size 128]
                                    [--plain-val-fraction 0] [--variants windows,epochs,meta128 | all]
                                    [--ecg-dir DIR] [--out docs/detection.json]
    python -m benchmarks.detection --cases ecg-uniform2 --tune-cl-epochs 2,4,6,10 [--seeds 0,1]

For each case and seed: draw the noise once (seeded by the seed), then on those same noisy labels
run one LiLAW audit (every dynamics score comes from it; its default score, `aum`, is the
product's number), one plain run (`weighting="none"`, no validation split held out by default)
for its AUM, and K-fold cross-fitting (plain loss, `--cl-epochs` epochs per fold) scored with
cleanlab's self-confidence and normalized margin. Prints, per case, a markdown table of every
score (P@50, P@100, P@#flips, AUPRC with mislabeled as positive, AUROC; mean ± std over seeds),
a summary of the default against the strongest baseline on each metric with the compute ratio
(LiLAW run time / K-fold time), and the share of the LiLAW run's val split in the default's top
k against its share among the true flips. `--tune-cl-epochs` instead reports, on the first
case, confident learning's detection per fold-epoch count, to pick `--cl-epochs`.

Cases: fmnist-instance1, fmnist-instance3, fmnist-asym2 (Fashion-MNIST, all 60,000 training
images unless --samples, 1% / 3% instance-dependent and 2% asymmetric noise), ecg-uniform2
(ECG5000, 2% uniform), and the earlier high-noise cases fmnist-uniform50, fmnist-asym40,
fmnist-instance30, ecg-uniform30 (`--cases all` runs all eight).

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

from benchmarks.detection_tables import (
    compact_metrics, mean_std, print_case, print_overall, print_tuning, print_variant_comparison, summarize_case,
)
from core.audit import AuditConfig, NoisyLabels, cross_fit_probabilities, prepare_dataset, run_audit
from core.dataset import AuditDataset
from core.dynamics import SPLIT_VAL
from core.loaders import load_dataset
from core.metrics import detection_metrics
from core.scores import calibrate_within_groups, compute_scores, epoch_scores, split_groups

LOW_NOISE_CASES = {
    "fmnist-instance1": ("fashion-mnist", "instance:0.01"),
    "fmnist-instance3": ("fashion-mnist", "instance:0.03"),
    "fmnist-asym2": ("fashion-mnist", "asymmetric:0.02"),
    "ecg-uniform2": ("ecg5000", "uniform:0.02"),
}
HIGH_NOISE_CASES = {
    "fmnist-uniform50": ("fashion-mnist", "uniform:0.5"),
    "fmnist-asym40": ("fashion-mnist", "asymmetric:0.4"),
    "fmnist-instance30": ("fashion-mnist", "instance:0.3"),
    "ecg-uniform30": ("ecg5000", "uniform:0.3"),
}
# Pair flips between the two: where LiLAW training starts to cost the ranking (docs/benchmarks.md,
# "Why LiLAW training loses under many pair flips").
PAIR_FLIP_CASES = {f"fmnist-asym{rate}": ("fashion-mnist", f"asymmetric:0.{rate}") for rate in (10, 20, 30)}
CASES = {**LOW_NOISE_CASES, **HIGH_NOISE_CASES, **PAIR_FLIP_CASES}
KS = (50, 100)
# Opt-in extras (--variants), reported as extra rows of the case table, never as baselines.
# windows: aggregate after the warm-up epoch only, or over the second half of the epochs (alone,
# and rank-averaged with the whole run's), or the last epoch's margin alone, or over epochs the
# run picks from its val split's accuracy (`run_chosen_windows`); epochs: W_α of single epochs (the paper's
# Table 16 reading); meta128: a whole extra LiLAW run with a 128-sample meta batch.
# The item-3 variants (issue 10), each a whole extra LiLAW run scored by its aum, except rankmix:
# detached: W detached from the graph (LilawConfig.detach_weights); warmup3: the weighting starts
# at epoch 4 (3 plain-loss epochs), also scored on those plain epochs alone and by the rank mean
# of the two; clamp: the ordering projection; augment: random crop + horizontal flip of the
# training images (images only); detached-warmup3: both. rankmix: scores of the default run
# itself, rank-averaged (nothing fitted, nothing trained).
# metalr0.05 / metalr0.5: the meta step's learning rate 10× / 100× the paper's 0.005, so that
# (α, β, δ) move at all; rotate: the meta-validation split rotated over the epochs
# (TrainConfig.val_split="rotate"), so the run trains on every sample as the plain run does.
VARIANTS = ("windows", "epochs", "meta128", "detached", "warmup3", "clamp", "augment", "detached-warmup3", "rankmix",
            "metalr0.05", "metalr0.5", "rotate", "rotate-metalr0.5")
WINDOWS = {"w_alpha epochs 2-last": ("w_alpha", 2), "aum epochs 2-last": ("aum", 2),
           "aum, second half of the epochs": ("aum", "half"), "aum, last epoch": ("aum", "last")}


def load_ecg5000(ecg_dir: Path) -> AuditDataset:
    rows = np.concatenate([np.loadtxt(ecg_dir / name, delimiter="\t", dtype=np.float32)
                           for name in ("ECG5000_TRAIN_from_rda.tsv", "ECG5000_TEST_from_rda.tsv")])
    labels = rows[:, 0].astype(np.int64) - 1
    return AuditDataset(
        name="ecg5000", modality="timeseries", x=rows[:, None, 1:].copy(), y=labels,
        class_names=[str(c) for c in range(1, 6)], sample_ids=[f"ecg-{i}" for i in range(len(rows))],
    )


_LOADED: dict[str, AuditDataset] = {}


def load(name: str, args) -> AuditDataset:
    """The clean dataset, loaded once per process (every seed draws its noise on it)."""
    if name not in _LOADED:
        if name == "ecg5000":
            _LOADED[name] = load_ecg5000(Path(args.ecg_dir))
        else:
            _LOADED[name] = load_dataset(name, limit=args.samples)
    return _LOADED[name]


def case_epochs(dataset_name: str, args) -> tuple[int, int]:
    """(audit epochs, fold epochs) of a case."""
    if dataset_name == "ecg5000":
        return args.ecg_epochs, args.ecg_cl_epochs or args.ecg_epochs
    return args.epochs, args.cl_epochs or args.epochs


def draw_noise(case: str, seed: int, args) -> tuple[AuditDataset, NoisyLabels, AuditConfig, float]:
    """The case's clean dataset, one seeded noise draw on it, the audit config and the draw's seconds.
    The LiLAW run, the plain run and the cross-fitting all train on exactly these labels."""
    dataset_name, noise = CASES[case]
    epochs, _ = case_epochs(dataset_name, args)
    config = AuditConfig(epochs=epochs, batch_size=args.batch_size, inject_noise=noise, seed=seed)
    clean = load(dataset_name, args)
    started = time.perf_counter()
    noisy = prepare_dataset(clean, config)
    drawn = NoisyLabels(noisy.y, noisy.is_mislabeled, noisy.true_labels)
    return clean, drawn, config, time.perf_counter() - started


def split_bias(score_rank: np.ndarray, split: np.ndarray, flags: np.ndarray) -> dict:
    """Share of the val split among the top 50 / 100 / #flips of a ranking, among the true flips
    and among all samples; and the precision of the val and the train members of each top k."""
    order = np.argsort(score_rank, kind="stable")
    val = split == SPLIT_VAL
    tops = {"top50": order[:50], "top100": order[:100], "top_flips": order[: int(flags.sum())]}
    share = {key: float(val[top].mean()) for key, top in tops.items()}
    share["flips"] = float(val[flags].mean())
    share["all"] = float(val.mean())

    def precision(top: np.ndarray, members: np.ndarray) -> float | None:
        chosen = top[members[top]]
        return float(flags[chosen].mean()) if len(chosen) else None

    return {"val_share": share,
            "val_precision": {key: precision(top, val) for key, top in tops.items()},
            "train_precision": {key: precision(top, ~val) for key, top in tops.items()}}


def run_seed(case: str, seed: int, args) -> dict:
    dataset_name, _ = CASES[case]
    clean, drawn, config, noise_seconds = draw_noise(case, seed, args)
    flags = drawn.is_mislabeled
    _, cl_epochs = case_epochs(dataset_name, args)

    started = time.perf_counter()
    audit = run_audit(clean, config, noisy_labels=drawn)
    lilaw_seconds = time.perf_counter() - started

    plain_config = replace(config, weighting="none", val_fraction=args.plain_val_fraction)
    started = time.perf_counter()
    plain = run_audit(clean, plain_config, noisy_labels=drawn)
    plain_seconds = time.perf_counter() - started

    noisy = audit.dataset
    if not (np.array_equal(noisy.y, drawn.labels) and np.array_equal(plain.dataset.y, drawn.labels)):
        raise RuntimeError("the LiLAW and plain runs did not train on the drawn noisy labels")
    baselines = {"aum, plain run": plain.scores["aum"]}
    cross_fit_seconds = 0.0
    if args.folds:
        started = time.perf_counter()
        oos = cross_fit_probabilities(noisy, replace(config, epochs=cl_epochs, inject_noise=None), args.folds)
        cross_fit_seconds = time.perf_counter() - started
        cl = compute_scores(audit.history, oos_probs=oos, labels=noisy.y)
        baselines[f"cleanlab self-confidence ({args.folds}-fold)"] = cl["cl_self_confidence"]
        baselines[f"cleanlab normalized margin ({args.folds}-fold)"] = cl["cl_normalized_margin"]

    scores = dict(audit.scores)
    variant_seconds: dict[str, float] = {}
    extra = extra_scores(audit, clean, config, drawn, args, variant_seconds)
    all_scores = {**scores, **extra, **baselines}
    metrics = {name: detection_metrics(score, flags, ks=KS) for name, score in all_scores.items()}
    return {
        "seed": seed, "samples": len(noisy), "num_flipped": int(flags.sum()), "model": audit.model_name,
        "default_score": audit.default_score, "baselines": list(baselines),
        "seconds": {"noise": noise_seconds, "lilaw": lilaw_seconds, "plain": plain_seconds,
                    "cross_fit": cross_fit_seconds, "variants": variant_seconds},
        "test_top1": (audit.test_metrics or {}).get("top1"), "plain_test_top1": (plain.test_metrics or {}).get("top1"),
        "flips_predicted_true": flips_predicted_true(audit.final_probs, drawn),
        "plain_flips_predicted_true": flips_predicted_true(plain.final_probs, drawn),
        "lilaw_final": audit.trajectory[-1, 2:].tolist() if len(audit.trajectory) else None,
        **split_bias(audit.rank, audit.split, flags),
        "full_metrics": metrics,
        "metrics": {name: compact_metrics(m) for name, m in metrics.items()},
    }


def flips_predicted_true(final_probs: np.ndarray | None, drawn: NoisyLabels) -> float | None:
    """Share of the flipped samples that the run's final model predicts as their true class (the
    rest it predicts as the wrong label it was given, or as a third class)."""
    if final_probs is None or not drawn.is_mislabeled.any():
        return None
    flips = drawn.is_mislabeled
    return float((final_probs[flips].argmax(axis=1) == drawn.true_labels[flips]).mean())


def extra_scores(audit, clean: AuditDataset, config: AuditConfig, drawn: NoisyLabels, args,
                 variant_seconds: dict[str, float]) -> dict[str, np.ndarray]:
    """The --variants rows; the seconds of each variant run go into `variant_seconds`."""
    scores = {}
    if "windows" in args.variants:
        for label, (name, first) in WINDOWS.items():
            first = {"half": config.epochs // 2 + 1, "last": config.epochs}.get(first, first)
            window = compute_scores(audit.history, first_epoch=first)
            scores[label] = calibrate_within_groups(window, split_groups(audit.history, first))[name]
        late = scores["aum, second half of the epochs"]
        scores["rank mean: aum + aum second half"] = rank_mean(audit.scores["aum"], late)
        scores.update(run_chosen_windows(audit.history, audit.dataset.y, len(audit.dataset.class_names)))
    if "epochs" in args.variants:
        for epoch in sorted({min(3, config.epochs), config.epochs}):
            scores[f"w_alpha epoch {epoch}"] = epoch_scores(audit.history, epoch)["w_alpha"]
    if "meta128" in args.variants:
        meta128 = replace(config, lilaw=replace(config.lilaw, meta_batch_size=128))
        variant = run_audit(clean, meta128, noisy_labels=drawn)
        scores[f"{variant.default_score}, LiLAW meta batch 128"] = variant.default_scores
    if "rankmix" in args.variants:
        warm = plain_phase_aum(audit.history, config.lilaw.warmup_epochs)
        scores["aum epoch 1 (plain warm-up)"] = warm
        scores["rank mean: aum + aum epoch 1"] = rank_mean(audit.scores["aum"], warm)
        scores["rank mean: aum + el2n"] = rank_mean(audit.scores["aum"], audit.scores["el2n"])
    for name, lilaw, train in VARIANT_RUNS:
        if name not in args.variants or (name == "augment" and clean.modality != "image"):
            continue
        variant_config = replace(config, lilaw=replace(config.lilaw, **lilaw), **train)
        started = time.perf_counter()
        variant = run_audit(clean, variant_config, noisy_labels=drawn)
        variant_seconds[name] = time.perf_counter() - started
        if len(variant.trajectory):
            final = np.round(variant.trajectory[-1, 2:], 3).tolist()
            print(f"    [{name}: final (alpha, beta, delta) = {final}]", flush=True)
        scores[f"aum, {name}"] = variant.scores["aum"]
        warmup = variant_config.lilaw.warmup_epochs
        if warmup > 1:
            plain_phase = plain_phase_aum(variant.history, warmup)
            scores[f"aum epochs 1-{warmup}, {name}"] = plain_phase
            scores[f"rank mean: aum + aum epochs 1-{warmup}, {name}"] = rank_mean(variant.scores["aum"], plain_phase)
    return scores


# (variant, LilawConfig changes, TrainConfig changes) of the variants that are whole extra runs
VARIANT_RUNS = (
    ("detached", {"detach_weights": True}, {}),
    ("warmup3", {"warmup_epochs": 3}, {}),
    ("clamp", {"clamp": True}, {}),
    ("augment", {}, {"augment": True}),
    ("detached-warmup3", {"detach_weights": True, "warmup_epochs": 3}, {}),
    ("metalr0.05", {"lr": 0.05}, {}),
    ("metalr0.5", {"lr": 0.5}, {}),
    ("rotate", {}, {"val_split": "rotate"}),
    ("rotate-metalr0.5", {"lr": 0.5}, {"val_split": "rotate"}),
)


def run_chosen_windows(history, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    """aum over epochs that the run picks from its own held-out split, nothing else: each epoch's
    accuracy on the val split's (noisy) labels either weights its margins (above chance), or starts
    the window at the first epoch within 90% of the best. A better-trained epoch should rank better."""
    val = history.split == SPLIT_VAL
    accuracy = (history.predicted[:, val] == labels[val]).mean(axis=1)
    weights = np.clip(accuracy - 1.0 / num_classes, 0.0, None)
    weights = weights if weights.sum() > 0 else np.ones_like(weights)
    first = int(np.argmax(accuracy >= 0.9 * accuracy.max()))
    margins = {
        "aum, epochs weighted by val accuracy": -(weights[:, None] * history.margin).sum(axis=0) / weights.sum(),
        "aum from the epoch val accuracy is 90% of its best": -history.margin[first:].mean(axis=0),
    }
    groups = split_groups(history)
    return {name: calibrate_within_groups({"aum": score}, groups)["aum"] for name, score in margins.items()}


def plain_phase_aum(history, warmup_epochs: int) -> np.ndarray:
    """aum over the warm-up epochs alone (plain loss), split-calibrated as the audit's scores are."""
    window = compute_scores(history, last_epoch=warmup_epochs)
    return calibrate_within_groups(window, split_groups(history, 1, warmup_epochs))["aum"]


def rank_mean(*scores: np.ndarray) -> np.ndarray:
    """The mean of each sample's ranks (0 = least suspicious) under the given scores."""
    return np.mean([np.argsort(np.argsort(score, kind="stable"), kind="stable") for score in scores], axis=0)


def run_case(case: str, args) -> dict:
    dataset_name, noise = CASES[case]
    epochs, cl_epochs = case_epochs(dataset_name, args)
    seeds = []
    for seed in args.seeds:
        seeds.append(run_seed(case, seed, args))
        print(f"  [{case} seed {seed}: LiLAW {seeds[-1]['seconds']['lilaw']:.0f} s, plain "
              f"{seeds[-1]['seconds']['plain']:.0f} s, {args.folds}-fold {seeds[-1]['seconds']['cross_fit']:.0f} s]",
              flush=True)
    result = {
        "case": case, "dataset": dataset_name, "noise": noise, "epochs": epochs, "cl_epochs": cl_epochs,
        "folds": args.folds, "plain_val_fraction": args.plain_val_fraction, "variants": sorted(args.variants),
        "default_label": seeds[0]["default_score"], "baselines": seeds[0]["baselines"], "seeds": seeds,
    }
    result["summary"] = summarize_case(result)
    return result


def tune_cl_epochs(case: str, args) -> dict:
    """Confident learning's detection on `case` for each fold-epoch count in `args.tune_cl_epochs`."""
    by_epochs: dict[int, list] = {}
    for seed in args.seeds:
        clean, drawn, config, _ = draw_noise(case, seed, args)
        noisy = replace(clean, y=drawn.labels, is_mislabeled=drawn.is_mislabeled, true_labels=drawn.true_labels)
        for epochs in args.tune_cl_epochs:
            started = time.perf_counter()
            oos = cross_fit_probabilities(noisy, replace(config, epochs=epochs, inject_noise=None), args.folds)
            elapsed = time.perf_counter() - started
            # core.scores' cl_self_confidence and cl_normalized_margin (compute_scores needs a
            # dynamics history, which cross-fitting alone does not have)
            rows = np.arange(len(noisy))
            p_label = oos[rows, noisy.y]
            others = oos.copy()
            others[rows, noisy.y] = -np.inf
            self_confidence, margin = 1.0 - p_label, others.max(axis=1) - p_label
            by_epochs.setdefault(epochs, []).append({
                "seed": seed, "seconds": elapsed,
                "self_confidence": compact_metrics(detection_metrics(self_confidence, drawn.is_mislabeled, ks=KS)),
                "normalized_margin": compact_metrics(detection_metrics(margin, drawn.is_mislabeled, ks=KS)),
            })
            print(f"  [{case} seed {seed}, {epochs} fold epochs: {elapsed:.0f} s]", flush=True)
    best = max(by_epochs, key=lambda e: mean_std([r["self_confidence"]["auprc"] for r in by_epochs[e]])[0] or -1)
    return {"case": case, "noise": CASES[case][1], "samples": len(load(CASES[case][0], args)), "folds": args.folds,
            "seeds": args.seeds, "by_epochs": by_epochs, "best_epochs": best,
            "flag": "--ecg-cl-epochs" if CASES[case][0] == "ecg5000" else "--cl-epochs"}


def int_list(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(LOW_NOISE_CASES),
                        help=f"comma-separated, or 'all'; of {', '.join(CASES)}")
    parser.add_argument("--seeds", type=int_list, default=[0, 1, 2],
                        help="each seed re-draws the noise and the training (default 0,1,2)")
    parser.add_argument("--samples", type=int, default=None,
                        help="Fashion-MNIST stratified subset size (default: all 60,000 training images)")
    parser.add_argument("--epochs", type=int, default=10, help="LiLAW and plain run epochs, Fashion-MNIST")
    parser.add_argument("--ecg-epochs", type=int, default=15, help="LiLAW and plain run epochs, ECG5000")
    parser.add_argument("--cl-epochs", type=int, default=None,
                        help="epochs of each cross-fitting fold, Fashion-MNIST (default: --epochs)")
    parser.add_argument("--ecg-cl-epochs", type=int, default=None,
                        help="epochs of each cross-fitting fold, ECG5000 (default: --ecg-epochs)")
    parser.add_argument("--folds", type=int, default=5,
                        help="confident learning's folds; 0 skips it (the plain run is then the only baseline)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--plain-val-fraction", type=float, default=0.0,
                        help="validation split of the plain AUM run (default 0: it trains on every sample)")
    parser.add_argument("--variants", default="",
                        help=f"opt-in extra rows, comma-separated: {', '.join(VARIANTS)} (or 'all')")
    parser.add_argument("--tune-cl-epochs", type=int_list, default=None, metavar="E1,E2,...",
                        help="instead of the benchmark: confident learning's detection on the first case "
                             "for each fold-epoch count")
    parser.add_argument("--ecg-dir", default=str(Path(__file__).resolve().parents[2] / "shared/data/ecg5000"))
    parser.add_argument("--out", type=Path, help="also write the raw results as JSON")
    parser.add_argument("--tables-from", type=Path, metavar="JSON",
                        help="instead of running: print the tables of an earlier run's --out file")
    args = parser.parse_args()

    cases = list(CASES) if args.cases == "all" else [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or not cases:
        parser.error(f"unknown case(s) {unknown}: use {', '.join(CASES)} or 'all'")
    args.variants = set(VARIANTS) if args.variants == "all" else {v for v in args.variants.split(",") if v}
    if args.variants - set(VARIANTS):
        parser.error(f"unknown variant(s) {sorted(args.variants - set(VARIANTS))}: use {', '.join(VARIANTS)}")
    if not args.seeds:
        parser.error("--seeds needs at least one seed")

    if args.tables_from:
        output = json.loads(args.tables_from.read_text())
        for case in output:
            print_case(case)
        print_overall(output)
        print_variant_comparison(output)
        return
    started = time.perf_counter()
    if args.tune_cl_epochs:
        if len(cases) > 1:
            print(f"--tune-cl-epochs runs on one case: {cases[0]}")
        output = tune_cl_epochs(cases[0], args)
        print_tuning(output)
    else:
        output = []
        for case in cases:
            output.append(run_case(case, args))
            print_case(output[-1])
            write_out(output, args)  # after every case, so that a stopped run keeps what it finished
        print_overall(output)
        if args.variants:
            print_variant_comparison(output)
    print(f"\nTotal wall time: {time.perf_counter() - started:.0f} s")
    write_out(output, args)


def write_out(output, args) -> None:
    if args.out:
        args.out.write_text(json.dumps(output, indent=1, default=float))


if __name__ == "__main__":
    main()
