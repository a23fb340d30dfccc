"""/jobs: submission (validated, stored, then queued on the real broker), status, list, cancel."""

from __future__ import annotations

import io
import logging
import socket

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from core.audit_config import (
    MAX_BATCH_SIZE,
    MAX_CROSS_FIT,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_META_BATCH_SIZE,
    MAX_SEED,
    AuditConfig,
    LilawConfig,
)
from core.errors import ConfigError
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
        ({"model": "vit_huge_patch14_224"}, "631M parameters; the limit is 100M"),
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


def test_a_503_names_no_broker_address_and_the_log_has_it(settings, make_key, sessions, images_id, caplog):
    with socket.socket() as probe:  # a local port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{port}/0"})
    with TestClient(create_app(unreachable)) as down, caplog.at_level(logging.ERROR):
        alice = make_key("alice")
        response = down.post("/jobs", json={"dataset_id": images_id, "epochs": 1}, headers=alice)
        (job,) = down.get("/jobs", headers=alice).json()
    assert response.status_code == 503
    job_id = job["id"]
    assert response.json() == {"detail": f"job {job_id} could not be queued: the broker is unavailable"}
    assert job["error"] == response.json()["detail"]
    for address in (str(port), "127.0.0.1", "redis://", "Connection refused", "Errno"):
        assert address not in response.text and address not in job["error"]
    logged = "\n".join(record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR)
    assert f"job {job_id} could not be queued" in logged and str(port) in logged


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


def _operations(app):
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def test_every_numeric_parameter_is_bounded(app):
    """Every integer or number in a path or query has a maximum (what the database holds, or less)."""
    unbounded = []
    for method, path, operation in _operations(app):
        for parameter in operation.get("parameters", []):
            schema = parameter["schema"]
            for variant in schema.get("anyOf", [schema]):
                if variant.get("type") in ("integer", "number") and "maximum" not in variant:
                    unbounded.append((method, path, parameter["name"]))
    assert unbounded == []


@pytest.mark.parametrize("value", [2**31, 2**63, 10**30])
def test_out_of_range_path_ids_are_422_on_every_route(client, alice, value):
    """An id above 2^31 - 1 (Postgres' integer) or 2^63 - 1 (SQLite's) names no row: 422 naming
    the parameter, not the database's 500."""
    checked = 0
    for method, path, operation in _operations(client.app):
        parameters = [parameter["name"] for parameter in operation.get("parameters", []) if parameter["in"] == "path"]
        numeric = [p["name"] for p in operation.get("parameters", []) if p["in"] == "path" and p["schema"].get("type") == "integer"]
        for target in numeric:
            url = path
            for name in parameters:
                url = url.replace(f"{{{name}}}", str(value if name == target else 1))
            # the routes that stream their body read it before they validate their parameters
            if path.endswith("/flags"):
                body = {"json": []}
            elif path.endswith("/append"):
                body = {"files": {"file": ("tiny.npz", tiny_images())}}
            else:
                body = {}
            response = client.request(method, url, headers=alice, **body)
            assert response.status_code == 422, (method, url, response.text)
            assert target in response.json()["detail"], (method, url, response.text)
            checked += 1
    for page in ("/ui/jobs/{}", "/ui/jobs/{}/review"):
        assert client.get(page.format(value), headers=alice).status_code == 422
    assert checked > 30


@pytest.mark.parametrize(
    "query", [{"dataset_id": 2**31}, {"dataset_id": 2**63}, {"dataset_id": 0}]
)
def test_out_of_range_query_id_is_422(client, alice, query):
    response = client.get("/jobs", params=query, headers=alice)
    assert response.status_code == 422, response.text
    assert "dataset_id" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"epochs": 2**31}, "epochs"),
        ({"epochs": 2**63}, "epochs"),
        ({"epochs": MAX_EPOCHS + 1}, "epochs"),
        ({"batch_size": MAX_BATCH_SIZE + 1}, "batch_size"),
        ({"meta_batch_size": MAX_META_BATCH_SIZE + 1}, "meta_batch_size"),
        ({"image_size": MAX_IMAGE_SIZE + 1}, "image_size"),
        ({"cross_fit": MAX_CROSS_FIT + 1}, "cross_fit"),
        ({"seed": -1}, "seed"),
        ({"seed": MAX_SEED + 1}, "seed"),
        ({"lr": 1e308}, "lr"),
        ({"lr": MAX_LR * 2}, "lr"),
        ({"dataset_id": 2**31}, "dataset_id"),
        ({"dataset_id": 2**63}, "dataset_id"),
        ({"version": 2**31}, "version"),
    ],
)
def test_oversized_training_options_are_422_and_store_nothing(
    client, alice, sessions, images_id, take_queued_tasks, change, field
):
    response = client.post("/jobs", json={"dataset_id": images_id, **change}, headers=alice)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]
    assert count_jobs(sessions) == 0
    assert take_queued_tasks() == []


def test_limits_of_the_training_options_are_accepted(client, alice, images_id):
    body = {
        "dataset_id": images_id,
        "epochs": MAX_EPOCHS,
        "batch_size": MAX_BATCH_SIZE,
        "meta_batch_size": MAX_META_BATCH_SIZE,
        "image_size": MAX_IMAGE_SIZE,
        "cross_fit": MAX_CROSS_FIT,
        "seed": MAX_SEED,
        "lr": MAX_LR,
    }
    response = client.post("/jobs", json=body, headers=alice)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    "path", ["/datasets/{}/reaudits", "/datasets/{}/schedule"]
)
def test_reaudit_and_schedule_bodies_have_the_same_limits(client, alice, images_id, path):
    method = "PUT" if path.endswith("schedule") else "POST"
    body = {"audit": {"epochs": MAX_EPOCHS + 1}}
    if method == "PUT":
        body["interval_seconds"] = 3600
    response = client.request(method, path.format(images_id), json=body, headers=alice)
    assert response.status_code == 422, response.text
    assert "epochs" in response.json()["detail"]
    if method == "PUT":
        response = client.put(path.format(images_id), json={"interval_seconds": 2**31}, headers=alice)
        assert response.status_code == 422, response.text
        assert "interval_seconds" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": MAX_EPOCHS + 1}, "epochs"),
        ({"batch_size": MAX_BATCH_SIZE + 1}, "batch size"),
        ({"lr": 1e308}, "learning rate"),
        ({"lr": float("nan")}, "learning rate"),
        ({"seed": -1}, "seed"),
        ({"noise_seed": -1}, "noise seed"),
        ({"image_size": MAX_IMAGE_SIZE + 1}, "image size"),
        ({"cross_fit": MAX_CROSS_FIT + 1}, "cross-fit"),
        ({"lilaw": LilawConfig(meta_batch_size=MAX_META_BATCH_SIZE + 1)}, "meta batch size"),
        ({"lilaw": LilawConfig(lr=float("inf"))}, "LiLAW learning rate"),
    ],
)
def test_audit_config_validate_has_the_limits_too(change, message):
    """The CLI's path: AuditConfig.validate checks the same bounds as the API's schemas."""
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**change).validate()
