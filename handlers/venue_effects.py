"""Applier of the venue's questions (state_machines/venue.py): booths and exhibitors of the event, with the
hall and position of their booth and the venue's map."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from engine.turn import Turn
from handlers.agenda_effects import current_event
from state_machines.venue import FindPlace, PlacesFound

_PLACES = """
    SELECT x.id AS exhibitor_id, x.name AS exhibitor, COALESCE(b.booth_number, x.booth_number) AS booth,
           b.zone AS hall, b.position, x.category, v.name AS venue, v.floor_plan_url AS map
    FROM exhibitors x JOIN events e ON e.id = x.event_id
    LEFT JOIN venues v ON v.id = e.venue_id
    LEFT JOIN booth_locations b ON b.venue_id = e.venue_id AND b.booth_number = upper(x.booth_number)
    WHERE x.event_id = $1 AND x.status = 'approved'"""


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


async def find(turn: Turn, effect: FindPlace) -> PlacesFound:
    conn = turn.conn
    if (xid := _uuid(effect.exhibitor_id)) is not None:
        event_id = await conn.fetchval("SELECT event_id FROM exhibitors WHERE id = $1", xid)
        rows = await conn.fetch(f"{_PLACES} AND x.id = $2", event_id, xid) if event_id else []
        return PlacesFound("", tuple(dict(r) for r in rows))
    event_id = _uuid(effect.event_id) or await current_event(conn, with_exhibitors=True)
    asked = effect.booth or effect.words or ""
    if event_id is None:
        return PlacesFound(asked, ())
    if effect.booth is not None:
        return PlacesFound(asked, await _booth(turn, event_id, effect.booth))
    rows = await conn.fetch(
        f"""{_PLACES} AND (x.name ILIKE '%' || $2 || '%' OR x.category ILIKE '%' || $2 || '%'
                         OR x.description ILIKE '%' || $2 || '%')
            ORDER BY (x.name ILIKE $2 || '%') DESC, (x.name ILIKE '%' || $2 || '%') DESC, x.name LIMIT 10""",
        event_id,
        _like(effect.words or ""),
    )
    return PlacesFound(asked, tuple(dict(r) for r in rows))


def _like(words: str) -> str:
    return words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _booth(turn: Turn, event_id: UUID, booth: str) -> tuple[dict[str, Any], ...]:
    rows = await turn.conn.fetch(f"{_PLACES} AND upper(x.booth_number) = $2", event_id, booth)
    if rows:
        return tuple(dict(r) for r in rows)
    bare = await turn.conn.fetch(  # a booth of the venue no exhibitor has taken
        """SELECT NULL AS exhibitor_id, NULL AS exhibitor, b.booth_number AS booth, b.zone AS hall, b.position,
                  NULL AS category, v.name AS venue, v.floor_plan_url AS map
           FROM events e JOIN venues v ON v.id = e.venue_id JOIN booth_locations b ON b.venue_id = v.id
           WHERE e.id = $1 AND b.booth_number = $2""",
        event_id,
        booth,
    )
    return tuple(dict(r) for r in bare)
