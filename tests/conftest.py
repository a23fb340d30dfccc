"""Fixtures shared by every test directory: the test Postgres and Redis servers, new databases on
either backend, and a real HTTP endpoint on a local port that webhook calls are made to.

Postgres comes from LILAW_TEST_POSTGRES_URL (a server URL whose user may create databases;
default postgres@127.0.0.1:5432), Redis from LILAW_TEST_REDIS_URL (default 127.0.0.1:6379,
database 15). A test that needs a service that is unavailable skips, except under CI=true,
where it fails.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NoReturn

import pytest
import redis
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from core.store.db import database_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# Not database 0, which a service running on the same machine uses by default.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"

RequireService = Callable[[str, object], NoReturn]
MakeDatabase = Callable[[str], str]


@pytest.fixture(scope="session")
def require_service() -> RequireService:
    """`require_service(what, error)`, called when `what` (a service or tool the test cannot run
    without) is unavailable: skips the test, or fails it under CI=true, where everything must be."""

    def unavailable(what: str, error: object) -> NoReturn:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{what} is unavailable under CI: {error}")
        pytest.skip(f"{what} is unavailable: {error}")

    return unavailable


@pytest.fixture(scope="session")
def postgres_server_url(require_service: RequireService) -> URL:
    url = database_url(os.environ.get("LILAW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    engine = create_engine(url)
    try:
        engine.connect().close()
    except OperationalError as error:
        require_service("Postgres", error)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def make_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MakeDatabase]:
    """`make_database(backend)`: the URL of a new, empty, uniquely named database, a file for
    "sqlite" or a database on the test server for "postgresql"; the latter are dropped at the
    end of the session."""
    server: Engine | None = None
    created: list[str] = []

    def make(backend: str) -> str:
        nonlocal server
        name = f"lilaw_test_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / name}.sqlite"
        if backend != "postgresql":
            raise ValueError(f"no test databases of backend {backend!r}")
        if server is None:
            # Asked for here, not as a parameter, so that SQLite-only runs need no Postgres.
            server = create_engine(request.getfixturevalue("postgres_server_url"), isolation_level="AUTOCOMMIT")
        with server.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        created.append(name)
        return server.url.set(database=name).render_as_string(hide_password=False)

    yield make
    if server is not None:
        with server.connect() as connection:
            for name in created:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        server.dispose()


@pytest.fixture(scope="session")
def redis_url(require_service: RequireService) -> str:
    """The test Redis server; tests sharing it keep apart by broker queues of their own."""
    url = os.environ.get("LILAW_TEST_REDIS_URL", DEFAULT_REDIS_URL)
    try:
        with redis.Redis.from_url(url) as client:
            client.ping()
    except redis.RedisError as error:
        require_service("Redis", error)
    return url


class WebhookReceiver:
    """A webhook endpoint on a local port: records each call as it arrives, then answers with
    the next of the scripted statuses (the last one again once the script runs out), optionally
    after a delay and with extra headers."""

    PATH = "/hooks/lilaw?team=ops"

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0, headers: dict[str, str] | None = None):
        self.statuses = statuses or [200]
        self.calls: list[dict] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.arrived:
                    receiver.calls.append(
                        {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                    )
                    status = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                    receiver.arrived.notify_all()
                time.sleep(delay_s)
                answer = b"receiver says no" if status >= 300 else b"ok"
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:  # the caller gave up waiting
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.url = f"http://127.0.0.1:{self.server.server_port}{self.PATH}"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def wait_for(self, count: int, timeout_s: float = 120) -> list[dict]:
        """The calls once at least `count` have arrived (for calls made by another process)."""
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.calls) >= count, timeout_s), f"{len(self.calls)} calls"
            return list(self.calls)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_for() -> Iterator[Callable[..., WebhookReceiver]]:
    """Starts webhook receivers (`receiver_for([500, 200])`); all are closed after the test."""
    started: list[WebhookReceiver] = []

    def start(statuses: list[int] | None = None, **options) -> WebhookReceiver:
        started.append(WebhookReceiver(statuses, **options))
        return started[-1]

    yield start
    for receiver in started:
        receiver.close()
