"""Every error answers JSON {"detail": "<message>"}: domain errors (`core.errors.AuditError` and
its subclasses) with their own status code, request validation errors with 422. A 5xx's message
names no internal detail (an address, a path, SQL): whatever caused it goes to the log."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import AuditError

logger = logging.getLogger(__name__)


class AuthenticationError(AuditError):
    status_code = 401
    headers = {"WWW-Authenticate": "Bearer"}


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuditError, _audit_error)
    app.add_exception_handler(RequestValidationError, _validation_error)


def validation_message(errors: Sequence[Any]) -> str:
    """Pydantic's errors as one line: `field: problem; field: problem`."""
    return "; ".join(f"{_location(error.get('loc', ()))}: {error.get('msg', 'invalid')}" for error in errors)


def _location(loc: Sequence[str | int]) -> str:
    parts = [str(part) for part in loc]
    if len(parts) > 1 and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    return ".".join(parts) or "request"


async def _audit_error(request: Request, error: AuditError) -> JSONResponse:
    if error.status_code >= 500:
        cause = error.__cause__ or error
        logger.error(
            "%s %s answered %s: %s (%r)", request.method, request.url.path, error.status_code, error.message, cause,
            exc_info=cause,
        )
    return JSONResponse(
        {"detail": error.message}, status_code=error.status_code, headers=getattr(error, "headers", None)
    )


async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
    return JSONResponse({"detail": validation_message(error.errors())}, status_code=422)
