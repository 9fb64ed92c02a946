"""`chatnation wallet balance|topup|ledger ORG`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg
import typer

from engine.cli.common import console, emit, pools, run, settings
from engine.cli.errors import NotFound

app = typer.Typer(help="Token wallets: balance, top-up, ledger.", no_args_is_help=True)


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


@app.command("balance")
def balance(org: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The wallet's balance and lifetime totals; when replies are paused, since when and what was not sent."""
    from engine.db import tenant_tx
    from engine.wallet_pause import status

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with pools(s) as (_, pool):
            org_id = await resolve_org(pool, org)
            async with tenant_tx(pool, org_id) as conn:
                row = await conn.fetchrow(
                    """SELECT organization_id, balance, low_balance_threshold, lifetime_purchased, lifetime_consumed
                       FROM wallets"""
                )
                if row is None:
                    return []
                pause = await status(conn)
                return [{**dict(row), "paused": pause}]

    rows = run(body)
    if as_json:
        emit(rows, as_json=True)
        return
    pause = rows[0].pop("paused") if rows else None
    emit(rows, as_json=False)
    if pause:
        console.print(f"[yellow]{paused_line(pause)}[/yellow]", highlight=False)


def paused_line(pause: dict[str, Any]) -> str:
    """ "paused since …, N replies not sent" for people."""
    return (
        f"paused since {pause['started_at']:%Y-%m-%d %H:%M:%S %Z}, {pause['replies_not_sent']} replies not sent "
        f"({pause['messages_unanswered']} messages answered only with the paused notice), "
        f"{pause['waiting']} waiting for a top-up"
    )


@app.command("topup")
def topup(
    org: str, tokens: int = typer.Argument(..., min=1), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Add tokens (a 'purchase' ledger row); processing of paid replies resumes."""
    from engine.db import tenant_tx
    from engine.wallet import credit

    s = settings()

    async def body() -> int:
        async with pools(s) as (_, pool):
            org_id = await resolve_org(pool, org)
            async with tenant_tx(pool, org_id) as conn:
                return await credit(conn, org_id, tokens, action="topup")

    emit([{"organization": org, "added": tokens, "balance": run(body)}], as_json=as_json)


@app.command("ledger")
def ledger(
    org: str, limit: int = typer.Option(20, min=1), as_json: bool = typer.Option(False, "--json")
) -> None:
    """The latest ledger rows, newest first."""
    from engine.db import tenant_tx

    s = settings()

    async def body() -> list[dict[str, object]]:
        async with pools(s) as (_, pool):
            org_id = await resolve_org(pool, org)
            async with tenant_tx(pool, org_id) as conn:
                rows = await conn.fetch(
                    """SELECT created_at, type, amount, balance_before, balance_after, module, action, reference_id
                       FROM token_transactions ORDER BY created_at DESC, id LIMIT $1""",
                    limit,
                )
                return [dict(r) for r in rows]

    emit(run(body), as_json=as_json, title=f"ledger of {org}", empty=f"no ledger rows for {org}")
