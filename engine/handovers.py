"""Human handover, the agents' side (the API's /v1/handovers): the queue with each contact's last messages,
assignment, an agent's reply through the same outbox and sender as the bot's, and closing.

An agent's action takes the conversation's row lock first, so it never interleaves with a message of that
contact being handled, and moves the state's version on: the "nobody answered yet" timer set at the request is
then stale. Closing starts a ``handover_closed`` timer that the contact's ordered path turns into the menu.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine.logging import get_logger
from engine.replies import write_outbound
from engine.templates import TemplateError, template_send
from engine.wallet import affordable, price_of
from engine.whatsapp.outbound import build_payload
from state_machines.base import Text
from state_machines.handover import CLOSED_TIMER
from state_machines.i18n import t

log = get_logger(__name__)

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
    message_id = await _queue(
        conn,
        organization_id,
        org["whatsapp_phone_id"],
        (row["conversation_id"], row["contact_id"], phone),
        (kind, request, text),
        price,
        now,
        agent=agent,
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


async def _queue(
    conn: asyncpg.Connection,
    organization_id: UUID,
    phone_number_id: str,
    to: tuple[UUID, UUID, str],
    message: tuple[str, dict[str, Any], str],
    price: int,
    now: datetime,
    **extra: Any,
) -> UUID | None:
    """One send to ``to`` (conversation, contact, phone) through the outbox, never held by the loop guard."""
    conversation_id, contact_id, phone = to
    kind, request, content = message
    job = {
        "organization_id": str(organization_id),
        "phone_number_id": phone_number_id,
        "to": phone,
        "contact_key": phone,
        "type": kind,
        "request": request,
        **extra,
    }
    return await write_outbound(
        conn,
        organization_id=organization_id,
        conversation_id=conversation_id,
        contact_id=contact_id,
        job=job,
        content=content,
        price=price,
        now=now,
        loop_guard=False,
    )


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


# ------------------------------------------------------------------------------------ the agents' notice


def agent_numbers(org_settings: Mapping[str, Any] | None) -> list[str]:
    """``settings.handover_agents``: the agents' WhatsApp numbers (international, digits; "+" and spaces
    allowed), each once."""
    raw = (org_settings or {}).get("handover_agents") or []
    out: list[str] = []
    for number in [raw] if isinstance(raw, str) else raw:
        digits = re.sub(r"[\s+()-]", "", str(number))
        if re.fullmatch(r"[0-9]{7,15}", digits) and digits not in out:
            out.append(digits)
    return out


@dataclass(frozen=True)
class Requested:
    """A handover just opened, as its agents' notice tells it."""

    id: UUID
    contact_phone: str
    contact_name: str | None
    text: str | None


def _fill(value: str, handover: Requested) -> str:
    return (
        value.replace("{{name}}", handover.contact_name or handover.contact_phone)
        .replace("{{phone}}", "+" + handover.contact_phone)
        .replace("{{text}}", (handover.text or "-")[:200])
    )


async def notify_agents(
    conn: asyncpg.Connection,
    organization_id: UUID,
    phone_number_id: str,
    org_settings: Mapping[str, Any] | None,
    handover: Requested,
    now: datetime,
) -> int:
    """A notice to each of the organisation's agents' numbers, written in the transaction that opened the
    handover (so once per handover, through the same outbox and sender as every reply): a text to an agent
    who wrote to the number within 24 hours, else ``settings.handover_agent_template`` ({name, language,
    params}; params may use {{name}}, {{phone}}, {{text}}), else nothing (logged). An agent's number is a
    contact of the organisation (made on the first notice); one that sent STOP gets none. Not charged: it is
    the organisation's own operation. Returns how many were queued."""
    template = (org_settings or {}).get("handover_agent_template") or None
    queued = 0
    for agent in agent_numbers(org_settings):
        if agent == handover.contact_phone:
            continue
        row = await conn.fetchrow(
            """WITH c AS (
                   INSERT INTO contacts (organization_id, phone, whatsapp_id) VALUES ($1, $2, $2)
                   ON CONFLICT (organization_id, phone) DO UPDATE SET phone = EXCLUDED.phone
                   RETURNING id, opted_in, language)
               SELECT * FROM c""",
            organization_id,
            agent,
        )
        if row["opted_in"] is False:
            continue
        await conn.execute(
            """INSERT INTO conversations (organization_id, contact_id, current_state) VALUES ($1, $2, 'idle')
               ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING""",
            organization_id,
            row["id"],
        )
        conversation = await conn.fetchrow(
            "SELECT id, last_user_message_at FROM conversations WHERE contact_id = $1 AND status = 'active'",
            row["id"],
        )
        last = conversation["last_user_message_at"]
        if last is not None and now - last < SERVICE_WINDOW:
            who = _fill("{{name}} ({{phone}})" if handover.contact_name else "{{phone}}", handover)
            said = f': "{handover.text[:200]}"' if handover.text else ""
            language = row["language"] or (org_settings or {}).get("language") or "en"
            body = t("handover.agent_notice", language, who=who, said=said, ref=str(handover.id)[:8])
            kind, request, content = "text", build_payload(Text(body), agent), body
        elif isinstance(template, Mapping) and template.get("name") and template.get("language"):
            params = [_fill(str(p), handover) for p in template.get("params") or []]
            try:
                request = await template_send(
                    conn, organization_id, str(template["name"]), str(template["language"]), params, to=agent
                )
            except TemplateError as err:
                log.warning("agent's handover notice not sent: template refused", reason=err.message)
                continue
            kind, content = "template", f"[template {template['name']} ({template['language']})]"
        else:
            log.warning(
                "agent's handover notice not sent: outside the 24-hour window and no handover_agent_template"
            )
            continue
        await _queue(
            conn,
            organization_id,
            phone_number_id,
            (conversation["id"], row["id"], agent),
            (kind, request, content),
            0,
            now,
            handover_id=str(handover.id),
        )
        queued += 1
    return queued
