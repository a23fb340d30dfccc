"""The OpenAPI document describes every route with its request and response bodies."""

from __future__ import annotations

import pytest

EXPECTED_OPERATIONS = {
    ("post", "/datasets"),
    ("get", "/datasets"),
    ("get", "/datasets/{dataset_id}"),
    ("post", "/datasets/{dataset_id}/versions/{version}/flags"),
    ("get", "/datasets/{dataset_id}/versions"),
    ("post", "/datasets/{dataset_id}/versions/append"),
    ("post", "/datasets/{dataset_id}/versions/relabel"),
    ("get", "/datasets/{dataset_id}/versions/diff"),
    ("get", "/datasets/{dataset_id}/versions/{version}/download"),
    ("put", "/datasets/{dataset_id}/schedule"),
    ("get", "/datasets/{dataset_id}/schedule"),
    ("delete", "/datasets/{dataset_id}/schedule"),
    ("post", "/datasets/{dataset_id}/reaudits"),
    ("get", "/jobs/{job_id}/report"),
    ("put", "/datasets/{dataset_id}/webhook"),
    ("get", "/datasets/{dataset_id}/webhook"),
    ("delete", "/datasets/{dataset_id}/webhook"),
    ("get", "/datasets/{dataset_id}/webhook/deliveries"),
    ("post", "/datasets/{dataset_id}/webhook/deliveries/{delivery_id}/retry"),
    ("post", "/datasets/{dataset_id}/webhook/test"),
    ("post", "/jobs"),
    ("get", "/jobs"),
    ("get", "/jobs/{job_id}"),
    ("post", "/jobs/{job_id}/cancel"),
    ("get", "/jobs/{job_id}/suspects"),
    ("get", "/jobs/{job_id}/samples/{sample_index}/dynamics"),
    ("get", "/jobs/{job_id}/metrics"),
    ("post", "/jobs/{job_id}/metrics/recompute"),
    ("get", "/jobs/{job_id}/scores.csv"),
    ("get", "/jobs/{job_id}/scores.parquet"),
    ("get", "/jobs/{job_id}/model"),
    ("get", "/jobs/{job_id}/charts"),
    ("get", "/jobs/{job_id}/noise-estimate"),
    ("get", "/jobs/{job_id}/review-queue"),
    ("get", "/jobs/{job_id}/samples/{sample_index}/thumbnail.png"),
    ("get", "/jobs/{job_id}/samples/{sample_index}/image.png"),
    ("get", "/jobs/{job_id}/decisions/mine"),
    ("post", "/jobs/{job_id}/decisions"),
    ("get", "/jobs/{job_id}/decisions"),
    ("post", "/decisions/{decision_id}/undo"),
    ("get", "/jobs/{job_id}/export.csv"),
    ("get", "/jobs/{job_id}/export.json"),
    ("get", "/jobs/{job_id}/export.labelstudio.json"),
    ("post", "/jobs/{job_id}/assignments"),
    ("get", "/jobs/{job_id}/assignments"),
    ("delete", "/jobs/{job_id}/assignments"),
    ("put", "/jobs/{job_id}/adjudicators/{name}"),
    ("delete", "/jobs/{job_id}/adjudicators/{name}"),
    ("get", "/jobs/{job_id}/conflicts"),
    ("post", "/jobs/{job_id}/adjudications"),
    ("post", "/decisions/{decision_id}/comments"),
    ("get", "/decisions/{decision_id}/comments"),
    ("get", "/jobs/{job_id}/team"),
    ("get", "/keys"),
    ("post", "/keys"),
    ("patch", "/keys/{key_id}"),
    ("delete", "/keys/{key_id}"),
    ("get", "/health"),
}


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_openapi_document(client):
    document = client.get("/openapi.json").json()
    operations = {(method, path): op for path, item in document["paths"].items() for method, op in item.items()}
    assert set(operations) == EXPECTED_OPERATIONS
    assert {"HTTPBearer", "APIKeyHeader"} <= set(document["components"]["securitySchemes"])
    for (method, path), operation in operations.items():
        success = next(code for code in operation["responses"] if code.startswith("2"))
        assert success == "204" or operation["responses"][success]["content"], (method, path)
        if path != "/health":
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorPublic"
            }
            assert "HTTPValidationError" not in str(operation["responses"])
    upload = operations[("post", "/datasets")]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data", "application/json"}
    flags = operations[("post", "/datasets/{dataset_id}/versions/{version}/flags")]["requestBody"]["content"]
    assert set(flags) == {"text/csv", "application/json"}
    job = operations[("get", "/jobs/{job_id}")]["responses"]["200"]["content"]["application/json"]["schema"]
    assert job == {"$ref": "#/components/schemas/JobPublic"}
