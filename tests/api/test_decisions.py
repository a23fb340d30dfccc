"""Review decisions over HTTP, on a finished LiLAW audit of noisy digits whose flags were uploaded:
named reviewers decide and undo, conflict, and make known flags that the metrics follow; the
review queue, thumbnails and exports; and nobody sees another owner's samples."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from api.auth import create_api_key
from cli.main import main
from core.metrics import detection_report
from core.store import AuditJob, Sample, session_scope
from core.store.dynamics_writer import write_scores
from core.store.models import JobStatus


@pytest.fixture
def carol(sessions) -> dict[str, str]:
    """A second reviewer of alice's (the owner): a key of alice's with the reviewer name carol."""
    with session_scope(sessions) as session:
        return {"Authorization": f"Bearer {create_api_key(session, 'alice', reviewer='carol')}"}


def decide(client, headers, job_id: int, sample_index: int, verdict: str, label: str | None = None) -> dict:
    body = {"sample_index": int(sample_index), "verdict": verdict, "label": label}
    response = client.post(f"/jobs/{job_id}/decisions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def review_queue(client, headers, job_id: int, **params) -> dict:
    response = client.get(f"/jobs/{job_id}/review-queue", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def other_label(finished_job, sample_index: int) -> str:
    dataset = finished_job.audit.result.dataset
    return dataset.class_names[(int(dataset.y[sample_index]) + 1) % dataset.num_classes]


def w_alpha_metrics(client, headers, job_id: int) -> dict:
    metrics = client.get(f"/jobs/{job_id}/metrics", headers=headers).json()
    return next(entry for entry in metrics["scores"] if entry["score"] == "w_alpha")


def test_decisions_become_the_known_flags_of_the_metrics(client, alice, finished_job):
    result = finished_job.audit.result
    job_id = finished_job.job_id
    flags = result.dataset.is_mislabeled.copy()
    mislabeled, clean = np.flatnonzero(flags), np.flatnonzero(~flags)
    kept = decide(client, alice, job_id, mislabeled[0], "keep")
    decide(client, alice, job_id, clean[0], "relabel", other_label(finished_job, clean[0]))
    decide(client, alice, job_id, clean[1], "remove")
    flags[[mislabeled[0], clean[0], clean[1]]] = [False, True, True]

    expected = detection_report({"w_alpha": result.scores["w_alpha"]}, flags)["w_alpha"]
    w_alpha = w_alpha_metrics(client, alice, job_id)
    assert w_alpha["aggregate"]["all"]["num_mislabeled"] == int(flags.sum())
    assert w_alpha["aggregate"]["all"]["auroc"] == pytest.approx(expected["auroc"], rel=1e-5)
    assert len(w_alpha["per_epoch"]) == finished_job.num_epochs

    assert client.post(f"/decisions/{kept['id']}/undo", headers=alice).status_code == 200
    flags[mislabeled[0]] = True
    assert w_alpha_metrics(client, alice, job_id)["aggregate"]["all"]["num_mislabeled"] == int(flags.sum())

    charts = client.get(f"/jobs/{job_id}/charts", headers=alice).json()
    assert charts["num_mislabeled"] == int(flags.sum()) and charts["num_known"] == finished_job.num_samples
    assert charts["curves"]["w_alpha"]["auroc"] == pytest.approx(expected["auroc"], abs=0.01)
    assert sum(map(sum, charts["histogram"]["counts"].values())) == finished_job.num_samples


def test_the_decisions_list_says_who_decided_what_and_whether_it_agrees(client, alice, finished_job):
    flags = finished_job.audit.result.dataset.is_mislabeled
    job_id = finished_job.job_id
    mislabeled, clean = np.flatnonzero(flags), np.flatnonzero(~flags)
    decide(client, alice, job_id, mislabeled[0], "relabel", other_label(finished_job, mislabeled[0]))
    decide(client, alice, job_id, clean[0], "relabel", other_label(finished_job, clean[0]))
    decide(client, alice, job_id, clean[1], "keep")

    listed = client.get(f"/jobs/{job_id}/decisions", headers=alice).json()
    assert listed["summary"] == {
        "decided": 3, "mislabeled": 2, "clean": 1, "conflicts": 0, "compared": 3, "agreeing": 2, "agreement": 2 / 3,
    }  # fmt: skip
    by_index = {sample["sample_index"]: sample for sample in listed["samples"]}
    first = by_index[int(mislabeled[0])]
    assert first["is_mislabeled"] and first["known_mislabeled"] and first["agrees"]
    assert [(d["reviewer"], d["verdict"]) for d in first["decisions"]] == [("alice", "relabel")]
    assert by_index[int(clean[0])]["agrees"] is False


def test_undo_brings_back_the_reviewers_previous_decision(client, alice, carol, bob, finished_job):
    job_id = finished_job.job_id
    keep = decide(client, alice, job_id, 5, "keep")
    relabel = decide(client, alice, job_id, 5, "relabel", other_label(finished_job, 5))
    assert relabel["reviewer"] == "alice" and relabel["given_label"] == finished_job.audit.result.dataset.class_names[
        finished_job.audit.result.dataset.y[5]
    ]

    undone = client.post(f"/decisions/{relabel['id']}/undo", headers=alice)
    assert undone.status_code == 200 and undone.json()["undone_at"] is not None
    sample = client.get(f"/jobs/{job_id}/decisions", headers=alice).json()["samples"][0]
    assert [d["id"] for d in sample["decisions"]] == [keep["id"]]
    assert sample["is_mislabeled"] is False

    assert client.post(f"/decisions/{relabel['id']}/undo", headers=alice).status_code == 409
    forbidden = client.post(f"/decisions/{keep['id']}/undo", headers=carol)
    assert forbidden.status_code == 403 and "alice" in forbidden.json()["detail"]
    assert client.post(f"/decisions/{keep['id']}/undo", headers=bob).status_code == 404


def test_two_reviewers_who_disagree_are_a_conflict(client, alice, carol, finished_job):
    job_id = finished_job.job_id
    flags = finished_job.audit.result.dataset.is_mislabeled
    sample = int(np.flatnonzero(flags)[0])
    decide(client, alice, job_id, sample, "relabel", other_label(finished_job, sample))
    decide(client, carol, job_id, sample, "keep")

    listed = client.get(f"/jobs/{job_id}/decisions", params={"conflicts_only": True}, headers=alice).json()
    assert listed["summary"]["conflicts"] == 1
    [entry] = listed["samples"]
    assert entry["conflict"] and entry["outcome"] is None and entry["is_mislabeled"] is None
    assert {d["reviewer"] for d in entry["decisions"]} == {"alice", "carol"}

    conflicts = review_queue(client, carol, job_id, status="conflict")
    assert [item["sample_index"] for item in conflicts["items"]] == [sample]
    assert conflicts["progress"]["conflicts"] == 1
    assert w_alpha_metrics(client, alice, job_id)["aggregate"]["all"]["num_mislabeled"] == int(flags.sum())

    rows = list(csv.DictReader(io.StringIO(client.get(f"/jobs/{job_id}/export.csv", headers=alice).text)))
    row = next(row for row in rows if int(row["sample_index"]) == sample)
    assert row["verdict"] == "conflict" and row["label"] == row["given_label"] and row["conflict"] == "True"


def test_the_review_queue_follows_the_rank_filters_and_decisions(client, alice, finished_job):
    job_id = finished_job.job_id
    result = finished_job.audit.result
    first = review_queue(client, alice, job_id, limit=5)
    assert first["progress"] == {"total": 300, "decided": 0, "remaining": 300, "conflicts": 0}
    assert [item["rank"] for item in first["items"]] == [1, 2, 3, 4, 5]
    top = first["items"][0]
    assert top["sample_index"] == int(np.argmin(result.rank))
    assert top["label"] == result.dataset.class_names[result.dataset.y[top["sample_index"]]]
    probabilities = [entry["probability"] for entry in top["top_classes"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1
    assert top["weights"]["epoch"] == list(range(1, finished_job.num_epochs + 1))
    assert top["weights"]["w_alpha"][-1] == pytest.approx(result.history.w_alpha[-1][top["sample_index"]], rel=1e-6)
    assert top["thumbnail_url"] == f"/jobs/{job_id}/samples/{top['sample_index']}/thumbnail.png"
    assert top["review"] is None and top["values"] is None

    decide(client, alice, job_id, top["sample_index"], "keep")
    after = review_queue(client, alice, job_id, limit=5)
    assert after["items"][0]["rank"] == 2
    assert after["progress"] == {"total": 300, "decided": 1, "remaining": 299, "conflicts": 0}
    decided = review_queue(client, alice, job_id, status="decided")
    assert [item["rank"] for item in decided["items"]] == [1]
    assert decided["items"][0]["review"]["decisions"][0]["verdict"] == "keep"
    assert review_queue(client, alice, job_id, status="all", limit=1)["items"][0]["rank"] == 1

    sevens = review_queue(client, alice, job_id, label="7", limit=100)
    assert {item["label"] for item in sevens["items"]} == {"7"}
    assert sevens["progress"]["total"] == len(sevens["items"]) == int((result.dataset.y == 7).sum())
    threshold = first["items"][3]["score"]
    above = review_queue(client, alice, job_id, min_score=threshold, status="all", limit=100)
    assert all(item["score"] >= threshold for item in above["items"])
    assert above["progress"]["total"] == int((result.default_scores.astype(np.float32) >= np.float32(threshold)).sum())

    page = review_queue(client, alice, job_id, status="all", limit=64)
    ranks = [item["rank"] for item in page["items"]]
    while page["next_cursor"]:
        page = review_queue(client, alice, job_id, status="all", limit=64, cursor=page["next_cursor"])
        assert page["progress"] is None
        ranks += [item["rank"] for item in page["items"]]
    assert ranks == list(range(1, 301))


def test_thumbnails_are_served_and_cached(client, alice, finished_job, settings):
    job_id = finished_job.job_id
    response = client.get(f"/jobs/{job_id}/samples/3/thumbnail.png", headers=alice)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert "immutable" in response.headers["cache-control"]
    image = Image.open(io.BytesIO(response.content))
    assert (image.mode, image.size) == ("L", (8, 8))
    assert np.array_equal(np.asarray(image), finished_job.audit.result.dataset.x[3, 0])
    # 8×8 images are their own thumbnails: read from the version's shard, no copy rendered.
    assert not list((settings.data_dir / "previews").glob("*.npy"))

    cached = client.get(
        f"/jobs/{job_id}/samples/3/thumbnail.png", headers={**alice, "If-None-Match": response.headers["etag"]}
    )
    assert cached.status_code == 304 and not cached.content
    assert client.get(f"/jobs/{job_id}/samples/300/thumbnail.png", headers=alice).status_code == 404


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("file_name", "values"), [("rows.csv", [0.0, 0.5, 0.0]), ("rows.ts.csv", [[0.0, 0.5, 0.0]])])
def test_rows_and_series_come_inline_with_the_queue(client, alice, sessions, file_name, values):
    table = "\n".join(["label,f1,f2,f3", *(f"{'ab'[i % 2]},{i},{i + 0.5},{2 * i}" for i in range(6))])
    dataset_id = client.post("/datasets", files={"file": (file_name, table.encode())}, headers=alice).json()["id"]
    job_id = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1}, headers=alice).json()["id"]
    with session_scope(sessions) as session:
        write_scores(session, job_id, {}, default_score=np.linspace(1, 0, 6), rank=np.arange(1, 7))
        session.get(AuditJob, job_id).status = JobStatus.SUCCEEDED

    top = review_queue(client, alice, job_id)["items"][0]
    assert (top["sample_index"], top["values"], top["thumbnail_url"]) == (0, values, None)
    assert top["top_classes"] == [] and top["weights"] is None
    assert client.get(f"/jobs/{job_id}/samples/0/thumbnail.png", headers=alice).status_code == 422


def test_exports_carry_the_corrected_labels(client, alice, finished_job):
    job_id = finished_job.job_id
    names = finished_job.audit.result.dataset.class_names
    new_label = other_label(finished_job, 0)
    decide(client, alice, job_id, 0, "relabel", new_label)
    decide(client, alice, job_id, 1, "keep")
    decide(client, alice, job_id, 2, "remove")

    rows = list(csv.DictReader(io.StringIO(client.get(f"/jobs/{job_id}/export.csv", headers=alice).text)))
    assert len(rows) == finished_job.num_samples
    assert [(row["label"], row["verdict"], row["removed"], row["is_mislabeled"]) for row in rows[:4]] == [
        (new_label, "relabel", "False", "True"),
        (rows[1]["given_label"], "keep", "False", "False"),
        ("", "remove", "True", "True"),
        (rows[3]["given_label"], "", "False", ""),
    ]
    assert rows[0]["reviewers"] == f"alice: relabel to {new_label}"

    exported = client.get(f"/jobs/{job_id}/export.json", params={"decided_only": True}, headers=alice)
    assert exported.headers["content-type"].startswith("application/json")
    decided = json.loads(exported.text)
    assert [row["sample_index"] for row in decided] == [0, 1, 2]
    assert decided[0]["label"] == new_label and decided[0]["given_label"] in names

    tasks = json.loads(client.get(f"/jobs/{job_id}/export.labelstudio.json", headers=alice).text)
    assert len(tasks) == finished_job.num_samples
    [annotation] = tasks[0]["annotations"]
    assert annotation["result"] == [
        {"from_name": "verdict", "to_name": "sample", "type": "choices", "value": {"choices": ["relabel"]}},
        {"from_name": "label", "to_name": "sample", "type": "choices", "value": {"choices": [new_label]}},
    ]
    assert tasks[2]["annotations"][0]["result"] == [
        {"from_name": "verdict", "to_name": "sample", "type": "choices", "value": {"choices": ["remove"]}}
    ]
    assert tasks[3]["annotations"] == [] and tasks[3]["data"]["sample_id"] == rows[3]["sample_id"]


def test_decisions_are_checked(client, alice, finished_job):
    job_id = finished_job.job_id
    given = finished_job.audit.result.dataset.class_names[finished_job.audit.result.dataset.y[0]]
    attempts = {
        "a relabel decision needs the new label": {"sample_index": 0, "verdict": "relabel"},
        "unknown label 'eleven'": {"sample_index": 0, "verdict": "relabel", "label": "eleven"},
        "keep it instead": {"sample_index": 0, "verdict": "relabel", "label": given},
        "a keep decision takes no label": {"sample_index": 0, "verdict": "keep", "label": given},
        "verdict": {"sample_index": 0, "verdict": "maybe"},
    }
    for message, body in attempts.items():
        response = client.post(f"/jobs/{job_id}/decisions", json=body, headers=alice)
        assert response.status_code == 422 and message in response.json()["detail"], response.text
    missing = client.post(f"/jobs/{job_id}/decisions", json={"sample_index": 300, "verdict": "keep"}, headers=alice)
    assert missing.status_code == 404
    assert client.get(f"/jobs/{job_id}/decisions", headers=alice).json()["samples"] == []


def test_a_job_with_injected_noise_keeps_its_flags_and_shows_agreement(client, alice, finished_job, sessions, settings):
    dataset = finished_job.audit.result.dataset
    job_id = finished_job.job_id
    labels_path = settings.job_dir / str(job_id) / "labels.npz"
    np.savez(labels_path, labels=dataset.y, is_mislabeled=dataset.is_mislabeled, true_labels=dataset.y)
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id)
        job.config = {**job.config, "inject_noise": "uniform:0.3"}
        job.result_paths = {**job.result_paths, "labels": str(labels_path.relative_to(settings.data_dir))}
    before = w_alpha_metrics(client, alice, job_id)
    mislabeled = int(np.flatnonzero(dataset.is_mislabeled)[0])
    decide(client, alice, job_id, mislabeled, "keep")

    assert w_alpha_metrics(client, alice, job_id) == before
    summary = client.get(f"/jobs/{job_id}/decisions", headers=alice).json()["summary"]
    assert (summary["compared"], summary["agreeing"], summary["agreement"]) == (1, 0, 0.0)
    charts = client.get(f"/jobs/{job_id}/charts", headers=alice).json()
    assert charts["flags_source"] == "injected noise (uniform:0.3)"


def test_nobody_sees_another_owners_review(client, alice, bob, finished_job):
    job_id = finished_job.job_id
    decision = decide(client, alice, job_id, 0, "keep")
    attempts = [
        client.get(f"/jobs/{job_id}/review-queue", headers=bob),
        client.post(f"/jobs/{job_id}/decisions", json={"sample_index": 0, "verdict": "keep"}, headers=bob),
        client.get(f"/jobs/{job_id}/decisions", headers=bob),
        client.post(f"/decisions/{decision['id']}/undo", headers=bob),
        client.get(f"/jobs/{job_id}/samples/0/thumbnail.png", headers=bob),
        client.get(f"/jobs/{job_id}/charts", headers=bob),
        *(client.get(f"/jobs/{job_id}/export.{fmt}", headers=bob) for fmt in ("csv", "json", "labelstudio.json")),
    ]
    assert [response.status_code for response in attempts] == [404] * len(attempts)


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_create_key_names_the_reviewer(client, finished_job, capsys):
    assert main(["create-key", "--owner", "alice", "--reviewer", "bob the reviewer"]) == 0
    captured = capsys.readouterr()
    assert "reviewer 'bob the reviewer'" in captured.err
    headers = {"Authorization": f"Bearer {captured.out.strip()}"}
    assert decide(client, headers, finished_job.job_id, 0, "keep")["reviewer"] == "bob the reviewer"


@pytest.mark.parametrize("sample_index", [2**31, 2**63, -1])
def test_a_decision_on_an_out_of_range_sample_index_is_422(client, alice, finished_job, sample_index):
    body = {"sample_index": sample_index, "verdict": "keep"}
    response = client.post(f"/jobs/{finished_job.job_id}/decisions", json=body, headers=alice)
    assert response.status_code == 422, response.text
    assert "sample_index" in response.json()["detail"]


def test_the_csv_export_escapes_formulas_and_the_json_stays_raw(client, alice, sessions, finished_job):
    job_id = finished_job.job_id
    formulas = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
    with session_scope(sessions) as session:
        version_id = session.get(AuditJob, job_id).dataset_version_id
        for sample in session.scalars(
            select(Sample).where(Sample.dataset_version_id == version_id, Sample.sample_index < len(formulas))
        ):
            sample.sample_id = formulas[sample.sample_index]
    decide(client, alice, job_id, 0, "keep")
    text = client.get(f"/jobs/{job_id}/export.csv", headers=alice).text
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["sample_id"] for row in rows[: len(formulas)]] == ["'" + formula for formula in formulas]
    assert rows[len(formulas)]["sample_id"] == finished_job.audit.result.dataset.sample_ids[len(formulas)]
    exported = json.loads(client.get(f"/jobs/{job_id}/export.json", headers=alice).text)
    assert [row["sample_id"] for row in exported[: len(formulas)]] == formulas
