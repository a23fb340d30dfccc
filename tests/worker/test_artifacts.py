"""A job's files in the local data dir: what the worker writes is recorded relative to the data
dir and read back through the record, older jobs' absolute records still resolve, and a recorded
file that is gone is reported, not taken for a job without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.audit import NoisyLabels
from core.services import ConflictError
from core.services.artifacts import LocalJobArtifacts, TopClasses
from core.store import AuditJob

LABELS = NoisyLabels(np.array([1, 0, 2]), np.array([True, False, False]), np.array([0, 0, 2]))
TOP = TopClasses(np.array([[1, 0], [0, 2], [2, 1]]), np.array([[0.6, 0.3], [0.9, 0.1], [0.8, 0.2]], dtype=np.float32))


def test_what_a_job_writes_is_recorded_relative_to_the_data_dir_and_read_back(tmp_path):
    artifacts = LocalJobArtifacts(tmp_path, AuditJob(id=7))
    assert artifacts.read_labels() is None and artifacts.read_model() is None and artifacts.read_top_classes() is None

    artifacts.write_labels(LABELS)
    artifacts.write_model({"weight": torch.ones(2)})
    artifacts.write_top_classes(TOP)

    assert artifacts.names == {"labels": "jobs/7/labels.npz", "model": "jobs/7/model.pt"}
    reread = LocalJobArtifacts(tmp_path, AuditJob(id=7, result_paths=artifacts.names))
    labels = reread.read_labels()
    assert all(np.array_equal(getattr(labels, name), getattr(LABELS, name)) for name in ("labels", "is_mislabeled", "true_labels"))
    assert torch.equal(reread.read_model()["weight"], torch.ones(2))
    assert reread.model_file() == tmp_path / "jobs" / "7" / "model.pt"
    assert np.array_equal(reread.read_top_classes().classes, TOP.classes)
    assert sorted(path.name for path in (tmp_path / "jobs" / "7").iterdir()) == ["labels.npz", "model.pt", "top_classes.npz"]


def test_an_older_jobs_absolute_paths_resolve_with_the_top_classes_next_to_its_model(tmp_path):
    elsewhere = tmp_path / "moved"
    LocalJobArtifacts(elsewhere, AuditJob(id=3)).write_model({"weight": torch.zeros(1)})
    job = AuditJob(id=3, result_paths={"model": str(elsewhere / "jobs" / "3" / "model.pt")})
    artifacts = LocalJobArtifacts(tmp_path / "data", job)

    assert torch.equal(artifacts.read_model()["weight"], torch.zeros(1))
    artifacts.write_top_classes(TOP)
    assert (elsewhere / "jobs" / "3" / "top_classes.npz").is_file()


def test_a_recorded_labels_file_that_is_gone_is_a_conflict(tmp_path):
    artifacts = LocalJobArtifacts(tmp_path, AuditJob(id=5, result_paths={"labels": "jobs/5/labels.npz"}))
    with pytest.raises(ConflictError, match="the labels file of job 5 is missing"):
        artifacts.read_labels()


def test_the_checkpoint_lives_in_the_jobs_directory_and_is_removed_quietly(tmp_path):
    artifacts = LocalJobArtifacts(tmp_path, AuditJob(id=9))
    path = artifacts.checkpoint_path()
    assert path == tmp_path / "jobs" / "9" / "checkpoint.pt"
    artifacts.remove_checkpoint()  # none yet
    path.parent.mkdir(parents=True)
    path.write_bytes(b"state")
    artifacts.remove_checkpoint()
    assert not path.exists()
