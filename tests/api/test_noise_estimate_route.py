"""GET /jobs/{id}/noise-estimate: how many label errors the dataset likely holds, per class and
per "given → likely" pair, updated with reviewers' verdicts; and the review queue opened on a pair.

The job is the shared digits audit (30% uniform noise, known flags) with the class probabilities
the worker stores at the end of a run."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.services.artifacts import ClassProbabilities, job_artifacts
from core.settings import Settings
from core.store import session_scope
from core.store.models import AuditJob


def store_probabilities(sessions: sessionmaker[Session], settings: Settings, finished_job) -> None:
    """What the worker does at the end of a run: the audit's final probabilities, recorded."""
    with session_scope(sessions) as session:
        job = session.get(AuditJob, finished_job.job_id)
        artifacts = job_artifacts(settings, job)
        artifacts.write_probabilities(ClassProbabilities(final=finished_job.audit.result.final_probs, out_of_sample=None))
        job.result_paths = artifacts.names


def estimate(client, headers, job_id: int, **params) -> dict:
    response = client.get(f"/jobs/{job_id}/noise-estimate", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def decide(client, headers, job_id: int, sample_index: int, verdict: str, label: str | None = None) -> None:
    body = {"sample_index": sample_index, "verdict": verdict, "label": label}
    response = client.post(f"/jobs/{job_id}/decisions", json=body, headers=headers)
    assert response.status_code == 201, response.text


def test_a_job_without_stored_probabilities_says_so(client, alice, finished_job):
    response = client.get(f"/jobs/{finished_job.job_id}/noise-estimate", headers=alice)
    assert response.status_code == 409
    assert "no stored class probabilities" in response.json()["detail"]


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # no SQL of its own: one backend
def test_the_estimate_counts_errors_per_class_and_pair_and_reviews_replace_the_model(
    client, alice, bob, finished_job, sessions, settings
):
    store_probabilities(sessions, settings, finished_job)
    job_id = finished_job.job_id
    before = estimate(client, alice, job_id)
    flagged = int(finished_job.audit.result.dataset.is_mislabeled.sum())
    assert before["source"] == "final" and before["num_samples"] == finished_job.num_samples
    assert before["reviewed"] == before["found"] == 0
    assert before["estimated_errors"] == pytest.approx(before["model_errors"])
    assert 0.3 * flagged < before["estimated_errors"] < 1.5 * flagged  # 90 injected flips
    assert sum(c["estimated_errors"] for c in before["classes"]) == pytest.approx(before["estimated_errors"])
    pairs = before["pairs"]
    assert pairs and [p["estimated_errors"] for p in pairs] == sorted((p["estimated_errors"] for p in pairs), reverse=True)
    assert client.get(f"/jobs/{job_id}/noise-estimate", headers=bob).status_code == 404

    # The queue opened on the largest pair holds the samples given that label that the model
    # puts under the likely one.
    top = pairs[0]
    queue = client.get(top["review_queue"] + "&status=all&limit=500", headers=alice).json()
    assert queue["items"] and {item["label"] for item in queue["items"]} == {top["given"]}
    assert queue["progress"]["total"] == len(queue["items"])
    assert len(queue["items"]) < sum(c["samples"] for c in before["classes"] if c["label"] == top["given"])

    # Every sample of the pair's given label reviewed: the flagged ones relabelled to the likely
    # label, the others kept. That class then counts exactly what was found; the others keep the model's.
    dataset = finished_job.audit.result.dataset
    given_index = dataset.class_names.index(top["given"])
    members = [i for i in range(len(dataset)) if dataset.y[i] == given_index]
    found = 0
    for i in members:
        if dataset.is_mislabeled[i]:
            decide(client, alice, job_id, i, "relabel", top["likely"])
            found += 1
        else:
            decide(client, alice, job_id, i, "keep")
    after = estimate(client, alice, job_id)
    by_label = {c["label"]: c for c in after["classes"]}
    assert after["reviewed"] == len(members) and after["found"] == found
    assert by_label[top["given"]]["estimated_errors"] == found == by_label[top["given"]]["found"]
    model_given = next(c["model_errors"] for c in before["classes"] if c["label"] == top["given"])
    assert after["estimated_errors"] == pytest.approx(before["estimated_errors"] - model_given + found)
    assert after["model_errors"] == pytest.approx(before["model_errors"])
    pair_after = next(p for p in after["pairs"] if (p["given"], p["likely"]) == (top["given"], top["likely"]))
    assert pair_after["found"] == pair_after["estimated_errors"] == found

    # Decided samples leave the pair's undecided queue; the progress counts within the pair.
    pending = client.get(top["review_queue"], headers=alice).json()
    assert pending["items"] == [] and pending["progress"]["decided"] == pending["progress"]["total"] == len(queue["items"])


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_pair_of_unknown_labels_is_refused(client, alice, finished_job, sessions, settings):
    store_probabilities(sessions, settings, finished_job)
    response = client.get(
        f"/jobs/{finished_job.job_id}/review-queue", params={"given": "cat", "likely": "0"}, headers=alice
    )
    assert response.status_code == 422 and "unknown label 'cat'" in response.json()["detail"]
    assert client.get(f"/jobs/{finished_job.job_id}/noise-estimate", params={"pairs": 101}, headers=alice).status_code == 422
