"""A running broadcast's fan-out, one batch per transaction: exactly once per recipient whatever crashes.

A batch takes the next pending recipients with ``FOR UPDATE SKIP LOCKED`` (any number of schedulers share a
broadcast), decides each one (skipped: opted out since the broadcast was created, outside the 24-hour window
without a template, a marketing template without recorded consent; else the free-form message (a text, or an
image, video or document with its caption) or the template, with their variables), writes each message and its outbox row (engine/replies.py), marks the recipients queued with
their message, and debits the reservation, in that one transaction. A crash before the commit leaves the
recipients pending for the next batch; after it, the outbox holds their sends (the relay and sender take it
from there, as for replies). The fan-out runs ahead of the sends by at most ``broadcast_in_flight`` queued
recipients, so that pause and cancel take effect within seconds and no queue holds a whole broadcast.
A broadcast never touches a conversation's state: the message is stored in the contact's active conversation
(opened if there is none), and whatever flow the contact is in goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine import broadcast_money
from engine.broadcast_content import (
    EventFacts,
    Recipient,
    fill,
    load_event,
    media_request,
    template_request,
    text_request,
)
from engine.broadcasts import free_form, lock
from engine.replies import write_outbound
from engine.templates import TemplateError, marketing_deferred_until
from engine.turn import SERVICE_WINDOW, Org

PICK = """
SELECT r.id, r.contact_id, c.phone, c.name, c.language, c.opted_in, c.opt_in_recorded_at,
       conv.id AS conversation_id, conv.last_user_message_at
FROM broadcast_recipients r JOIN contacts c ON c.id = r.contact_id
LEFT JOIN conversations conv ON conv.contact_id = r.contact_id AND conv.status = 'active'
WHERE r.broadcast_id = $1 AND r.status = 'pending'
ORDER BY r.position LIMIT $2
FOR UPDATE OF r SKIP LOCKED"""

MARK = """
UPDATE broadcast_recipients r SET status = t.status, message_id = t.message_id, kind = t.kind, tokens = t.tokens,
       skip_reason = t.reason, queued_at = CASE WHEN t.status = 'queued' THEN $2::timestamptz ELSE NULL END
FROM unnest($1::uuid[], $3::text[], $4::uuid[], $5::text[], $6::int[], $7::text[])
     AS t(id, status, message_id, kind, tokens, reason)
WHERE r.id = t.id"""


class TemplateHeld(Exception):
    """The broadcast's template was paused or disabled: the batch is rolled back and the broadcast paused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Decision:
    recipient_id: UUID
    status: str  # queued | skipped
    kind: str | None = None  # text (free-form: a text or media) | template
    reason: str | None = None
    tokens: int = 0
    message_id: UUID | None = None


async def in_flight(conn: asyncpg.Connection, broadcast_id: UUID, cap: int) -> int:
    """Queued recipients not yet sent or failed (counted up to ``cap``)."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM (SELECT FROM broadcast_recipients WHERE broadcast_id = $1 AND status = 'queued'
                                      LIMIT $2) AS q""",
            broadcast_id,
            cap,
        )
    )


async def run_batch(
    conn: asyncpg.Connection, org: Org, broadcast_id: UUID, now: datetime, size: int, cap: int
) -> int | None:
    """One batch in the caller's tenant transaction: how many recipients it decided (0: none pending it could
    take); None when the broadcast is not running or is far enough ahead of its sends."""
    b = await lock(conn, broadcast_id, shared=True)
    if b is None or b["status"] != "running":
        return None
    room = cap - await in_flight(conn, broadcast_id, cap)
    if room <= 0:
        return None
    rows = await conn.fetch(PICK, broadcast_id, min(size, room))
    if not rows:
        return 0
    kinds = {row["id"]: decide(b, row, now) for row in rows}
    sending = [row for row in rows if kinds[row["id"]][0] is not None]
    conversations = await _conversations(conn, org.id, sending)  # opened only for those who get a message
    event = await load_event(conn, b["event_id"])
    decisions = [
        await _one(conn, org, b, row, kinds[row["id"]], conversations.get(row["contact_id"]), event, now)
        for row in rows
    ]
    queued = [d for d in decisions if d.status == "queued" and d.message_id is not None]
    await conn.execute(
        MARK,
        [d.recipient_id for d in decisions],
        now,
        [d.status for d in decisions],
        [d.message_id for d in decisions],
        [d.kind for d in decisions],
        [d.tokens for d in decisions],
        [d.reason for d in decisions],
    )
    sends = [(d.message_id, d.tokens, d.kind or "text") for d in queued if d.message_id is not None]
    await broadcast_money.debit_and_count(
        conn, org.id, broadcast_id, sends, skipped=len(decisions) - len(sends)
    )
    return len(decisions)


def decide(
    b: asyncpg.Record | dict[str, Any], row: asyncpg.Record | dict[str, Any], now: datetime
) -> tuple[str | None, str | None]:
    """(kind, skip reason): what this recipient gets, pure."""
    if not row["opted_in"]:
        return None, "opted_out"  # STOP after the broadcast was created (the audience had them opted in)
    last = row["last_user_message_at"]
    inside = last is not None and now - last < SERVICE_WINDOW
    if free_form(b) and inside:
        return "text", None  # a text, or media with its caption
    if not b["template_name"]:
        return None, "outside_window"
    if (b["template_category"] or "marketing") == "marketing" and row["opt_in_recorded_at"] is None:
        return None, "no_consent"  # marketing templates only to contacts whose opt-in is recorded
    return "template", None


async def _one(
    conn: asyncpg.Connection,
    org: Org,
    b: asyncpg.Record,
    row: asyncpg.Record,
    decided: tuple[str | None, str | None],
    conversation_id: UUID | None,
    event: EventFacts | None,
    now: datetime,
) -> Decision:
    kind, reason = decided
    if kind is None or conversation_id is None:
        return Decision(row["id"], "skipped", reason=reason)
    who = Recipient(row["contact_id"], row["phone"], row["name"], row["language"])
    if kind == "text" and b["media_type"]:
        caption = fill(b["message_content"] or "", who, event, org.language)
        request = media_request(b["media_type"], b["media_url"], caption, row["phone"])
        content = f"[{b['media_type']} {b['media_url']}] {caption}".rstrip()
        tokens = b["price_text"] or 0
    elif kind == "text":
        content = fill(b["message_content"], who, event, org.language)
        request = text_request(content, row["phone"])
        tokens = b["price_text"] or 0
    else:
        params = [fill(str(p), who, event, org.language) for p in (b["template_params"] or [])]
        if (b["template_category"] or "marketing") == "marketing":
            deferred = await marketing_deferred_until(conn, org.id, row["contact_id"])
            if deferred is not None and deferred > now:  # 131049: Meta asks to wait before trying them again
                return Decision(row["id"], "skipped", reason="marketing_limit")
        try:
            request = await template_request(
                conn, org.id, b["template_name"], b["template_language"], params, to=row["phone"]
            )
        except TemplateError as err:
            if err.reason == "held":  # paused or disabled since the start: the whole broadcast waits
                raise TemplateHeld(err.message) from None
            return Decision(row["id"], "skipped", reason=f"template_{err.reason}")
        content = f"[template {b['template_name']}] " + " | ".join(params)
        tokens = b["price_template"] or 0
    job = {
        "organization_id": str(org.id),
        "phone_number_id": org.phone_number_id,
        "to": row["phone"],
        "contact_key": row["phone"],
        "type": request["type"],
        "request": request,
        "broadcast_id": str(b["id"]),
    }
    message_id = await write_outbound(
        conn,
        organization_id=org.id,
        conversation_id=conversation_id,
        contact_id=row["contact_id"],
        job=job,
        content=content,
        price=0,  # paid from the broadcast's reservation (engine/broadcast_money.py)
        now=now,
        loop_guard=False,
        lane="bulk",  # replies to people who are chatting go first (engine/sender.py)
        broadcast_id=b["id"],
    )
    return Decision(row["id"], "queued", kind=kind, tokens=tokens, message_id=message_id)


async def _conversations(
    conn: asyncpg.Connection, org_id: UUID, rows: list[asyncpg.Record]
) -> dict[UUID, UUID]:
    """Each recipient's active conversation, opened for those without one (as a first message would)."""
    found = {r["contact_id"]: r["conversation_id"] for r in rows if r["conversation_id"] is not None}
    for _ in range(3):
        missing = [r["contact_id"] for r in rows if r["contact_id"] not in found]
        if not missing:
            return found
        await conn.execute(
            """INSERT INTO conversations (organization_id, contact_id, current_state)
               SELECT $1, c, 'idle' FROM unnest($2::uuid[]) AS c
               ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING""",
            org_id,
            missing,
        )
        for r in await conn.fetch(
            "SELECT contact_id, id FROM conversations WHERE contact_id = ANY($1::uuid[]) AND status = 'active'",
            missing,
        ):
            found[r["contact_id"]] = r["id"]
    raise RuntimeError("conversations could not be opened for a broadcast's recipients")


def estimated_finish(pending: int, rate_per_second: float, now: datetime) -> datetime | None:
    return (
        None if pending <= 0 or rate_per_second <= 0 else now + timedelta(seconds=pending / rate_per_second)
    )
