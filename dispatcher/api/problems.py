"""RFC 9457 problem details for every error, naming the field at fault."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("dispatcher.api")


class Problem(Exception):
    """Raise anywhere in a request to answer with problem JSON."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.headers = headers


#: Seconds a client should wait before retrying when the database is unavailable.
RETRY_AFTER = 5


def busy() -> Problem:
    """503 for a request that can succeed later unchanged (database down or contended)."""
    return Problem(
        503,
        "Service unavailable",
        "the database is unavailable or busy; retry later",
        headers={"Retry-After": str(RETRY_AFTER)},
    )


#: The most characters of a request path echoed as a problem's ``instance``.
MAX_INSTANCE = 256


def problem_response(
    status: int,
    title: str,
    detail: str | None = None,
    *,
    instance: str | None = None,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance[:MAX_INSTANCE]  # the path, not a 10 KB echo of it
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def database_unavailable(exc: Exception) -> bool:
    """The database cannot be reached or used right now (down, restarting, dropped, locked).

    Connection failures and SQLite's "database is locked" are ``OperationalError``;
    a connection killed under a statement is ``connection_invalidated``; a full pool
    times out. Anything else from the database (a bug, a constraint) stays a 500.
    """
    if isinstance(exc, PoolTimeout | OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def field_path(loc: Sequence[Any]) -> str:
    """``("body", "contacts", 0, "address")`` -> ``contacts[0].address``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not (isinstance(part, str) and ("[" in part or part.startswith("function-"))):
            path += f".{part}" if path else str(part)
    return path or "(body)"


def install(app: FastAPI) -> None:
    """Register handlers so no error leaves the API as anything but problem JSON."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.title,
            exc.detail,
            instance=request.url.path,
            errors=exc.errors,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": field_path(e["loc"]), "message": str(e["msg"]).removeprefix("Value error, ")}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(
            422, "Invalid request", detail, instance=request.url.path, errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(
            exc.status_code,
            str(exc.detail),
            instance=request.url.path,
            headers=getattr(exc, "headers", None),
        )

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        if not database_unavailable(exc):
            return await _unexpected(request, exc)
        log.warning(
            "database unavailable: %s",
            type(exc.__cause__ or exc).__name__,
            extra={"path": request.url.path},
        )
        answer = busy()
        return problem_response(
            answer.status,
            answer.title,
            answer.detail,
            instance=request.url.path,
            headers=answer.headers,
        )

    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(PoolTimeout, _database)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(
            500, "Internal error", "the error was logged", instance=request.url.path
        )


def idempotency_conflict() -> Problem:
    """409: the Idempotency-Key was used before with a different body."""
    return Problem(
        409,
        "Idempotency-Key reused",
        "this Idempotency-Key was used with a different request body",
        errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
    )
