"""Uploads that expand past the memory budgets (core.loaders.limits) answer 422 with a clear
message, and leave no file behind."""

from __future__ import annotations

import pytest

from tests.core.test_loaders.budget_files import huge_png_zip, huge_shape_npz, labels_bomb_zip

sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


@sqlite_only
def test_uploads_over_the_budgets_are_422_and_leave_no_file(client, alice, tmp_path, blob_files):
    cases = {
        "huge.zip": (huge_png_zip(tmp_path / "huge.zip"), "more than the 40000000 allowed per image"),
        "huge.npz": (huge_shape_npz(tmp_path / "huge.npz"), "claims shape (1000000000000, 1000)"),
        "bomb.zip": (labels_bomb_zip(tmp_path / "bomb.zip", 40 * 1024**2), "labels file 'labels.csv' expands to"),
    }
    for name, (path, message) in cases.items():
        response = client.post("/datasets", files={"file": (name, path.read_bytes())}, headers=alice)
        assert response.status_code == 422, (name, response.text)
        detail = response.json()["detail"]
        assert message in detail and name in detail
    assert blob_files() == []
    assert client.get("/datasets", headers=alice).json() == []
