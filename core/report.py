"""An audit's results as files: scores.csv, summary.json and the dynamics archive."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from core.audit import AuditResult
from core.dynamics import FLOAT_FIELDS, SPLIT_NAMES, DynamicsHistory
from core.score_registry import ORIENTATION, SCORE_NAMES


def score_table(result: AuditResult) -> tuple[list[str], list[list]]:
    """Header and rows of the ranked suspects table, most suspicious first."""
    names = [name for name in SCORE_NAMES if name in result.scores]
    dataset = result.dataset
    predicted = result.history.predicted[-1]
    header = ["rank", "sample_id", "given_label", "predicted_label", "split", "default_score", *names]
    if dataset.is_mislabeled is not None:
        header.append("known_mislabeled")
    rows = []
    for i in np.argsort(result.rank, kind="stable"):
        row = [
            int(result.rank[i]), dataset.sample_ids[i], dataset.class_names[dataset.y[i]],
            dataset.class_names[predicted[i]], SPLIT_NAMES[int(result.split[i])],
            float(result.default_scores[i]), *(float(result.scores[name][i]) for name in names),
        ]
        if dataset.is_mislabeled is not None:
            row.append(int(dataset.is_mislabeled[i]))
        rows.append(row)
    return header, rows


def write_scores_csv(result: AuditResult, path: Path) -> None:
    header, rows = score_table(result)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def write_dynamics(history: DynamicsHistory, sample_ids: list[str], path: Path,
                   extra: dict[str, np.ndarray] | None = None) -> None:
    """Every per-sample per-epoch field as an [epochs, samples] array (np.load with allow_pickle=False);
    `extra`: more [epochs, samples] arrays (FBR's fbr_agreement and fbr_weight)."""
    np.savez_compressed(
        path,
        epochs=history.epochs,
        split=history.split,
        sample_id=np.array(sample_ids, dtype=str),
        predicted=history.predicted,
        **{name: getattr(history, name) for name in FLOAT_FIELDS},
        **(extra or {}),
    )


def summary(result: AuditResult) -> dict:
    dataset = result.dataset
    trajectory = result.trajectory
    return {
        "dataset": {
            "name": dataset.name, "modality": dataset.modality, "num_samples": len(dataset),
            "num_classes": dataset.num_classes, "class_names": dataset.class_names,
            "num_validation": int((result.split == 1).sum()), "noise": dataset.meta.get("noise"),
            "num_trusted": None if result.trusted is None else len(result.trusted),
            "num_known_mislabeled": None if dataset.is_mislabeled is None else int(dataset.is_mislabeled.sum()),
        },
        "config": result.config.to_dict(),
        "model": result.model_name,
        "device": result.device,
        "default_score": result.default_score,
        "score_orientation": {name: ORIENTATION[name] for name in result.scores},
        "lilaw_trajectory": {
            "columns": ["step", "epoch", "alpha", "beta", "delta"],
            "rows": np.round(trajectory, 6).tolist(),
        },
        "timings": result.timings,
        "detection": result.detection,
        "test_metrics": result.test_metrics,
    }


def write_report(result: AuditResult, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "scores": out_dir / "scores.csv",
        "summary": out_dir / "summary.json",
        "dynamics": out_dir / "dynamics.npz",
    }
    write_scores_csv(result, paths["scores"])
    paths["summary"].write_text(json.dumps(summary(result), indent=2, default=_json_default))
    write_dynamics(result.history, result.dataset.sample_ids, paths["dynamics"], extra=result.fbr)
    return paths


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value)}")
