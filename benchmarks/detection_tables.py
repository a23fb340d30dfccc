"""Aggregation over seeds and the markdown tables of `benchmarks.detection`.

Every number a table shows is the mean ± std (ddof 1; ± 0 for one seed) over seeds of one
per-seed value; each seed re-draws the noise and the training.
"""

from __future__ import annotations

import numpy as np

# (key in a per-seed metrics dict, column heading)
METRICS = (
    ("p@50", "P@50"),
    ("p@100", "P@100"),
    ("p@flips", "P@#flips"),
    ("auprc", "AUPRC (mislabeled +)"),
    ("auroc", "AUROC"),
)
SPLIT_SHARES = (("top50", "top 50"), ("top100", "top 100"), ("top_flips", "top #flips"),
                ("flips", "true flips"), ("all", "all samples"))


def compact_metrics(metrics: dict) -> dict:
    """The five numbers the tables show, from a `core.metrics.detection_metrics` dict."""
    at_k = metrics["precision_at_k"]
    return {"p@50": at_k.get(50), "p@100": at_k.get(100), "p@flips": metrics["precision_at_noise_count"],
            "auprc": metrics["auprc_mislabeled"], "auroc": metrics["auroc"]}


def mean_std(values) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def fmt(values, digits: int = 3, bold: bool = False) -> str:
    mean, std = mean_std(values)
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"**{text}**" if bold else text


def seconds(values) -> str:
    mean, std = mean_std(values)
    return f"{mean:.0f} ± {std:.0f} s"


def per_score(seeds: list[dict], name: str, key: str) -> list:
    return [seed["metrics"][name][key] for seed in seeds]


def strongest_baseline(seeds: list[dict], baselines: list[str], key: str) -> str:
    """The baseline with the best mean of `key` over seeds."""
    return max(baselines, key=lambda name: mean_std(per_score(seeds, name, key))[0] or -np.inf)


def summarize_case(case: dict) -> dict:
    """The summary rows of one case: the default against the strongest baseline on each metric."""
    seeds, default = case["seeds"], case["default_label"]
    rows = {}
    for key, _ in METRICS:
        best = strongest_baseline(seeds, case["baselines"], key)
        ours, theirs = per_score(seeds, default, key), per_score(seeds, best, key)
        deltas = [a - b for a, b in zip(ours, theirs) if a is not None and b is not None]
        rows[key] = {
            "default": mean_std(ours), "baseline": best, "baseline_value": mean_std(theirs),
            "delta": mean_std(deltas), "seeds_won": sum(d > 0 for d in deltas),
            "seeds_lost": sum(d < 0 for d in deltas), "num_seeds": len(deltas),
        }
    lilaw = [s["seconds"]["lilaw"] for s in seeds]
    folds = [s["seconds"]["cross_fit"] for s in seeds]
    return {"metrics": rows, "compute_ratio": float(np.sum(lilaw) / np.sum(folds)) if np.sum(folds) else None}


def _verdict(row: dict) -> str:
    won, lost, n = row["seeds_won"], row["seeds_lost"], row["num_seeds"]
    if n and won == n:
        return f"win ({won}/{n} seeds)"
    if n and lost == n:
        return f"loss ({lost}/{n} seeds)"
    return f"mixed ({won} won, {lost} lost of {n})"


def print_case(case: dict) -> None:
    seeds = case["seeds"]
    first = seeds[0]
    print(f"\n### {case['case']}: {first['samples']} samples, {case['noise']} "
          f"({fmt([s['num_flipped'] for s in seeds], 0)} flipped), {first['model']}, "
          f"{case['epochs']} epochs (folds {case['cl_epochs']}), seeds {','.join(str(s['seed']) for s in seeds)}")
    times = {k: [s["seconds"][k] for s in seeds] for k in ("noise", "lilaw", "plain", "cross_fit")}
    print(f"Per seed: LiLAW run {seconds(times['lilaw'])}; plain run {seconds(times['plain'])}; "
          f"{case['folds']}-fold cross-fitting {seconds(times['cross_fit'])}; LiLAW run / {case['folds']}-fold "
          f"= {_ratio(case)} (noise draw {seconds(times['noise'])}, not counted).")
    tops = [(s["test_top1"], s["plain_test_top1"]) for s in seeds]
    if tops[0][0] is not None:
        print(f"Test top-1: LiLAW run {fmt([t[0] for t in tops])}, plain run {fmt([t[1] for t in tops])}.")
    predicted_true = [(s.get("flips_predicted_true"), s.get("plain_flips_predicted_true")) for s in seeds]
    if predicted_true[0][0] is not None:  # older --out files do not have it
        print(f"Flips the final model predicts as their true class: LiLAW run {fmt([t[0] for t in predicted_true])}, "
              f"plain run {fmt([t[1] for t in predicted_true])}.")

    print("\n| score | " + " | ".join(head for _, head in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    names = list(first["metrics"])
    names.sort(key=lambda name: -(mean_std(per_score(seeds, name, "auprc"))[0] or -1))
    for name in names:
        label = f"**{name} (default)**" if name == case["default_label"] else name
        if name in case["baselines"]:
            label += " [baseline]"
        print(f"| {label} | " + " | ".join(fmt(per_score(seeds, name, key)) for key, _ in METRICS) + " |")

    print(f"\nSummary, {case['case']}: the default against the strongest baseline on each metric "
          f"(Δ = default − baseline, paired by seed; compute ratio {_ratio(case)})\n")
    print("| metric | default | strongest baseline | baseline | Δ | verdict |")
    print("|---|---:|---|---:|---:|---|")
    for key, head in METRICS:
        row = case["summary"]["metrics"][key]
        print(f"| {head} | {_pair(row['default'])} | {row['baseline']} | {_pair(row['baseline_value'])} | "
              f"{_pair(row['delta'], signed=True)} | {_verdict(row)} |")

    print(f"\nSplit bias, {case['case']}: share of the LiLAW run's val split (scored out of sample) "
          f"in the default's top k, against its share among the true flips\n")
    print("| | " + " | ".join(head for _, head in SPLIT_SHARES) + " |")
    print("|---|" + "---:|" * len(SPLIT_SHARES))
    print("| val share | " + " | ".join(fmt([s["val_share"][key] for s in seeds]) for key, _ in SPLIT_SHARES) + " |")
    print("| precision, val only | " + " | ".join(
        fmt([s["val_precision"][key] for s in seeds]) for key, _ in SPLIT_SHARES[:3]) + " | | |")
    print("| precision, train only | " + " | ".join(
        fmt([s["train_precision"][key] for s in seeds]) for key, _ in SPLIT_SHARES[:3]) + " | | |")


def _ratio(case: dict) -> str:
    ratio = case["summary"]["compute_ratio"]
    return "–" if ratio is None else f"{ratio:.2f}x"


def _pair(value: tuple, signed: bool = False) -> str:
    mean, std = value
    if mean is None:
        return "–"
    return f"{mean:+.3f} ± {std:.3f}" if signed else f"{mean:.3f} ± {std:.3f}"


def print_overall(cases: list[dict]) -> None:
    print("\n### All cases: the default against the strongest baseline (mean over seeds)\n")
    print("| case | " + " | ".join(head for _, head in METRICS) + " | LiLAW / K-fold time |")
    print("|---|" + "---|" * len(METRICS) + "---:|")
    for case in cases:
        cells = []
        for key, _ in METRICS:
            row = case["summary"]["metrics"][key]
            ours, theirs = row["default"][0], row["baseline_value"][0]
            if ours is None or theirs is None:
                cells.append("–")
                continue
            mark = "win" if row["seeds_won"] == row["num_seeds"] else (
                "loss" if row["seeds_lost"] == row["num_seeds"] else "mixed")
            cells.append(f"{ours:.3f} vs {theirs:.3f} ({mark})")
        print(f"| {case['case']} | " + " | ".join(cells) + f" | {_ratio(case)} |")


def print_tuning(result: dict) -> None:
    print(f"\n### Tuning cleanlab's fold epochs: {result['case']}, {result['samples']} samples, {result['noise']}, "
          f"{result['folds']}-fold, seeds {','.join(map(str, result['seeds']))}\n")
    print("| fold epochs | self-confidence AUPRC | AUROC | P@#flips | normalized-margin AUPRC | K-fold time |")
    print("|---:|---:|---:|---:|---:|---:|")
    for epochs, runs in result["by_epochs"].items():
        print(f"| {epochs} | {fmt([r['self_confidence']['auprc'] for r in runs])} | "
              f"{fmt([r['self_confidence']['auroc'] for r in runs])} | "
              f"{fmt([r['self_confidence']['p@flips'] for r in runs])} | "
              f"{fmt([r['normalized_margin']['auprc'] for r in runs])} | {seconds([r['seconds'] for r in runs])} |")
    print(f"\nBest fold epochs by mean self-confidence AUPRC: {result['best_epochs']} "
          f"(pass {result['flag']} {result['best_epochs']}).")


def candidate_rows(case: dict) -> list[str]:
    """The scores the variant comparison shows: the default, every aum-based score and rank
    mean (the --variants rows), then the baselines."""
    names = list(case["seeds"][0]["metrics"])
    candidates = [n for n in names if n not in case["baselines"]
                  and (n == case["default_label"] or n.startswith(("aum", "rank mean")))]
    return candidates + list(case["baselines"])


def worst_margin(cases: list[dict], name: str, key: str) -> tuple[float | None, str | None]:
    """The smallest (candidate − strongest baseline) of `key` over the cases, means over seeds,
    and the case where it is; None where a case lacks the candidate."""
    worst, where = None, None
    for case in cases:
        seeds = case["seeds"]
        if name not in seeds[0]["metrics"]:
            continue
        best = strongest_baseline(seeds, case["baselines"], key)
        delta = mean_std(per_score(seeds, name, key))[0] - mean_std(per_score(seeds, best, key))[0]
        if worst is None or delta < worst:
            worst, where = delta, case["case"]
    return worst, where


def print_variant_comparison(cases: list[dict]) -> None:
    """One row per candidate score: AUROC / AUPRC (means over seeds) per case, and its worst
    margin over the cases against the strongest baseline of each (≥ 0 everywhere is item 3)."""
    names: list[str] = []
    for case in cases:
        names += [n for n in candidate_rows(case) if n not in names]
    baselines = {b for case in cases for b in case["baselines"]}
    print("\n### Variants: AUROC / AUPRC per case (mean over seeds), and the worst margin against the "
          "strongest baseline of each case\n")
    print("| score | " + " | ".join(c["case"] for c in cases) + " | worst Δ AUROC | worst Δ AUPRC |")
    print("|---|" + "---|" * len(cases) + "---|---|")
    for name in names:
        cells = []
        for case in cases:
            seeds = case["seeds"]
            if name not in seeds[0]["metrics"]:
                cells.append("–")
                continue
            auroc, auprc = (mean_std(per_score(seeds, name, key))[0] for key in ("auroc", "auprc"))
            cells.append(f"{auroc:.3f} / {auprc:.3f}")
        margins = ["–", "–"] if name in baselines else [
            f"{d:+.3f} ({c})" if d is not None else "–" for d, c in (worst_margin(cases, name, k) for k in ("auroc", "auprc"))]
        label = f"**{name}** (default)" if name == cases[0]["default_label"] else name
        print(f"| {label}{' [baseline]' if name in baselines else ''} | " + " | ".join(cells) + f" | {margins[0]} | {margins[1]} |")
    print("\nCompute per seed (LiLAW run / K-fold): " + "; ".join(
        f"{c['case']} {_ratio(c)}" for c in cases) + ".")
