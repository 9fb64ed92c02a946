"""Status updates are monotonic and keep broadcast counters right; replies respect the 24-hour window,
opt-out, the wallet and the bot-loop guard. Real PostgreSQL, as the application role."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from engine.db import tenant_tx
from engine.inbound import apply_status, arrive
from engine.replies import LOOP_LIMIT
from engine.turn import Org, Turn
from state_machines.base import Charge, Text


async def _setup(conn: asyncpg.Connection, org_id, phone: str = "254711000001"):  # type: ignore[no-untyped-def]
    arrival = await arrive(
        conn,
        org_id,
        "wa_message",
        "message",
        {"external_id": f"setup-{uuid4()}", "wa_id": phone, "contact_name": "Akinyi"},
    )
    assert arrival is not None and arrival.contact is not None and arrival.conversation is not None
    return arrival.contact, arrival.conversation


async def _outbound(conn, org_id, contact, conversation, wamid, broadcast_id=None):  # type: ignore[no-untyped-def]
    return await conn.fetchval(
        """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content, wa_message_id,
                                 wa_status, broadcast_id)
           VALUES ($1, $2, $3, 'outbound', 'text', 'x', $4, 'sent', $5) RETURNING id""",
        org_id,
        conversation.id,
        contact.id,
        wamid,
        broadcast_id,
    )


def status(wamid: str, value: str) -> dict:  # type: ignore[type-arg]
    return {
        "payload": {"id": wamid, "status": value, "timestamp": "1700000000", "recipient_id": "254711000001"}
    }


async def test_statuses_move_forward_only_and_count_skipped_stages(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Status")
    async with tenant_tx(app_pool, org) as conn:
        contact, conversation = await _setup(conn, org)
        broadcast = await conn.fetchval(
            "INSERT INTO broadcasts (organization_id, message_type) VALUES ($1, 'text') RETURNING id", org
        )
        await _outbound(conn, org, contact, conversation, "wamid.A", broadcast)
        await conn.execute("UPDATE broadcasts SET sent_count = 1 WHERE id = $1", broadcast)
        assert await apply_status(conn, org, status("wamid.A", "read")) == "processed"  # delivered skipped
        assert await apply_status(conn, org, status("wamid.A", "delivered")) == "stale"  # late: no overwrite
        assert await apply_status(conn, org, status("wamid.A", "sent")) == "stale"
        row = await conn.fetchrow("SELECT wa_status, read_at FROM messages WHERE wa_message_id = 'wamid.A'")
        counters = await conn.fetchrow(
            "SELECT sent_count, delivered_count, read_count FROM broadcasts WHERE id = $1", broadcast
        )
    assert row["wa_status"] == "read" and row["read_at"] is not None
    assert tuple(counters) == (1, 1, 1)


async def test_failed_is_terminal_with_its_error(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Status")
    async with tenant_tx(app_pool, org) as conn:
        contact, conversation = await _setup(conn, org)
        await _outbound(conn, org, contact, conversation, "wamid.F")
        failed = status("wamid.F", "failed")
        failed["payload"]["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
        assert await apply_status(conn, org, failed) == "processed"
        assert await apply_status(conn, org, status("wamid.F", "read")) == "stale"
        row = await conn.fetchrow(
            "SELECT wa_status, error_code, error_title FROM messages WHERE wa_message_id = 'wamid.F'"
        )
    assert tuple(row) == ("failed", 131026, "Message undeliverable")


async def _turn(conn, org_id, new, trigger="message", last_user=None, opted_in=True) -> Turn:  # type: ignore[no-untyped-def]
    contact, conversation = await _setup(conn, org_id)
    now = datetime.now(UTC)
    conversation.last_user_message_at = now if last_user is None else last_user
    contact.opted_in = opted_in
    return Turn(
        conn=conn,
        org=Org(org_id, "Org", new.phone_number_id, {}),
        contact=contact,
        conversation=conversation,
        now=now,
        trigger=trigger,
    )


async def _outbox_count(conn) -> int:  # type: ignore[no-untyped-def]
    return await conn.fetchval("SELECT count(*) FROM outbox")


@pytest.mark.parametrize(
    ("trigger", "hours_since_user", "opted_in", "queued"),
    [
        ("message", 0, True, 1),
        ("timer", 1, True, 1),
        ("timer", 25, True, 0),
        ("timer", 1, False, 0),
        ("message", 0, False, 1),
    ],
)
async def test_window_and_opt_out_decide_what_is_queued(
    app_pool: asyncpg.Pool,
    make_org,
    trigger: str,  # type: ignore[no-untyped-def]
    hours_since_user: int,
    opted_in: bool,
    queued: int,
) -> None:
    org, new = await make_org("Window")
    async with tenant_tx(app_pool, org) as conn:
        turn = await _turn(
            conn, org, new, trigger, datetime.now(UTC) - timedelta(hours=hours_since_user), opted_in
        )
        turn.replies.append(Text("hello"))
        assert await turn.finish() == queued
        assert await _outbox_count(conn) == queued


async def test_a_bot_loop_is_stopped(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Loop", tokens=1000)
    sent = 0
    for _ in range(LOOP_LIMIT + 5):
        async with tenant_tx(app_pool, org) as conn:
            turn = await _turn(conn, org, new)
            turn.replies.append(Text("Sorry, I did not understand."))
            sent += await turn.finish()
    assert sent == LOOP_LIMIT - 1


async def test_replies_an_empty_wallet_cannot_pay_wait_for_the_top_up(
    app_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    """A payment's or a timer's replies (turns without a savepoint): their effects stand, the replies are held,
    one pause counts them, and the top-up sends them in order (engine/wallet_pause.py)."""
    org, new = await make_org("Empty", tokens=0)
    for n in range(3):
        async with tenant_tx(app_pool, org) as conn:
            turn = await _turn(conn, org, new, trigger="payment")
            turn.replies.append(Text(f"hello {n}"))
            assert await turn.finish() == 0
    async with tenant_tx(app_pool, org) as conn:
        assert await _outbox_count(conn) == 0
        assert await conn.fetchval("SELECT count(*) FROM wallet_pauses WHERE ended_at IS NULL") == 1
        assert await conn.fetchval("SELECT count(*) FROM held_replies WHERE released_at IS NULL") == 3
        from engine.wallet import credit

        await credit(conn, org, 2)  # pays two of the three, in order; the pause stays open for the third
        sent = await conn.fetch(
            "SELECT content FROM messages WHERE direction = 'outbound' ORDER BY created_at, content"
        )
        assert [r["content"] for r in sent] == ["hello 0", "hello 1"]
        assert await conn.fetchval("SELECT count(*) FROM wallet_pauses WHERE ended_at IS NULL") == 1
    async with tenant_tx(app_pool, org) as conn:
        await credit(conn, org, 5)
        assert await conn.fetchval("SELECT count(*) FROM held_replies WHERE released_at IS NULL") == 0
        assert await conn.fetchval("SELECT count(*) FROM wallet_pauses WHERE ended_at IS NULL") == 0
    balance, rows = await _ledger(app_pool, org)
    assert balance == 4 and len(rows) == 3  # each held reply paid once, at its release


async def _ledger(app_pool: asyncpg.Pool, org) -> tuple[int, list[tuple[int, int, int]]]:  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        balance = await conn.fetchval("SELECT balance FROM wallets")
        rows = await conn.fetch("""SELECT amount, balance_before, balance_after FROM token_transactions
                                   WHERE type = 'debit' ORDER BY balance_before DESC""")
    return balance, [tuple(r) for r in rows]


@pytest.mark.parametrize(
    "headroom", [None, 10**6]
)  # counted under the wallet's lock / paid at commit unchecked
async def test_replies_are_paid_at_commit_one_ledger_row_each(
    app_pool: asyncpg.Pool,
    make_org,  # type: ignore[no-untyped-def]
    headroom: int | None,
) -> None:
    org, new = await make_org("Pay", tokens=10)
    async with tenant_tx(app_pool, org) as conn:
        turn = await _turn(conn, org, new)
        turn.wallet_headroom = headroom
        turn.replies.extend([Text("one"), Text("two"), Text("three")])
        assert await turn.finish() == 3
        paid_for = await conn.fetch("SELECT reference_id FROM token_transactions WHERE type = 'debit'")
        assert paid_for == []  # nothing is debited before the commit
    balance, rows = await _ledger(app_pool, org)
    assert balance == 7 and rows == [(-1, 10, 9), (-1, 9, 8), (-1, 8, 7)]


async def test_a_nearly_empty_wallet_pays_for_the_first_replies_and_holds_the_rest(
    app_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Pay", tokens=2)
    async with tenant_tx(app_pool, org) as conn:
        turn = await _turn(conn, org, new, trigger="timer")
        turn.wallet_headroom = 2 - 100  # the threshold is 100: the exact count under the lock
        turn.replies.extend([Text("one"), Text("two"), Text("three")])
        assert await turn.finish() == 2
        assert [
            r["content"]
            for r in await conn.fetch(
                "SELECT content FROM messages WHERE direction = 'outbound' ORDER BY content DESC"
            )
        ] == ["two", "one"]
        assert [r["content"] for r in await conn.fetch("SELECT content FROM held_replies")] == ["three"]
    assert await _ledger(app_pool, org) == (0, [(-1, 2, 1), (-1, 1, 0)])


async def test_a_stale_balance_can_never_overdraw_the_wallet(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    """The unlocked balance said plenty; the wallet had 1 token: the commit fails whole, nothing half-written."""
    org, new = await make_org("Pay", tokens=1)
    with pytest.raises(asyncpg.CheckViolationError) as failed:
        async with tenant_tx(app_pool, org) as conn:
            turn = await _turn(conn, org, new)
            turn.wallet_headroom = 10**6
            turn.replies.extend([Text("one"), Text("two")])
            await turn.finish()
    assert (
        failed.value.constraint_name == "positive_balance"
    )  # what inbound runs again with the wallet locked
    assert await _ledger(app_pool, org) == (1, [])
    async with tenant_tx(app_pool, org) as conn:
        assert await _outbox_count(conn) == 0
        assert await conn.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_charge_leaves_what_the_replies_need(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Pay", tokens=6)
    async with tenant_tx(app_pool, org) as conn:
        turn = await _turn(conn, org, new)
        turn.replies.extend([Text("one"), Text("two")])
        turn.charges.append(
            Charge(action="survey_completed", module="surveys")
        )  # 5 tokens: 6 - 2 replies = 4
        assert await turn.finish() == 2
    balance, rows = await _ledger(app_pool, org)
    assert balance == 4 and len(rows) == 2  # the replies paid, the charge not made
