"""A job cancelled while it cross-fits frees the only worker within about one epoch: the job
queued behind it starts at once and finishes, and the cancelled job stays cancelled with no
results. (Before, the folds ran to their end after the cancel had answered 200.)"""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from core.loaders import load_dataset

FOLDS = 5
EPOCHS = 30  # one fold: ~10 s here; the rest of the cross-fit after a cancel in fold 2: ~40 s
NEXT_JOB_STARTS_WITHIN_S = 8.0


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def shown(http, job_id: int) -> dict:
    return http.get(f"/jobs/{job_id}", params={"trajectory": False}).raise_for_status().json()


@pytest.mark.parametrize("backend_urls", ["sqlite"], indirect=True)
def test_a_job_cancelled_in_cross_fit_frees_the_worker_for_the_next(service):
    digits = load_dataset("digits", limit=300)
    with service.http() as http:
        body = npz(x=digits.x, y=digits.y, sample_ids=np.array(digits.sample_ids))
        dataset_id = http.post("/datasets", files={"file": ("digits.npz", body)}).raise_for_status().json()["id"]
        long = {"dataset_id": dataset_id, "epochs": EPOCHS, "cross_fit": FOLDS, "weighting": "none", "batch_size": 64}
        first = http.post("/jobs", json=long).raise_for_status().json()
        service.wait_for_job(
            http, first["id"], lambda j: (j["result"] or {}).get("stage") == f"cross-fitting: fold 2 of {FOLDS}", "fold 2"
        )
        second = http.post("/jobs", json={"dataset_id": dataset_id, "epochs": 2, "batch_size": 64}).raise_for_status().json()
        assert shown(http, second["id"])["status"] == "queued"  # the only worker is busy

        http.post(f"/jobs/{first['id']}/cancel").raise_for_status()
        cancelled = time.monotonic()
        service.wait_for_job(http, second["id"], lambda j: j["status"] != "queued", "a start")
        started_after = time.monotonic() - cancelled
        assert started_after < NEXT_JOB_STARTS_WITHIN_S, f"the next job started {started_after:.1f} s after the cancel"

        done = service.wait_for_job(http, second["id"], lambda j: j["status"] not in ("queued", "running"), "an end")
        assert done["status"] == "succeeded", done["error"]
        cancelled_job = shown(http, first["id"])
        assert cancelled_job["status"] == "cancelled" and not cancelled_job["has_model"]
        suspects = http.get(f"/jobs/{first['id']}/suspects")
        assert suspects.status_code != 200 or suspects.json()["items"] == []  # no scores were stored
    print(f"the next job started {started_after:.1f} s after the cancel")
