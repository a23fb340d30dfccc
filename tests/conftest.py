"""Fixtures shared by every test directory: a real HTTP endpoint on a local port that webhook
calls are made to."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


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
