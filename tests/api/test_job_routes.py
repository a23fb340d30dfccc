"""/jobs: submission (validated, stored, then queued on the real broker), status, list, cancel."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from core.store import AuditJob, LilawTrajectoryPoint, session_scope
from core.store.dynamics_writer import write_trajectory
from worker.celery_app import AUDIT_TASK


def tiny_images() -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, x=rng.integers(0, 256, (12, 8, 8), dtype=np.uint8), y=np.arange(12) % 3)
    return buffer.getvalue()


@pytest.fixture
def images_id(client, alice) -> int:
    return client.post("/datasets", files={"file": ("tiny.npz", tiny_images())}, headers=alice).json()["id"]


def count_jobs(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditJob))


def test_submit_stores_the_job_then_queues_its_task(client, alice, sessions, images_id, take_queued_tasks):
    body = {"dataset_id": images_id, "epochs": 4, "inject_noise": "uniform:0.3", "model": "small-cnn", "clamp": True}
    response = client.post("/jobs", json=body, headers=alice)
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["status"], job["dataset_id"], job["dataset_version"]) == ("queued", images_id, 1)
    assert job["progress"] == {"epoch": 0, "total_epochs": 4, "step": 0, "total_steps": None, "eta_seconds": None}
    assert job["config"]["epochs"] == 4 and job["config"]["lilaw"]["clamp"] is True
    assert job["config"]["inject_noise"] == "uniform:0.3"
    assert take_queued_tasks() == [{"task": AUDIT_TASK, "id": job["celery_task_id"], "args": [job["id"]]}]
    with sessions() as session:
        assert session.get(AuditJob, job["id"]).celery_task_id == job["celery_task_id"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -3}, "epochs"),
        ({"model": "no-such-net"}, "unknown model 'no-such-net'"),
        ({"model": "resnet18", "dataset": "tabular"}, "needs image data"),
        ({"inject_noise": "gaussian:0.3"}, "gaussian"),
        ({"inject_noise": "uniform:1.5"}, "rate"),
        ({"cross_fit": 1}, "cross-fit"),
        ({"val_fraction": 0.0}, "validation"),
        ({"weighting": "focal"}, "weighting"),
        ({"batch_size": 0}, "batch_size"),
        ({"unknown_option": 1}, "unknown_option"),
    ],
)
def test_invalid_submission_is_422_and_stores_nothing(
    client, alice, sessions, images_id, take_queued_tasks, change, message
):
    body = {"dataset_id": images_id, **change}
    if body.pop("dataset", None) == "tabular":
        files = {"file": ("t.csv", b"f1,label\n1,a\n2,b\n3,a\n4,b\n")}
        body["dataset_id"] = client.post("/datasets", files=files, headers=alice).json()["id"]
    response = client.post("/jobs", json=body, headers=alice)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert count_jobs(sessions) == 0
    assert take_queued_tasks() == []


def test_unknown_dataset_or_version_is_404(client, alice, images_id, sessions):
    assert client.post("/jobs", json={"dataset_id": 999}, headers=alice).status_code == 404
    response = client.post("/jobs", json={"dataset_id": images_id, "version": 2}, headers=alice)
    assert response.status_code == 404
    assert response.json() == {"detail": f"dataset {images_id} has no version 2"}
    assert count_jobs(sessions) == 0


def test_broker_down_marks_the_job_failed_and_answers_503(settings, make_key, sessions, images_id):
    unreachable = settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    with TestClient(create_app(unreachable)) as down:
        response = down.post("/jobs", json={"dataset_id": images_id, "epochs": 1}, headers=make_key("carol"))
    assert response.status_code == 404  # carol does not own the dataset: checked before queueing
    with TestClient(create_app(unreachable)) as down:
        alice = make_key("alice")
        response = down.post("/jobs", json={"dataset_id": images_id, "epochs": 1}, headers=alice)
        assert response.status_code == 503
        assert "broker is unavailable" in response.json()["detail"]
        (job,) = down.get("/jobs", headers=alice).json()
    assert job["status"] == "failed"
    assert "broker is unavailable" in job["error"] and job["finished_at"] is not None
    assert job["celery_task_id"] is None


def test_status_with_downsampled_trajectory(client, alice, sessions, images_id):
    job_id = client.post("/jobs", json={"dataset_id": images_id, "epochs": 2}, headers=alice).json()["id"]
    points = [[step, epoch, 10 - step / 10, 2 + step / 100, 6.0] for epoch in (1, 2) for step in range(10)]
    with session_scope(sessions) as session:
        write_trajectory(session, job_id, points)
        job = session.get(AuditJob, job_id)
        job.epoch, job.step, job.total_steps, job.eta_seconds = 2, 15, 20, 3.5
    full = client.get(f"/jobs/{job_id}", params={"max_points": 1000}, headers=alice).json()
    assert len(full["trajectory"]) == 20
    assert full["trajectory"][0] == {"epoch": 1, "step": 0, "alpha": 10.0, "beta": 2.0, "delta": 6.0}
    assert full["progress"] == {"epoch": 2, "total_epochs": 2, "step": 15, "total_steps": 20, "eta_seconds": 3.5}
    sampled = client.get(f"/jobs/{job_id}", params={"max_points": 5}, headers=alice).json()["trajectory"]
    assert len(sampled) == 5
    assert (sampled[0], sampled[-1]) == (full["trajectory"][0], full["trajectory"][-1])
    assert client.get(f"/jobs/{job_id}", params={"trajectory": False}, headers=alice).json()["trajectory"] is None
    assert client.get(f"/jobs/{job_id}", params={"max_points": 1}, headers=alice).status_code == 422
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(LilawTrajectoryPoint)) == 20


def test_list_jobs_newest_first_with_filters(client, alice, images_id):
    other = client.post("/datasets", files={"file": ("other.npz", tiny_images())}, headers=alice).json()["id"]
    first = client.post("/jobs", json={"dataset_id": images_id, "epochs": 1}, headers=alice).json()["id"]
    second = client.post("/jobs", json={"dataset_id": other, "epochs": 1}, headers=alice).json()["id"]
    client.post(f"/jobs/{first}/cancel", headers=alice)
    assert [job["id"] for job in client.get("/jobs", headers=alice).json()] == [second, first]
    assert [job["id"] for job in client.get("/jobs", params={"dataset_id": other}, headers=alice).json()] == [second]
    assert [job["id"] for job in client.get("/jobs", params={"status": "cancelled"}, headers=alice).json()] == [first]
    assert client.get("/jobs", params={"status": "lost"}, headers=alice).status_code == 422


def test_cancel(client, alice, images_id):
    job_id = client.post("/jobs", json={"dataset_id": images_id, "epochs": 1}, headers=alice).json()["id"]
    response = client.post(f"/jobs/{job_id}/cancel", headers=alice)
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled" and response.json()["finished_at"] is not None
    again = client.post(f"/jobs/{job_id}/cancel", headers=alice)
    assert again.status_code == 409
    assert again.json() == {"detail": f"job {job_id} is already cancelled"}
    assert client.post("/jobs/999/cancel", headers=alice).status_code == 404
