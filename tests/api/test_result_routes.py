"""A job's results, written as the worker writes them from a real LiLAW audit of noisy digits:
suspects (pages, filters, score and per-epoch orderings), dynamics, metrics, downloads, model."""

from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from sqlalchemy import select

from core.audit_config import DEFAULT_SCORE
from core.metrics import detection_report
from core.score_registry import EPOCH_SCORE_NAMES, offered_score_names
from core.scores import epoch_scores
from core.store import AuditJob, Sample, session_scope


def all_suspects(client, headers, job_id, **params) -> list[dict]:
    items, cursor = [], {}
    while True:
        page = client.get(f"/jobs/{job_id}/suspects", params={**params, **cursor}, headers=headers).json()
        items += page["items"]
        if page["next_cursor"] is None:
            return items
        cursor = {"cursor": page["next_cursor"]}


def test_default_order_is_the_stored_rank_across_pages(client, alice, finished_job):
    result = finished_job.audit.result
    first = client.get(f"/jobs/{finished_job.job_id}/suspects", params={"limit": 7}, headers=alice).json()
    assert first["score"] == DEFAULT_SCORE and first["epoch"] is None and "negated" in first["orientation"]
    items = all_suspects(client, alice, finished_job.job_id, limit=64)
    assert [item["rank"] for item in items] == list(range(1, finished_job.num_samples + 1))
    assert items[:7] == first["items"]
    top = items[0]
    index = int(np.argmin(result.rank))
    assert top["sample_index"] == index
    assert top["sample_id"] == result.dataset.sample_ids[index]
    assert top["label"] == result.dataset.class_names[result.dataset.y[index]]
    assert top["predicted"] == result.dataset.class_names[result.history.predicted[-1][index]]
    assert top["split"] in ("train", "val")
    assert top["score"] == pytest.approx(result.default_scores[index], rel=1e-6)
    assert top["is_mislabeled"] == bool(result.dataset.is_mislabeled[index])


def test_filters(client, alice, finished_job):
    job_id = finished_job.job_id
    history = finished_job.audit.result.history
    dataset = finished_job.audit.result.dataset
    sevens = all_suspects(client, alice, job_id, label="7", limit=20)
    assert sevens and len(sevens) == int((dataset.y == 7).sum())
    assert {item["label"] for item in sevens} == {"7"}
    predicted = all_suspects(client, alice, job_id, predicted="3", split="val", limit=20)
    expected = np.flatnonzero((history.predicted[-1] == 3) & (history.split == 1))
    assert sorted(item["sample_index"] for item in predicted) == expected.tolist()
    unknown = client.get(f"/jobs/{job_id}/suspects", params={"label": "eleven"}, headers=alice)
    assert unknown.status_code == 422 and "unknown label" in unknown.json()["detail"]


def test_order_by_an_aggregated_score(client, alice, finished_job):
    scores = finished_job.audit.result.scores["loss"]
    items = all_suspects(client, alice, finished_job.job_id, score="loss", limit=33)
    assert [item["sample_index"] for item in items] == np.lexsort(
        (np.arange(len(scores)), -scores.astype(np.float32))
    ).tolist()
    assert items[0]["score"] == pytest.approx(scores.max(), rel=1e-6)


@pytest.mark.parametrize("score", ["w_alpha", "aum", "loss"])
def test_order_by_one_epochs_score(client, alice, finished_job, score):
    """score=w_alpha&epoch=2 lists the lowest W_α of epoch 2 first (low W_α is suspicious)."""
    history = finished_job.audit.result.history
    expected = epoch_scores(history, 2)[score]
    items = all_suspects(client, alice, finished_job.job_id, score=score, epoch=2, limit=50)
    values = np.array([item["score"] for item in items])
    assert len(items) == finished_job.num_samples
    assert np.all(np.diff(values) <= 0)
    order = [item["sample_index"] for item in items]
    np.testing.assert_allclose(values, expected[order], rtol=1e-5)
    if score == "w_alpha":
        raw = history.w_alpha[1]
        assert raw[order[0]] == raw.min()


def test_epoch_alone_uses_the_default_score(client, alice, finished_job):
    page = client.get(f"/jobs/{finished_job.job_id}/suspects", params={"epoch": 1, "limit": 3}, headers=alice).json()
    assert (page["score"], page["epoch"]) == (DEFAULT_SCORE, 1)


def test_invalid_orderings_and_cursors(client, alice, finished_job):
    url = f"/jobs/{finished_job.job_id}/suspects"
    ranked = client.get(url, params={"limit": 2}, headers=alice).json()
    cases = {
        "unknown score": ({"score": "vibes"}, "unknown score"),
        "no per-epoch value": ({"score": "forgetting", "epoch": 1}, "no per-epoch value"),
        "epoch not stored": ({"epoch": finished_job.num_epochs + 1}, "not stored"),
        "garbage cursor": ({"cursor": "%%%"}, "invalid cursor"),
        "cursor of another order": ({"cursor": ranked["next_cursor"], "score": "loss"}, "another order"),
    }
    for params, message in cases.values():
        response = client.get(url, params=params, headers=alice)
        assert response.status_code == 422, params
        assert message in response.json()["detail"]


def test_sample_dynamics(client, alice, finished_job):
    result = finished_job.audit.result
    index = 17
    response = client.get(f"/jobs/{finished_job.job_id}/samples/{index}/dynamics", headers=alice)
    assert response.status_code == 200
    dynamics = response.json()
    assert dynamics["sample_id"] == result.dataset.sample_ids[index]
    assert dynamics["rank"] == int(result.rank[index])
    assert [e["epoch"] for e in dynamics["epochs"]] == list(range(1, finished_job.num_epochs + 1))
    np.testing.assert_allclose([e["w_alpha"] for e in dynamics["epochs"]], result.history.w_alpha[:, index], rtol=1e-6)
    assert dynamics["scores"]["w_alpha"] == pytest.approx(result.scores["w_alpha"][index], rel=1e-6)
    missing = client.get(f"/jobs/{finished_job.job_id}/samples/{finished_job.num_samples}/dynamics", headers=alice)
    assert missing.status_code == 404


def test_metrics_as_the_worker_stored_them(client, alice, finished_job):
    detection = finished_job.audit.result.detection
    metrics = client.get(f"/jobs/{finished_job.job_id}/metrics", headers=alice).json()
    assert metrics["default_score"] == DEFAULT_SCORE
    by_score = {entry["score"]: entry for entry in metrics["scores"]}
    w_alpha = by_score["w_alpha"]
    assert w_alpha["aggregate"]["all"]["auroc"] == pytest.approx(detection["aggregate"]["w_alpha"]["auroc"])
    assert w_alpha["aggregate"]["train"]["auprc_clean"] == pytest.approx(
        detection["aggregate_train_only"]["w_alpha"]["auprc_clean"]
    )
    assert [e["epoch"] for e in w_alpha["per_epoch"]] == list(range(1, finished_job.num_epochs + 1))
    assert w_alpha["per_epoch"][2]["auprc_mislabeled"] == pytest.approx(
        detection["per_epoch"][3]["w_alpha"]["auprc_mislabeled"]
    )
    assert (
        w_alpha["aggregate"]["all"]["precision_at_k"]["10"] == detection["aggregate"]["w_alpha"]["precision_at_k"][10]
    )
    per_epoch = set(EPOCH_SCORE_NAMES) & set(offered_score_names({"weighting": "lilaw"}))  # no FBR: no fbr_agreement
    assert {entry["score"] for entry in metrics["scores"] if entry["per_epoch"]} == per_epoch


def test_recompute_metrics_after_new_flags(client, alice, finished_job):
    result = finished_job.audit.result
    job_id = finished_job.job_id
    flags = result.dataset.is_mislabeled.copy()
    flags[:50] = ~flags[:50]
    body = [{"sample_id": sid, "is_mislabeled": bool(flag)} for sid, flag in zip(result.dataset.sample_ids, flags)]
    body[-1]["is_mislabeled"] = None
    assert (
        client.post(f"/datasets/{finished_job.dataset_id}/versions/1/flags", json=body, headers=alice).status_code
        == 200
    )
    response = client.post(f"/jobs/{job_id}/metrics/recompute", headers=alice)
    assert response.status_code == 200, response.text
    known = np.arange(finished_job.num_samples) < finished_job.num_samples - 1
    expected = detection_report({"w_alpha": result.scores["w_alpha"][known]}, flags[known])["w_alpha"]
    w_alpha = next(entry for entry in response.json()["scores"] if entry["score"] == "w_alpha")
    assert w_alpha["aggregate"]["all"]["auroc"] == pytest.approx(expected["auroc"], rel=1e-5)
    assert w_alpha["aggregate"]["all"]["num_mislabeled"] == int(flags[known].sum())
    assert len(w_alpha["per_epoch"]) == finished_job.num_epochs
    assert client.get(f"/jobs/{job_id}/metrics", headers=alice).json() == response.json()


def test_recompute_needs_a_finished_job(client, alice, finished_job):
    queued = client.post("/jobs", json={"dataset_id": finished_job.dataset_id, "epochs": 1}, headers=alice).json()["id"]
    response = client.post(f"/jobs/{queued}/metrics/recompute", headers=alice)
    assert response.status_code == 409
    assert client.get(f"/jobs/{queued}/scores.csv", headers=alice).status_code == 409
    assert client.get(f"/jobs/{queued}/model", headers=alice).status_code == 404


def test_scores_csv_and_parquet(client, alice, finished_job):
    result = finished_job.audit.result
    csv_response = client.get(f"/jobs/{finished_job.job_id}/scores.csv", headers=alice)
    assert csv_response.status_code == 200
    assert csv_response.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_response.headers["content-disposition"]
    from_csv = pd.read_csv(io.StringIO(csv_response.text))
    parquet_response = client.get(f"/jobs/{finished_job.job_id}/scores.parquet", headers=alice)
    assert parquet_response.status_code == 200
    from_parquet = pq.read_table(io.BytesIO(parquet_response.content)).to_pandas()
    for table in (from_csv, from_parquet):
        assert len(table) == finished_job.num_samples
        assert table["rank"].tolist() == list(range(1, finished_job.num_samples + 1))
        assert "cl_self_confidence" not in table.columns
        row = table.iloc[0]
        index = int(row["sample_index"])
        assert row["sample_id"] == result.dataset.sample_ids[index]
        assert bool(row["known_mislabeled"]) == bool(result.dataset.is_mislabeled[index])
        assert row["w_alpha"] == pytest.approx(result.scores["w_alpha"][index], rel=1e-6)
    assert from_csv.columns.tolist() == from_parquet.columns.tolist()


def test_model_download(client, alice, finished_job):
    response = client.get(f"/jobs/{finished_job.job_id}/model", headers=alice)
    assert response.status_code == 200
    state = torch.load(io.BytesIO(response.content), weights_only=True)
    expected = finished_job.audit.result.model.state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[name], expected[name]) for name in expected)
    job = client.get(f"/jobs/{finished_job.job_id}", headers=alice).json()
    assert job["has_model"] and job["status"] == "succeeded" and job["timings"]["train_seconds"] > 0


def test_a_job_with_injected_noise_shows_the_labels_it_trained_on(client, alice, finished_job, sessions, settings):
    """The worker keeps the noisy labels of such a job in its labels file; suspects, dynamics,
    downloads and recomputed metrics use them and their flags, not the dataset's."""
    result = finished_job.audit.result
    labels = (result.dataset.y + 1) % 10
    flags = np.zeros(finished_job.num_samples, dtype=bool)
    flags[::4] = True
    path = settings.job_dir / str(finished_job.job_id) / "labels.npz"
    np.savez(path, labels=labels, is_mislabeled=flags, true_labels=result.dataset.y)
    with session_scope(sessions) as session:
        job = session.get(AuditJob, finished_job.job_id)
        job.result_paths = {**job.result_paths, "labels": str(path.relative_to(settings.data_dir))}
        job.config = {**job.config, "inject_noise": "uniform:0.25"}

    suspects = all_suspects(client, alice, finished_job.job_id, limit=100)
    assert all(s["label"] == str(labels[s["sample_index"]]) for s in suspects)
    assert all(s["is_mislabeled"] == bool(flags[s["sample_index"]]) for s in suspects)
    fives = all_suspects(client, alice, finished_job.job_id, label="5", limit=100)
    assert sorted(s["sample_index"] for s in fives) == np.flatnonzero(labels == 5).tolist()
    dynamics = client.get(f"/jobs/{finished_job.job_id}/samples/4/dynamics", headers=alice).json()
    assert (dynamics["label"], dynamics["is_mislabeled"]) == (str(labels[4]), True)
    table = pd.read_csv(io.StringIO(client.get(f"/jobs/{finished_job.job_id}/scores.csv", headers=alice).text))
    assert table["known_mislabeled"].tolist() == flags[table["sample_index"]].tolist()

    recomputed = client.post(f"/jobs/{finished_job.job_id}/metrics/recompute", headers=alice).json()
    w_alpha = next(entry for entry in recomputed["scores"] if entry["score"] == "w_alpha")
    expected = detection_report({"w_alpha": result.scores["w_alpha"]}, flags)["w_alpha"]
    assert w_alpha["aggregate"]["all"]["auroc"] == pytest.approx(expected["auroc"], rel=1e-5)


@pytest.mark.parametrize("route", ["suspects", "review-queue"])
@pytest.mark.parametrize("min_score", ["1e39", "-1e39", "1e-50", "-1e-50", "inf", "nan", "1e400"])
def test_score_filters_beyond_float32_are_422(client, alice, finished_job, route, min_score):
    """Scores are REAL (float32) columns: Postgres fails on a bound out of that range or one that
    underflows to 0, so such a filter is refused by name."""
    response = client.get(f"/jobs/{finished_job.job_id}/{route}", params={"min_score": min_score}, headers=alice)
    assert response.status_code == 422, response.text
    assert "min_score" in response.json()["detail"]


@pytest.mark.parametrize("route", ["suspects", "review-queue"])
def test_score_filters_at_float32s_limits_are_answered(client, alice, finished_job, route):
    url = f"/jobs/{finished_job.job_id}/{route}"
    for min_score in ("-3.4e38", "1e-45", "0"):
        assert client.get(url, params={"min_score": min_score}, headers=alice).status_code == 200, min_score
    assert client.get(url, params={"min_score": "3.4e38"}, headers=alice).json()["items"] == []


def _cursor(raw: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))


def test_cursors_with_out_of_range_numbers_are_422(client, alice, finished_job):
    url = f"/jobs/{finished_job.job_id}/suspects"
    ranked = _uncursor(client.get(url, params={"limit": 2}, headers=alice).json()["next_cursor"])
    by_loss = _uncursor(client.get(url, params={"limit": 2, "score": "loss"}, headers=alice).json()["next_cursor"])
    value, index = by_loss["after"]
    forged = [
        ({}, {**ranked, "after": 2**31}),
        ({}, {**ranked, "after": 2**63}),
        ({}, {**ranked, "after": -1}),
        ({"score": "loss"}, {**by_loss, "after": [1e39, index]}),
        ({"score": "loss"}, {**by_loss, "after": [1e-50, index]}),
        ({"score": "loss"}, {**by_loss, "after": [10**400, index]}),
        ({"score": "loss"}, {**by_loss, "after": [value, 2**31]}),
        ({"score": "loss"}, {**by_loss, "after": [value, 2**63]}),
    ]
    for params, raw in forged:
        response = client.get(url, params={**params, "cursor": _cursor(raw)}, headers=alice)
        assert response.status_code == 422, (raw, response.text)
        assert "invalid cursor" in response.json()["detail"]
    # the genuine cursors still continue their lists
    assert client.get(url, params={"cursor": _cursor(ranked)}, headers=alice).status_code == 200
    assert client.get(url, params={"score": "loss", "cursor": _cursor(by_loss)}, headers=alice).status_code == 200


FORMULA_IDS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


def give_formula_sample_ids(sessions, finished_job) -> dict[int, str]:
    """The job's first samples renamed to ids a spreadsheet would run as formulas."""
    with session_scope(sessions) as session:
        dataset_version_id = session.get(AuditJob, finished_job.job_id).dataset_version_id
        samples = session.scalars(
            select(Sample)
            .where(Sample.dataset_version_id == dataset_version_id, Sample.sample_index < len(FORMULA_IDS))
        ).all()
        for sample in samples:
            sample.sample_id = FORMULA_IDS[sample.sample_index]
    return dict(enumerate(FORMULA_IDS))


def test_scores_csv_escapes_formulas_and_parquet_stays_raw(client, alice, sessions, finished_job):
    renamed = give_formula_sample_ids(sessions, finished_job)
    text = client.get(f"/jobs/{finished_job.job_id}/scores.csv", headers=alice).text
    rows = {int(row["sample_index"]): row for row in csv.DictReader(io.StringIO(text, newline=""))}
    for index, sample_id in renamed.items():
        assert rows[index]["sample_id"] == "'" + sample_id
    assert all(not row["sample_id"].startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows.values())
    assert all(float(row["default_score"]) == float(row["default_score"]) for row in rows.values())  # numbers stay
    parquet = client.get(f"/jobs/{finished_job.job_id}/scores.parquet", headers=alice).content
    table = pq.read_table(io.BytesIO(parquet)).to_pandas().set_index("sample_index")
    for index, sample_id in renamed.items():
        assert table.loc[index, "sample_id"] == sample_id
