"""The review queue's suggestions are the audit's own predictions: on an uploaded class-folder zip
of digits (upscaled 8→32 px with nearest neighbour, 0–255 grayscale PNGs, ~15% of the files in
another class's folder), audited by the worker's code, the top class a reviewer applies with
`Enter` is the `predicted_label` of the job's scores for every sample.

(Recomputing the probabilities from the stored model in eval mode, as the queue once did, got
the flipped samples' true class right for far fewer of them than the audit did.)
"""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from core.services.audit_runs import execute_job
from core.store.models import JobStatus

NUM_SAMPLES = 400
FLIP_RATE = 0.15
EPOCHS = 4


def digits_folder_zip(num_samples: int, flip_rate: float, seed: int) -> tuple[bytes, dict[str, str]]:
    """A zip of class folders of digits as 32×32 PNGs, some in a wrong folder; and the true
    class of every file (by its path, the sample id)."""
    digits = load_digits()
    rng = np.random.default_rng(seed)
    truth = {}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in rng.permutation(len(digits.target))[:num_samples].tolist():
            pixels = (digits.images[i] * (255 / 16)).round().astype(np.uint8).repeat(4, axis=0).repeat(4, axis=1)
            true = int(digits.target[i])
            folder = int((true + rng.integers(1, 10)) % 10) if rng.random() < flip_rate else true
            png = io.BytesIO()
            Image.fromarray(pixels, mode="L").save(png, format="PNG")
            name = f"{folder}/digit_{i:04d}.png"
            archive.writestr(name, png.getvalue())
            truth[name] = str(true)
    return buffer.getvalue(), truth


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_the_suggestion_is_the_audits_predicted_label_on_an_uploaded_class_folder_zip(client, alice, sessions, settings):
    archive, truth = digits_folder_zip(NUM_SAMPLES, FLIP_RATE, seed=0)
    dataset = client.post("/datasets", files={"file": ("digits.zip", archive)}, headers=alice)
    assert dataset.status_code == 201, dataset.text
    job = client.post(
        "/jobs", json={"dataset_id": dataset.json()["id"], "epochs": EPOCHS, "batch_size": 128, "seed": 0}, headers=alice
    ).json()
    assert execute_job(sessions, job["id"], settings) is JobStatus.SUCCEEDED  # what the worker's task runs

    scores = client.get(f"/jobs/{job['id']}/scores.csv", headers=alice)
    predicted = {row["sample_id"]: row["predicted_label"] for row in csv.DictReader(io.StringIO(scores.text))}
    queue = client.get(f"/jobs/{job['id']}/review-queue", params={"status": "all", "limit": 500}, headers=alice).json()
    suggested = {item["sample_id"]: item["top_classes"][0]["label"] for item in queue["items"]}
    given = {item["sample_id"]: item["label"] for item in queue["items"]}

    assert len(suggested) == len(predicted) == NUM_SAMPLES
    assert suggested == predicted
    flipped = [sample for sample, label in given.items() if label != truth[sample]]
    assert 0.1 * NUM_SAMPLES < len(flipped) < 0.2 * NUM_SAMPLES
    suggestion_accuracy = np.mean([suggested[sample] == truth[sample] for sample in flipped])
    audit_accuracy = np.mean([predicted[sample] == truth[sample] for sample in flipped])
    assert suggestion_accuracy == audit_accuracy
    assert audit_accuracy > 0.3  # the audit did learn the digits: the comparison says something
