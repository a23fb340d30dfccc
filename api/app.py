"""The FastAPI application: `create_app(settings)` for tests and embedding, `app` for uvicorn
(`uvicorn api.app:app`). Startup creates the data dirs and upgrades the database schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from api.errors import register_error_handlers
from api.queue import AuditQueue
from api.routes import datasets, jobs, keys, reaudits, results, review, versions, webhooks
from api.routes import estimate
from api.routes import team
from api.web import pages
from api.web import team_pages
from core.settings import Settings, get_settings
from core.store.db import make_engine, make_session_factory
from migrations import upgrade_database
from worker.celery_app import make_celery

DESCRIPTION = """Find mislabeled samples with LiLAW (Lightweight Learnable Adaptive Weighting).

Upload a dataset, submit an audit job, follow its progress, then read the ranked suspects and
the detection metrics against the known flags. Every score is oriented so that higher means
more suspicious. Authenticate with an API key (`lilaw-audit create-key --owner NAME`) sent as
`Authorization: Bearer <key>` or `X-API-Key: <key>`. Annotation teams review the suspects in the
pages under `/ui` (log in with a key at `/ui/login`)."""


# Connections kept open for GET requests; sync routes run on a 40-thread pool (anyio's default).
READ_POOL_SIZE = 20


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for directory in (settings.data_dir, settings.blob_dir, settings.job_dir):
            directory.mkdir(parents=True, exist_ok=True)
        upgrade_database(settings.resolved_database_url)
        # API transactions read before they write while a worker writes: on SQLite they take
        # the write lock when they begin (a no-op on Postgres).
        engine = make_engine(settings.resolved_database_url, sqlite_begin="IMMEDIATE")
        celery = make_celery(settings)
        app.state.sessions = make_session_factory(engine)
        # Reads (GET routes, key and session lookups) begin DEFERRED: on SQLite (WAL) they run
        # beside the writer instead of queueing for its lock. Their pool keeps a connection for
        # every concurrent request: one closed after each use is reopened (and configured) by
        # the next, which under 20 concurrent readers was most of a request's time.
        read_engine = make_engine(settings.resolved_database_url, pool_size=READ_POOL_SIZE, max_overflow=READ_POOL_SIZE)
        app.state.read_sessions = make_session_factory(read_engine)
        app.state.celery = celery  # also sends the ingest tasks of large uploads (api.uploads)
        app.state.audit_queue = AuditQueue(celery, settings.audit_queue)
        try:
            yield
        finally:
            celery.close()
            engine.dispose()
            read_engine.dispose()

    app = FastAPI(title="LiLAW Audit", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    register_error_handlers(app)
    for router in (
        datasets.router,
        versions.router,
        jobs.router,
        reaudits.router,
        webhooks.router,
        results.router,
        estimate.router,
        review.router,
        team.router,
        keys.router,
        pages.router,
        team_pages.router,
    ):
        app.include_router(router)
    app.mount("/ui/static", pages.static_files, name="static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=303)

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = create_app()
