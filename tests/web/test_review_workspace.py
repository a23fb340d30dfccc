"""An annotation team's review, in a real browser against the running service: digits with 30%
label noise (flipped here, so the service knows no flags) are uploaded and audited by the
worker; the reviewer logs in, follows the job page, relabels two suspects and keeps one with the
keyboard only, undoes and redoes, and exports. The export and the metrics follow the decisions.

With LILAW_UPDATE_SCREENSHOTS=1 the job page and the queue are saved as docs/review-job.png and
docs/review-queue.png (1280x800).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pytest

from core.loaders import load_dataset
from core.noise import apply_noise

EPOCHS = 5
NOISE = 0.3
JOB_TIMEOUT_MS = 240_000
DOCS = Path(__file__).resolve().parents[2] / "docs"


def screenshot(page, name: str, tmp_path: Path) -> None:
    page.wait_for_function(
        "() => Array.from(document.images).every((image) => image.complete || image.getBoundingClientRect().top > 800)"
    )
    # The picture waits for transitions (the progress bar's width) to end.
    page.wait_for_function("() => document.getAnimations().every((animation) => animation.playState === 'finished')")
    page.screenshot(path=tmp_path / name)
    if os.environ.get("LILAW_UPDATE_SCREENSHOTS"):
        page.screenshot(path=DOCS / name)


def test_a_reviewer_works_through_the_queue_with_the_keyboard(page, service, tmp_path):
    noisy = apply_noise(load_dataset("digits"), "uniform", NOISE, seed=0)
    npz = tmp_path / "noisy-digits.npz"
    np.savez(npz, x=noisy.x, y=noisy.y, sample_ids=np.array(noisy.sample_ids))
    with service.http() as http:
        dataset = http.post("/datasets", files={"file": (npz.name, npz.read_bytes())}).raise_for_status().json()
        job = http.post(
            "/jobs", json={"dataset_id": dataset["id"], "epochs": EPOCHS, "batch_size": 64}
        ).raise_for_status().json()

    page.goto(f"{service.url}/ui/jobs/{job['id']}")
    assert page.url.endswith(f"/ui/login?next=/ui/jobs/{job['id']}")
    page.fill("#api-key", service.api_key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/jobs/{job['id']}")
    page.wait_for_function(
        "() => Number(document.getElementById('progress').getAttribute('aria-valuenow')) > 0", timeout=JOB_TIMEOUT_MS
    )
    page.wait_for_selector("body[data-ready=true]", timeout=JOB_TIMEOUT_MS)
    assert page.inner_text("#status") == "succeeded"
    assert page.locator("#trajectory svg").count() == 3
    assert page.locator("#histogram rect").count() > 10
    assert "No curves yet" in page.inner_text("#flags-caption")

    page.click("text=Review suspects")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator(".card").count() == 30
    assert "0 reviewed · 1797 remaining" in page.inner_text("#counts")
    with service.http() as http:
        expected = http.get(f"/jobs/{job['id']}/review-queue", params={"limit": 3}).raise_for_status().json()["items"]
    first, second, third = expected
    assert page.locator(".card").first.get_attribute("data-sample-index") == str(first["sample_index"])
    suggestion = next(top["label"] for top in first["top_classes"] if top["label"] != first["label"])
    other = next(name for name in reversed([str(c) for c in range(10)]) if name != second["label"])

    def card(item) -> str:
        return f"#sample-{item['sample_index']}"

    page.keyboard.press("Enter")
    page.wait_for_selector(f"{card(first)}.decided")
    page.keyboard.press(other)
    page.wait_for_selector(f"{card(second)}.decided")
    page.keyboard.press("k")
    page.wait_for_selector(f"{card(third)}.decided")
    page.keyboard.press("u")
    page.wait_for_selector(f"{card(third)}:not(.decided)")
    assert page.locator(f"{card(third)}.current").count() == 1
    page.keyboard.press("k")
    page.wait_for_selector(f"{card(third)}.decided")
    page.wait_for_selector("#save-state[data-pending='0']")  # the counter counts what is stored
    assert "3 reviewed · 1794 remaining" in page.inner_text("#counts")
    assert f"you: relabel to {suggestion}" in page.inner_text(card(first))
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, "review-queue.png", tmp_path)

    with page.expect_download() as download:
        page.click("text=CSV")
    rows = {row["sample_id"]: row for row in csv.DictReader(io.StringIO(Path(download.value.path()).read_text()))}
    assert len(rows) == 1797
    assert [(rows[item["sample_id"]]["verdict"], rows[item["sample_id"]]["label"]) for item in expected] == [
        ("relabel", suggestion), ("relabel", other), ("keep", third["label"]),
    ]  # fmt: skip
    assert rows[first["sample_id"]]["reviewers"] == f"{service.reviewer}: relabel to {suggestion}"

    with service.http() as http:
        decisions = http.get(f"/jobs/{job['id']}/decisions").raise_for_status().json()
        assert decisions["summary"]["decided"] == 3 and decisions["summary"]["mislabeled"] == 2
        metrics = http.get(f"/jobs/{job['id']}/metrics").raise_for_status().json()
        default = next(entry for entry in metrics["scores"] if entry["score"] == metrics["default_score"])
        assert default["aggregate"]["all"]["num_mislabeled"] == 2
        assert default["aggregate"]["all"]["auroc"] is not None

        truth = zip(noisy.sample_ids, noisy.is_mislabeled.tolist())
        flags = [{"sample_id": sample_id, "is_mislabeled": flag} for sample_id, flag in truth]
        http.post(f"/datasets/{dataset['id']}/versions/1/flags", json=flags).raise_for_status()
        known = dict(zip(noisy.sample_ids, noisy.is_mislabeled.tolist()))
        known.update({first["sample_id"]: True, second["sample_id"]: True, third["sample_id"]: False})
        metrics = http.post(f"/jobs/{job['id']}/metrics/recompute").raise_for_status().json()
        default = next(entry for entry in metrics["scores"] if entry["score"] == metrics["default_score"])
        assert default["aggregate"]["all"]["num_mislabeled"] == sum(known.values())
        assert default["aggregate"]["all"]["auroc"] > 0.9

    page.goto(f"{service.url}/ui/jobs/{job['id']}")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#roc polyline").count() >= 2
    assert "1797 samples" in page.inner_text("#flags-caption")
    screenshot(page, "review-job.png", tmp_path)
