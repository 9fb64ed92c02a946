"""Human handover, the agents' side (the API's /v1/handovers): the queue with each contact's last messages,
assignment, an agent's reply through the same outbox and sender as the bot's, and closing.

An agent's action takes the conversation's row lock first, so it never interleaves with a message of that
contact being handled, and moves the state's version on: the "nobody answered yet" timer set at the request is
then stale. Closing starts a ``handover_closed`` timer that the contact's ordered path turns into the menu.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine.replies import write_outbound
from engine.templates import TemplateError, template_send
from engine.wallet import affordable, price_of
from engine.whatsapp.outbound import build_payload
from state_machines.base import Text
from state_machines.handover import CLOSED_TIMER

SERVICE_WINDOW = timedelta(hours=24)
LAST_MESSAGES = 5


class HandoverRefused(RuntimeError):
    """What an agent asked cannot be done; ``kind`` names why (closed, outside_window, wallet_empty)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


_COLUMNS = """h.id, h.status, h.reason, h.request_text, h.assigned_to, h.assigned_at, h.first_reply_at,
              h.agent_replies, h.closed_at, h.created_at, h.conversation_id,
              jsonb_build_object('id', c.id, 'phone', c.phone, 'name', c.name) AS contact,
              conv.last_user_message_at"""


async def _with_messages(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        messages = await conn.fetch(
            """SELECT id, direction, type, content, wa_status, created_at FROM messages
               WHERE conversation_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2""",
            r["conversation_id"],
            LAST_MESSAGES,
        )
        out.append({**dict(r), "last_messages": [dict(m) for m in messages]})
    return out


async def queue(
    conn: asyncpg.Connection,
    status: str | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Handovers oldest first (the queue's order); status None: the open ones (waiting and assigned)."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM handovers h JOIN contacts c ON c.id = h.contact_id
                                           JOIN conversations conv ON conv.id = h.conversation_id
            WHERE (($1::text IS NULL AND h.status <> 'closed') OR h.status = $1)
              AND ($2::timestamptz IS NULL OR (h.created_at, h.id) > ($2, $3::uuid))
            ORDER BY h.created_at, h.id LIMIT $4""",
        status,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return await _with_messages(conn, rows)


async def one(conn: asyncpg.Connection, handover_id: UUID) -> dict[str, Any] | None:
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM handovers h JOIN contacts c ON c.id = h.contact_id
                                           JOIN conversations conv ON conv.id = h.conversation_id
            WHERE h.id = $1""",
        handover_id,
    )
    found = await _with_messages(conn, rows)
    return found[0] if found else None


async def _locked(conn: asyncpg.Connection, handover_id: UUID) -> asyncpg.Record | None:
    """The handover with its conversation's row locked (a message of the contact being handled finishes first)."""
    return await conn.fetchrow(
        """SELECT h.id, h.status, h.conversation_id, h.contact_id, c.phone, conv.state_version,
                  conv.last_user_message_at, conv.current_module
           FROM handovers h JOIN conversations conv ON conv.id = h.conversation_id
           JOIN contacts c ON c.id = h.contact_id
           WHERE h.id = $1 FOR UPDATE OF conv, h""",
        handover_id,
    )


async def _answered(conn: asyncpg.Connection, conversation_id: UUID) -> None:
    """An agent took it: the unanswered notice's timer (set at the request's version) is now stale."""
    await conn.execute(
        """UPDATE conversations SET state_version = state_version + 1,
                  state_data = COALESCE(state_data, '{}') || '{"answered": true}'
           WHERE id = $1 AND current_module = 'handover'""",
        conversation_id,
    )


async def assign(conn: asyncpg.Connection, handover_id: UUID, agent: str) -> dict[str, Any] | None:
    row = await _locked(conn, handover_id)
    if row is None:
        return None
    if row["status"] == "closed":
        raise HandoverRefused("closed", "this handover is closed")
    await conn.execute(
        """UPDATE handovers SET status = 'assigned', assigned_to = $2, assigned_at = now() WHERE id = $1""",
        handover_id,
        agent,
    )
    await _answered(conn, row["conversation_id"])
    return await one(conn, handover_id)


@dataclass(frozen=True)
class TemplateReply:
    name: str
    language: str
    params: Any = None  # engine/templates.py template_send's params


async def reply(
    conn: asyncpg.Connection,
    organization_id: UUID,
    handover_id: UUID,
    text: str | None,
    agent: str | None,
    template: TemplateReply | None = None,
) -> dict[str, Any] | None:
    """The agent's text (inside the 24-hour window) or an approved template (at any time) to the contact,
    queued in the outbox after anything the bot said. Paid like a bot reply."""
    row = await _locked(conn, handover_id)
    if row is None:
        return None
    if row["status"] == "closed":
        raise HandoverRefused("closed", "this handover is closed")
    now = datetime.now(UTC)
    last = row["last_user_message_at"]
    if template is None and (last is None or now - last >= SERVICE_WINDOW):
        raise HandoverRefused(
            "outside-window",
            "the contact's last message is over 24 hours old: only a template can reach them",
        )
    org = await conn.fetchrow(
        "SELECT whatsapp_phone_id, settings FROM organizations WHERE id = $1", organization_id
    )
    price = price_of("outbound_reply", org["settings"])
    if (await affordable(conn, organization_id, price, 1, headroom=None)).count < 1:
        raise HandoverRefused("wallet-empty", "the wallet cannot pay for the reply")
    phone = row["phone"]
    if template is not None:
        try:
            request = await template_send(
                conn, organization_id, template.name, template.language, template.params, to=phone
            )
        except TemplateError as err:
            raise HandoverRefused(f"template-{err.reason}", err.message) from None
        kind, text = "template", f"[template {template.name} ({template.language})]"
    else:
        assert text is not None
        kind, request = "text", build_payload(Text(text), phone)
    job = {
        "organization_id": str(organization_id),
        "phone_number_id": org["whatsapp_phone_id"],
        "to": phone,
        "contact_key": phone,
        "type": kind,
        "request": request,
        "agent": agent,
    }
    message_id = await write_outbound(
        conn,
        organization_id=organization_id,
        conversation_id=row["conversation_id"],
        contact_id=row["contact_id"],
        job=job,
        content=text,
        price=price,
        now=now,
        loop_guard=False,
    )
    await conn.execute(
        """UPDATE handovers SET status = 'assigned', assigned_to = COALESCE($2, assigned_to),
                  assigned_at = COALESCE(assigned_at, now()), first_reply_at = COALESCE(first_reply_at, now()),
                  agent_replies = agent_replies + 1
           WHERE id = $1""",
        handover_id,
        agent,
    )
    await _answered(conn, row["conversation_id"])
    return {
        "id": message_id,
        "handover_id": handover_id,
        "content": text,
        "status": "queued",
        "created_at": now,
    }


async def close(conn: asyncpg.Connection, organization_id: UUID, handover_id: UUID) -> dict[str, Any] | None:
    """Closed; the contact hears the menu again through their ordered path (a timer due now)."""
    row = await _locked(conn, handover_id)
    if row is None:
        return None
    if row["status"] == "closed":
        raise HandoverRefused("closed", "this handover is closed already")
    await conn.execute("UPDATE handovers SET status = 'closed', closed_at = now() WHERE id = $1", handover_id)
    if row["current_module"] == "handover":
        await conn.execute(
            """UPDATE conversation_timers SET status = 'cancelled'
               WHERE conversation_id = $1 AND status = 'pending' AND kind LIKE 'handover%'""",
            row["conversation_id"],
        )
        await conn.execute(
            """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                                due_at)
               VALUES ($1, $2, $3, $4, $5, now())""",
            organization_id,
            row["conversation_id"],
            row["contact_id"],
            CLOSED_TIMER,
            row["state_version"],
        )
    return await one(conn, handover_id)
