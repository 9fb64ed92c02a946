"""`chatnation workers [--all] [--json]`: the worker processes that heartbeat into ``worker_heartbeats``
(inbound and sender roles; one row per role a process runs), with their shards and progress."""

from __future__ import annotations

from typing import Any

import asyncpg
import typer

from engine.cli.common import emit, run, settings
from engine.db import database_urls
from engine.shards import LIVE_SECONDS

QUERY = f"""
    SELECT worker_id, role, deployment, host, pid, shards, in_flight, processed, started_at, heartbeat_at,
           round(extract(epoch FROM now() - heartbeat_at)::numeric, 1)::float AS heartbeat_age_seconds,
           heartbeat_at > now() - interval '{LIVE_SECONDS} seconds' AS live
    FROM worker_heartbeats
    WHERE $1 OR heartbeat_at > now() - interval '{LIVE_SECONDS} seconds'
    ORDER BY deployment, role, started_at, worker_id"""


async def live_workers(owner_url: str, *, include_stale: bool = False) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(owner_url)
    try:
        return [dict(r) for r in await conn.fetch(QUERY, include_stale)]
    finally:
        await conn.close()


def workers(
    include_stale: bool = typer.Option(
        False, "--all", help="Also processes that stopped heartbeating (< 1 h)"
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Live worker processes: role, deployment (BROKER_PREFIX), host, pid, shards, in flight, processed, last
    heartbeat."""
    s = settings()

    async def body() -> list[dict[str, Any]]:
        urls = await database_urls(s)
        return await live_workers(urls.owner, include_stale=include_stale)

    rows = run(body)
    if not as_json:
        hidden = {"worker_id", "started_at", "heartbeat_at"} | (set() if include_stale else {"live"})
        rows = [{k: v for k, v in r.items() if k not in hidden} for r in rows]
    emit(rows, as_json=as_json, title=f"{len(rows)} worker process role(s)", empty="no live worker processes")
