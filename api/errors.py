"""Errors as JSON: {"error": a stable code, "detail": English, "message": in the request's
language} (api/messages.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from api import messages, refusals
from api.database import DatabaseUnavailable
from api.records import Invalid
from casework.emergency import EmergencyError
from casework.tasks import TaskError, TaskForbidden


class ErrorBody(BaseModel):
    error: str = Field(description="what kind of error: a stable code")
    detail: str = Field(description="in English, for scripts and logs")
    message: str = Field(
        description="for a person, in the request's Accept-Language (zh-CN default)"
    )


class InvalidBody(ErrorBody):
    field: str | None = Field(default=None, description="the field at fault, when one is")


class StaleBody(ErrorBody):
    current: dict[str, Any] = Field(description="the record as it is now, with its version")


class Stale(Exception):
    """An update made against an older version of a record: 409 with the record as it is now."""

    def __init__(
        self, detail: str, current: BaseModel, code: str = "registry.stale", **params: object
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.current = current
        self.code = code
        self.params = params


_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
            429: "too_many_requests", 503: "unavailable"}  # fmt: skip
log = logging.getLogger(__name__)


def message_of(request: Request, status_code: int, code: str | None, params: dict[str, Any]) -> str:
    """The message in the request's language (set by api.messages.Language, which wraps every
    handler); a status's own when the error has no code."""
    if not code or code not in messages.MESSAGES:
        code = (
            f"status.{status_code}"
            if f"status.{status_code}" in messages.MESSAGES
            else "status.500"
        )
    return messages.render(code, params, messages.current())


def unavailable(request: Request, reason: str, code: str) -> JSONResponse:
    """503 for a database that cannot take the request now: a fault to wait out, not a bug."""
    response = _body(request, 503, f"{reason}; try again in a moment", code)
    response.headers["Retry-After"] = "5"
    return response


def _body(
    request: Request,
    status_code: int,
    detail: str,
    code: str | None = None,
    params: dict[str, Any] | None = None,
    model: type[ErrorBody] = ErrorBody,
    **extra: Any,
) -> JSONResponse:
    reason = _REASONS.get(status_code, "error")
    body = model(error=reason, detail=detail,
                 message=message_of(request, status_code, code, params or {}), **extra)  # fmt: skip
    return JSONResponse(body.model_dump(), status_code=status_code)


def _coded(exc: Exception) -> tuple[str | None, dict[str, Any]]:
    return getattr(exc, "code", None) or None, dict(getattr(exc, "params", None) or {})


# pydantic's error types, by the message that says them.
_VALIDATION = {
    "missing": "invalid.missing", "extra_forbidden": "invalid.extra",
    "string_too_short": "invalid.too_short", "too_short": "invalid.too_short",
    "string_too_long": "invalid.too_long", "too_long": "invalid.too_long",
    "string_pattern_mismatch": "invalid.pattern", "int_parsing": "invalid.number",
    "float_parsing": "invalid.number", "int_from_float": "invalid.number",
    "greater_than": "invalid.range", "greater_than_equal": "invalid.range",
    "less_than": "invalid.range", "less_than_equal": "invalid.range",
    "literal_error": "invalid.choice", "enum": "invalid.choice", "json_invalid": "invalid.json",
    "string_type": "invalid.type", "int_type": "invalid.type", "bool_parsing": "invalid.type",
    "bool_type": "invalid.type", "dict_type": "invalid.type", "list_type": "invalid.type",
    "model_attributes_type": "invalid.type", "datetime_parsing": "invalid.type",
    "datetime_from_date_parsing": "invalid.type", "model_type": "invalid.type",
}  # fmt: skip


_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


def _field(error: Mapping[str, Any]) -> str:
    """The field at fault within its part of the request (`capacity` of `body.capacity`)."""
    loc = [str(p) for p in error["loc"]]
    return ".".join(loc[1:] if len(loc) > 1 and loc[0] in _PARTS else loc)


def _problem(error: Mapping[str, Any], lang: str) -> str:
    loc = ".".join(str(p) for p in error["loc"])
    params = {"loc": loc, "field": _field(error), "msg": error["msg"], **(error.get("ctx") or {})}
    return messages.render(_VALIDATION.get(str(error["type"]), "invalid.field"), params, lang)


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        await refusals.record(request, exc.status_code, str(exc.detail))
        code, params = _coded(exc)
        response = _body(request, exc.status_code, str(exc.detail), code, params)
        for k, v in (exc.headers or {}).items():
            response.headers[k] = v
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        lang = messages.current()
        said = messages.PROBLEM_SEP[lang].join(_problem(e, lang) for e in exc.errors())
        first = exc.errors()[0] if exc.errors() else None
        body = InvalidBody(error="invalid", detail=problems, message=said,
                           field=_field(first) if first else None)  # fmt: skip
        return JSONResponse(body.model_dump(), status_code=422)

    @app.exception_handler(psycopg.DataError)
    async def unstorable(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value PostgreSQL cannot take (a NUL byte in text, a number out of range): the
        # request is at fault, not the server.
        reason = str(exc).strip()
        return _body(request, 400, f"a value the database cannot take: {reason}", "db.value",
                     {"reason": reason})  # fmt: skip

    @app.exception_handler(TaskError)
    async def task_refused(request: Request, exc: TaskError) -> JSONResponse:
        # Not this person's to do (role, assignee) is 403; not now (the task's state) is 409.
        code = 403 if isinstance(exc, TaskForbidden) else 409
        await refusals.record(request, code, str(exc))
        return _body(request, code, str(exc), *_coded(exc))

    @app.exception_handler(DatabaseUnavailable)
    async def database_unavailable(request: Request, exc: DatabaseUnavailable) -> JSONResponse:
        return unavailable(request, exc.reason, exc.code)

    @app.exception_handler(psycopg.errors.ReadOnlySqlTransaction)
    async def read_only(request: Request, exc: psycopg.Error) -> JSONResponse:
        return unavailable(request, "the database is read-only", "db.read_only")

    @app.exception_handler(psycopg.OperationalError)
    async def unreachable(request: Request, exc: psycopg.Error) -> JSONResponse:
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                    str(exc).strip())  # fmt: skip
        return unavailable(request, "the database cannot be reached", "db.unreachable")

    @app.exception_handler(Invalid)
    async def invalid_record(request: Request, exc: Invalid) -> JSONResponse:
        return _body(request, 422, str(exc), *_coded(exc), model=InvalidBody, field=exc.field)

    @app.exception_handler(Stale)
    async def stale(request: Request, exc: Stale) -> JSONResponse:
        await refusals.record(request, 409, exc.detail)
        current = exc.current.model_dump(mode="json")
        return _body(request, 409, exc.detail, exc.code, dict(exc.params), model=StaleBody,
                     current=current)  # fmt: skip

    @app.exception_handler(EmergencyError)
    async def emergency_refused(request: Request, exc: EmergencyError) -> JSONResponse:
        await refusals.record(request, 409, str(exc))
        return _body(request, 409, str(exc), *_coded(exc))


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
