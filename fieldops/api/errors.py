"""Errors as HTTP: one table from domain exception to status, RFC 9457 problem bodies."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from fieldops import errors
from fieldops.api.responses import ProblemBody

log = logging.getLogger("fieldops.api")

# Most specific first: the first class an exception is an instance of wins.
STATUS_BY_ERROR: list[tuple[type[errors.FieldOpsError], int]] = [
    (errors.OutsideServiceArea, 422),
    (errors.InvalidInput, 422),
    (errors.SourceErrors, 422),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.Unauthenticated, 401),
    (errors.Forbidden, 403),
]


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    problems: list[errors.FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemBody:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if problems:
        body["errors"] = [{"field": p.field, "reason": p.reason} for p in problems]
    return ProblemBody(body, status_code=status, headers=headers)


# Storage that cannot take a write: SQLite's "database or disk is full" (ENOSPC) and "disk
# I/O error" (what a disk quota or file size limit gives: EDQUOT, EFBIG), and PostgreSQL's
# disk_full.
SQLITE_STORAGE_ERRORS = frozenset({10, 13})  # SQLITE_IOERR, SQLITE_FULL
DISK_FULL_SQLSTATE = "53100"


@dataclass(frozen=True)
class StorageFailure:
    status: int
    title: str
    detail: str
    retry_after_s: int


def storage_failure(exc: OperationalError, request_id: str) -> StorageFailure:
    """What to answer when the database cannot take a request: 507 when its storage cannot
    take writes, else 503 (restarting, unreachable, locked). Either way the transaction was
    rolled back, or, when a commit was cut off on the wire, stored once: a retry with the
    same Idempotency-Key is safe, so the answer says when to retry instead of a 500."""
    orig = exc.orig
    full = (
        getattr(orig, "sqlite_errorcode", None) in SQLITE_STORAGE_ERRORS
        or getattr(orig, "sqlstate", None) == DISK_FULL_SQLSTATE
    )
    log.warning(
        "database could not take request %s: %s", request_id, str(orig).strip().splitlines()[0]
    )
    if full:
        return StorageFailure(
            507,
            "Insufficient storage",
            "the database's storage cannot take this write (full, over its quota or failing); "
            "nothing was stored: retry it later with the same Idempotency-Key",
            60,
        )
    return StorageFailure(
        503,
        "Database unavailable",
        "the database could not take this request just now (restarting, unreachable or "
        "busy); retry it after Retry-After seconds with the same Idempotency-Key",
        2,
    )


def status_for(exc: errors.FieldOpsError) -> int:
    return next((status for cls, status in STATUS_BY_ERROR if isinstance(exc, cls)), 400)


def _field_name(loc: tuple[Any, ...]) -> str:
    # ("body", "lat") -> "lat"; ("query", "bbox") -> "bbox"; nested paths joined with dots.
    parts = (
        [str(p) for p in loc[1:]]
        if loc and loc[0] in {"body", "query", "path", "header"}
        else [str(p) for p in loc]
    )
    return ".".join(parts) or str(loc[0] if loc else "body")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.FieldOpsError)
    async def _domain(_request: Request, exc: errors.FieldOpsError) -> ProblemBody:
        status = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        problems = getattr(exc, "problems", None)
        field_problems = (
            problems if problems and isinstance(problems[0], errors.FieldProblem) else None
        )
        return problem(status, exc.title, exc.detail, problems=field_problems, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> ProblemBody:
        found = [
            errors.FieldProblem(
                # A body that is not JSON at all has no field at fault: name the body.
                "body"
                if err.get("type") == "json_invalid"
                else _field_name(tuple(err.get("loc", ()))),
                err.get("msg", "invalid"),
            )
            for err in exc.errors()
        ]
        detail = "; ".join(f"{p.field}: {p.reason}" for p in found)
        return problem(422, "Invalid input", detail, problems=found)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> ProblemBody:
        title = {404: "Not found", 405: "Method not allowed", 413: "Request too large"}.get(
            exc.status_code, "HTTP error"
        )
        return problem(exc.status_code, title, str(exc.detail), headers=exc.headers)

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> ProblemBody:
        failed = storage_failure(exc, request.scope.get("fieldops.request_id", "-"))
        return problem(
            failed.status,
            failed.title,
            failed.detail,
            headers={"Retry-After": str(failed.retry_after_s)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> ProblemBody:
        request_id = request.scope.get("fieldops.request_id", "-")
        log.exception("unhandled error, request %s", request_id, exc_info=exc)
        return problem(
            500,
            "Internal error",
            f"Something went wrong on our side; quote request id {request_id} to support.",
        )
