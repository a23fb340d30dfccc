"""The training options of issue 10 over HTTP: weighting (lilaw / none / fbr), val_split and
split_calibration on a job submission and a re-audit, and the reviewers' verdicts as a re-audit's
trusted set. Bad values answer 422 naming the problem; nothing is queued then."""

from __future__ import annotations

from core.store import AuditJob, session_scope


def _submit(client, headers, dataset_id, **options):
    return client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1, **options}, headers=headers)


def test_a_job_takes_the_weighting_the_validation_split_and_the_calibration(client, alice, finished_job):
    created = _submit(client, alice, finished_job.dataset_id, weighting="none", val_split="rotate",
                      split_calibration=False)
    assert created.status_code == 201, created.text
    config = created.json()["config"]
    assert (config["weighting"], config["val_split"], config["split_calibration"]) == ("none", "rotate", False)

    default = _submit(client, alice, finished_job.dataset_id).json()["config"]
    assert (default["weighting"], default["val_split"], default["split_calibration"]) == ("lilaw", "fixed", True)


def test_bad_training_options_answer_422_and_queue_nothing(client, alice, finished_job, take_queued_tasks):
    take_queued_tasks()
    for options, expected in (
        ({"weighting": "fbr"}, "use_verdicts_as_trusted"),  # FBR needs a trusted set, a plain job has none
        ({"weighting": "magic"}, "weighting"),
        ({"val_split": "sideways"}, "val_split"),
        ({"split_calibration": "maybe"}, "split_calibration"),
        ({"val_split": "rotate", "val_fraction": 0.9}, "rotating validation split"),
    ):
        answered = _submit(client, alice, finished_job.dataset_id, **options)
        assert answered.status_code == 422, (options, answered.text)
        assert expected in answered.text, (options, answered.text)
    assert take_queued_tasks() == []


def test_a_reaudit_with_verdicts_needs_agreed_verdicts_and_a_weighting_that_uses_them(
    client, alice, finished_job, sessions, take_queued_tasks
):
    path = f"/datasets/{finished_job.dataset_id}/reaudits"
    take_queued_tasks()
    none_yet = client.post(path, json={"force": True, "use_verdicts_as_trusted": True}, headers=alice)
    assert none_yet.status_code == 422 and "no sample of version 1 has an agreed verdict" in none_yet.text

    fbr_without = client.post(path, json={"force": True, "audit": {"weighting": "fbr"}}, headers=alice)
    assert fbr_without.status_code == 422 and "needs a trusted set" in fbr_without.text

    review = client.post(f"/jobs/{finished_job.job_id}/decisions", json={"sample_index": 0, "verdict": "keep"},
                         headers=alice)
    assert review.status_code == 201, review.text
    one_class = client.post(
        path, json={"use_verdicts_as_trusted": True, "audit": {"weighting": "fbr"}}, headers=alice
    )
    assert one_class.status_code == 422 and "at least 2 classes" in one_class.text
    plain = client.post(path, json={"use_verdicts_as_trusted": True, "audit": {"weighting": "none"}}, headers=alice)
    assert plain.status_code == 422 and "no use for a trusted set" in plain.text
    assert take_queued_tasks() == []

    # A decision since the last audit is a change: not skipped, though the version is audited.
    started = client.post(path, json={"use_verdicts_as_trusted": True}, headers=alice)
    assert started.status_code == 200, started.text
    job = started.json()["job"]
    assert job is not None and job["config"]["weighting"] == "lilaw"
    with session_scope(sessions) as session:
        label = int(finished_job.audit.result.dataset.y[0])
        assert session.get(AuditJob, job["id"]).trusted == {"0": label}
    assert [task["args"] for task in take_queued_tasks()] == [[job["id"]]]
