"""What every command shares: settings and logging set up once, async bodies, database pools, an organisation
named on the command line and one transaction as it, output."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from engine.cli.errors import NotFound
from engine.db import DatabaseUrls, create_pool, database_urls, tenant_tx
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
    pool = await create_pool(urls.app, max_size=4, session_state=False, deployment=s.broker_prefix)
    try:
        yield urls, pool
    finally:
        await pool.close()


async def resolve_org(pool: asyncpg.Pool, org: str) -> UUID:
    """An organisation by id, or by its WhatsApp phone_number_id (routable without a tenant)."""
    try:
        return UUID(org)
    except ValueError:
        pass
    org_id = await pool.fetchval("SELECT org_by_phone_number_id($1)", org)
    if org_id is None:
        raise NotFound(f"no organisation with id or phone_number_id {org!r}")
    return org_id


@asynccontextmanager
async def org_pool(s: Settings, org: str) -> AsyncIterator[tuple[asyncpg.Pool, UUID]]:
    """The application pool and the id of the organisation ``org`` names (its id or phone_number_id), for a
    command that works through functions taking the pool or makes several transactions."""
    async with pools(s) as (_, pool):
        yield pool, await resolve_org(pool, org)


@asynccontextmanager
async def org_tx(s: Settings, org: str) -> AsyncIterator[tuple[asyncpg.Connection, UUID]]:
    """One transaction as the organisation ``org`` names, under row-level security, with its id: what most
    commands about one organisation do."""
    async with org_pool(s, org) as (pool, org_id), tenant_tx(pool, org_id) as conn:
        yield conn, org_id


def is_identifier(column: str) -> bool:
    """Columns an operator copies into the next command: never shortened."""
    return column in ("id", "phone_number_id", "routing_key", "original_queue") or column.endswith("_id")


def emit(
    rows: Sequence[dict[str, Any]], *, as_json: bool, title: str | None = None, empty: str | None = None
) -> None:
    """Rows as a table for people, or JSON for scripts. Identifiers are printed whole however narrow the
    terminal (the other columns fold onto more lines); no rows print ``empty`` instead of a bare header."""
    if as_json:
        print(json.dumps(list(rows), default=str, indent=2))
        return
    if not rows:
        console.print(empty or (f"{title}: none" if title else "nothing to show"), highlight=False)
        return
    columns = list(rows[0].keys())
    cells = [[str(row[c]) if row[c] is not None else "" for c in columns] for row in rows]
    widest = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    needed = sum(w if is_identifier(c) else min(w, 12) for c, w in zip(columns, widest, strict=True))
    if needed + 3 * len(columns) + 1 > console.width:  # too narrow for a row per line: a block per row
        _emit_blocks(columns, cells, title)
        return
    table = Table(title=title)
    for column, width in zip(columns, widest, strict=True):
        if is_identifier(column):
            table.add_column(column, no_wrap=True, min_width=width)
        else:
            table.add_column(column, overflow="fold", min_width=min(width, 12))
    for row_cells in cells:
        table.add_row(*row_cells)
    console.print(table)


def _emit_blocks(columns: list[str], cells: list[list[str]], title: str | None) -> None:
    if title:
        console.rule(title)
    label = max(len(c) for c in columns) + 2
    for n, row_cells in enumerate(cells):
        if n:
            console.print()
        for column, value in zip(columns, row_cells, strict=True):
            if is_identifier(
                column
            ):  # one line, whatever the width: the terminal wraps it, a copy gets it whole
                console.print(
                    f"[bold]{column.ljust(label)}[/bold]{escape(value)}", soft_wrap=True, highlight=False
                )
                continue
            line = Table.grid()
            line.add_column(style="bold", no_wrap=True, width=label)
            line.add_column(overflow="fold")
            line.add_row(column, value)
            console.print(line, highlight=False)
