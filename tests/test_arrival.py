"""``engine.inbound.arrive``: an event's dedupe receipt, its contact and the contact's locked conversation in
one statement. Real PostgreSQL, as the application role."""

from __future__ import annotations

import asyncpg

from engine.db import tenant_tx
from engine.inbound import arrive
from tests.helpers import phone


async def test_a_message_opens_its_contact_and_conversation_once(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Arrive", tokens=700)
    wa_id = phone()
    async with tenant_tx(app_pool, org) as conn:
        first = await arrive(
            conn,
            org,
            "wa_message",
            "message",
            {"external_id": "wamid.A1", "wa_id": wa_id, "contact_name": "Achieng"},
        )
        assert first is not None and first.contact is not None and first.conversation is not None
        assert (first.contact.phone, first.contact.name, first.contact.message_count) == (wa_id, "Achieng", 1)
        threshold = await conn.fetchval("SELECT COALESCE(low_balance_threshold, 0) FROM wallets")
        assert first.headroom == 700 - threshold
        again = await arrive(conn, org, "wa_message", "message", {"external_id": "wamid.A1", "wa_id": wa_id})
        assert again is None  # the same webhook twice: no effect at all
        later = await arrive(conn, org, "wa_message", "message", {"external_id": "wamid.A2", "wa_id": wa_id})
        assert later is not None and later.contact is not None and later.conversation is not None
        assert later.contact.id == first.contact.id and later.contact.message_count == 2
        assert later.contact.name == "Achieng"  # a webhook without a profile name keeps the known one
        assert later.conversation.id == first.conversation.id
        assert await conn.fetchval("SELECT count(*) FROM conversations") == 1


async def test_a_timer_or_payment_reads_its_contact_and_never_creates_one(
    app_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Arrive")
    wa_id = phone()
    async with tenant_tx(app_pool, org) as conn:
        unknown = await arrive(conn, org, "timer", "timer", {"external_id": "timer:1", "wa_id": wa_id})
        assert unknown is not None and unknown.contact is None and unknown.conversation is None
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
        assert await arrive(conn, org, "timer", "timer", {"external_id": "timer:1", "wa_id": wa_id}) is None
        opened = await arrive(conn, org, "wa_message", "message", {"external_id": "wamid.B1", "wa_id": wa_id})
        assert opened is not None and opened.conversation is not None
        paid = await arrive(
            conn, org, "mpesa_callback", "payment", {"external_id": "ws_CO_1", "wa_id": wa_id}
        )
        assert paid is not None and paid.contact is not None and paid.conversation is not None
        assert paid.conversation.id == opened.conversation.id
        assert paid.contact.message_count == 1  # only messages count


async def test_the_conversation_is_locked_until_the_event_commits(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Arrive")
    wa_id = phone()
    async with tenant_tx(app_pool, org) as conn:
        await arrive(conn, org, "wa_message", "message", {"external_id": "wamid.C1", "wa_id": wa_id})
    async with tenant_tx(app_pool, org) as holder:
        await arrive(holder, org, "wa_message", "message", {"external_id": "wamid.C2", "wa_id": wa_id})
        async with tenant_tx(app_pool, org) as other:
            await other.execute("SET LOCAL lock_timeout = '200ms'")
            try:
                await arrive(other, org, "timer", "timer", {"external_id": "timer:C", "wa_id": wa_id})
            except asyncpg.exceptions.LockNotAvailableError:
                locked = True
            else:
                locked = False
    assert locked
