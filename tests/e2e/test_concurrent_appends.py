"""Appends racing on one dataset over HTTP: every sample acknowledged with 201 is in the final
version. Before appends locked their dataset, two requests built their versions from the same
parent on Postgres and the later one dropped the other's samples."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from core.loaders import load_dataset

APPENDS = 6
PER_APPEND = 5
BASE = 200


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_concurrent_appends_to_one_dataset_all_land(service):
    digits = load_dataset("digits", limit=BASE + APPENDS * PER_APPEND)
    ids = np.array(digits.sample_ids)
    with service.http() as http:
        first = npz(x=digits.x[:BASE], y=digits.y[:BASE], sample_ids=ids[:BASE])
        dataset_id = http.post("/datasets", files={"file": ("base.npz", first)}).raise_for_status().json()["id"]

        def append(k: int) -> tuple[int, list[str]]:
            part = slice(BASE + k * PER_APPEND, BASE + (k + 1) * PER_APPEND)
            body = npz(x=digits.x[part], y=digits.y[part], sample_ids=ids[part])
            with service.http() as client:  # a connection of its own: requests really overlap
                answer = client.post(f"/datasets/{dataset_id}/versions/append", files={"file": (f"{k}.npz", body)})
            return answer.status_code, ids[part].tolist()

        with ThreadPoolExecutor(APPENDS) as pool:
            answers = list(pool.map(append, range(APPENDS)))

        acknowledged = [sample_id for status, added in answers if status == 201 for sample_id in added]
        assert [status for status, _ in answers] == [201] * APPENDS, answers
        versions = http.get(f"/datasets/{dataset_id}/versions").raise_for_status().json()
        assert [v["version"] for v in versions] == list(range(1, APPENDS + 2))
        assert [v["parent_version"] for v in versions[1:]] == list(range(1, APPENDS + 1))  # one chain
        latest = versions[-1]
        assert latest["num_samples"] == BASE + len(acknowledged)
        diff = http.get(
            f"/datasets/{dataset_id}/versions/diff", params={"base": 1, "version": latest["version"]}
        ).raise_for_status().json()
        assert diff["num_added"] == len(acknowledged) and diff["num_removed"] == 0
        assert sorted(diff["added"]) == sorted(acknowledged)
