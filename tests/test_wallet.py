"""The wallet: ledger rows for every change, never negative, no lost update under concurrent debits."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from engine.db import tenant_tx
from engine.turn import Contact, Conversation, Org, Turn
from engine.wallet import PAY_AT_COMMIT_HEADROOM, credit, debit, price_of
from state_machines.base import State


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


# ---------------------------------------------------------------- charges paid at commit (sql/078)


async def _ledger(conn: asyncpg.Connection) -> list[tuple[int, int, int]]:
    rows = await conn.fetch(
        "SELECT amount, balance_before, balance_after FROM token_transactions WHERE type = 'debit'"
        " ORDER BY balance_before DESC"
    )
    return [(r["amount"], r["balance_before"], r["balance_after"]) for r in rows]


def _chained(start: int, ledger: list[tuple[int, int, int]]) -> bool:
    """Each row's before - after is its amount, and each starts where the one before it ended."""
    for amount, before, after in ledger:
        if before != start or after != before + amount or after < 0:
            return False
        start = after
    return True


def _turn(conn: asyncpg.Connection, org: uuid.UUID, headroom: int | None) -> Turn:
    return Turn(
        conn=conn,
        org=Org(org, "W", "pn", {}),
        contact=Contact(uuid.uuid4(), "254700000000", None, None, True, 1),
        conversation=Conversation(uuid.uuid4(), State(), None),
        now=datetime.now(UTC),
        trigger="message",
        wallet_headroom=headroom,
    )


async def _locked(app_pool: asyncpg.Pool, org: uuid.UUID) -> bool:
    """Whether another transaction holds the wallet's row."""
    async with tenant_tx(app_pool, org) as other:
        try:
            await other.fetchval("SELECT balance FROM wallets FOR UPDATE NOWAIT")
        except asyncpg.exceptions.LockNotAvailableError:
            return True
    return False


async def test_charges_at_commit_take_no_lock_until_then_and_settle_in_one_update(
    app_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=5000)
    async with tenant_tx(app_pool, org) as conn:
        for amount in (2, 3, 4):
            await debit(conn, org, amount, module="surveys", action="survey_completed", at_commit=True)
        assert not await _locked(app_pool, org)  # another transaction spends meanwhile, without waiting
        async with tenant_tx(app_pool, org) as other:
            assert (await debit(other, org, 1, module="t", action="a")).ok
        updated = "SELECT pg_stat_get_xact_tuples_updated('wallets'::regclass)"
        before = await conn.fetchval(updated)
        await conn.execute("SET CONSTRAINTS trg_wallet_charges_settle IMMEDIATE")  # what the commit does
        assert await conn.fetchval(updated) == before + 1  # one update of the wallet for the three
        assert await conn.fetchval("SELECT count(*) FROM wallet_charges") == 0
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == 5000 - 1 - 9
        assert await conn.fetchval("SELECT lifetime_consumed FROM wallets") == 10
        ledger = await _ledger(conn)
        assert sorted(a for a, _, _ in ledger) == [-4, -3, -2, -1] and _chained(5000, ledger)
        rows = await conn.fetch(
            "SELECT module, action FROM token_transactions WHERE type = 'debit' AND amount < -1"
        )
        assert {tuple(r) for r in rows} == {("surveys", "survey_completed")}
    assert await owner_pool.fetchval("SELECT count(*) FROM wallet_charges") == 0


async def test_concurrent_charges_at_commit_lose_nothing_and_the_ledger_sums_to_the_balance(
    app_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=3000)

    async def one(i: int) -> int:
        async with tenant_tx(app_pool, org) as conn:
            await debit(conn, org, 1 + i % 3, module="t", action="a", at_commit=True)
            if i % 2:
                await debit(conn, org, 5, module="t", action="b", at_commit=True)
            await asyncio.sleep(0.001 * (i % 5))
        return 1 + i % 3 + (5 if i % 2 else 0)

    spent = sum(await asyncio.gather(*(one(i) for i in range(60))))
    async with tenant_tx(app_pool, org) as conn:
        balance = await conn.fetchval("SELECT balance FROM wallets")
        assert balance == 3000 - spent
        assert await conn.fetchval("SELECT sum(amount) FROM token_transactions") == balance
        ledger = await _ledger(conn)
        assert len(ledger) == 60 + 30 and _chained(3000, ledger)
    assert await owner_pool.fetchval("SELECT count(*) FROM wallet_charges") == 0


async def test_a_charge_at_commit_the_wallet_cannot_pay_fails_the_commit_and_changes_nothing(
    app_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=10)
    with pytest.raises(asyncpg.CheckViolationError) as failed:
        async with tenant_tx(app_pool, org) as conn:
            await debit(conn, org, 6, module="t", action="a", at_commit=True)
            async with tenant_tx(app_pool, org) as other:  # concurrent spending beats the start's reading
                assert (await debit(other, org, 6, module="t", action="b")).ok
    assert failed.value.constraint_name == "positive_balance"  # what the inbound path runs again exactly
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == 4
        assert [a for a, _, _ in await _ledger(conn)] == [-6]
    assert await owner_pool.fetchval("SELECT count(*) FROM wallet_charges") == 0
    with pytest.raises(ValueError):
        async with tenant_tx(app_pool, org) as conn:
            await debit(conn, org, 0, module="t", action="a", at_commit=True)


async def test_a_turns_charge_is_paid_at_commit_only_with_ample_headroom(
    app_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("W", tokens=PAY_AT_COMMIT_HEADROOM + 200)
    async with tenant_tx(app_pool, org) as conn:
        headroom = await conn.fetchval("SELECT balance - COALESCE(low_balance_threshold, 0) FROM wallets")
        turn = _turn(conn, org, headroom)
        await turn.charge(50, module="t", action="ample")  # headroom - 50 >= the margin: at commit
        assert turn.charged_at_commit == 50 and not await _locked(app_pool, org)
        await turn.charge(60, module="t", action="near", keep=0)  # what the first takes counts: at once
        assert turn.charged_at_commit == 50 and await _locked(app_pool, org)
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == PAY_AT_COMMIT_HEADROOM + 200 - 110
        assert _chained(PAY_AT_COMMIT_HEADROOM + 200, await _ledger(conn))
        # near the end, the charge the wallet cannot pay is refused and nothing is debited
        turn = _turn(conn, org, None)
        await turn.charge(PAY_AT_COMMIT_HEADROOM + 91, module="t", action="too_much")
        assert turn.after_commit == [] and turn.charged_at_commit == 0
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == PAY_AT_COMMIT_HEADROOM + 90
        assert len(await _ledger(conn)) == 2
