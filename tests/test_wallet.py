"""The wallet: ledger rows for every change, never negative, no lost update under concurrent debits."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.db import tenant_tx
from engine.wallet import credit, debit, price_of


async def test_debit_writes_a_ledger_row_with_balances(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=10)
    async with tenant_tx(app_pool, org) as conn:
        result = await debit(conn, org, 3, module="test", action="outbound_reply")
    assert result.ok and result.balance == 7
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch(
            "SELECT type, amount, balance_before, balance_after FROM token_transactions ORDER BY created_at"
        )
    assert [tuple(r) for r in rows] == [("purchase", 10, 0, 10), ("debit", -3, 10, 7)]


async def test_a_debit_past_zero_fails_and_changes_nothing(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=2)
    async with tenant_tx(app_pool, org) as conn:
        assert (await debit(conn, org, 3, module="t", action="a")).ok is False
    # and the database itself refuses a negative balance, whatever the code does
    with pytest.raises(asyncpg.CheckViolationError, match="positive_balance"):
        async with tenant_tx(app_pool, org) as conn:
            await conn.execute("UPDATE wallets SET balance = balance - 3")
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == 2
        assert await conn.fetchval("SELECT count(*) FROM token_transactions") == 1


async def test_concurrent_debits_lose_no_update_and_never_overdraw(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=25)

    async def one() -> bool:
        async with tenant_tx(app_pool, org) as conn:
            return (await debit(conn, org, 1, module="t", action="a")).ok

    results = await asyncio.gather(*(one() for _ in range(40)))
    assert results.count(True) == 25
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == 0
        ledger_sum = await conn.fetchval("SELECT sum(amount) FROM token_transactions")
        assert ledger_sum == 0  # +25 opening, 25 x -1


async def test_credit_and_prices(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=0)
    async with tenant_tx(app_pool, org) as conn:
        assert await credit(conn, org, 50) == 50
    assert price_of("outbound_reply", None) == 1
    assert price_of("outbound_reply", {"prices": {"outbound_reply": 3}}) == 3
    assert price_of("unknown_action", {}) == 0
