"""Appliers of exhibitors and leads (state_machines/exhibitors.py).

A lead is written only with the consent the visitor gave (``consent_at``, ``consent_text``: the words they
agreed to). Each of the exhibitor's staff with a conversation on this number gets a ``lead_notice`` timer due
at once, whose data carries the lead, so the notice goes through the staffer's own ordered path (their
language, the 24-hour window, paid like any reply); staff who never wrote to the number find the lead in the
export (``chatnation leads export``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from engine.turn import Turn
from state_machines.exhibitors import (
    LEAD_TIMER,
    ExhibitorLoaded,
    FollowUpMarked,
    LeadSaved,
    LoadExhibitor,
    MarkFollowedUp,
    SaveLead,
)

_EXHIBITOR = """
    SELECT x.id, x.name, upper(x.booth_number) AS booth, b.zone AS hall, b.position, x.category, x.description,
           x.brochure_url AS brochure, e.name AS event_name, e.id AS event_id
    FROM exhibitors x JOIN events e ON e.id = x.event_id
    LEFT JOIN booth_locations b ON b.venue_id = e.venue_id AND b.booth_number = upper(x.booth_number)
    WHERE x.status = 'approved'"""


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


async def load(turn: Turn, effect: LoadExhibitor) -> ExhibitorLoaded:
    conn = turn.conn
    if effect.then == "list":
        rows = await conn.fetch(
            f"{_EXHIBITOR} AND x.event_id = $1 ORDER BY x.name LIMIT 10", _uuid(effect.ref)
        )
        return ExhibitorLoaded("list", None, tuple(dict(r) for r in rows))
    if effect.booth:  # a scanned booth: of an event that is on (the soonest to end first)
        row = await conn.fetchrow(
            f"""{_EXHIBITOR} AND upper(x.booth_number) = $1 AND e.status = 'published' AND e.ends_at > now()
                ORDER BY e.ends_at LIMIT 1""",
            effect.ref,
        )
    elif effect.then.startswith("p:"):
        row = await conn.fetchrow(
            f"{_EXHIBITOR} AND x.id = (SELECT exhibitor_id FROM exhibitor_products WHERE id = $1)",
            _uuid(effect.ref),
        )
    else:
        row = await conn.fetchrow(f"{_EXHIBITOR} AND x.id = $1", _uuid(effect.ref))
    exhibitor = await _with_products(conn, row) if row else None
    return ExhibitorLoaded(effect.then, exhibitor, ref=effect.ref if effect.booth else "")


async def _with_products(conn: asyncpg.Connection, row: asyncpg.Record) -> dict[str, Any]:
    products = await conn.fetch(
        """SELECT id, name, description, price, currency, image_url AS image FROM exhibitor_products
           WHERE exhibitor_id = $1 AND is_active ORDER BY sort_order, name""",
        row["id"],
    )
    return {
        **dict(row),
        "id": str(row["id"]),
        "event_id": str(row["event_id"]),
        "products": [{**dict(p), "id": str(p["id"])} for p in products],
    }


async def save_lead(turn: Turn, effect: SaveLead) -> LeadSaved:
    conn = turn.conn
    exhibitor_id, product_id = UUID(effect.exhibitor_id), _uuid(effect.product_id)
    lead = await conn.fetchrow(
        """INSERT INTO leads (organization_id, exhibitor_id, contact_id, source, notes, interest_level, product_id,
                              consent_at, consent_text)
           VALUES ($1, $2, $3, 'qr_scan', $4, $5, $6, $7, $8)
           RETURNING id, (SELECT name FROM exhibitors WHERE id = $2) AS exhibitor,
                     (SELECT name FROM exhibitor_products WHERE id = $6) AS product""",
        turn.org.id,
        exhibitor_id,
        turn.contact.id,
        effect.note,
        effect.interest,
        product_id,
        turn.now,
        effect.consent_text,
    )
    notice = {
        "lead_id": str(lead["id"]),
        "exhibitor": lead["exhibitor"],
        "visitor": turn.contact.name or turn.contact.phone,
        "phone": turn.contact.phone,
        "interest": effect.interest,
        "product": lead["product"],
        "note": effect.note,
    }
    told = await conn.fetchval(
        """WITH staff AS (
               SELECT DISTINCT ON (c.id) c.id AS contact_id, v.id AS conversation_id
               FROM exhibitor_staff s JOIN contacts c ON c.phone = s.phone
               JOIN conversations v ON v.contact_id = c.id
               WHERE s.exhibitor_id = $2 AND c.opted_in
               ORDER BY c.id, v.last_user_message_at DESC NULLS LAST),
           timers AS (
               INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                                data, due_at)
               SELECT $1, conversation_id, contact_id, $3, 0, $4, now() FROM staff RETURNING 1)
           SELECT count(*) FROM timers""",
        turn.org.id,
        exhibitor_id,
        LEAD_TIMER,
        notice,
    )
    return LeadSaved(str(lead["exhibitor"]), int(told))


async def mark_followed_up(turn: Turn, effect: MarkFollowedUp) -> FollowUpMarked:
    conn = turn.conn
    lead = await conn.fetchrow(
        """SELECT l.id, l.follow_up_status, x.name AS exhibitor, COALESCE(c.name, c.phone) AS visitor,
                  (SELECT s.id FROM exhibitor_staff s WHERE s.exhibitor_id = l.exhibitor_id AND s.phone = $2) AS staff_id
           FROM leads l JOIN exhibitors x ON x.id = l.exhibitor_id JOIN contacts c ON c.id = l.contact_id
           WHERE l.id = $1 FOR UPDATE OF l""",
        _uuid(effect.lead_id),
        turn.contact.phone,
    )
    if lead is None:
        return FollowUpMarked("unknown")
    if lead["staff_id"] is None:
        return FollowUpMarked("not_staff", exhibitor_name=lead["exhibitor"])
    if lead["follow_up_status"] == "followed_up":
        return FollowUpMarked("already", lead["visitor"], lead["exhibitor"])
    await conn.execute(
        """UPDATE leads SET follow_up_status = 'followed_up', followed_up_at = $2, followed_up_by = $3
           WHERE id = $1""",
        lead["id"],
        turn.now,
        lead["staff_id"],
    )
    return FollowUpMarked("done", lead["visitor"], lead["exhibitor"])
