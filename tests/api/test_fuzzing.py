"""Property-based fuzzing of every documented operation with schemathesis: a bounded number of
generated requests per operation (valid and invalid parameters, bodies and uploads), sent over
loopback to the real API (uvicorn) on SQLite and on Postgres + Redis, authenticated with a real
owner key. No response may be a 5xx, and every response must match the OpenAPI schema."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from api.app import create_app
from api.auth import create_api_key
from core.settings import Settings, get_settings
from core.store import session_scope

EXAMPLES_PER_OPERATION = 10
SEED_ROWS = b"f1,f2,label\n1,2,a\n2,3,b\n3,4,a\n4,5,b\n5,6,a\n6,7,b\n"


@dataclass
class LiveApi:
    url: str
    headers: dict[str, str]
    key_id: int  # the caller's own key, which the key routes must not revoke mid-run
    decoy_key_id: int
    schema: dict


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_api(request, tmp_path_factory, make_database) -> Iterator[LiveApi]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    data_dir.mkdir()
    env = {"LILAW_DATA_DIR": str(data_dir)}
    if request.param == "postgres":
        env |= {
            "LILAW_DATABASE_URL": make_database("postgresql"),
            "LILAW_BROKER_URL": request.getfixturevalue("redis_url"),
            "LILAW_AUDIT_QUEUE": f"audit-fuzz-{uuid.uuid4().hex[:12]}",
        }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("LILAW_DATABASE_URL", "DATABASE_URL", "LILAW_BROKER_URL", "CELERY_BROKER_URL", "LILAW_AUDIT_QUEUE"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        app = create_app(Settings())
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            yield _seeded(app, f"http://127.0.0.1:{port}")
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            get_settings.cache_clear()


def _seeded(app, url: str) -> LiveApi:
    """An owner with a key, a decoy key, a dataset and a queued job, so that ids 1 and 2 exist."""
    import httpx

    with session_scope(app.state.sessions) as session:
        key = create_api_key(session, "fuzzer")
        decoy = create_api_key(session, "fuzzer", reviewer="decoy")
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        dataset = http.post("/datasets", files={"file": ("rows.csv", SEED_ROWS)}).raise_for_status().json()
        http.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}).raise_for_status()
        keys = http.get("/keys").raise_for_status().json()
    own = next(k["id"] for k in keys if k["reviewer"] is None)
    decoy_id = next(k["id"] for k in keys if k["reviewer"] == "decoy")
    assert decoy
    return LiveApi(url=url, headers=headers, key_id=own, decoy_key_id=decoy_id, schema=app.openapi())


@pytest.fixture(scope="module")
def api_schema(live_api: LiveApi):
    return schemathesis.openapi.from_dict(live_api.schema)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_every_response_matches_the_schema(case, live_api: LiveApi):
    if "key_id" in (case.path_parameters or {}) and case.path_parameters["key_id"] == live_api.key_id:
        case.path_parameters["key_id"] = live_api.decoy_key_id  # revoking the caller's key ends the run
    case.call_and_validate(
        base_url=live_api.url,
        headers=live_api.headers,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
        timeout=60,
    )
