"""The job page's stopping point in a real browser against the running service: after the worker
audits digits with injected noise, the page says about how many label errors the dataset holds
and how many were reviewed and found, and a "given → likely" pair opens the review queue on the
samples of that pair."""

from __future__ import annotations

import re

import numpy as np

from core.loaders import load_dataset

JOB_TIMEOUT_MS = 240_000


def test_the_job_page_shows_the_estimate_and_opens_the_queue_on_a_pair(page, service, tmp_path):
    digits = load_dataset("digits", limit=600)
    npz = tmp_path / "digits.npz"
    np.savez(npz, x=digits.x, y=digits.y, sample_ids=np.array(digits.sample_ids))
    with service.http() as http:
        dataset = http.post("/datasets", files={"file": (npz.name, npz.read_bytes())}).raise_for_status().json()
        job = http.post(
            "/jobs", json={"dataset_id": dataset["id"], "epochs": 4, "batch_size": 64, "inject_noise": "asymmetric:0.2"}
        ).raise_for_status().json()

    page.goto(f"{service.url}/ui/login?next=/ui/jobs/{job['id']}")
    page.fill("#api-key", service.api_key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/ui/jobs/{job['id']}")
    page.wait_for_selector("#estimate-summary", timeout=JOB_TIMEOUT_MS)
    with service.http() as http:
        estimate = http.get(f"/jobs/{job['id']}/noise-estimate").raise_for_status().json()
    summary = page.inner_text("#estimate-summary")
    assert re.fullmatch(r"About \d+ likely errors \(\d+\.\d% of 600 samples\), 0 reviewed, 0 found\.", summary)
    assert f"About {round(estimate['estimated_errors'])} likely errors" in summary
    links = page.locator("a.pair-link")
    assert links.count() == len(estimate["pairs"]) > 0
    top = estimate["pairs"][0]
    assert links.first.inner_text() == f"{top['given']} → {top['likely']}"

    links.first.click()
    page.wait_for_url("**/review?given=*")
    page.wait_for_selector("body[data-ready=true]")
    labels = page.locator(".card .given").all_inner_texts()
    assert labels and all(text.replace("LABEL", "").strip() == top["given"] for text in labels)
    with service.http() as http:
        pair = http.get(
            f"/jobs/{job['id']}/review-queue", params={"given": top["given"], "likely": top["likely"], "limit": 500}
        ).raise_for_status().json()
    assert len(labels) == min(len(pair["items"]), 30)
    # The queue itself shows the stopping point for the pair it is opened on.
    page.wait_for_selector("#estimate:not([hidden])")
    assert page.inner_text("#estimate") == (
        f"about {round(top['estimated_errors'])} likely errors in {top['given']} → {top['likely']} · {top['found']} found"
    )
