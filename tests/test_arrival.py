"""``engine.inbound.arrive``: an event's dedupe receipt, its contact and the contact's locked conversation in
one statement. Real PostgreSQL, as the application role."""

from __future__ import annotations

import asyncio

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


class _Counted:
    """The connection, with its round trips counted."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn, self.round_trips = conn, 0

    async def fetchrow(self, *args: object) -> asyncpg.Record | None:
        self.round_trips += 1
        return await self.conn.fetchrow(*args)

    async def execute(self, *args: object) -> str:
        self.round_trips += 1
        return await self.conn.execute(*args)


async def test_a_first_message_opens_its_conversation_in_the_one_statement(
    app_pool: asyncpg.Pool, make_org
) -> None:  # type: ignore[no-untyped-def]
    """A new contact (a radio poll's every voter) and a contact whose conversation closed: one round trip, and the
    conversation opened is the active one later events find; a concurrent opening is waited for and adopted."""
    org, _ = await make_org("Arrive")
    wa_id = phone()
    async with tenant_tx(app_pool, org) as conn:
        counted = _Counted(conn)
        first = await arrive(
            counted, org, "wa_message", "message", {"external_id": "wamid.D1", "wa_id": wa_id}
        )  # type: ignore[arg-type]
        assert counted.round_trips == 1
        assert first is not None and first.conversation is not None
        assert (first.conversation.state.step, first.conversation.state.version) == ("idle", 0)
        await conn.execute("UPDATE conversations SET status = 'closed' WHERE id = $1", first.conversation.id)
        counted = _Counted(conn)
        again = await arrive(counted, org, "timer", "timer", {"external_id": "timer:D", "wa_id": wa_id})  # type: ignore[arg-type]
        assert counted.round_trips == 1
        assert again is not None and again.conversation is not None
        assert again.conversation.id != first.conversation.id
        assert (
            await conn.fetchval(
                "SELECT id FROM conversations WHERE contact_id = $1 AND status = 'active'",
                again.contact.id,  # type: ignore[union-attr]
            )
            == again.conversation.id
        )
    # another transaction opens the contact's conversation first: this one waits on it, then takes that one
    other_wa = phone()
    async with tenant_tx(app_pool, org) as conn:
        await arrive(conn, org, "wa_message", "message", {"external_id": "wamid.E1", "wa_id": other_wa})
    async with tenant_tx(app_pool, org) as conn:
        contact_id = await conn.fetchval("SELECT id FROM contacts WHERE phone = $1", other_wa)
        await conn.execute("UPDATE conversations SET status = 'closed' WHERE contact_id = $1", contact_id)
    async with tenant_tx(app_pool, org) as opener:
        await opener.execute(
            "INSERT INTO conversations (organization_id, contact_id, current_state) VALUES ($1, $2, 'idle')",
            org,
            contact_id,
        )

        async def late() -> object:
            async with tenant_tx(app_pool, org) as conn:
                return await arrive(
                    conn, org, "timer", "timer", {"external_id": "timer:E", "wa_id": other_wa}
                )

        waiting = asyncio.create_task(late())
        await asyncio.sleep(0.3)
        assert not waiting.done()  # it waits on the other's insert
        opened = await opener.fetchval(
            "SELECT id FROM conversations WHERE contact_id = $1 AND status = 'active'", contact_id
        )
    arrived = await waiting
    assert arrived.conversation.id == opened  # type: ignore[attr-defined]
