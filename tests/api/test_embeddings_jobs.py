"""Embeddings mode over HTTP: a job names a backbone whose weights the operator put in the data
dir's backbones folder; the stored configuration keeps the file's name, never a path. A backbone
without weights, a name that is a path, or a dataset that is not images answer 422 and queue
nothing."""

from __future__ import annotations

import io

import timm
import torch

BACKBONE = "test_resnet"  # timm's tiny test network


def _submit(client, headers, dataset_id, **options):
    return client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1, **options}, headers=headers)


def _table_dataset(client, headers) -> int:
    rows = "label,f0,f1\n" + "".join(f"{i % 2},{i},{i * 2}\n" for i in range(20))
    created = client.post("/datasets", files={"file": ("rows.csv", io.BytesIO(rows.encode()))}, headers=headers)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def test_a_job_names_a_backbone_that_has_weights_and_stores_their_file_name(client, alice, finished_job, settings):
    settings.backbone_dir.mkdir(parents=True)
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), settings.backbone_dir / f"{BACKBONE}.pth")

    created = _submit(client, alice, finished_job.dataset_id, embeddings=BACKBONE, embeddings_head="mlp")

    assert created.status_code == 201, created.text
    config = created.json()["config"]
    assert (config["embeddings_backbone"], config["embeddings_weights"], config["embeddings_head"]) == (
        BACKBONE, f"{BACKBONE}.pth", "mlp",
    )  # fmt: skip


def test_embeddings_requests_the_service_cannot_run_answer_422(
    client, alice, finished_job, settings, take_queued_tasks
):
    take_queued_tasks()
    missing = _submit(client, alice, finished_job.dataset_id, embeddings="resnet18")
    assert missing.status_code == 422
    assert "no weights for backbone 'resnet18'" in missing.text and "backbones/resnet18.safetensors" in missing.text

    as_path = _submit(client, alice, finished_job.dataset_id, embeddings="../../etc/passwd")
    assert as_path.status_code == 422 and "embeddings" in as_path.text

    settings.backbone_dir.mkdir(parents=True)
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), settings.backbone_dir / f"{BACKBONE}.pth")
    with_model = _submit(client, alice, finished_job.dataset_id, embeddings=BACKBONE, model="small-cnn")
    assert with_model.status_code == 422 and "leave model and weights unset" in with_model.text
    table = _submit(client, alice, _table_dataset(client, alice), embeddings=BACKBONE)
    assert table.status_code == 422 and "embeddings mode is for images" in table.text
    assert take_queued_tasks() == []
