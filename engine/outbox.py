"""The outbox relay: publishes committed replies to the outbound queue, in id order, then marks them.

One relay per deployment (BROKER_PREFIX) is active at a time (a PostgreSQL advisory lock keyed by the deployment;
others wait as stand-bys), so rows leave in the order they were committed per contact and lane. It takes only its
own deployment's rows (sql/070), adopting any written without a deployment; another deployment's relay on the
same database takes the others. It polls the partial index of unrelayed rows every few milliseconds, replies
first, then a batch of bulk rows (broadcasts, programmes, reminders).
A crash between publishing and marking re-publishes; the sender drops a reply that WhatsApp already accepted.

A conversation's replies do not come this way (issue 16, sql/071): the inbound worker that wrote them publishes
them after its commit and before its ack (``publish_jobs``), one broker hop and one poll less per reply; their rows
are written already marked, and the event's redelivery publishes them again (``jobs_of_event``).
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import asyncpg

from engine import metrics_worker as metrics
from engine.broker import ordering_headers, outbound_ordering
from engine.logging import get_logger
from engine.runtime import Runtime
from engine.shards import deployment_lock

log = get_logger(__name__)
RELAY_LOCK = 0x52454C41  # "RELA", with the deployment's key (engine/shards.py deployment_lock)
BATCH = 500
BULK_BATCH = (
    200  # bulk rows per round after the replies: a reply waits at most one of these behind a broadcast
)
POLL_SECONDS = 0.01  # polled, not woken by NOTIFY: sql/015 says why


async def relay_forever(rt: Runtime, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await _relay_while_leader(rt, stop)
        except Exception as err:  # the relay must outlive any outage; it resumes where the table says
            log.warning("relay interrupted; retrying", error=repr(err))
            await _sleep(stop, 1.0)


async def _relay_while_leader(rt: Runtime, stop: asyncio.Event) -> None:
    conn: asyncpg.Connection = await asyncpg.connect(rt.urls.owner)
    try:
        lock = deployment_lock(RELAY_LOCK, rt.settings.broker_prefix)
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", *lock):
            await _sleep(stop, 1.0)  # another relay is active; stand by
            return
        log.info("outbox relay active")
        while not stop.is_set():
            replies = await relay_batch(rt, conn, "reply", BATCH)
            bulk = await relay_batch(rt, conn, "bulk", BULK_BATCH)
            if replies < BATCH and bulk < BULK_BATCH:
                await _sleep(stop, POLL_SECONDS)
    finally:
        await conn.close()  # also releases the advisory lock


# This deployment's unrelayed rows of one lane, and those of no deployment, adopted (a row lock: another relay
# that reached the same row sees it taken once the adoption commits, and leaves it).
_PENDING = """WITH adopted AS (
    UPDATE outbox SET deployment = $3 WHERE relayed_at IS NULL AND deployment IS NULL RETURNING id, payload, lane)
SELECT id, payload FROM outbox WHERE relayed_at IS NULL AND deployment = $3 AND lane = $1
UNION ALL SELECT id, payload FROM adopted WHERE lane = $1
ORDER BY id LIMIT $2"""


async def relay_batch(rt: Runtime, conn: asyncpg.Connection, lane: str = "reply", limit: int = BATCH) -> int:
    """Up to ``limit`` unrelayed rows of one lane, in id order. Replies go first each round, then a smaller batch
    of bulk rows (sql/025): a broadcast's thousands of rows never keep a chatting person's reply waiting."""
    rows = await conn.fetch(_PENDING, lane, limit, rt.settings.broker_prefix)
    if not rows:
        return 0
    by_shard: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
        if not isinstance(payload, dict) or not {"contact_key", "message_id"} <= payload.keys():
            await _park(rt, row["id"], payload)  # not a send job: kept for a person, never blocks the rest
            continue
        by_shard[rt.topology.outbound_route(payload["contact_key"])].append({**payload, "lane": lane})

    exchange = rt.topology.bulk_exchange if lane == "bulk" else rt.topology.outbound_exchange

    async def publish(route: str, jobs: list[dict[str, Any]]) -> None:
        for job in jobs:  # one contact's replies stay in order: sequential within a shard
            await rt.publisher.publish(
                exchange,
                route,
                job,
                message_id=job["message_id"],
                headers=ordering_headers(*outbound_ordering(job)),
            )

    if lane == "bulk":  # mostly one row per contact: each contact's in order, contacts at once (fewer waits)
        by_contact: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for route, jobs in by_shard.items():
            for job in jobs:
                by_contact[(route, job["contact_key"])].append(job)
        await asyncio.gather(*(publish(route, jobs) for (route, _), jobs in by_contact.items()))
    else:
        await asyncio.gather(*(publish(route, jobs) for route, jobs in by_shard.items()))
    await conn.execute(
        "UPDATE outbox SET relayed_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
    )
    metrics.relayed.inc(len(rows))
    return len(rows)


async def publish_jobs(rt: Runtime, jobs: list[dict[str, Any]]) -> None:
    """Send jobs of one contact's event to the outbound queue, in order, each confirmed before the next (what the
    relay does with a shard's rows). Raises when the broker does not confirm: the event is then not acked, and
    its retry or redelivery publishes them again (``jobs_of_event``)."""
    for job in jobs:
        await rt.publisher.publish(
            rt.topology.outbound_exchange,
            rt.topology.outbound_route(job["contact_key"]),
            job,
            message_id=job["message_id"],
            headers=ordering_headers(*outbound_ordering(job)),
        )
    if jobs:
        metrics.published_by_writer.inc(len(jobs))


async def jobs_of_event(conn: asyncpg.Connection, org_id: Any, event_key: str) -> list[dict[str, Any]]:
    """The send jobs an event already wrote that are not sent yet (in the tenant's transaction): an event that
    comes back (a redelivery after a crash or a lost broker, or its in-place retry) publishes them again, in
    order. A gateway duplicate of an answered message finds them sent and publishes nothing."""
    rows = await conn.fetch(
        """SELECT o.payload FROM outbox o JOIN messages m ON m.id = o.message_id
           WHERE o.organization_id = $1 AND o.event_key = $2
             AND m.wa_message_id IS NULL AND m.wa_status IS DISTINCT FROM 'failed'
           ORDER BY o.id""",
        org_id,
        event_key,
    )
    return [r["payload"] if isinstance(r["payload"], dict) else json.loads(r["payload"]) for r in rows]


async def _park(rt: Runtime, row_id: int, payload: Any) -> None:
    log.error("outbox row is not a send job; parked", outbox_id=row_id)
    await rt.publisher.publish(
        rt.topology.dead_letter_exchange,
        "",
        payload,
        message_id=f"outbox-{row_id}",
        headers={
            "x-error": "outbox row is not a send job (no contact_key or message_id)",
            "x-original-queue": "outbox",
        },
    )
    metrics.events.labels("outbox_row", "parked").inc()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
