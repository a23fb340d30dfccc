"""`lilaw-audit` client commands (cli.client_commands) against a real service (uvicorn on a
loopback port), and `create-key` against its database. Here beside the API's tests, whose
fixtures (a finished job, API keys) they use."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import uvicorn

from api.app import create_app
from cli.main import main
from core.audit_config import DEFAULT_SCORE

sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


@pytest.fixture
def service_url(settings, monkeypatch) -> Iterator[str]:
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.02)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    monkeypatch.setenv("LILAW_URL", url)
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@sqlite_only
def test_create_key_then_upload_and_submit(service_url, capsys, tmp_path):
    code, out, err = run(capsys, "create-key", "--owner", "dana")
    assert code == 0 and "shown only now" in err
    key = out.strip()
    path = tmp_path / "rows.csv"
    path.write_text("f1,label\n1,a\n2,b\n3,a\n4,b\n")
    code, out, _ = run(capsys, "upload", str(path), "--name", "rows", "--api-key", key)
    assert (code, out) == (0, "dataset 1 'rows' version 1: 4 samples, 2 classes (tabular)\n")
    code, out, _ = run(capsys, "upload", "digits", "--api-key", key)
    assert code == 0 and "1797 samples" in out
    code, out, _ = run(
        capsys, "submit", "2", "--epochs", "2", "--inject-noise", "uniform:0.3", "--clamp", "--api-key", key
    )
    assert (code, out) == (0, "job 1 queued\n")
    code, out, _ = run(capsys, "cancel", "1", "--api-key", key)
    assert (code, out) == (0, "job 1 cancelled\n")
    code, out, _ = run(capsys, "status", "1", "--no-follow", "--api-key", key)
    assert code == 1 and out.startswith("job 1 cancelled")


@sqlite_only
def test_results_commands(service_url, finished_job, alice, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LILAW_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    job_id = str(finished_job.job_id)
    code, out, err = run(capsys, "status", job_id, "--poll", "0.05")
    assert code == 0
    assert f"job {job_id} succeeded" in out and f"{DEFAULT_SCORE} against" in out and "AUROC" in out
    assert "job 1" in err  # the progress bar

    code, out, _ = run(capsys, "suspects", job_id, "--limit", "5", "--score", "loss", "--epoch", "2")
    lines = out.splitlines()
    assert (
        code == 0
        and len(lines) == 6
        and lines[0].split() == ["rank", "sample_id", "label", "predicted", "split", "score", "known_mislabeled"]
    )

    scores = tmp_path / "scores.csv"
    code, out, _ = run(capsys, "download", job_id, "scores.csv", "--out", str(scores))
    assert code == 0 and len(pd.read_csv(scores)) == finished_job.num_samples
    code, _, _ = run(capsys, "download", job_id, "model", "--out", str(tmp_path / "model.pt"))
    assert code == 0 and (tmp_path / "model.pt").stat().st_size > 0


@sqlite_only
def test_growth_commands(service_url, finished_job, digits_audit, alice, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LILAW_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    held, dataset_id = digits_audit.result.dataset, str(finished_job.dataset_id)
    path = tmp_path / "week-2.npz"
    np.savez(path, x=held.x[:3], y=held.y[:3], sample_ids=np.array(["a", "b", "c"]))
    code, _, err = run(capsys, "append", dataset_id, str(path))
    assert code == 2 and "nothing to append: all 3 samples are already in the dataset" in err

    np.savez(path, x=held.x[:3] // 2, y=held.y[:3], sample_ids=np.array(["a", "b", "c"]))
    code, out, _ = run(capsys, "append", dataset_id, str(path))
    assert (code, out) == (0, f"dataset {dataset_id} version 2: 3 samples added, 0 duplicates left out\n")

    code, out, _ = run(capsys, "schedule", dataset_id, "--every", "86400", "--epochs", "2")
    assert code == 0 and out.startswith(f"dataset {dataset_id} re-audited every 86400 s; next run 20")
    code, out, _ = run(capsys, "reaudit", dataset_id, "--warm-start")
    assert (code, out) == (0, f"job 2 queued (re-audit of job {finished_job.job_id})\n")
    code, out, _ = run(capsys, "reaudit", dataset_id)
    assert code == 0 and out.startswith("skipped: nothing changed: version 2 is being audited")

    code, out, _ = run(capsys, "report", str(finished_job.job_id), "--limit", "2")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith(f"job {finished_job.job_id}, version 1: ") and "a first audit" in lines[0]
    assert any(line.startswith("  newly_suspected: ") for line in lines[1:])


@sqlite_only
def test_errors_exit_2(service_url, alice, capsys, monkeypatch):
    code, _, err = run(capsys, "submit", "1")
    assert code == 2 and "no API key" in err
    monkeypatch.setenv("LILAW_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    code, _, err = run(capsys, "submit", "999")
    assert code == 2 and err == "error (404): dataset 999 not found\n"
    code, _, err = run(capsys, "status", "1", "--url", "http://127.0.0.1:9")
    assert code == 2 and "cannot reach the service at http://127.0.0.1:9" in err


@sqlite_only
def test_review_commands(service_url, finished_job, alice, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LILAW_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    job_id = str(finished_job.job_id)
    code, out, _ = run(capsys, "review", "queue", job_id, "--limit", "3")
    lines = out.splitlines()
    total = finished_job.num_samples
    assert code == 0 and lines[0] == f"0 of {total} decided, {total} to go, 0 conflicts"
    assert lines[1].split() == ["rank", "sample_index", "sample_id", "label", "suggested", "score", "decisions"]
    rank, index, sample_id, label = lines[2].split()[:4]
    assert (rank, len(lines)) == ("1", 5)
    other = next(name for name in finished_job.audit.result.dataset.class_names if name != label)

    code, out, _ = run(capsys, "review", "decide", job_id, index, "--relabel", other)
    assert code == 0 and out.startswith("decision ") and out.endswith(f": {sample_id} ({label}) relabel to {other}\n")
    decision_id = out.split()[1].rstrip(":")
    code, out, _ = run(capsys, "review", "queue", job_id, "--status", "decided")
    assert code == 0 and out.splitlines()[0].startswith(f"1 of {finished_job.num_samples} decided")
    assert f"alice: relabel to {other}" in out.splitlines()[2]

    for fmt, suffix in (("csv", "csv"), ("json", "json"), ("label-studio", "labelstudio.json")):
        out_path = tmp_path / f"labels.{suffix}"
        code, out, _ = run(
            capsys, "review", "export", job_id, "--format", fmt, "--decided-only", "--out", str(out_path)
        )
        assert (code, out) == (0, f"wrote {out_path}\n")
    exported = pd.read_csv(tmp_path / "labels.csv", dtype=str)
    assert exported[["sample_id", "label", "verdict"]].values.tolist() == [[sample_id, other, "relabel"]]
    image_url = f"{service_url}/jobs/{job_id}/samples/{index}/image.png"
    assert f'"image":"{image_url}"' in (tmp_path / "labels.labelstudio.json").read_text()

    code, out, _ = run(capsys, "review", "undo", decision_id)
    assert (code, out) == (0, f"decision {decision_id} undone: {sample_id} relabel to {other}\n")
    code, _, err = run(capsys, "review", "undo", decision_id)
    assert code == 2 and "undone already" in err
    code, _, err = run(capsys, "review", "decide", job_id, index, "--relabel", "no-such-class")
    assert code == 2 and "unknown label 'no-such-class'" in err


@sqlite_only
def test_download_dataset_command(service_url, alice, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("LILAW_API_KEY", alice["Authorization"].removeprefix("Bearer "))
    path = tmp_path / "rows.csv"
    path.write_text("f1,label\n1,a\n2,b\n3,a\n4,b\n")
    assert run(capsys, "upload", str(path), "--name", "rows")[0] == 0
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "download-dataset", "1")
    assert (code, out) == (0, "wrote rows-v1.csv\n")
    assert pd.read_csv(tmp_path / "rows-v1.csv")["label"].tolist() == ["a", "b", "a", "b"]
    code, out, _ = run(capsys, "download-dataset", "1", "--format", "npz", "--out", str(tmp_path / "rows.npz"))
    assert code == 0 and np.load(tmp_path / "rows.npz")["y"].tolist() == [0, 1, 0, 1]


@sqlite_only
def test_create_key_from_another_folder_refuses_to_start_a_new_database(
    service_url, settings, capsys, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("LILAW_DATA_DIR")
    from core.settings import get_settings

    get_settings.cache_clear()
    code, out, err = run(capsys, "create-key", "--owner", "dana")
    assert (code, out) == (2, "")
    assert f"no LiLAW database in the data dir {elsewhere / 'lilaw-data'}" in err and "LILAW_DATA_DIR" in err
    for command in (["keys", "create", "--owner", "dana"], ["keys", "list", "--owner", "dana"]):
        assert run(capsys, *command)[0] == 2, command
    assert not (elsewhere / "lilaw-data" / "lilaw.sqlite").exists()

    # Pointed at the server's data dir, the key it prints is one the server accepts.
    monkeypatch.setenv("LILAW_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    code, out, err = run(capsys, "create-key", "--owner", "dana")
    assert code == 0 and str(settings.data_dir.resolve()) in err
    code, out, _ = run(capsys, "upload", "digits", "--api-key", out.strip())
    assert code == 0 and "1797 samples" in out

    # --init starts a database where there is none.
    monkeypatch.setenv("LILAW_DATA_DIR", str(elsewhere / "fresh"))
    get_settings.cache_clear()
    assert run(capsys, "create-key", "--owner", "dana", "--init")[0] == 0
    assert (elsewhere / "fresh" / "lilaw.sqlite").is_file()
    get_settings.cache_clear()
