"""Webhook deliveries do not starve audits: with a receiver that takes seconds per call and a
pile of test pings, an audit submitted meanwhile runs and finishes on the audit worker while the
webhook worker is still busy; the owner's rate limit defers the pings past its limit."""

from __future__ import annotations

import io
import time

import numpy as np

from core.loaders import load_dataset
from core.webhook_limits import MAX_CALLS_PER_OWNER_PER_WINDOW
from worker.celery_app import WEBHOOKS_TASK, make_celery

# The pass of MAX_CALLS calls (~50 s) ends inside the rate limit's window (60 s): the deferred
# pings stay pending until the window has passed, and nothing runs a pass after that here.
RECEIVER_DELAY_S = 5.0
PINGS = MAX_CALLS_PER_OWNER_PER_WINDOW + 2
SECRET = "a-secret-of-the-data-ops-team"


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_an_audit_finishes_while_slow_webhook_calls_are_still_being_made(service, receiver_for):
    receiver = receiver_for([200], delay_s=RECEIVER_DELAY_S)
    digits = load_dataset("digits", limit=300)
    with service.http() as http:
        body = npz(x=digits.x, y=digits.y, sample_ids=np.array(digits.sample_ids))
        dataset_id = http.post("/datasets", files={"file": ("digits.npz", body)}).raise_for_status().json()["id"]
        http.put(f"/datasets/{dataset_id}/webhook", json={"url": receiver.url, "secret": SECRET}).raise_for_status()
        for _ in range(PINGS):
            http.post(f"/datasets/{dataset_id}/webhook/test").raise_for_status()
        # What beat's tick (an hour away in these tests) would send: a delivery pass.
        make_celery(service.settings).send_task(WEBHOOKS_TASK)
        receiver.wait_for(1, timeout_s=120)

        submitted = time.monotonic()
        job = http.post("/jobs", json={"dataset_id": dataset_id, "epochs": 2, "batch_size": 64}).raise_for_status().json()
        done = service.wait_for_job(http, job["id"], lambda j: j["status"] not in ("queued", "running"), "an end")
        took = time.monotonic() - submitted
        calls_by_then = len(receiver.calls)
        assert done["status"] == "succeeded", done["error"]
        # The pass is ~MAX_CALLS x RECEIVER_DELAY_S long; the audit did not wait for it.
        assert calls_by_then < MAX_CALLS_PER_OWNER_PER_WINDOW, f"the audit took {took:.0f} s, after {calls_by_then} calls"

        receiver.wait_for(MAX_CALLS_PER_OWNER_PER_WINDOW, timeout_s=240)
        deadline = time.monotonic() + 60
        while True:
            shown = http.get(f"/datasets/{dataset_id}/webhook/deliveries").raise_for_status().json()
            if sum(d["status"] == "delivered" for d in shown) == MAX_CALLS_PER_OWNER_PER_WINDOW or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert sorted(d["status"] for d in shown) == ["delivered"] * MAX_CALLS_PER_OWNER_PER_WINDOW + ["pending"] * 2
        assert all(d["attempts"] == 0 for d in shown if d["status"] == "pending")  # deferred, not failed
        time.sleep(2 * RECEIVER_DELAY_S)
        assert len(receiver.calls) == MAX_CALLS_PER_OWNER_PER_WINDOW  # none past the limit in the window
    print(f"the audit took {took:.1f} s, during which the receiver got {calls_by_then} calls")
