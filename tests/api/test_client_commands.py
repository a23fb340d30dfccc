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
