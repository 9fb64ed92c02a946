"""Places at an event or a session (RSVP) and its waiting list, decided in the database.

Confirmed places never exceed the capacity: every change locks the event's row (or the session's) first, then
counts. A freed place goes to the oldest waiting registration in the same transaction, and its contact is
told through an ``rsvp_promoted`` timer in their conversation (state_machines/rsvp.py). Used by the RSVP
appliers (handlers/rsvp_effects.py) and by the content import when the capacity grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import asyncpg

PROMOTED_TIMER = "rsvp_promoted"  # state_machines/rsvp.py owns it


@dataclass(frozen=True)
class Target:
    """What people register for: the event, or one of its sessions."""

    event_id: UUID
    session_id: UUID | None
    title: str
    capacity: int | None  # None: no limit
    open: bool
    survey_id: str | None = None  # registration questions (an event's: events.settings.rsvp_survey_id)


async def lock_target(
    conn: asyncpg.Connection, event_id: UUID | None, session_id: UUID | None
) -> Target | None:
    """The event's or session's row, locked for the count that follows."""
    if session_id is not None:
        row = await conn.fetchrow(
            """SELECT s.event_id, s.id AS session_id, s.title, s.capacity, s.status = 'scheduled' AND s.capacity IS NOT NULL
                      AS open FROM sessions s WHERE s.id = $1 FOR UPDATE""",
            session_id,
        )
    else:
        row = await conn.fetchrow(
            """SELECT id AS event_id, NULL::uuid AS session_id, name AS title, rsvp_capacity AS capacity,
                      rsvp AND status = 'published' AS open, settings->>'rsvp_survey_id' AS survey_id
               FROM events WHERE id = $1 FOR UPDATE""",
            event_id,
        )
    return Target(**dict(row)) if row else None


async def confirmed_count(conn: asyncpg.Connection, target: Target) -> int:
    count: int = await conn.fetchval(
        """SELECT count(*) FROM registrations WHERE event_id = $1 AND session_id IS NOT DISTINCT FROM $2
           AND status = 'confirmed'""",
        target.event_id,
        target.session_id,
    )
    return count


async def queue_position(conn: asyncpg.Connection, registration_id: UUID) -> int:
    position: int = await conn.fetchval(
        """SELECT count(*) FROM registrations w, registrations r WHERE r.id = $1 AND w.event_id = r.event_id
           AND w.session_id IS NOT DISTINCT FROM r.session_id AND w.status = 'waiting' AND w.created_at <= r.created_at""",
        registration_id,
    )
    return position


async def promote(conn: asyncpg.Connection, org_id: UUID, target: Target) -> int:
    """Fill free places from the waiting list, oldest first (the target's row is locked); returns how many."""
    free = None if target.capacity is None else max(0, target.capacity - await confirmed_count(conn, target))
    rows = await conn.fetch(
        """UPDATE registrations SET status = 'confirmed', promoted_at = now() WHERE id IN (
               SELECT id FROM registrations WHERE event_id = $1 AND session_id IS NOT DISTINCT FROM $2
               AND status = 'waiting' ORDER BY created_at LIMIT $3)
           RETURNING id, contact_id, conversation_id""",
        target.event_id,
        target.session_id,
        free,
    )
    for r in rows:
        await conn.execute(
            """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                                data, due_at)
               VALUES ($1, $2, $3, $4, 0, $5, now())""",
            org_id,
            r["conversation_id"],
            r["contact_id"],
            PROMOTED_TIMER,
            {"registration_id": str(r["id"]), "title": target.title},
        )
        if target.session_id is None:
            await _participant(conn, org_id, target.event_id, r["id"])
    return len(rows)


async def _participant(conn: asyncpg.Connection, org_id: UUID, event_id: UUID, registration_id: UUID) -> None:
    """A confirmed place at the event makes the contact an attendee (participants, role attendee)."""
    await conn.execute(
        """WITH p AS (
               INSERT INTO participants (organization_id, event_id, contact_id, name, phone, role)
               SELECT $1, $2, c.id, c.name, c.phone, 'attendee' FROM registrations r JOIN contacts c ON c.id = r.contact_id
               WHERE r.id = $3
               ON CONFLICT (event_id, phone, role) DO UPDATE SET contact_id = EXCLUDED.contact_id
               RETURNING id)
           UPDATE registrations SET participant_id = (SELECT id FROM p) WHERE id = $3""",
        org_id,
        event_id,
        registration_id,
    )


async def register(
    conn: asyncpg.Connection,
    org_id: UUID,
    target: Target,
    contact_id: UUID,
    conversation_id: UUID,
) -> tuple[str, UUID | None, int]:
    """(outcome, registration id, waiting position) for the contact; ``target`` locked by ``lock_target``."""
    live = await conn.fetchrow(
        """SELECT id, status FROM registrations WHERE event_id = $1 AND session_id IS NOT DISTINCT FROM $2
           AND contact_id = $3 AND status <> 'cancelled'""",
        target.event_id,
        target.session_id,
        contact_id,
    )
    if live is not None:
        position = await queue_position(conn, live["id"]) if live["status"] == "waiting" else 0
        return f"already_{live['status']}", live["id"], position
    if not target.open:
        return "closed", None, 0
    full = target.capacity is not None and await confirmed_count(conn, target) >= target.capacity
    status = "waiting" if full else "confirmed"
    rid = await conn.fetchval(
        """INSERT INTO registrations (organization_id, event_id, session_id, contact_id, conversation_id, status)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        org_id,
        target.event_id,
        target.session_id,
        contact_id,
        conversation_id,
        status,
    )
    if status == "confirmed" and target.session_id is None:
        await _participant(conn, org_id, target.event_id, rid)
    return status, rid, await queue_position(conn, rid) if full else 0


async def cancel(
    conn: asyncpg.Connection, org_id: UUID, registration_id: UUID, contact_id: UUID
) -> tuple[str, str]:
    """(outcome, title): the contact's registration cancelled; a confirmed place goes to the next in the queue."""
    row = await conn.fetchrow(
        "SELECT event_id, session_id FROM registrations WHERE id = $1 AND contact_id = $2",
        registration_id,
        contact_id,
    )
    if row is None:
        return "unknown", ""
    target = await lock_target(conn, row["event_id"], row["session_id"])
    assert target is not None
    was = await conn.fetchval(
        """UPDATE registrations r SET status = 'cancelled', cancelled_at = now()
           FROM (SELECT status FROM registrations WHERE id = $1) old
           WHERE r.id = $1 AND r.status <> 'cancelled' RETURNING old.status""",
        registration_id,
    )
    if was is None:
        return "unknown", target.title
    if was == "confirmed":
        if target.session_id is None:
            await conn.execute(
                """DELETE FROM participants WHERE id = (SELECT participant_id FROM registrations WHERE id = $1)""",
                registration_id,
            )
        await promote(conn, org_id, target)
        return "cancelled", target.title
    return "left_queue", target.title
