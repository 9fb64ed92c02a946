"""An organisation whose wallet cannot pay its replies is *paused*: visibly, and without the conversation moving
past what the contact saw.

- A contact's message whose replies cannot all be paid is undone (engine/turn.py rolls its effects back to the
  savepoint taken after the message was stored) and answered with one polite "we cannot answer right now" per
  contact and pause: free, or charged when the organisation's setting ``wallet_empty_notice`` is "charged"
  (then it is sent only if the wallet can pay it).
- Replies of the engine's own events (a payment callback, a timer) cannot be undone: their effects stand and
  the replies wait in ``held_replies`` until a top-up pays them (``resume``, called by ``wallet.credit``), in
  order; those whose contact's 24-hour window closed meanwhile are dropped (WhatsApp would refuse them).
- The first unpaid reply of a pause opens it (``wallet_pauses``): a warning log line and a metric with the
  organisation, and a WhatsApp message to each admin number (``settings.admin_phones``), free of charge.
  ``status`` answers `chatnation wallet balance`: paused since when, how many replies not sent, how many wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine import metrics_worker as metrics
from engine.logging import get_logger
from engine.replies import write_outbound
from engine.whatsapp.outbound import build_payload
from state_machines.base import Text
from state_machines.i18n import t

log = get_logger(__name__)
SERVICE_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Pause:
    id: UUID
    started_at: datetime
    new: bool  # this call opened it


async def record(
    conn: asyncpg.Connection, org_id: UUID, *, not_sent: int, unanswered: int, now: datetime
) -> Pause:
    """Count what a turn could not send into the organisation's open pause, opening it if there is none."""
    row = await conn.fetchrow(
        """INSERT INTO wallet_pauses (organization_id, started_at, replies_not_sent, messages_unanswered)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (organization_id) WHERE ended_at IS NULL DO UPDATE
               SET replies_not_sent = wallet_pauses.replies_not_sent + EXCLUDED.replies_not_sent,
                   messages_unanswered = wallet_pauses.messages_unanswered + EXCLUDED.messages_unanswered
           RETURNING id, started_at, (xmax = 0) AS opened""",
        org_id,
        now,
        not_sent,
        unanswered,
    )
    return Pause(row["id"], row["started_at"], row["opened"])


async def first_notice(conn: asyncpg.Connection, org_id: UUID, pause_id: UUID, contact_id: UUID) -> bool:
    """True once per contact and pause: the contact is to be told we cannot answer right now."""
    return bool(
        await conn.fetchval(
            """INSERT INTO wallet_pause_notices (pause_id, organization_id, contact_id) VALUES ($1, $2, $3)
               ON CONFLICT DO NOTHING RETURNING true""",
            pause_id,
            org_id,
            contact_id,
        )
    )


async def opened(conn: asyncpg.Connection, org: Any, pause: Pause) -> None:
    """A new pause: said in the log and the metrics with the organisation, and to its admins on WhatsApp."""
    log.warning(
        "wallet empty: replies paused until a top-up",
        organization_id=str(org.id),
        organization=org.name,
        paused_since=pause.started_at.isoformat(),
    )
    metrics.wallet_paused.inc()
    admins = [str(p) for p in org.settings.get("admin_phones") or [] if str(p).strip()]
    when = pause.started_at.strftime("%d/%m/%Y %H:%M UTC")
    for phone in admins:
        await _tell_admin(
            conn,
            org,
            phone,
            t("wallet.admin_paused", org.language, org=org.name, when=when),
            pause.started_at,
        )
    if admins:
        await conn.execute(
            "UPDATE wallet_pauses SET admins_notified = $2 WHERE id = $1", pause.id, len(admins)
        )


async def _tell_admin(conn: asyncpg.Connection, org: Any, phone: str, body: str, now: datetime) -> None:
    """A free text to an admin number (a contact of the organisation like any other). WhatsApp delivers it
    inside the admin's 24-hour window; outside it the send fails (131047) and is marked failed."""
    from engine.inbound import open_conversation  # the one way to open a conversation (inbound imports us)

    contact_id = await conn.fetchval(
        """INSERT INTO contacts (organization_id, phone, whatsapp_id, first_seen_at, last_seen_at)
           VALUES ($1, $2, $2, $3, $3)
           ON CONFLICT (organization_id, phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id""",
        org.id,
        phone,
        now,
    )
    conversation = await open_conversation(conn, org.id, contact_id)
    job = send_job(org, phone, Text(body))
    await write_outbound(
        conn,
        organization_id=org.id,
        conversation_id=conversation.id,
        contact_id=contact_id,
        job=job,
        content=body,
        price=0,
        now=now,
        loop_guard=False,
    )


def send_job(org: Any, phone: str, reply: Text) -> dict[str, Any]:
    request = build_payload(reply, phone)
    return {
        "organization_id": str(org.id),
        "phone_number_id": org.phone_number_id,
        "to": phone,
        "contact_key": phone,
        "type": request["type"],
        "request": request,
    }


async def hold(
    conn: asyncpg.Connection,
    org_id: UUID,
    conversation_id: UUID,
    contact_id: UUID,
    jobs: list[tuple[dict[str, Any], str]],
    price: int,
) -> None:
    """Keep replies the wallet cannot pay now (send job, text), to be sent in order after a top-up."""
    await conn.executemany(
        """INSERT INTO held_replies (organization_id, conversation_id, contact_id, job, content, price)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        [(org_id, conversation_id, contact_id, job, content, price) for job, content in jobs],
    )


async def resume(conn: asyncpg.Connection, org_id: UUID, now: datetime) -> tuple[int, int]:
    """After a top-up: the held replies the balance pays are sent, in order (those outside their contact's
    24-hour window are dropped), and the pause ends if nothing is left waiting. (sent, dropped)."""
    balance = await conn.fetchval("SELECT balance FROM wallets WHERE organization_id = $1 FOR UPDATE", org_id)
    waiting = await conn.fetch(
        """SELECT h.id, h.conversation_id, h.contact_id, h.job, h.content, h.price, c.last_user_message_at
           FROM held_replies h JOIN conversations c ON c.id = h.conversation_id
           WHERE h.organization_id = $1 AND h.released_at IS NULL ORDER BY h.id""",
        org_id,
    )
    sent = dropped = 0
    left = int(balance or 0)
    for row in waiting:
        last = row["last_user_message_at"]
        if last is None or now - last >= SERVICE_WINDOW:
            outcome = "outside_window"
            dropped += 1
        elif row["price"] <= left:
            await write_outbound(
                conn,
                organization_id=org_id,
                conversation_id=row["conversation_id"],
                contact_id=row["contact_id"],
                job=dict(row["job"]),
                content=row["content"] or "",
                price=row["price"],
                now=now,
                loop_guard=False,
            )
            left -= row["price"]
            outcome = "sent"
            sent += 1
        else:
            break  # the rest waits for the next top-up, in order
        await conn.execute(
            "UPDATE held_replies SET released_at = $2, outcome = $3 WHERE id = $1", row["id"], now, outcome
        )
    if sent + dropped == len(waiting):
        await conn.execute(
            "UPDATE wallet_pauses SET ended_at = $2, replies_not_sent = replies_not_sent + $3 "
            "WHERE organization_id = $1 AND ended_at IS NULL",
            org_id,
            now,
            dropped,
        )
    if sent or dropped:
        log.info(
            "held replies released after a top-up", organization_id=str(org_id), sent=sent, dropped=dropped
        )
    return sent, dropped


async def status(conn: asyncpg.Connection) -> dict[str, Any] | None:
    """The open pause of the connection's organisation: since when, replies not sent, replies waiting."""
    row = await conn.fetchrow(
        """SELECT p.started_at, p.replies_not_sent, p.messages_unanswered,
                  (SELECT count(*) FROM held_replies h WHERE h.released_at IS NULL) AS waiting
           FROM wallet_pauses p WHERE p.ended_at IS NULL"""
    )
    return dict(row) if row else None
