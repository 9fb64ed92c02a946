"""The sender's database side: which replies it sends, how it records them (the same outcome as
``advance_status``), under row-level security, in one round trip each. Real PostgreSQL, as the application role."""

from __future__ import annotations

import asyncio
import uuid
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from engine.db import create_pool, tenant_tx
from engine.inbound import advance_status, arrive
from engine.orgs import OrgDirectory
from engine.sender import Sender
from engine.settings import Settings
from tests.helpers import phone


def _sender(pool: asyncpg.Pool, settings: Settings) -> Sender:
    return Sender(
        SimpleNamespace(
            app_pool=pool,
            orgs=OrgDirectory(pool),
            settings=settings,  # type: ignore[arg-type]
            whatsapp_http=None,
        )
    )  # sends nothing


async def _reply(
    pool: asyncpg.Pool, org: UUID, status: str | None = "queued", broadcast: bool = False
) -> UUID:
    """An outbound message not yet recorded as sent; with a broadcast of its own and its recipient row."""
    async with tenant_tx(pool, org) as conn:
        arrival = await arrive(
            conn, org, "wa_message", "message", {"external_id": f"setup-{uuid.uuid4()}", "wa_id": phone()}
        )
        assert arrival is not None and arrival.contact is not None and arrival.conversation is not None
        contact, conversation = arrival.contact, arrival.conversation
        broadcast_id = (
            await conn.fetchval(
                "INSERT INTO broadcasts (organization_id, message_type) VALUES ($1, 'text') RETURNING id", org
            )
            if broadcast
            else None
        )
        message_id: UUID = await conn.fetchval(
            """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content,
                                     wa_status, broadcast_id)
               VALUES ($1, $2, $3, 'outbound', 'text', 'x', $4, $5) RETURNING id""",
            org,
            conversation.id,
            contact.id,
            status,
            broadcast_id,
        )
        if broadcast:
            await conn.execute(
                """INSERT INTO broadcast_recipients (organization_id, broadcast_id, contact_id, message_id, status)
                   VALUES ($1, $2, $3, $4, 'queued')""",
                org,
                broadcast_id,
                contact.id,
                message_id,
            )
    return message_id


async def _outcome(pool: asyncpg.Pool, org: UUID, message_id: UUID) -> tuple[Any, ...]:
    async with tenant_tx(pool, org) as conn:
        row = await conn.fetchrow(
            """SELECT m.wa_status, m.wa_message_id, m.sent_at IS NOT NULL, b.sent_count, b.delivered_count,
                      b.read_count, b.failed_count, r.status
               FROM messages m LEFT JOIN broadcasts b ON b.id = m.broadcast_id
                    LEFT JOIN broadcast_recipients r ON r.message_id = m.id
               WHERE m.id = $1""",
            message_id,
        )
    return tuple(row)


async def test_only_a_reply_neither_accepted_nor_failed_is_sent(
    app_pool: asyncpg.Pool,
    make_org,  # type: ignore[no-untyped-def]
    settings: Settings,
) -> None:
    org, new = await make_org("Send")
    other, _ = await make_org("Other")
    sender = _sender(app_pool, settings)
    queued, failed = await _reply(app_pool, org), await _reply(app_pool, org, "failed")
    assert await sender._prepare(other, queued) is None  # row-level security: another tenant sees nothing
    assert await sender._prepare(org, queued) == new.access_token
    assert await sender._prepare(org, failed) is None
    assert await sender._prepare(org, uuid.uuid4()) is None
    await sender._record_sent(org, queued, "wamid.SEND1")
    assert await sender._prepare(org, queued) is None  # a redelivered job is dropped


@pytest.mark.parametrize("broadcast", [False, True])
@pytest.mark.parametrize("status", [None, "queued", "sent", "delivered", "read", "failed"])
async def test_recording_a_sent_reply_is_advance_status(
    app_pool: asyncpg.Pool,
    make_org,
    settings: Settings,  # type: ignore[no-untyped-def]
    status: str | None,
    broadcast: bool,
) -> None:
    """Monotonic (a status webhook may be ahead: 'delivered' stays), counters counted once, the recipient's
    status kept in step: what the id's UPDATE followed by advance_status(..., 'sent') leaves."""
    org, _ = await make_org("Record")
    expected, recorded = (
        await _reply(app_pool, org, status, broadcast),
        await _reply(app_pool, org, status, broadcast),
    )
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute("UPDATE messages SET wa_message_id = 'wamid.A' WHERE id = $1", expected)
        await advance_status(conn, expected, "sent")
    await _sender(app_pool, settings)._record_sent(org, recorded, "wamid.B")
    want = await _outcome(app_pool, org, expected)
    assert await _outcome(app_pool, org, recorded) == (want[0], "wamid.B", *want[2:])


async def test_another_tenant_records_nothing(app_pool: asyncpg.Pool, make_org, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Mine")
    other, _ = await make_org("Theirs")
    message_id = await _reply(app_pool, org, broadcast=True)
    await _sender(app_pool, settings)._record_sent(other, message_id, "wamid.X")
    assert await _outcome(app_pool, org, message_id) == ("queued", None, False, 0, 0, 0, 0, "queued")


async def test_a_whatsapp_id_is_stored_verbatim(app_pool: asyncpg.Pool, make_org, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Quote")
    message_id = await _reply(app_pool, org)
    wamid = "wamid.x'); DELETE FROM messages; --\\'"
    await _sender(app_pool, settings)._record_sent(org, message_id, wamid)
    assert (await _outcome(app_pool, org, message_id))[:2] == ("sent", wamid)


async def test_a_reply_costs_two_round_trips(db_urls, make_org, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    """The check and the record, one query each (the application pool resets no session state)."""
    org, _ = await make_org("Trips")
    pool = await create_pool(db_urls.app, max_size=1, session_state=False)
    sender = _sender(pool, settings)
    queries: list[str] = []
    try:
        await sender._prepare(org, await _reply(pool, org))  # caches the organisation's token
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda logged: queries.append(logged.query))
        message_id = await _reply(pool, org, broadcast=True)
        await asyncio.sleep(0)  # loggers are called soon, not at once
        queries.clear()
        await sender._prepare(org, message_id)
        await sender._record_sent(org, message_id, "wamid.TRIPS")
        await asyncio.sleep(0)
    finally:
        await pool.close()
    assert len(queries) == 2, queries


async def test_a_whatsapp_id_postgres_cannot_hold_is_an_error_not_an_endless_retry(  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool, make_org, settings: Settings
) -> None:
    org, _ = await make_org("Nul")
    with pytest.raises(ValueError, match="NUL"):
        await asyncio.wait_for(
            _sender(app_pool, settings)._record_sent(org, await _reply(app_pool, org), "a\0b"), 5
        )


async def test_the_pair_limits_keep_only_recipients_whose_bucket_has_not_drained(
    app_pool: asyncpg.Pool, settings: Settings
) -> None:
    """One limiter per recipient answered in the last moments, not per recipient ever answered: the sender's
    memory stays flat over a long run with many contacts, and a busy recipient keeps its limit."""
    sender = _sender(
        app_pool, settings.model_copy(update={"pair_rate_burst": 2, "pair_rate_per_second": 100.0})
    )
    busy = sender._pair("254700000000")
    for _ in range(2):
        await busy.acquire()  # its bucket is full: 20 ms to drain
    for i in range(1, 500):
        await sender._pair(f"2547{i:08d}").acquire()
    assert len(sender._pairs) == 500  # nothing drained yet: every bucket still holds its send
    await asyncio.sleep(0.05)
    for i in range(500, 1000):
        await sender._pair(f"2547{i:08d}").acquire()
        await asyncio.sleep(0.0002 if i % 10 == 0 else 0)
    assert len(sender._pairs) < 600  # the drained ones went, up to two per send (1,000 were kept before)

    held = sender._pair("254711111111")
    await held.acquire()
    await held.acquire()
    assert sender._pair("254711111111") is held  # a full bucket is kept: its limit still holds
    assert not held.has_capacity()


async def test_a_person_chatting_gets_every_reply_at_once_within_metas_pair_burst(
    app_pool: asyncpg.Pool, settings: Settings
) -> None:
    """With the default settings, 45 replies to one person go out without waiting (Meta's burst); the 46th
    waits for the bucket to refill at Meta's average pair rate (1 per 6 s)."""
    defaults = Settings.model_fields
    sender = _sender(
        app_pool,
        settings.model_copy(
            update={
                "pair_rate_burst": defaults["pair_rate_burst"].default,
                "pair_rate_per_second": defaults["pair_rate_per_second"].default,
            }
        ),
    )
    pair = sender._pair("254700000045")
    for n in range(45):
        assert pair.has_capacity(), f"reply {n + 1} would wait"
        await asyncio.wait_for(pair.acquire(), 0.5)
    assert not pair.has_capacity()  # the 46th in a burst waits: beyond it Meta would answer 131056
