"""Programmes: at each occurrence of a programme's schedule (engine/programme_schedule.py) its next content item
becomes a broadcast to the programme's subscribers.

The scheduler fires a due programme in one tenant transaction: the programme's row locked (SKIP LOCKED: one
scheduler per occurrence), the broadcast created with the occurrence's ``source_key`` (unique, a second guard),
the item marked published, and ``next_fire_at`` moved to the next occurrence. An occurrence missed by more
than ``MISFIRE_GRACE`` (every scheduler down) is skipped, not sent late. Subscriptions: keywords and the menu
in the conversation (handlers/programme_effects.py), or an operator's import (``subscribe``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine.broadcasts import NewBroadcast, create_stored
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.programme_schedule import Schedule, parse_schedule
from engine.programme_spec import ProgrammeSpec, ReminderSpec
from engine.runtime import Runtime

log = get_logger(__name__)
MISFIRE_GRACE = timedelta(hours=2)


def schedule_of(row: asyncpg.Record | dict[str, Any]) -> Schedule:
    return parse_schedule(
        row["schedule_type"], row["schedule_config"] or {}, row["timezone"] or "Africa/Nairobi"
    )


async def fire_due(rt: Runtime, now: datetime) -> int:
    rows = await rt.owner_pool.fetch(
        """SELECT id, organization_id FROM programs WHERE is_active AND next_fire_at <= $1
           ORDER BY next_fire_at LIMIT 20""",
        now,
    )
    fired = 0
    for row in rows:
        async with tenant_tx(rt.app_pool, row["organization_id"]) as conn:
            fired += await fire_one(conn, row["organization_id"], row["id"], now)
    return fired


async def fire_one(conn: asyncpg.Connection, org_id: UUID, program_id: UUID, now: datetime) -> int:
    """The programme's due occurrence, once: 1 when this call handled it (sent or skipped)."""
    p = await conn.fetchrow(
        "SELECT * FROM programs WHERE id = $1 AND is_active AND next_fire_at <= $2 FOR UPDATE SKIP LOCKED",
        program_id,
        now,
    )
    if p is None:
        return 0
    occurrence: datetime = p["next_fire_at"]
    if now - occurrence > MISFIRE_GRACE:
        log.warning(
            "programme occurrence missed; skipped", program_id=str(program_id), at=occurrence.isoformat()
        )
    else:
        await _send_next_item(conn, org_id, p, occurrence)
    following = schedule_of(p).next_after(max(occurrence, now - MISFIRE_GRACE))
    await conn.execute(
        "UPDATE programs SET next_fire_at = $2, last_fired_at = $3 WHERE id = $1",
        program_id,
        following,
        occurrence,
    )
    return 1


async def _send_next_item(
    conn: asyncpg.Connection, org_id: UUID, p: asyncpg.Record, occurrence: datetime
) -> None:
    while True:  # the next item that can be sent: one refused is marked so and the following one goes
        item = await conn.fetchrow(
            """SELECT * FROM content_items WHERE program_id = $1 AND status = 'scheduled'
               ORDER BY sort_order, created_at LIMIT 1 FOR UPDATE""",
            p["id"],
        )
        if item is None:
            log.info("programme occurrence with no item left", program_id=str(p["id"]))
            return
        broadcast_id, refused = await create_stored(
            conn,
            org_id,
            NewBroadcast(
                name=f"{p['name']}: {item['title'] or 'item'}",
                text=item["body"],
                template_name=item["template_name"],
                template_language=item["template_language"],
                template_params=list(item["template_params"] or []),
                audience={"program_id": str(p["id"])},
                at=occurrence,
                media_url=item["media_url"],
                source="programme",
                source_key=f"programme:{p['id']}:{occurrence.isoformat()}",
            ),
        )
        if refused is not None:
            await conn.execute(
                "UPDATE content_items SET status = 'refused', refused_reason = $2 WHERE id = $1",
                item["id"],
                refused,
            )
            log.error(
                "programme item refused; not sent",
                program_id=str(p["id"]),
                item=item["title"],
                reason=refused,
            )
            continue
        await conn.execute(
            "UPDATE content_items SET status = 'published', published_at = $2, broadcast_id = $3 WHERE id = $1",
            item["id"],
            occurrence,
            broadcast_id,
        )
        log.info(
            "programme item fired",
            program_id=str(p["id"]),
            item=item["title"],
            broadcast_id=str(broadcast_id),
        )
        return


async def subscribe(
    conn: asyncpg.Connection,
    org_id: UUID,
    program_id: UUID,
    contact_id: UUID,
    *,
    source: str,
    on: bool = True,
) -> bool:
    """Subscribe (or unsubscribe) a contact; True when that changed something."""
    status = "subscribed" if on else "unsubscribed"
    changed = await conn.fetchval(
        """INSERT INTO program_subscriptions (organization_id, program_id, contact_id, status, source,
                                              subscribed_at, unsubscribed_at)
           VALUES ($1, $2, $3, $4::varchar, $5, CASE WHEN $4::varchar = 'subscribed' THEN now() END,
                   CASE WHEN $4::varchar = 'unsubscribed' THEN now() END)
           ON CONFLICT (program_id, contact_id) DO UPDATE
               SET status = EXCLUDED.status, source = EXCLUDED.source,
                   subscribed_at = COALESCE(EXCLUDED.subscribed_at, program_subscriptions.subscribed_at),
                   unsubscribed_at = CASE WHEN EXCLUDED.status = 'unsubscribed' THEN now() END
               WHERE program_subscriptions.status <> EXCLUDED.status
           RETURNING true""",
        org_id,
        program_id,
        contact_id,
        status,
        source,
    )
    return bool(changed)


# ---------------------------------------------------------------- written by the content import


async def save_programme(
    conn: asyncpg.Connection, org_id: UUID, spec: ProgrammeSpec, org_zone: str | None, now: datetime
) -> tuple[UUID, bool]:
    """The programme by its key, created or replaced, and its items by title (published ones kept as sent);
    the next occurrence counted from now. (id, created)."""
    zone = spec.timezone or org_zone or "Africa/Nairobi"
    schedule = parse_schedule(spec.schedule, spec.config(), zone)
    values = (
        spec.name,
        spec.description,
        spec.schedule,
        schedule.config(),
        zone,
        spec.active,
        spec.keywords.subscribe,
        spec.keywords.unsubscribe,
        spec.menu_title,
        schedule.next_after(now),
    )
    program_id = await conn.fetchval("SELECT id FROM programs WHERE key = $1 FOR UPDATE", spec.key)
    created = program_id is None
    if created:
        program_id = await conn.fetchval(
            """INSERT INTO programs (organization_id, key, name, description, schedule_type, schedule_config, timezone,
                                     is_active, subscribe_keywords, unsubscribe_keywords, menu_title, next_fire_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
            org_id,
            spec.key,
            *values,
        )
    else:
        await conn.execute(
            """UPDATE programs SET name = $2, description = $3, schedule_type = $4, schedule_config = $5,
                      timezone = $6, is_active = $7, subscribe_keywords = $8, unsubscribe_keywords = $9,
                      menu_title = $10, next_fire_at = $11
               WHERE id = $1""",
            program_id,
            *values,
        )
    for order, item in enumerate(spec.items):
        template = item.template
        await conn.execute(
            """INSERT INTO content_items (organization_id, program_id, type, title, body, media_url, template_name,
                                          template_language, template_params, sort_order, status)
               SELECT $1, $2, 'message', $3::varchar, $4, $5, $6, $7, $8, $9, 'scheduled'
               WHERE NOT EXISTS (SELECT FROM content_items WHERE program_id = $2 AND title = $3::varchar)""",
            org_id,
            program_id,
            item.title,
            item.text,
            item.media_url,
            template.name if template else None,
            template.language if template else None,
            template.params if template else [],
            order,
        )
        await conn.execute(
            """UPDATE content_items SET body = $3, media_url = $4, template_name = $5, template_language = $6,
                      template_params = $7, sort_order = $8, status = 'scheduled', refused_reason = NULL
               WHERE program_id = $1 AND title = $2 AND status IN ('scheduled', 'refused')""",
            program_id,
            item.title,
            item.text,
            item.media_url,
            template.name if template else None,
            template.language if template else None,
            template.params if template else [],
            order,
        )
    await conn.execute(  # items taken out of the file and not sent yet: no longer sent
        "UPDATE content_items SET status = 'withdrawn' WHERE program_id = $1 AND status = 'scheduled' "
        "AND NOT (title = ANY($2::text[]))",
        program_id,
        [i.title for i in spec.items],
    )
    return program_id, created


async def save_reminders(
    conn: asyncpg.Connection, org_id: UUID, event_id: UUID, reminders: list[ReminderSpec], now: datetime
) -> None:
    """An event's reminders by name; their times from the event's start (sql/029 keeps them moving with it)."""
    for r in reminders:
        template = r.template
        await conn.execute(
            """INSERT INTO event_reminders (organization_id, event_id, name, offset_minutes, text, template_name,
                                            template_language, template_params, fire_at, status)
               SELECT $1, $2, $3, $4, $5, $6, $7, $8, e.starts_at + make_interval(mins => $4),
                      CASE WHEN e.starts_at + make_interval(mins => $4) > $9 THEN 'pending' ELSE 'missed' END
               FROM events e WHERE e.id = $2
               ON CONFLICT (event_id, name) DO UPDATE
                   SET offset_minutes = EXCLUDED.offset_minutes, text = EXCLUDED.text,
                       template_name = EXCLUDED.template_name, template_language = EXCLUDED.template_language,
                       template_params = EXCLUDED.template_params, fire_at = EXCLUDED.fire_at,
                       status = CASE WHEN (event_reminders.fire_at IS DISTINCT FROM EXCLUDED.fire_at
                                           AND event_reminders.status <> 'cancelled')
                                          OR event_reminders.status = 'refused' THEN EXCLUDED.status
                                     ELSE event_reminders.status END,
                       refused_reason = NULL""",
            org_id,
            event_id,
            r.name,
            r.offset_minutes(),
            r.text,
            template.name if template else None,
            template.language if template else None,
            template.params if template else [],
            now,
        )
    await conn.execute(
        "DELETE FROM event_reminders WHERE event_id = $1 AND status = 'pending' AND NOT (name = ANY($2::text[]))",
        event_id,
        [r.name for r in reminders],
    )
