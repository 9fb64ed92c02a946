"""Event reminders: a due reminder becomes a broadcast to the event's ticket holders, once; a cancelled event's
holders get one "event cancelled" message instead of its reminders (sql/029 moves and cancels them).

A reminder is fired in one tenant transaction: its row locked (SKIP LOCKED), the broadcast created with the
``source_key`` of the reminder and the time it was due for (so a reminder re-armed by a postponement makes a
new one), the reminder marked fired. A reminder whose time passed by more than ``MISFIRE_GRACE`` (or whose
event has begun) is marked missed, not sent late.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from engine.broadcasts import NewBroadcast, create, create_stored
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.runtime import Runtime
from state_machines.i18n import t

log = get_logger(__name__)
MISFIRE_GRACE = timedelta(hours=1)


async def fire_due(rt: Runtime, now: datetime) -> int:
    done = 0
    for row in await rt.owner_pool.fetch(
        """SELECT id, organization_id FROM event_reminders WHERE status = 'pending' AND fire_at <= $1
           ORDER BY fire_at LIMIT 20""",
        now,
    ):
        async with tenant_tx(rt.app_pool, row["organization_id"]) as conn:
            done += await fire_one(conn, row["organization_id"], row["id"], now)
    for row in await rt.owner_pool.fetch(
        "SELECT event_id, organization_id FROM event_cancellations WHERE broadcast_id IS NULL LIMIT 20"
    ):
        async with tenant_tx(rt.app_pool, row["organization_id"]) as conn:
            done += await tell_cancelled(conn, row["organization_id"], row["event_id"])
    return done


async def fire_one(conn: asyncpg.Connection, org_id: UUID, reminder_id: UUID, now: datetime) -> int:
    r = await conn.fetchrow(
        """SELECT r.*, e.name AS event_name, e.starts_at, e.status AS event_status FROM event_reminders r
           JOIN events e ON e.id = r.event_id
           WHERE r.id = $1 AND r.status = 'pending' AND r.fire_at <= $2 FOR UPDATE OF r SKIP LOCKED""",
        reminder_id,
        now,
    )
    if r is None:
        return 0
    if r["event_status"] == "cancelled":
        await conn.execute("UPDATE event_reminders SET status = 'cancelled' WHERE id = $1", reminder_id)
        return 1
    if now - r["fire_at"] > MISFIRE_GRACE or (r["offset_minutes"] < 0 and now >= r["starts_at"]):
        await conn.execute("UPDATE event_reminders SET status = 'missed' WHERE id = $1", reminder_id)
        log.warning("event reminder missed; not sent late", reminder=r["name"], event_name=r["event_name"])
        return 1
    broadcast_id, refused = await create_stored(
        conn,
        org_id,
        NewBroadcast(
            name=f"{r['event_name']}: {r['name']}",
            text=r["text"],
            template_name=r["template_name"],
            template_language=r["template_language"],
            template_params=list(r["template_params"] or []),
            template_category="utility",
            event_id=r["event_id"],
            at=r["fire_at"],
            source="reminder",
            source_key=f"reminder:{reminder_id}:{r['fire_at'].isoformat()}",
        ),
    )
    if refused is not None:
        await conn.execute(
            "UPDATE event_reminders SET status = 'refused', refused_reason = $2 WHERE id = $1",
            reminder_id,
            refused,
        )
        log.error(
            "event reminder refused; not sent", reminder=r["name"], event_name=r["event_name"], reason=refused
        )
        return 1
    await conn.execute(
        "UPDATE event_reminders SET status = 'fired', fired_at = $2, broadcast_id = $3 WHERE id = $1",
        reminder_id,
        now,
        broadcast_id,
    )
    log.info(
        "event reminder fired", reminder=r["name"], event_name=r["event_name"], broadcast_id=str(broadcast_id)
    )
    return 1


async def tell_cancelled(conn: asyncpg.Connection, org_id: UUID, event_id: UUID) -> int:
    row = await conn.fetchrow(
        """SELECT c.text, e.name, (SELECT settings->>'language' FROM organizations WHERE id = $2) AS language
           FROM event_cancellations c JOIN events e ON e.id = c.event_id
           WHERE c.event_id = $1 AND c.broadcast_id IS NULL FOR UPDATE OF c SKIP LOCKED""",
        event_id,
        org_id,
    )
    if row is None:
        return 0
    text = row["text"] or t(
        "programmes.event_cancelled", row["language"] or "en", event="{{event}}", when="{{event_time}}"
    )
    broadcast_id = await create(
        conn,
        org_id,
        NewBroadcast(
            name=f"{row['name']}: cancelled",
            text=text,
            event_id=event_id,
            source="reminder",
            source_key=f"event-cancelled:{event_id}",
        ),
    )
    if broadcast_id is None:  # made before by a scheduler that crashed before marking it
        broadcast_id = await conn.fetchval(
            "SELECT id FROM broadcasts WHERE source_key = $1", f"event-cancelled:{event_id}"
        )
    await conn.execute(
        "UPDATE event_cancellations SET broadcast_id = $2 WHERE event_id = $1", event_id, broadcast_id
    )
    return 1
