"""The REST API's application: the routes (one explicit list), errors as problem+json, the OpenAPI document.

``create_app(settings, pool=…)`` takes the application role's pool from a caller that has one (tests);
otherwise the lifespan opens it, as `chatnation api` does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI

from engine.api import console, problems
from engine.api.auth import FailureWindow, Guard, TokenBucket
from engine.api.routes import (
    broadcasts,
    contacts,
    content,
    conversations,
    handovers,
    imports,
    knowledge,
    templates,
    wallet,
    webhooks,
)
from engine.settings import Settings

VERSION = "1.0.0"
ROUTERS = (
    imports.router,  # before contacts: /contacts/import is not a contact id
    contacts.router,
    conversations.router,
    content.router,
    wallet.router,
    webhooks.router,
    handovers.router,
    knowledge.router,
    broadcasts.router,
    templates.router,
)
# Every operation may answer these besides its own (authentication, scopes, validation, limits).
COMMON_ERRORS = {
    "400": "Bad request (a cursor or text the API cannot use)",
    "401": "No key, or a key unknown, revoked or expired",
    "403": "The key lacks the scope",
    "404": "Not found (or another organisation's)",
    "422": "The request does not validate",
    "429": "Rate limit of the key, or too many refused keys from the address",
}


def _api_router() -> APIRouter:
    v1 = APIRouter(prefix="/v1")
    for router in ROUTERS:
        v1.include_router(router)
    return v1


def create_app(settings: Settings, pool: asyncpg.Pool | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if pool is not None:
            try:
                yield
            finally:
                await app.state.console.close()
            return
        from engine.db import create_pool, database_urls

        urls = await database_urls(settings)
        own = await create_pool(urls.app, max_size=settings.db_pool_size, session_state=False)
        app.state.guard.pool = own
        try:
            yield
        finally:
            await app.state.console.close()
            await own.close()

    app = FastAPI(
        title="ChatNation API",
        version=VERSION,
        summary="The CRM's door into the ChatNation conversation engine",
        openapi_url="/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.console = console.ConsoleState(settings)
    app.state.guard = Guard(
        per_key=TokenBucket(settings.api_rate_per_minute / 60.0, settings.api_rate_burst),
        failures=FailureWindow(settings.api_auth_failures_per_minute),
        pool=pool,  # set by the lifespan when not given
    )
    problems.install(app)
    app.include_router(_api_router())
    app.include_router(console.router)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    return app


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with what it cannot know: errors as problem+json, the bearer scheme and scopes."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes, openapi_version="3.1.0"
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = problems.Problem.model_json_schema()
    doc["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: `chatnation keys create`"}
    }
    doc["security"] = [{"bearer": []}]
    problem = {problems.MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path_item in doc.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for code, text in COMMON_ERRORS.items():
                responses[code] = {"description": text, "content": problem}
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    response["content"] = problem
    app.openapi_schema = doc
    return doc
