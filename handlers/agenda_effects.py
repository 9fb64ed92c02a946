"""Appliers of the agenda (state_machines/agenda.py): load what a screen shows, record and cancel reminders.

A reminder is a ``session_reminders`` row (one per session and contact) and a conversation timer of the kind
``session_reminder`` naming the session; engine/event_content.py moves or cancels both when a re-import moves
or cancels the session, and tells the contact through a ``session_changed`` timer.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from engine.turn import Turn
from state_machines.agenda import (
    PREFIX,
    REMINDER_TIMER,
    AgendaLoaded,
    CancelReminder,
    LoadAgenda,
    ReminderSent,
    RemindSession,
)

_SESSION_TAPS = frozenset({"s", "rm", "unrm", "timer"})  # taps whose id is a session's


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


async def load(turn: Turn, effect: LoadAgenda) -> AgendaLoaded:
    what, _, arg = effect.tap.removeprefix(PREFIX).partition(":")
    first = arg.split(":")[0]
    conn = turn.conn
    session_id = _uuid(first) if what in _SESSION_TAPS else None
    if session_id is not None:
        event_id = await conn.fetchval("SELECT event_id FROM sessions WHERE id = $1", session_id)
    else:
        event_id = _uuid(first) or await current_event(conn)
    agenda = await agenda_of(conn, event_id, turn.contact.id) if event_id else {}
    if agenda and session_id is not None:
        agenda["session"] = next((s for s in agenda["sessions"] if s["id"] == str(session_id)), None)
    return AgendaLoaded(effect.tap, agenda, effect.timer)


async def current_event(conn: asyncpg.Connection, *, with_exhibitors: bool = False) -> UUID | None:
    """The first published event not over that has an agenda (or, ``with_exhibitors``, exhibitors)."""
    id_: UUID | None = await conn.fetchval(
        """SELECT e.id FROM events e WHERE e.status = 'published' AND e.ends_at > now()
             AND (EXISTS (SELECT FROM sessions s WHERE s.event_id = e.id)
                  OR $1 AND EXISTS (SELECT FROM exhibitors x WHERE x.event_id = e.id))
           ORDER BY e.starts_at LIMIT 1""",
        with_exhibitors,
    )
    return id_


async def agenda_of(conn: asyncpg.Connection, event_id: UUID, contact_id: UUID) -> dict[str, Any]:
    event = await conn.fetchrow(
        """SELECT e.id, e.name, e.timezone, e.reminder_minutes, e.rsvp,
                  (SELECT count(*) FROM exhibitors x WHERE x.event_id = e.id AND x.status = 'approved') AS exhibitors,
                  e.venue_id IS NOT NULL AS venue
           FROM events e WHERE e.id = $1""",
        event_id,
    )
    if event is None:
        return {}
    rows = await conn.fetch(
        """SELECT s.id, s.title, s.description, s.starts_at, s.ends_at, s.room, s.track, s.status, s.capacity,
                  COALESCE(array_agg(p.key ORDER BY p.sort_order) FILTER (WHERE p.key IS NOT NULL), '{}') AS speakers
           FROM sessions s LEFT JOIN speakers p ON p.session_id = s.id
           WHERE s.event_id = $1 GROUP BY s.id ORDER BY s.starts_at, s.sort_order""",
        event_id,
    )
    people = await conn.fetch(
        """SELECT DISTINCT ON (p.key) p.key, p.name, p.title, p.company, p.bio, p.photo_url
           FROM speakers p JOIN sessions s ON s.id = p.session_id
           WHERE s.event_id = $1 AND p.key IS NOT NULL ORDER BY p.key, p.updated_at DESC""",
        event_id,
    )
    reminded = await conn.fetch(
        """SELECT r.session_id FROM session_reminders r JOIN sessions s ON s.id = r.session_id
           WHERE s.event_id = $1 AND r.contact_id = $2 AND r.status = 'pending'""",
        event_id,
        contact_id,
    )
    speakers = {
        p["key"]: {**dict(p), "photo": p["photo_url"]}
        for p in sorted(people, key=lambda p: str(p["name"]).casefold())
    }
    for p in speakers.values():
        p.pop("photo_url")
    return {
        "event": {**dict(event), "id": str(event["id"])},
        "sessions": [{**dict(r), "id": str(r["id"]), "speakers": list(r["speakers"])} for r in rows],
        "speakers": speakers,
        "reminded": [str(r["session_id"]) for r in reminded],
    }


async def remind(turn: Turn, effect: RemindSession) -> None:
    session_id = UUID(effect.session_id)
    await turn.conn.execute(
        """INSERT INTO session_reminders (organization_id, session_id, contact_id, conversation_id, minutes_before)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (session_id, contact_id) DO UPDATE SET status = 'pending',
               minutes_before = EXCLUDED.minutes_before, conversation_id = EXCLUDED.conversation_id""",
        turn.org.id,
        session_id,
        turn.contact.id,
        turn.conversation.id,
        effect.minutes_before,
    )
    await _cancel_timers(turn, effect.session_id)  # a second tap sets one timer, not two
    await turn.conn.execute(
        """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version, data,
                                            due_at)
           VALUES ($1, $2, $3, $4, 0, $5, $6)""",
        turn.org.id,
        turn.conversation.id,
        turn.contact.id,
        REMINDER_TIMER,
        {"session_id": effect.session_id},
        effect.due_at,
    )


async def cancel(turn: Turn, effect: CancelReminder) -> None:
    await turn.conn.execute(
        """UPDATE session_reminders SET status = 'cancelled' WHERE session_id = $1 AND contact_id = $2""",
        UUID(effect.session_id),
        turn.contact.id,
    )
    await _cancel_timers(turn, effect.session_id)


async def sent(turn: Turn, effect: ReminderSent) -> None:
    await turn.conn.execute(
        """UPDATE session_reminders SET status = 'sent' WHERE session_id = $1 AND contact_id = $2
           AND status = 'pending'""",
        UUID(effect.session_id),
        turn.contact.id,
    )


async def _cancel_timers(turn: Turn, session_id: str) -> None:
    await turn.conn.execute(
        """UPDATE conversation_timers SET status = 'cancelled' WHERE contact_id = $1 AND kind = $2
           AND status = 'pending' AND data->>'session_id' = $3""",
        turn.contact.id,
        REMINDER_TIMER,
        session_id,
    )
