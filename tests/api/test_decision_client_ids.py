"""One key press is one decision: a decision sent with the client's id for it is stored once,
however often (or however concurrently) the request arrives; the reviewer's own decisions come
back newest first for the review page's undo; the decisions list pages by `limit`; a sample is
found by its id; and an image sample comes at full size for the zoom."""

from __future__ import annotations

import io
import threading
import time
import uuid
import zipfile

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from core.services import decisions, jobs
from core.services.artifacts import job_artifacts
from core.services.decisions import Reviewer
from core.store import Dataset, session_scope
from core.store.models import Decision
from core.verdicts import Verdict


def post_decision(client, headers, job_id: int, **body):
    return client.post(f"/jobs/{job_id}/decisions", json=body, headers=headers)


def stored_decisions(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Decision))


def test_a_repeated_client_id_is_the_same_decision(client, alice, sessions, finished_job):
    job_id, client_id = finished_job.job_id, str(uuid.uuid4())
    first = post_decision(client, alice, job_id, sample_index=4, verdict="keep", client_id=client_id)
    again = post_decision(client, alice, job_id, sample_index=4, verdict="keep", client_id=client_id)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.json()["client_id"] == client_id
    assert stored_decisions(sessions) == 1

    other = post_decision(client, alice, job_id, sample_index=5, verdict="keep", client_id=client_id)
    assert other.status_code == 409 and "new client id" in other.json()["detail"]
    assert post_decision(client, alice, job_id, sample_index=5, verdict="keep", client_id="no spaces!").status_code == 422
    fresh = post_decision(client, alice, job_id, sample_index=4, verdict="keep", client_id=str(uuid.uuid4()))
    assert fresh.json()["id"] != first.json()["id"]
    assert stored_decisions(sessions) == 2


def test_two_identical_requests_at_once_store_one_decision(client, alice, sessions, settings, finished_job):
    """The first request holds its transaction open after inserting; the second one, started then,
    cannot see that row yet (Postgres) or waits for the lock (SQLite): one row either way."""
    job_id, client_id = finished_job.job_id, str(uuid.uuid4())
    with sessions() as session:
        owner_id = session.scalar(select(Dataset.owner_id).where(Dataset.id == finished_job.dataset_id))
    reviewer = Reviewer(owner_id=owner_id, name="alice")
    inserted = threading.Event()
    ids: dict[str, int] = {}
    failures: list[BaseException] = []

    def record(name: str, hold_s: float, wait: threading.Event | None) -> None:
        try:
            if wait is not None:
                wait.wait(10)
            with session_scope(sessions) as session:
                job = jobs.get_job(session, owner_id, job_id)
                decision = decisions.record_decision(
                    session, reviewer, job, 7, Verdict.KEEP, None, job_artifacts(settings, job), client_id=client_id
                )
                ids[name] = decision.id
                if wait is None:
                    inserted.set()
                    time.sleep(hold_s)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)
            inserted.set()

    threads = [
        threading.Thread(target=record, args=("first", 0.5, None)),
        threading.Thread(target=record, args=("second", 0, inserted)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures, failures
    assert ids["first"] == ids["second"]
    assert stored_decisions(sessions) == 1


def test_the_reviewers_own_decisions_come_newest_first_without_the_undone(client, alice, make_key, finished_job):
    job_id = finished_job.job_id
    made = [post_decision(client, alice, job_id, sample_index=i, verdict="keep").json() for i in (3, 9, 1)]
    client.post(f"/decisions/{made[1]['id']}/undo", headers=alice).raise_for_status()
    mine = client.get(f"/jobs/{job_id}/decisions/mine", headers=alice).json()
    assert [(d["id"], d["sample_index"]) for d in mine] == [(made[2]["id"], 1), (made[0]["id"], 3)]
    assert len(client.get(f"/jobs/{job_id}/decisions/mine", params={"limit": 1}, headers=alice).json()) == 1
    assert client.get(f"/jobs/{job_id}/decisions/mine", headers=make_key("bob")).status_code == 404


def test_the_decisions_list_honours_limit_and_pages_on(client, alice, finished_job):
    job_id = finished_job.job_id
    for index in (8, 2, 6, 4, 0):
        post_decision(client, alice, job_id, sample_index=index, verdict="keep").raise_for_status()
    first = client.get(f"/jobs/{job_id}/decisions", params={"limit": 2}, headers=alice).json()
    assert [sample["sample_index"] for sample in first["samples"]] == [0, 2]
    assert first["summary"]["decided"] == 5 and first["next_after"] == 2
    rest = client.get(f"/jobs/{job_id}/decisions", params={"limit": 2, "after": 2}, headers=alice).json()
    assert [sample["sample_index"] for sample in rest["samples"]] == [4, 6] and rest["next_after"] == 6
    last = client.get(f"/jobs/{job_id}/decisions", params={"limit": 2, "after": 6}, headers=alice).json()
    assert [sample["sample_index"] for sample in last["samples"]] == [8] and last["next_after"] is None
    assert client.get(f"/jobs/{job_id}/decisions", params={"limit": 0}, headers=alice).status_code == 422


def test_the_queue_finds_one_sample_by_its_id(client, alice, finished_job):
    job_id = finished_job.job_id
    sample_id = finished_job.audit.result.dataset.sample_ids[11]
    found = client.get(f"/jobs/{job_id}/review-queue", params={"sample_id": sample_id}, headers=alice).json()
    assert [item["sample_id"] for item in found["items"]] == [sample_id]
    assert found["progress"]["total"] == finished_job.num_samples
    post_decision(client, alice, job_id, sample_index=11, verdict="keep").raise_for_status()
    params = {"sample_id": sample_id}
    assert client.get(f"/jobs/{job_id}/review-queue", params=params, headers=alice).json()["items"] == []
    decided = client.get(f"/jobs/{job_id}/review-queue", params={**params, "status": "all"}, headers=alice).json()
    assert [item["sample_index"] for item in decided["items"]] == [11]
    params = {"sample_id": "no-such-sample"}
    assert client.get(f"/jobs/{job_id}/review-queue", params=params, headers=alice).json()["items"] == []


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_an_image_sample_comes_at_full_size(client, alice, finished_job):
    job_id = finished_job.job_id
    response = client.get(f"/jobs/{job_id}/samples/3/image.png", headers=alice)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert np.array_equal(np.asarray(image), finished_job.audit.result.dataset.x[3, 0])
    cached = client.get(
        f"/jobs/{job_id}/samples/3/image.png", headers={**alice, "If-None-Match": response.headers["etag"]}
    )
    assert cached.status_code == 304
    assert client.get(f"/jobs/{job_id}/samples/300/image.png", headers=alice).status_code == 404


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_large_image_is_a_small_thumbnail_and_zooms_to_full_size(client, alice):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("cat/1.png", "cat/2.png", "dog/3.png", "dog/4.png"):
            pixels = np.random.default_rng(len(name)).integers(0, 255, (150, 200, 3), dtype=np.uint8)
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG")
            zipped.writestr(name, png.getvalue())
    dataset = client.post("/datasets", files={"file": ("pets.zip", archive.getvalue())}, headers=alice).json()
    job_id = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).json()["id"]

    def size(kind: str) -> tuple[int, int]:
        response = client.get(f"/jobs/{job_id}/samples/0/{kind}.png", headers=alice)
        assert response.status_code == 200, response.text
        return Image.open(io.BytesIO(response.content)).size

    assert size("thumbnail") == (128, 96)
    assert size("image") == (200, 150)
