"""`chatnation wallet balance|topup|ledger ORG`."""

from __future__ import annotations

from typing import Any

import typer

from engine.cli.common import console, emit, org_pool, org_tx, run, settings
from engine.cli.errors import NotFound

app = typer.Typer(help="Token wallets: balance, top-up, ledger.", no_args_is_help=True)


@app.command("balance")
def balance(org: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """The wallet's balance and lifetime totals; when replies are paused, since when and what was not sent."""
    from engine.wallet_pause import status

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
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
    from engine.wallet import credit

    s = settings()

    async def body() -> int:
        async with org_tx(s, org) as (conn, org_id):
            return await credit(conn, org_id, tokens, action="topup")

    emit([{"organization": org, "added": tokens, "balance": run(body)}], as_json=as_json)


@app.command("ledger")
def ledger(
    org: str, limit: int = typer.Option(20, min=1), as_json: bool = typer.Option(False, "--json")
) -> None:
    """The latest ledger rows, newest first."""

    s = settings()

    async def body() -> list[dict[str, object]]:
        async with org_tx(s, org) as (conn, org_id):
            rows = await conn.fetch(
                """SELECT created_at, type, amount, balance_before, balance_after, module, action, reference_id
                   FROM token_transactions ORDER BY created_at DESC, id LIMIT $1""",
                limit,
            )
            return [dict(r) for r in rows]

    emit(run(body), as_json=as_json, title=f"ledger of {org}", empty=f"no ledger rows for {org}")


@app.command("buy")
def buy(
    org: str = typer.Option(..., "--org", help="organisation id or phone_number_id"),
    tokens: int = typer.Option(..., "--tokens", min=1),
    phone: str = typer.Option(..., "--phone", help="the M-Pesa number that pays: 2547XXXXXXXX"),
    wait: float = typer.Option(0, "--wait", min=0, help="seconds to wait for M-Pesa's confirmation"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Buy tokens by M-Pesa: an STK push to PHONE; the wallet is credited (one 'purchase' ledger row, bonus
    tokens included) when M-Pesa confirms the payment."""
    import re

    from engine.cli.errors import Refused
    from engine.topups import MPESA_PHONE

    if not re.fullmatch(MPESA_PHONE, phone):
        raise Refused(f"--phone must be a Kenyan M-Pesa number like 254712345678, not {phone!r}")
    s = settings()

    async def body() -> list[dict[str, Any]]:
        import asyncio

        import httpx

        from engine.db import tenant_tx
        from engine.mpesa import DarajaClient, PaymentRefused
        from engine.topups import push, start_purchase

        async with org_pool(s, org) as (pool, org_id):
            async with tenant_tx(pool, org_id) as conn:
                new = await start_purchase(conn, org_id, tokens, phone, s.token_price_kes)
            assert new is not None
            async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
                try:
                    checkout = await push(DarajaClient(http, s), pool, org_id, new)
                except PaymentRefused as err:
                    raise Refused(f"M-Pesa refused the payment request: {err}") from None
            row: dict[str, Any] = {
                "purchase_id": new.purchase_id,
                "checkout_request_id": checkout,
                "tokens": new.tokens,
                "bonus_tokens": new.bonus_tokens,
                "amount_kes": new.amount,
                "phone": phone,
                "status": "pending",
            }
            deadline = asyncio.get_running_loop().time() + wait
            while True:
                async with tenant_tx(pool, org_id) as conn:
                    row["status"] = await conn.fetchval(
                        "SELECT payment_status FROM token_purchases WHERE id = $1", new.purchase_id
                    )
                if row["status"] != "pending" or asyncio.get_running_loop().time() >= deadline:
                    return [row]
                await asyncio.sleep(0.25)

    rows = run(body)
    emit(rows, as_json=as_json, title="Token purchase")
    if not as_json and rows[0]["status"] == "pending":
        console.print(
            "Enter the M-Pesa PIN on the phone; the wallet is credited when M-Pesa confirms.", highlight=False
        )


@app.command("auto-refill")
def auto_refill(
    org: str,
    enable: bool | None = typer.Option(None, "--enable/--disable"),
    amount: int | None = typer.Option(None, "--amount", min=1, help="tokens per automatic purchase"),
    threshold: int | None = typer.Option(None, "--threshold", min=0, help="refill below this balance"),
    resume: bool = typer.Option(False, "--resume", help="start refills again after a failed one"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Automatic refills: on or off, how many tokens, below which balance; --resume after a failure."""

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            row = await conn.fetchrow(
                """UPDATE wallets SET auto_refill_enabled = COALESCE($2, auto_refill_enabled),
                          auto_refill_amount = COALESCE($3, auto_refill_amount),
                          low_balance_threshold = COALESCE($4, low_balance_threshold),
                          auto_refill_stopped_at = CASE WHEN $5 THEN NULL ELSE auto_refill_stopped_at END,
                          auto_refill_stopped_reason = CASE WHEN $5 THEN NULL ELSE auto_refill_stopped_reason END
                   WHERE organization_id = $1
                   RETURNING balance, low_balance_threshold, auto_refill_enabled, auto_refill_amount,
                             auto_refill_pending, auto_refill_stopped_at, auto_refill_stopped_reason""",
                org_id,
                enable,
                amount,
                threshold,
                resume,
            )
            if row is None:
                raise NotFound(f"organisation {org!r} has no wallet")
            return [dict(row)]

    emit(run(body), as_json=as_json, title=f"automatic refill of {org}")
