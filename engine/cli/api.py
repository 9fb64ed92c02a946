"""`chatnation api`: the REST API on API_HOST:API_PORT (default 127.0.0.1:8081), its own process."""

from __future__ import annotations

import typer

from engine.cli.common import settings


def api(
    port: int | None = typer.Option(None, "--port", help="Instead of API_PORT"),
    host: str | None = typer.Option(None, "--host", help="Instead of API_HOST"),
) -> None:
    """Serve the REST API (/v1, OpenAPI at /v1/openapi.json); keys from `chatnation keys create`."""
    import asyncio

    import uvicorn

    from engine.api.app import create_app
    from engine.db import database_urls
    from engine.migrate import migrate

    s = settings()

    async def prepare() -> None:
        urls = await database_urls(s)
        await migrate(urls.owner, s.app_db_role, s.app_db_password)

    asyncio.run(prepare())
    uvicorn.run(
        create_app(s),
        host=host or s.api_host,
        port=s.api_port if port is None else port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
