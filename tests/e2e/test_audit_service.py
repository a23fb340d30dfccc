"""An audit over HTTP, end to end, through a worker that is SIGKILLed mid-job.

Neither broker gives the killed worker's message back in time: kombu's SQLAlchemy transport
never does, Redis only after the visibility timeout (longer than any job). The job comes back by
the reaper: its heartbeat goes stale, beat runs `lilaw.reap_stuck_jobs`, the job is queued
again and the second worker resumes it from the last checkpoint.
"""

from __future__ import annotations

from sqlalchemy import func, select

from core.store import SampleEpoch

EPOCHS = 8
NOISE = 0.3


def rows_per_epoch(service, job_id: int) -> dict[int, tuple[int, int]]:
    """epoch -> (rows, distinct sample indexes), read from the database."""
    engine = service.engine()
    try:
        with engine.connect() as connection:
            statement = (
                select(SampleEpoch.epoch, func.count(), func.count(SampleEpoch.sample_index.distinct()))
                .where(SampleEpoch.job_id == job_id)
                .group_by(SampleEpoch.epoch)
            )
            return {epoch: (rows, distinct) for epoch, rows, distinct in connection.execute(statement)}
    finally:
        engine.dispose()


def test_an_audit_survives_a_killed_worker_and_ranks_the_injected_flips_first(service):
    with service.http() as http:
        dataset = http.post("/datasets", json={"builtin": "digits", "name": "digits"}).raise_for_status().json()
        num_samples = dataset["versions"][-1]["num_samples"]
        job = http.post(
            "/jobs",
            json={"dataset_id": dataset["id"], "epochs": EPOCHS, "batch_size": 64, "inject_noise": f"uniform:{NOISE}"},
        ).raise_for_status().json()
        assert job["status"] == "queued"

        running = service.wait_for_job(
            http, job["id"], lambda j: j["status"] == "running" and j["progress"]["epoch"] >= 2, "epoch 2"
        )
        progress = running["progress"]
        assert progress["total_epochs"] == EPOCHS and 0 < progress["step"] < progress["total_steps"]
        assert rows_per_epoch(service, job["id"]), "at least one epoch is stored before the kill"
        service.kill("worker")
        service.start("worker-2", "worker")

        done = service.wait_for_job(http, job["id"], lambda j: j["status"] not in ("queued", "running"), "an end")
        assert done["status"] == "succeeded", f"{done['error']}\n{service.logs()}"
        assert done["result"]["attempts"] >= 2  # the killed execution and the one that resumed
        assert done["progress"]["epoch"] == EPOCHS and done["has_model"]

        suspects = http.get(f"/jobs/{job['id']}/suspects", params={"limit": 100}).raise_for_status().json()
        flagged = [item["is_mislabeled"] for item in suspects["items"]]
        assert len(flagged) == 100 and sum(flagged) >= 90
        assert [item["rank"] for item in suspects["items"]] == list(range(1, 101))

        metrics = http.get(f"/jobs/{job['id']}/metrics").raise_for_status().json()
        default = next(entry for entry in metrics["scores"] if entry["score"] == metrics["default_score"])
        assert default["aggregate"]["all"]["num_mislabeled"] == round(NOISE * num_samples)
        assert default["aggregate"]["all"]["auroc"] >= 0.9
        assert len(default["per_epoch"]) == EPOCHS

    assert rows_per_epoch(service, job["id"]) == {epoch: (num_samples, num_samples) for epoch in range(1, EPOCHS + 1)}
