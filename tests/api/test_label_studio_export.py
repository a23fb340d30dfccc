"""The Label Studio export of a review: each task carries an image the owner can open (a URL of
the service's full-size image route, or the PNG inline as a data: URL), and who decided what when
in the fields Label Studio keeps on import (task `data` and `meta`, annotation `created_at` /
`updated_at`), not in fields its importer drops."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image


def decide(client, headers, job_id: int, sample_index: int, verdict: str, label: str | None = None) -> dict:
    body = {"sample_index": sample_index, "verdict": verdict, "label": label}
    response = client.post(f"/jobs/{job_id}/decisions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def tasks(client, headers, job_id: int, **params) -> list[dict]:
    response = client.get(f"/jobs/{job_id}/export.labelstudio.json", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return json.loads(response.text)


def test_tasks_link_images_the_owner_can_open_and_keep_who_decided_when(client, alice, finished_job):
    job_id = finished_job.job_id
    dataset = finished_job.audit.result.dataset
    new_label = dataset.class_names[(int(dataset.y[0]) + 1) % dataset.num_classes]
    decision = decide(client, alice, job_id, 0, "relabel", new_label)

    [task] = tasks(client, alice, job_id, decided_only=True)
    image = task["data"]["image"]
    assert image == f"http://testserver/jobs/{job_id}/samples/0/image.png"
    opened = client.get(image.removeprefix("http://testserver"), headers=alice)
    assert opened.status_code == 200 and Image.open(io.BytesIO(opened.content)).size == (8, 8)

    assert task["data"]["sample_id"] == dataset.sample_ids[0]
    assert (task["data"]["label"], task["data"]["verdict"]) == (new_label, "relabel")
    assert task["data"]["reviewers"] == f"alice: relabel to {new_label}"
    assert task["data"]["decided_at"] == decision["created_at"].replace("Z", "+00:00")
    assert task["meta"]["decisions"] == [
        {"reviewer": "alice", "verdict": "relabel", "label": new_label, "decided_at": task["data"]["decided_at"]}
    ]
    [annotation] = task["annotations"]
    assert annotation["created_at"] == annotation["updated_at"] == task["data"]["decided_at"]
    # Only fields of Label Studio's annotation format: its importer drops the others.
    assert set(annotation) == {"result", "was_cancelled", "created_at", "updated_at"}


def test_images_can_be_inlined_as_data_urls(client, alice, finished_job):
    [task] = tasks(client, alice, finished_job.job_id, images="inline")[:1]
    prefix = "data:image/png;base64,"
    assert task["data"]["image"].startswith(prefix)
    png = base64.b64decode(task["data"]["image"].removeprefix(prefix))
    full = client.get(f"/jobs/{finished_job.job_id}/samples/0/image.png", headers=alice).content
    assert png == full


def test_rows_have_no_image(client, alice):
    data = b"f1,f2,label\n" + b"".join(f"{i},{i % 3},{'ab'[i % 2]}\n".encode() for i in range(20))
    dataset = client.post("/datasets", files={"file": ("rows.csv", data)}, headers=alice).json()
    job = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).json()
    assert all("image" not in task["data"] for task in tasks(client, alice, job["id"]))
