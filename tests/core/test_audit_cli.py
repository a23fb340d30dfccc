"""An audit end to end through the CLI, and the audit pipeline's options."""

import csv
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from core.audit import AuditConfig, NoisyLabels, prepare_dataset, run_audit
from cli.main import main
from core.loaders import load_dataset
from core.score_registry import offered_score_names


def test_digits_with_30_percent_uniform_noise_ranks_the_flips_first(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["audit", "digits", "--inject-noise", "uniform:0.3", "--epochs", "15", "--batch-size", "64",
                 "--seed", "0", "--out", str(out)])
    assert code == 0

    summary = json.loads((out / "summary.json").read_text())
    default = summary["default_score"]
    metrics = summary["detection"]["aggregate"][default]
    assert metrics["num_mislabeled"] == round(0.3 * 1797)
    assert metrics["auroc"] >= 0.97
    assert metrics["auprc_mislabeled"] >= 0.9
    trajectory = np.array(summary["lilaw_trajectory"]["rows"])
    assert trajectory[-1, 2] < 10 and trajectory[-1, 3] > 2  # α fell, β rose (Appendix A.2)

    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1797 and len({r["sample_id"] for r in rows}) == 1797
    assert [int(r["rank"]) for r in rows] == list(range(1, 1798))
    assert {r["split"] for r in rows} == {"train", "val"}  # validation samples are scored too
    top = rows[: metrics["num_mislabeled"]]
    assert np.mean([int(r["known_mislabeled"]) for r in top]) >= 0.85
    assert set(offered_score_names({"weighting": "lilaw"})) <= set(rows[0])  # no cleanlab, no FBR here
    assert "fbr_agreement" not in rows[0]

    dynamics = np.load(out / "dynamics.npz", allow_pickle=False)
    assert dynamics["w_alpha"].shape == (15, 1797)
    assert "AUROC" in capsys.readouterr().out


def test_cross_fit_adds_confident_learning_scores():
    dataset = load_dataset("digits", limit=400)
    result = run_audit(dataset, AuditConfig(epochs=3, batch_size=64, cross_fit=3, inject_noise="uniform:0.2"))
    assert result.oos_probs.shape == (400, 10)
    assert np.allclose(result.oos_probs.sum(1), 1, atol=1e-4)
    assert {"cl_self_confidence", "cl_normalized_margin"} <= set(result.scores)
    assert "cl_self_confidence" in result.detection["aggregate"]
    assert result.timings["cross_fit_seconds"] > 0


def test_plain_weighting_trains_the_same_model_and_still_scores(tmp_path):
    dataset = load_dataset("digits", limit=300)
    result = run_audit(dataset, AuditConfig(epochs=2, weighting="none"))
    assert result.noisy_labels is None
    assert np.allclose(result.trajectory[:, 2:], [10, 2, 6])
    assert len(result.rank) == 300 and sorted(result.rank) == list(range(1, 301))


def test_noise_is_drawn_once_and_an_audit_given_labels_drawn_earlier_trains_on_them():
    dataset = load_dataset("digits", limit=300)
    config = AuditConfig(epochs=1, batch_size=64, inject_noise="uniform:0.2")
    handed = []
    drawn = run_audit(dataset, config, on_noise=handed.append)

    assert len(handed) == 1 and handed[0] is drawn.noisy_labels
    assert drawn.noisy_labels.is_mislabeled.sum() == 60
    assert np.array_equal(drawn.dataset.y, drawn.noisy_labels.labels)
    assert np.array_equal(drawn.noisy_labels.true_labels, dataset.y)

    other = prepare_dataset(dataset, replace(config, noise_seed=1))
    earlier = NoisyLabels(other.y, other.is_mislabeled, other.true_labels)
    resumed = run_audit(dataset, config, noisy_labels=earlier, on_noise=handed.append)

    assert len(handed) == 1 and resumed.noisy_labels is earlier
    assert np.array_equal(resumed.dataset.y, earlier.labels) and not np.array_equal(earlier.labels, drawn.dataset.y)
    assert resumed.detection["aggregate"][resumed.default_score]["num_mislabeled"] == 60


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "no-such-dataset"], "no-such-dataset"),
        (["audit", "digits", "--epochs", "0"], "epochs"),
        (["audit", "digits", "--inject-noise", "sideways:0.3"], "sideways"),
        (["audit", "digits", "--model", "no-such-net"], "no-such-net"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message_and_no_traceback(tmp_path, args, message):
    proc = subprocess.run([sys.executable, "-m", "cli", *args, "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_malformed_file_is_reported_cleanly(tmp_path):
    bad = tmp_path / "labels.npz"
    np.savez(bad, x=np.zeros((10, 4), dtype=np.float32), y=np.zeros(10, dtype=np.int64))  # a single class
    proc = subprocess.run([sys.executable, "-m", "cli", "audit", str(bad), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "class" in proc.stderr and "Traceback" not in proc.stderr
