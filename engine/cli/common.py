"""What every command shares: settings and logging set up once, async bodies, database pools, output."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from rich.console import Console
from rich.table import Table

from engine.db import DatabaseUrls, create_pool, database_urls
from engine.logging import configure_logging
from engine.settings import Settings, get_settings

T = TypeVar("T")
console = Console()


def settings() -> Settings:
    s = get_settings()
    configure_logging(s)
    # A command reports a broker it cannot reach in one line of its own (engine/cli/errors.py), not the
    # client library's connection errors besides.
    for library in ("aiormq", "aio_pika"):
        logging.getLogger(library).setLevel(logging.CRITICAL)
    return s


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(coro_fn())  # type: ignore[arg-type]


@asynccontextmanager
async def pools(
    s: Settings, *, migrate_first: bool = True
) -> AsyncIterator[tuple[DatabaseUrls, asyncpg.Pool]]:
    """The URLs and the application pool, the schema migrated first (cheap when nothing is pending)."""
    from engine.migrate import migrate

    urls = await database_urls(s)
    if migrate_first:
        await migrate(urls.owner, s.app_db_role, s.app_db_password)
    pool = await create_pool(urls.app, max_size=4, session_state=False)
    try:
        yield urls, pool
    finally:
        await pool.close()


def emit(rows: Sequence[dict[str, Any]], *, as_json: bool, title: str | None = None) -> None:
    """Rows as a table for people, or JSON for scripts."""
    if as_json:
        print(json.dumps(list(rows), default=str, indent=2))
        return
    table = Table(title=title)
    columns = list(rows[0].keys()) if rows else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(str(row[c]) if row[c] is not None else "" for c in columns))
    console.print(table)
