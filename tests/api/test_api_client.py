"""The Python client (api.client) over the app: every call, typed results, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from api.client import LilawAPIError, LilawClient
from core.audit_config import DEFAULT_SCORE
from core.store import AuditJob, JobStatus, session_scope


@pytest.fixture
def lilaw(client, alice) -> LilawClient:
    return LilawClient("http://testserver", alice["Authorization"].removeprefix("Bearer "), http=client)


def test_datasets_and_jobs(lilaw, tmp_path, sessions):
    path = tmp_path / "rows.csv"
    path.write_text("f1,label\n1,a\n2,b\n3,a\n4,b\n")
    uploaded = lilaw.upload_dataset(path, name="rows")
    builtin = lilaw.create_builtin_dataset("digits", name="digits")
    assert (uploaded.name, uploaded.versions[0].num_samples) == ("rows", 4)
    assert builtin.versions[0].num_samples == 1797
    assert [d.name for d in lilaw.datasets()] == ["rows", "digits"]
    flags = lilaw.upload_flags(builtin.id, 1, {"digits-0": True, "digits-1": False})
    assert (flags.updated, flags.num_known, flags.num_mislabeled) == (2, 2, 1)

    job = lilaw.submit_audit(builtin.id, epochs=2, inject_noise="uniform:0.2")
    assert job.status is JobStatus.QUEUED and job.config["epochs"] == 2
    assert lilaw.job(job.id).id == job.id
    assert [j.id for j in lilaw.jobs()] == [job.id]
    with session_scope(sessions) as session:
        session.execute(update(AuditJob).where(AuditJob.id == job.id).values(status=JobStatus.SUCCEEDED, epoch=2))
    seen = []
    done = lilaw.wait(job.id, on_progress=seen.append, poll_seconds=0.01)
    assert done.status is JobStatus.SUCCEEDED and [s.status for s in seen] == [JobStatus.SUCCEEDED]

    other = lilaw.submit_audit(builtin.id, epochs=1)
    with pytest.raises(TimeoutError):
        lilaw.wait(other.id, poll_seconds=0.01, timeout=0.05)
    assert lilaw.cancel(other.id).status is JobStatus.CANCELLED


def test_errors_carry_status_and_detail(lilaw):
    with pytest.raises(LilawAPIError) as error:
        lilaw.submit_audit(12345)
    assert (error.value.status_code, error.value.detail) == (404, "dataset 12345 not found")


def test_results(lilaw, finished_job, tmp_path):
    suspects = list(lilaw.suspects(finished_job.job_id, page_size=64))
    assert [s.rank for s in suspects] == list(range(1, finished_job.num_samples + 1))
    assert len(list(lilaw.suspects(finished_job.job_id, page_size=7, limit=10))) == 10
    by_epoch = list(lilaw.suspects(finished_job.job_id, limit=5, score="loss", epoch=1))
    assert [s.score for s in by_epoch] == sorted((s.score for s in by_epoch), reverse=True)

    metrics = lilaw.metrics(finished_job.job_id)
    assert metrics.default_score == DEFAULT_SCORE and metrics.scores[0].aggregate["all"].auroc is not None

    scores = lilaw.download_scores(finished_job.job_id, tmp_path / "scores.parquet", format="parquet")
    assert len(pd.read_parquet(scores)) == finished_job.num_samples
    model = lilaw.download_model(finished_job.job_id, tmp_path / "model.pt")
    assert model.stat().st_size > 0
    with pytest.raises(LilawAPIError) as error:
        lilaw.download_scores(finished_job.job_id, tmp_path / "scores.xlsx", format="xlsx")
    assert error.value.status_code == 404
    assert not (tmp_path / "scores.xlsx").exists()


def newer_copies(x: np.ndarray) -> np.ndarray:
    """Images that differ from `x` in every pixel value by one: new content, same kind of data."""
    return np.clip(x.astype(np.int16) + 1, 0, 255).astype(x.dtype)


def test_growing_a_dataset_and_reauditing_it(lilaw, finished_job, digits_audit, tmp_path, take_queued_tasks):
    held, dataset_id = digits_audit.result.dataset, finished_job.dataset_id
    path = tmp_path / "week-2.npz"
    np.savez(
        path,
        x=np.concatenate([newer_copies(held.x[:20]), held.x[:2]]),
        y=np.concatenate([held.y[:20], held.y[:2]]),
        sample_ids=np.array([f"week-2-{i}" for i in range(22)]),
    )
    appended = lilaw.append_samples(dataset_id, path)
    assert (appended.version, appended.num_added, appended.num_duplicates) == (2, 20, 2)
    assert appended.duplicates[0] == {"sample_id": "week-2-20", "duplicate_of": held.sample_ids[0]}
    assert [version.version for version in lilaw.versions(dataset_id)] == [1, 2]
    diff = lilaw.diff_versions(dataset_id, base=1)
    assert (diff.version, diff.num_added, diff.num_removed, diff.added[0]) == (2, 20, 0, "week-2-0")

    schedule = lilaw.set_schedule(dataset_id, cron="0 3 * * 1", warm_start=True, epochs=2)
    assert (schedule.cron, schedule.warm_start, schedule.config["epochs"]) == ("0 3 * * 1", True, 2)
    assert (schedule.next_run_at.weekday(), schedule.next_run_at.hour) == (0, 3)

    started = lilaw.reaudit(dataset_id, warm_start=True, epochs=2)
    job = started.job
    assert (job.dataset_version, job.previous_job_id, job.warm_start, job.config["epochs"]) == (
        2, finished_job.job_id, True, 2,
    )  # fmt: skip
    assert take_queued_tasks()[-1]["args"] == [job.id]  # after the first audit's own
    again = lilaw.reaudit(dataset_id)
    assert again.job is None and "version 2 is being audited" in again.skipped

    report = lilaw.report(finished_job.job_id, limit=3)
    assert report.previous_job_id is None and len(report.samples["newly_suspected"]) == min(3, report.num_suspected)
    with pytest.raises(LilawAPIError) as error:
        lilaw.report(job.id)
    assert error.value.status_code == 409

    created = lilaw.set_webhook(dataset_id, "http://127.0.0.1:9/hook")
    assert len(created.secret) >= 32 and lilaw.webhook_deliveries(dataset_id) == []


def test_review(lilaw, finished_job, tmp_path):
    job_id = finished_job.job_id
    page = lilaw.review_queue(job_id, limit=3)
    assert len(page.items) == 3 and page.progress.decided == 0 and page.next_cursor is not None
    first, second = page.items[:2]
    other = next(top.label for top in first.top_classes if top.label != first.label)
    relabel = lilaw.decide(job_id, first.sample_index, "relabel", label=other)
    keep = lilaw.decide(job_id, second.sample_index, "keep")
    assert (relabel.sample_id, relabel.label, keep.verdict.value) == (first.sample_id, other, "keep")
    assert lilaw.review_queue(job_id, limit=1).progress.decided == 2
    assert [item.sample_index for item in lilaw.review_queue(job_id, status="decided").items] == [
        first.sample_index, second.sample_index,
    ]  # fmt: skip

    listed = lilaw.decisions(job_id)
    assert {sample.sample_id: sample.outcome for sample in listed.samples} == {
        first.sample_id: other, second.sample_id: second.label,
    }  # fmt: skip
    assert lilaw.undo(keep.id).undone_at is not None
    assert [sample.sample_id for sample in lilaw.decisions(job_id).samples] == [first.sample_id]

    exported = lilaw.export_review(job_id, tmp_path / "labels.csv", decided_only=True)
    assert pd.read_csv(exported, dtype=str)[["sample_id", "label"]].values.tolist() == [[first.sample_id, other]]
    tasks = lilaw.export_review(job_id, tmp_path / "tasks.json", format="label-studio", decided_only=True)
    assert '"choices":["relabel"]' in tasks.read_text()
    with pytest.raises(ValueError, match="csv, json, label-studio"):
        lilaw.export_review(job_id, tmp_path / "x", format="xml")
    with pytest.raises(LilawAPIError) as error:
        lilaw.decide(job_id, first.sample_index, "relabel")
    assert error.value.status_code == 422


def test_downloading_a_dataset_version(lilaw, tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("f1,label\n1,a\n2,b\n3,a\n4,b\n")
    dataset = lilaw.upload_dataset(path, name="rows")
    saved = lilaw.download_dataset(dataset.id, tmp_path)
    assert saved == tmp_path / "rows-v1.csv"
    assert pd.read_csv(saved)[["f1", "label"]].values.tolist() == [[1, "a"], [2, "b"], [3, "a"], [4, "b"]]
    arrays = np.load(lilaw.download_dataset(dataset.id, tmp_path / "rows.npz", version=1, format="npz"))
    assert arrays["class_names"].tolist() == ["a", "b"]
