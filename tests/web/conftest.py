"""The service as `lilaw-audit up` runs it (a uvicorn server and a Celery worker as subprocesses,
on the embedded SQLite database and broker under a fresh data dir), an API key of a named
reviewer, and a headless Chromium driven by Playwright.

Chromium is Debian's (`/usr/bin/chromium`, or LILAW_TEST_CHROMIUM); without it or Playwright the
tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from api.auth import create_api_key
from cli.stack import Stack, free_port
from core.settings import Settings
from core.store import make_engine, make_session_factory, session_scope
from migrations import upgrade_database

CHROMIUM = os.environ.get("LILAW_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SERVICE_ENV = ("LILAW_DATABASE_URL", "DATABASE_URL", "LILAW_BROKER_URL", "CELERY_BROKER_URL", "LILAW_AUDIT_QUEUE")
REVIEWER = "ana"


@dataclass
class Service:
    url: str
    api_key: str  # the reviewer's key (reviewing only), to log in with
    reviewer: str
    settings: Settings
    owner_key: str  # the team's owner key, to upload and submit jobs

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.owner_key}"}, timeout=60)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    data_dir = tmp_path_factory.mktemp("web") / "data"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LILAW_DATA_DIR", str(data_dir))
        for name in SERVICE_ENV:
            env.delenv(name, raising=False)
        settings = Settings()
        data_dir.mkdir(parents=True)
        upgrade_database(settings.resolved_database_url)
        engine = make_engine(settings.resolved_database_url)
        with session_scope(make_session_factory(engine)) as session:
            api_key = create_api_key(session, "team", reviewer=REVIEWER)
            owner_key = create_api_key(session, "team")
        engine.dispose()
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            with Stack(settings, "127.0.0.1", free_port(), beat=False, log_dir=data_dir / "logs") as stack:
                stack.wait_until_ready()
                yield Service(
                    url=stack.url, api_key=api_key, reviewer=REVIEWER, settings=settings, owner_key=owner_key
                )
        finally:
            signal.signal(signal.SIGTERM, sigterm)
            for log in sorted((data_dir / "logs").glob("*.log")):
                print(f"--- {log.name}\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser(require_service) -> Iterator:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        require_service("Playwright", error)
    if not Path(CHROMIUM).is_file():
        require_service("Chromium", f"no file at {CHROMIUM}")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, tmp_path: Path):
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not errors, f"errors in the page's scripts: {errors}"
