"""Errors as JSON with a reason code: {"error": "...", "detail": "..."}."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ingest.emergency import EmergencyError
from ingest.tasks import TaskError


class ErrorBody(BaseModel):
    error: str
    detail: str


_REASONS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            409: "conflict", 422: "invalid"}  # fmt: skip


def _body(status_code: int, detail: str) -> JSONResponse:
    reason = _REASONS.get(status_code, "error")
    return JSONResponse(
        ErrorBody(error=reason, detail=detail).model_dump(), status_code=status_code
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
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

    @app.exception_handler(TaskError)
    async def task_refused(request: Request, exc: TaskError) -> JSONResponse:
        return _body(409, str(exc))

    @app.exception_handler(EmergencyError)
    async def emergency_refused(request: Request, exc: EmergencyError) -> JSONResponse:
        return _body(409, str(exc))
