"""Due conversation timers -> the contact's ordered inbound path, so that a timer is handled like a message
(after whatever the contact sent before it) and is ignored there when the conversation has moved on.

One scanner per deployment (BROKER_PREFIX) is active at a time (an advisory lock keyed by the deployment), and it
fires only its own deployment's timers (sql/070), adopting any set without a deployment. Publishing and marking are not atomic: a crash in
between publishes again, and the inbound side's receipt (``timer:<id>``) makes the second one a no-op.
"""

from __future__ import annotations

import asyncio
import json

import asyncpg

from engine.logging import get_logger
from engine.runtime import Runtime
from engine.shards import deployment_lock

log = get_logger(__name__)
TIMERS_LOCK = 0x54494D45  # "TIME", with the deployment's key (engine/shards.py deployment_lock)


async def fire_due_timers(rt: Runtime, conn: asyncpg.Connection, limit: int = 200) -> int:
    deployment = rt.settings.broker_prefix
    await conn.execute(  # timers of no deployment become ours (row locks: one scanner adopts each)
        """UPDATE conversation_timers SET deployment = $1
           WHERE status = 'pending' AND deployment IS NULL AND due_at <= now()""",
        deployment,
    )
    rows = await conn.fetch(
        """SELECT t.id, t.kind, t.state_version, t.data, c.phone, o.whatsapp_phone_id
           FROM conversation_timers t JOIN contacts c ON c.id = t.contact_id
           JOIN organizations o ON o.id = t.organization_id
           WHERE t.status = 'pending' AND t.deployment = $2 AND t.due_at <= now() ORDER BY t.due_at LIMIT $1""",
        limit,
        deployment,
    )
    for row in rows:
        body = {
            "v": 1,
            "kind": "timer",
            "phone_number_id": row["whatsapp_phone_id"],
            "wa_id": row["phone"],
            "external_id": f"timer:{row['id']}",
            "timer": {"kind": row["kind"], "version": row["state_version"], "data": row["data"]},
        }
        await rt.publish_inbound(row["phone"], body, message_id=body["external_id"])
        await conn.execute(
            "UPDATE conversation_timers SET status = 'fired', fired_at = now() WHERE id = $1", row["id"]
        )
    return len(rows)


async def timers_forever(rt: Runtime, stop: asyncio.Event, interval: float = 1.0) -> None:
    while not stop.is_set():
        try:
            conn = await asyncpg.connect(rt.urls.owner)  # cross-tenant scan: the owner's job
            try:
                lock = deployment_lock(TIMERS_LOCK, rt.settings.broker_prefix)
                if await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *lock):
                    await conn.set_type_codec(
                        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
                    )
                    while not stop.is_set():
                        if await fire_due_timers(rt, conn) == 0:
                            await _sleep(stop, interval)
                else:
                    await _sleep(stop, 2.0)
            finally:
                await conn.close()
        except Exception as err:  # outage: resume where the table says
            log.warning("timer scan interrupted; retrying", error=repr(err))
            await _sleep(stop, 1.0)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
