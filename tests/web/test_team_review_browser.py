"""Blind double review in a real browser against the running service: the lead assigns the two
most suspicious samples to ana and ben (k=2, blind) from the job page's Team section; each
reviewer sees only their samples and not the other's verdict; they disagree on the first; the
conflict shows on the job page; the lead resolves it on the adjudication page, and the
adjudicated verdict is the sample's agreed one in the export."""

from __future__ import annotations

import csv
import io
import time

import numpy as np

from api.auth import create_api_key
from core.loaders import load_dataset
from core.noise import apply_noise
from core.store import make_engine, make_session_factory, session_scope

SAMPLES = 200
EPOCHS = 2
JOB_TIMEOUT_S = 300


def log_in(browser, service, key: str, path: str, errors: list[str]):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{service.url}/ui/login?next={path}")
    page.fill("#api-key", key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"**{path}")
    return context, page


def finished_job(service, tmp_path) -> dict:
    noisy = apply_noise(load_dataset("digits", limit=SAMPLES), "uniform", 0.3, seed=0)
    npz = tmp_path / "team-digits.npz"
    np.savez(npz, x=noisy.x, y=noisy.y, sample_ids=np.array(noisy.sample_ids))
    with service.http() as http:
        dataset = http.post("/datasets", files={"file": (npz.name, npz.read_bytes())}).raise_for_status().json()
        body = {"dataset_id": dataset["id"], "epochs": EPOCHS, "batch_size": 64}
        job = http.post("/jobs", json=body).raise_for_status().json()
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while (job := http.get(f"/jobs/{job['id']}").raise_for_status().json())["status"] != "succeeded":
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < deadline, "the audit did not finish"
            time.sleep(1)
    return job


def test_two_blind_reviewers_disagree_and_the_adjudicator_decides(browser, service, tmp_path):
    engine = make_engine(service.settings.resolved_database_url)
    with session_scope(make_session_factory(engine)) as session:
        ben_key = create_api_key(session, "team", reviewer="ben")
    engine.dispose()
    job = finished_job(service, tmp_path)
    job_path = f"/ui/jobs/{job['id']}"
    errors: list[str] = []

    lead_context, lead = log_in(browser, service, service.owner_key, job_path, errors)
    lead.wait_for_selector("#team[data-loaded=true]")
    lead.fill("#assign-reviewers", "ana, ben")
    lead.fill("#assign-from", "1")
    lead.fill("#assign-to", "2")
    lead.fill("#assign-k", "2")
    lead.check("#assign-blind")
    lead.click("#team-assign button[type=submit]")
    lead.wait_for_function("() => document.getElementById('assign-result').textContent.includes('assigned')")
    assert lead.inner_text("#assign-result") == "2 samples assigned: ana 2, ben 2."

    with service.http() as http:
        top = http.get(f"/jobs/{job['id']}/review-queue", params={"limit": 2}).raise_for_status().json()["items"]
    first = top[0]
    card = f"#sample-{first['sample_index']}"
    relabel_to = next(name for name in map(str, range(10)) if name != first["label"])
    final = next(name for name in map(str, range(10)) if name not in (first["label"], relabel_to))

    ana_context, ana = log_in(browser, service, service.api_key, f"{job_path}/review", errors)
    ana.wait_for_selector("body[data-ready=true]")
    assert ana.locator(".card").count() == 2  # her assigned samples only
    assert ana.locator(".card").first.get_attribute("data-sample-index") == str(first["sample_index"])
    ana.keyboard.press(relabel_to)
    ana.wait_for_selector(f"{card}.decided")

    ben_context, ben = log_in(browser, service, ben_key, f"{job_path}/review", errors)
    ben.wait_for_selector("body[data-ready=true]")
    assert ben.locator(".card").count() == 2
    # Ana's verdict is stored, yet ben, who has not decided, sees the sample undecided and without it.
    assert "not reviewed yet" in ben.inner_text(f"{card} .verdicts")
    assert "ana" not in ben.inner_text(card) and relabel_to not in ben.inner_text(f"{card} .verdicts")
    assert ben.locator(f"{card}.decided").count() == 0
    ben.keyboard.press("k")
    ben.wait_for_selector(f"{card}.decided")

    deadline = time.monotonic() + 30
    with service.http() as http:
        while http.get(f"/jobs/{job['id']}/conflicts").json()["open"] != 1:
            assert time.monotonic() < deadline, "the two decisions did not make a conflict"
            time.sleep(0.2)

    lead.reload()
    lead.wait_for_selector("#team[data-loaded=true]")
    assert "1 open conflict" in lead.inner_text("#team-summary")
    rows = [lead.inner_text(f"#team-reviewers tbody tr:nth-child({n})") for n in (1, 2)]
    assert rows[0].split("\t")[:4] == ["ana", "2", "1", "1"] and rows[1].split("\t")[:4] == ["ben", "2", "1", "1"]
    assert "ana · ben\t1\t0" in lead.inner_text("#team-pairs")
    lead.click("#team-adjudicate")
    lead.wait_for_selector("body[data-ready=true]")
    conflict = f"#conflict-{first['sample_index']}"
    assert f"ana: relabel to {relabel_to}" in lead.inner_text(conflict)
    assert "ben: keep" in lead.inner_text(conflict)
    lead.select_option(f"{conflict} select", final)
    lead.click(f"{conflict} button[data-verdict=relabel]")
    lead.wait_for_function("() => document.getElementById('conflicts-status').textContent.includes('relabelled')")
    lead.wait_for_selector(conflict, state="detached")

    with service.http() as http:
        rows = csv.DictReader(io.StringIO(http.get(f"/jobs/{job['id']}/export.csv").raise_for_status().text))
        row = next(row for row in rows if row["sample_index"] == str(first["sample_index"]))
        team = http.get(f"/jobs/{job['id']}/team").raise_for_status().json()
    assert (row["label"], row["verdict"], row["conflict"]) == (final, "relabel", "False")
    assert team["open_conflicts"] == 0 and team["adjudicated"] == 1

    # The lead comments on ana's verdict.
    with service.http() as http:
        samples = http.get(f"/jobs/{job['id']}/decisions").raise_for_status().json()["samples"]
        on_first = next(sample for sample in samples if sample["sample_index"] == first["sample_index"])
        anas = next(decision for decision in on_first["decisions"] if decision["reviewer"] == "ana")
        http.post(f"/decisions/{anas['id']}/comments", json={"text": "see the crossbar"}).raise_for_status()

    # Now that ben decided, he sees ana's verdict and the comment on it.
    ben.reload()
    ben.select_option("#f-status", "decided")
    ben.wait_for_selector(f"{card}")
    assert "ana" in ben.inner_text(f"{card} .verdicts")
    assert ben.inner_text(f"{card} .comments") == "1 comment · latest, team: see the crossbar"

    # The Team section fits a phone's width (its tables scroll within it).
    lead.set_viewport_size({"width": 390, "height": 800})
    lead.goto(f"{service.url}{job_path}")
    lead.wait_for_selector("#team[data-loaded=true]")
    fits = (
        "(() => { const team = document.getElementById('team');"
        " return team.getBoundingClientRect().right <= 390 && team.scrollWidth <= team.clientWidth; })()"
    )
    assert lead.evaluate(fits)
    lead.screenshot(path=tmp_path / "team-390.png", full_page=True)

    for context in (lead_context, ana_context, ben_context):
        context.close()
    assert not errors, f"errors in the page's scripts: {errors}"
