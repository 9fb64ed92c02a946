"""Each worker process's small HTTP server: /metrics (Prometheus), /healthz (up), /readyz (broker and
database reachable) for orchestrators."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route


def create_app(ready: Callable[[], Awaitable[bool]]) -> Starlette:
    async def metrics(_: Request) -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        ok = await ready()
        return PlainTextResponse("ready" if ok else "not ready", status_code=200 if ok else 503)

    return Starlette(
        routes=[Route("/metrics", metrics), Route("/healthz", healthz), Route("/readyz", readyz)]
    )


async def serve(app: Starlette, host: str, port: int, stop: asyncio.Event) -> None:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            log_config=None,  # uvicorn's lines go through ours (engine/logging.py), JSON in production
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # the worker owns signals
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task
