"""A worker SIGKILLed mid-job on Postgres + Redis, with the default heartbeat and reaper
intervals: the reaper notices within a few heartbeat intervals, the job shows that its worker
was lost, and a second worker (already running, as in a deployment of several) resumes it within
a minute and completes it."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from core.loaders import load_dataset

RESUMED_WITHIN_S = 60.0
SHOWN_LOST_WITHIN_S = 45.0  # the timeout (30 s) and at most one reaper interval (10 s)
STARTUP_TIMEOUT_S = 180.0
EPOCHS = 20


@pytest.fixture
def service_settings() -> dict:
    """The e2e defaults, but the heartbeat and reaper intervals of a real deployment."""
    return {"job_soft_time_limit_s": 900, "schedule_tick_s": 3600}


def wait_until_ready(service, name: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while " ready." not in log_of(service, name):
        assert time.monotonic() < deadline, f"{name} did not start:\n{service.logs()}"
        time.sleep(0.5)


def log_of(service, name: str) -> str:
    log = service.log_dir / f"{name}.log"
    return log.read_text() if log.exists() else ""


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("backend_urls", ["postgres-redis"], indirect=True)
def test_a_killed_workers_job_is_shown_lost_and_resumed_within_a_minute(service):
    digits = load_dataset("digits", limit=300)
    with service.http() as http:
        body = npz(x=digits.x, y=digits.y, sample_ids=np.array(digits.sample_ids))
        dataset_id = http.post("/datasets", files={"file": ("digits.npz", body)}).raise_for_status().json()["id"]
        service.start("worker-2", "worker")
        wait_until_ready(service, "worker")
        wait_until_ready(service, "worker-2")
        job = http.post("/jobs", json={"dataset_id": dataset_id, "epochs": EPOCHS, "batch_size": 32}).raise_for_status().json()
        running = service.wait_for_job(http, job["id"], lambda j: j["progress"]["epoch"] >= 2, "epoch 2")

        [holder] = [name for name in ("worker", "worker-2") if running["celery_task_id"] in log_of(service, name)]
        service.kill(holder)
        killed = time.monotonic()
        seen_lost = None
        while True:
            shown = http.get(f"/jobs/{job['id']}", params={"trajectory": False}).raise_for_status().json()
            result = shown["result"] or {}
            if seen_lost is None and result.get("recoveries"):
                seen_lost, lost_after = shown, time.monotonic() - killed
            if shown["status"] == "running" and result.get("attempts") == 2:
                resumed_after = time.monotonic() - killed
                break
            assert time.monotonic() - killed < 2 * RESUMED_WITHIN_S, f"not resumed; last seen {shown}"
            time.sleep(0.25)
        assert seen_lost is not None and "worker lost" in seen_lost["result"]["recoveries"][0]
        assert lost_after < SHOWN_LOST_WITHIN_S, f"shown lost {lost_after:.0f} s after the kill"
        assert resumed_after < RESUMED_WITHIN_S, f"resumed {resumed_after:.0f} s after the kill"

        done = service.wait_for_job(http, job["id"], lambda j: j["status"] not in ("queued", "running"), "an end")
        assert done["status"] == "succeeded", done["error"]
        assert done["progress"]["epoch"] == EPOCHS and done["result"]["attempts"] == 2
        [recovery] = done["result"]["recoveries"]
        assert recovery.startswith("worker lost at epoch ") and "requeued at" in recovery
    print(f"shown lost {lost_after:.1f} s and resumed {resumed_after:.1f} s after the kill")
