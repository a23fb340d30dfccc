"""The class probabilities a finished audit stores, and the top classes read from them."""

from __future__ import annotations

import numpy as np

from core.services.artifacts import ClassProbabilities, LocalJobArtifacts
from core.services.predictions import most_probable
from core.store.models import AuditJob

FINAL = np.array([[0.1, 0.7, 0.2], [0.4, 0.4, 0.2], [0.2, 0.3, 0.5]], dtype=np.float32)


def test_the_probabilities_are_recorded_and_read_back_with_or_without_out_of_sample_ones(tmp_path):
    artifacts = LocalJobArtifacts(tmp_path, AuditJob(id=4))
    assert artifacts.read_probabilities() is None
    artifacts.write_probabilities(ClassProbabilities(final=FINAL, out_of_sample=None))
    assert artifacts.names == {"probabilities": "jobs/4/probabilities.npz"}
    stored = LocalJobArtifacts(tmp_path, AuditJob(id=4, result_paths=artifacts.names)).read_probabilities()
    assert np.array_equal(stored.final, FINAL) and stored.out_of_sample is None
    assert LocalJobArtifacts(tmp_path, AuditJob(id=4)).read_probabilities() is None  # unrecorded: not there

    artifacts.write_probabilities(ClassProbabilities(final=FINAL, out_of_sample=FINAL[::-1]))
    stored = LocalJobArtifacts(tmp_path, AuditJob(id=4, result_paths=artifacts.names)).read_probabilities()
    assert np.array_equal(stored.out_of_sample, FINAL[::-1])


def test_the_top_class_is_the_argmax_and_ties_go_to_the_lower_class():
    top = most_probable(FINAL, k=2)
    assert top.classes.tolist() == [[1, 2], [0, 1], [2, 1]]
    assert np.array_equal(top.classes[:, 0], FINAL.argmax(axis=1))
    assert np.allclose(top.probabilities[:, 0], FINAL.max(axis=1))
