"""Errors as RFC 9457 problem details (``application/problem+json``), one shape for every failure."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from engine.logging import get_logger

log = get_logger(__name__)
MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://docs.chatnation.dev/api/problems/"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway",
}


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(description="A URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Validation errors: where and what (422 only)"
    )


class ApiProblem(Exception):
    """Raised by a route: becomes a problem+json response."""

    def __init__(self, status: int, kind: str, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.headers = status, kind, detail, headers or {}


def not_found(what: str) -> ApiProblem:
    return ApiProblem(404, "not-found", f"no {what}")


def problem_response(
    request: Request,
    status: int,
    kind: str,
    detail: str | None,
    *,
    headers: dict[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


async def _api_problem(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiProblem)
    return problem_response(request, exc.status, exc.kind, exc.detail, headers=exc.headers)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    detail = exc.detail if isinstance(exc.detail, str) else None
    return problem_response(request, exc.status_code, kind, detail, headers=dict(exc.headers or {}))


def _plain(value: Any) -> Any:
    """Validation errors' inputs and contexts as JSON (they may hold bytes or exceptions)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": _plain(list(e.get("loc", ()))), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    message = str(first["msg"])
    return problem_response(
        request, 422, "validation", f"{where}: {message}" if where else message, errors=errors
    )


async def _text_not_storable(request: Request, exc: Exception) -> JSONResponse:
    """Text PostgreSQL cannot hold (a NUL character) reached a query: the request's fault, not the server's."""
    return problem_response(request, 400, "bad-text", "the request holds characters that cannot be stored")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("api request failed", path=request.url.path)
    return problem_response(request, 500, "internal", "the request failed; it is logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiProblem, _api_problem)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(asyncpg.CharacterNotInRepertoireError, _text_not_storable)
    app.add_exception_handler(asyncpg.UntranslatableCharacterError, _text_not_storable)
    app.add_exception_handler(Exception, _unexpected)
