"""Writing one outbound reply: its ``messages`` row and its ``outbox`` row, in one statement of the caller's
transaction (the transactional outbox). A reply with a price is paid at commit (sql/013)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

import asyncpg

LOOP_WINDOW = timedelta(minutes=10)
LOOP_LIMIT = 20  # the same reply this many times to one contact within LOOP_WINDOW is a bot loop
Lane = Literal["reply", "bulk"]
LANES: tuple[Lane, ...] = ("reply", "bulk")


async def write_outbound(
    conn: asyncpg.Connection,
    *,
    organization_id: UUID,
    conversation_id: UUID,
    contact_id: UUID,
    job: dict[str, Any],
    content: str,
    price: int,
    now: datetime,
    loop_guard: bool = True,
    lane: Lane = "reply",
    broadcast_id: UUID | None = None,
    event_key: str | None = None,
) -> UUID | None:
    """The message's id, or None when it was not written: with ``loop_guard``, the contact already got the same
    text LOOP_LIMIT times within LOOP_WINDOW (a bot answering our bot).

    ``lane``: "reply" for an answer to someone who is chatting, "bulk" for what the engine sends first
    (broadcasts, programmes, reminders); the sender serves replies first within the number's throughput.

    ``event_key``: the writer publishes the row itself after its commit (the inbound worker, sql/071): the row is
    written as relayed, with the key of the event that wrote it (published again when that event comes back)."""
    if lane not in LANES:
        raise ValueError(f"lane must be one of {', '.join(LANES)}, not {lane!r}")
    message_id = uuid4()  # chosen here, so that the send job can carry it in the same statement
    job = {**job, "message_id": str(message_id), "lane": lane}
    written = await conn.fetchval(
        """WITH m AS (
               INSERT INTO messages (id, organization_id, conversation_id, contact_id, direction, type, content,
                                     payload, wa_status, tokens_consumed, created_at, broadcast_id)
               SELECT $1, $2, $3, $4, 'outbound', $5, $6, $7, 'queued', $8, $9, $14
               WHERE NOT $12 OR (SELECT count(*) FROM messages WHERE contact_id = $4 AND direction = 'outbound'
                                 AND content = $6 AND created_at > $10) < $11
               RETURNING id)
           INSERT INTO outbox (organization_id, message_id, contact_id, payload, lane, event_key, relayed_at)
           SELECT $2, id, $4, $7, $13, $15::text, CASE WHEN $15::text IS NOT NULL THEN now() END FROM m RETURNING true""",
        message_id,
        organization_id,
        conversation_id,
        contact_id,
        job["type"],
        content,
        job,
        price,
        now,
        now - LOOP_WINDOW,
        LOOP_LIMIT - 1,
        loop_guard,
        lane,
        broadcast_id,
        event_key,
    )
    return message_id if written else None
