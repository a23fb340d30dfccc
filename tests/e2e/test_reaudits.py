"""A growing dataset re-audited on schedule, end to end: a first audit and a reviewer's decisions;
samples appended (some mislabeled, some exact duplicates); time advanced by hand until the
schedule is due (nothing sleeps for it); the re-audit runs on the real worker; then the report,
the review queue and the signed webhook call, whose first attempt fails and is retried once its
backoff has passed."""

from __future__ import annotations

import io
import json
import time
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import sessionmaker

from core.loaders import load_dataset
from core.noise import apply_noise
from core.services import webhook_signing, webhooks
from core.services.schedules import run_due_schedules
from worker.celery_app import AUDIT_TASK, make_celery

EPOCHS = 6
BASE, NEW, DUPLICATES = 300, 100, 5
SECRET = "a-secret-of-the-data-ops-team"


def wait_for_delivery(http, dataset_id: int, done, timeout_s: float = 30) -> dict:
    """The dataset's newest webhook delivery once `done(delivery)` holds: the worker records an
    attempt only after the receiver has answered it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        [delivery] = http.get(f"/datasets/{dataset_id}/webhook/deliveries").raise_for_status().json()
        if done(delivery):
            return delivery
        time.sleep(0.2)
    raise AssertionError(f"the delivery never got there; last seen {delivery}")


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_appended_samples_are_reaudited_on_schedule_reported_queued_and_announced(service, receiver_for):
    receiver = receiver_for([500, 200])
    digits = apply_noise(load_dataset("digits", limit=BASE + NEW), "uniform", 0.3, seed=1)
    base, new = np.arange(BASE), np.arange(BASE, BASE + NEW)
    ids = np.array(digits.sample_ids)
    sessions = sessionmaker(service.engine())
    celery = make_celery(service.settings)

    with service.http() as http:
        first = npz(x=digits.x[base], y=digits.y[base], flags=digits.is_mislabeled[base], sample_ids=ids[base])
        dataset = http.post("/datasets", files={"file": ("digits.npz", first)}).raise_for_status().json()
        dataset_id = dataset["id"]
        audit = {"epochs": EPOCHS, "batch_size": 32}
        job = http.post("/jobs", json={"dataset_id": dataset_id, **audit}).raise_for_status().json()
        service.wait_for_job(http, job["id"], lambda j: j["status"] == "succeeded", "success")

        # A reviewer keeps the five most suspicious samples of the first audit.
        top = http.get(f"/jobs/{job['id']}/review-queue", params={"limit": 5}).raise_for_status().json()["items"]
        kept = {item["sample_id"] for item in top}
        for item in top:
            decision = {"sample_index": item["sample_index"], "verdict": "keep"}
            http.post(f"/jobs/{job['id']}/decisions", json=decision).raise_for_status()

        http.put(f"/datasets/{dataset_id}/webhook", json={"url": receiver.url, "secret": SECRET}).raise_for_status()
        schedule = http.put(
            f"/datasets/{dataset_id}/schedule", json={"interval_seconds": 7 * 24 * 3600, "audit": audit}
        ).raise_for_status().json()

        # A week's new samples, with exact copies of five old ones under new ids.
        more = npz(
            x=np.concatenate([digits.x[new], digits.x[:DUPLICATES]]),
            y=np.concatenate([digits.y[new], digits.y[:DUPLICATES]]),
            flags=np.concatenate([digits.is_mislabeled[new], np.zeros(DUPLICATES, bool)]),
            sample_ids=np.concatenate([ids[new], [f"copy-{i}" for i in range(DUPLICATES)]]),
        )
        appended = http.post(f"/datasets/{dataset_id}/versions/append", files={"file": ("week-2.npz", more)})
        appended = appended.raise_for_status().json()
        assert (appended["version"], appended["num_added"], appended["num_duplicates"]) == (2, NEW, DUPLICATES)

        # Time advances to the schedule's next run; beat's pass starts the re-audit.
        due = datetime.fromisoformat(schedule["next_run_at"])
        send = lambda job_id: celery.send_task(AUDIT_TASK, args=[job_id], queue=service.settings.audit_queue)
        assert run_due_schedules(sessions, now=due - timedelta(seconds=1), enqueue=send) == []
        [started] = run_due_schedules(sessions, now=due, enqueue=send)
        reaudit = service.wait_for_job(http, started.job_id, lambda j: j["status"] == "succeeded", "success")
        assert (reaudit["dataset_version"], reaudit["previous_job_id"]) == (2, job["id"])

        report = http.get(f"/jobs/{started.job_id}/report", params={"limit": 1000}).raise_for_status().json()
        counts, samples = report["counts"], report["samples"]
        assert (report["previous_version"], report["version"], counts["new_samples"]) == (1, 2, NEW)
        assert counts["newly_suspected"] + counts["still_suspected"] == report["num_suspected"]
        flipped_new = {sample_id for sample_id, flag in zip(ids[new], digits.is_mislabeled[new]) if flag}
        found = {sample["sample_id"] for sample in samples["new_suspected"]}
        assert len(found & flipped_new) >= 0.7 * len(flipped_new)  # most new flips are caught...
        assert len(found & flipped_new) >= 0.7 * len(found)  # ...and most new suspects are flips

        # Decided samples stay out of the queue unless the re-audit reopened them.
        queue = http.get(f"/jobs/{started.job_id}/review-queue", params={"limit": 500}).raise_for_status().json()
        queued = {item["sample_id"] for item in queue["items"]}
        reopened = {sample["sample_id"] for sample in samples["reopened"]}
        assert queued & kept == reopened & kept
        assert queue["progress"]["total"] - queue["progress"]["decided"] == len(queued)

        # The webhook: the worker's first call got a 500; the retry waits for its backoff.
        [failed] = receiver.wait_for(1)
        pending = wait_for_delivery(http, dataset_id, lambda d: d["attempts"] == 1)
        assert (pending["status"], pending["last_status_code"]) == ("pending", 500)
        retry_at = datetime.fromisoformat(pending["next_attempt_at"])
        failed_at = int({name.lower(): value for name, value in failed["headers"].items()}["x-lilaw-timestamp"])
        assert abs(retry_at.timestamp() - failed_at - webhooks.FIRST_RETRY.total_seconds()) < 2
        assert webhooks.deliver_due(sessions, allow_private_hosts=True, now=retry_at - timedelta(seconds=1)) == []
        [retried] = webhooks.deliver_due(sessions, allow_private_hosts=True, now=retry_at)
        assert retried.status_code == 200
        calls = receiver.wait_for(2)
        assert len(calls) == 2
        call = calls[1]
        headers = {name.lower(): value for name, value in call["headers"].items()}
        assert webhook_signing.verify_signature(
            SECRET, call["body"], headers["x-lilaw-timestamp"], headers["x-lilaw-signature"],
            now=retry_at,
        )  # fmt: skip
        assert not webhook_signing.verify_signature(
            "another-secret-entirely", call["body"], headers["x-lilaw-timestamp"], headers["x-lilaw-signature"],
            now=retry_at,
        )  # fmt: skip
        payload = json.loads(call["body"])
        assert (payload["event"], payload["job_id"], payload["counts"]) == ("reaudit.completed", started.job_id, counts)
        assert failed["body"] == call["body"]
        [delivery] = http.get(f"/datasets/{dataset_id}/webhook/deliveries").raise_for_status().json()
        assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)

        # Nothing new since: the next run skips.
        [skipped] = run_due_schedules(sessions, now=due + timedelta(days=7), enqueue=send)
        assert skipped.job_id is None and "audited already" in skipped.outcome
