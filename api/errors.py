"""Errors as JSON with a reason code: {"error": "...", "detail": "..."}."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from api import refusals
from api.database import DatabaseUnavailable
from api.records import Invalid
from ingest.emergency import EmergencyError
from ingest.tasks import TaskError, TaskForbidden


class ErrorBody(BaseModel):
    error: str
    detail: str


class InvalidBody(ErrorBody):
    field: str | None = Field(default=None, description="the field at fault, when one is")


class StaleBody(ErrorBody):
    current: dict[str, Any] = Field(description="the record as it is now, with its version")


class Stale(Exception):
    """An update made against an older version of a record: 409 with the record as it is now."""

    def __init__(self, detail: str, current: BaseModel) -> None:
        super().__init__(detail)
        self.detail = detail
        self.current = current


_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            409: "conflict", 413: "too_large", 422: "invalid", 429: "too_many_requests",
            503: "unavailable"}  # fmt: skip
log = logging.getLogger(__name__)


def unavailable(reason: str) -> JSONResponse:
    """503 for a database that cannot take the request now: a fault to wait out, not a bug."""
    response = _body(503, f"{reason}; try again in a moment")
    response.headers["Retry-After"] = "5"
    return response


def _body(status_code: int, detail: str) -> JSONResponse:
    reason = _REASONS.get(status_code, "error")
    return JSONResponse(
        ErrorBody(error=reason, detail=detail).model_dump(), status_code=status_code
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        await refusals.record(request, exc.status_code, str(exc.detail))
        response = _body(exc.status_code, str(exc.detail))
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _body(422, problems)

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value PostgreSQL cannot take (a NUL byte in text, a number out of range): the
        # request is at fault, not the server.
        return _body(400, f"a value the database cannot take: {str(exc).strip()}")

    @app.exception_handler(TaskError)
    async def task_refused(request: Request, exc: TaskError) -> JSONResponse:
        # Not this person's to do (role, assignee) is 403; not now (the task's state) is 409.
        code = 403 if isinstance(exc, TaskForbidden) else 409
        await refusals.record(request, code, str(exc))
        return _body(code, str(exc))

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return unavailable(exc.reason)

    @app.exception_handler(psycopg.errors.ReadOnlySqlTransaction)
    async def read_only(request: Request, exc: psycopg.Error) -> JSONResponse:
        return unavailable("the database is read-only")

    @app.exception_handler(psycopg.OperationalError)
    async def unreachable(request: Request, exc: psycopg.Error) -> JSONResponse:
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                    str(exc).strip())  # fmt: skip
        return unavailable("the database cannot be reached")

    @app.exception_handler(Invalid)
    async def invalid_record(request: Request, exc: Invalid) -> JSONResponse:
        body = InvalidBody(error="invalid", detail=str(exc), field=exc.field)
        return JSONResponse(body.model_dump(), status_code=422)

    @app.exception_handler(Stale)
    async def stale(request: Request, exc: Stale) -> JSONResponse:
        await refusals.record(request, 409, exc.detail)
        current = exc.current.model_dump(mode="json")
        body = StaleBody(error="conflict", detail=exc.detail, current=current)
        return JSONResponse(body.model_dump(), status_code=409)

    @app.exception_handler(EmergencyError)
    async def emergency_refused(request: Request, exc: EmergencyError) -> JSONResponse:
        await refusals.record(request, 409, str(exc))
        return _body(409, str(exc))


def document_validation_errors(app: FastAPI) -> None:
    """Say in the OpenAPI document what a 422 really looks like here (our ErrorBody)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            body = ErrorBody.model_json_schema()
            schema.setdefault("components", {}).setdefault("schemas", {})["HTTPValidationError"] = (
                body
            )
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
