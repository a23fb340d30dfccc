"""What the schemathesis run (tests/api/test_fuzzing.py) found, pinned as plain tests."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_malformed_flags_csv_is_422_not_500(client, alice):
    dataset = client.post("/datasets", files={"file": ("rows.csv", b"f1,label\n1,a\n2,b\n3,a\n")}, headers=alice)
    dataset_id = dataset.json()["id"]
    response = client.post(
        f"/datasets/{dataset_id}/versions/1/flags",
        content=b"sample_id,is_mislabeled\n\x00\r0,1\n",
        headers={**alice, "Content-Type": "text/csv"},
    )
    # Read before as a csv.Error ("new-line character seen in unquoted field"): a 500.
    assert response.status_code == 422
    assert "not in this dataset version" in response.json()["detail"]
