"""Who a broadcast goes to: opted-in contacts, filtered by the broadcast's ``audience_filter``. Resolved once,
when the broadcast starts, into ``broadcast_recipients`` (one row per contact, in one statement).

Filter keys (all optional, combined with AND): ``tags`` (any of them), ``exclude_tags`` (none of them),
``profile`` ({field: value}, equal), ``event_id`` (holders of a valid ticket of the event), ``ticket_type_id``,
``survey_id`` (completed a response), ``poll_id`` (voted), ``program_id`` (subscribed), ``phones`` (only these).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

KEYS = frozenset(
    {
        "tags",
        "exclude_tags",
        "profile",
        "event_id",
        "ticket_type_id",
        "survey_id",
        "poll_id",
        "program_id",
        "phones",
    }
)


class AudienceError(ValueError):
    pass


def normalise(audience: dict[str, Any]) -> dict[str, Any]:
    """The filter as stored: unknown keys refused, empty ones dropped, ids checked."""
    unknown = set(audience) - KEYS
    if unknown:
        raise AudienceError(f"unknown audience filter {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for key, value in audience.items():
        if value in (None, [], {}, ""):
            continue
        if key.endswith("_id"):
            try:
                value = str(UUID(str(value)))
            except ValueError:
                raise AudienceError(f"{key} is not an id: {value!r}") from None
        out[key] = value
    return out


_MATCH = """
FROM contacts c, (SELECT $3::jsonb AS f) AS q
WHERE c.opted_in
  AND (NOT q.f ? 'tags' OR c.tags && ARRAY(SELECT jsonb_array_elements_text(q.f->'tags')))
  AND (NOT q.f ? 'exclude_tags' OR NOT c.tags && ARRAY(SELECT jsonb_array_elements_text(q.f->'exclude_tags')))
  AND (NOT q.f ? 'profile' OR c.profile @> (q.f->'profile'))
  AND (NOT q.f ? 'phones' OR c.phone = ANY (ARRAY(SELECT jsonb_array_elements_text(q.f->'phones'))))
  AND (NOT q.f ? 'event_id' OR EXISTS (
        SELECT FROM tickets t JOIN ticket_types tt ON tt.id = t.ticket_type_id
        WHERE t.contact_id = c.id AND tt.event_id = (q.f->>'event_id')::uuid AND t.status IN ('valid', 'used')))
  AND (NOT q.f ? 'ticket_type_id' OR EXISTS (
        SELECT FROM tickets t WHERE t.contact_id = c.id AND t.ticket_type_id = (q.f->>'ticket_type_id')::uuid
          AND t.status IN ('valid', 'used')))
  AND (NOT q.f ? 'survey_id' OR EXISTS (
        SELECT FROM survey_responses s WHERE s.contact_id = c.id AND s.survey_id = (q.f->>'survey_id')::uuid
          AND s.status = 'completed'))
  AND (NOT q.f ? 'poll_id' OR EXISTS (
        SELECT FROM poll_votes v WHERE v.contact_id = c.id AND v.poll_id = (q.f->>'poll_id')::uuid))
  AND (NOT q.f ? 'program_id' OR EXISTS (
        SELECT FROM program_subscriptions p WHERE p.contact_id = c.id AND p.program_id = (q.f->>'program_id')::uuid
          AND p.status = 'subscribed'))
"""

RESOLVE = f"""
INSERT INTO broadcast_recipients (organization_id, broadcast_id, contact_id, position)
SELECT $1, $2, c.id, row_number() OVER (ORDER BY c.created_at, c.id) {_MATCH}
ON CONFLICT (broadcast_id, contact_id) DO NOTHING"""

COUNT = f"SELECT count(*) {_MATCH} AND $1::uuid IS NOT NULL AND $2::uuid IS NOT NULL"


async def resolve(
    conn: asyncpg.Connection, org_id: UUID, broadcast_id: UUID, audience: dict[str, Any]
) -> int:
    """Recipients written for the broadcast (unique per contact); how many."""
    status = await conn.execute(RESOLVE, org_id, broadcast_id, audience)
    return int(status.split()[-1])


async def estimate(conn: asyncpg.Connection, org_id: UUID, audience: dict[str, Any]) -> int:
    """How many contacts the filter matches now (shown when a broadcast is created)."""
    return int(await conn.fetchval(COUNT, org_id, org_id, audience))


_ID_TABLES = {
    "event_id": ("events", "event"),
    "ticket_type_id": ("ticket_types", "ticket type"),
    "survey_id": ("surveys", "survey"),
    "poll_id": ("polls", "poll"),
    "program_id": ("programs", "programme"),
}


async def missing_ids(conn: asyncpg.Connection, audience: dict[str, Any]) -> list[str]:
    """The ids of a (normalised) filter that name nothing the caller's tenant can see, as "survey 5b0e…": an
    id of another organisation is simply not there (row-level security)."""
    missing = []
    for key, (table, what) in _ID_TABLES.items():
        if key in audience and not await conn.fetchval(
            f"SELECT true FROM {table} WHERE id = $1", UUID(audience[key])
        ):
            missing.append(f"{what} {audience[key]}")
    return missing
