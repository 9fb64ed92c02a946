"""The scheduler role: due broadcasts started, running ones fanned out, programme items and event reminders
fired. Safe with any number of processes: starting takes the broadcast's row with SKIP LOCKED, batches take
recipients with SKIP LOCKED, and a programme occurrence or a reminder makes its broadcast once (a unique
``source_key``), so every process may run every step.

Discovery is a cross-tenant read (the owner's pool, as the timer scan); all work runs in tenant transactions
as the application role.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from engine import broadcasts, programmes, reminders
from engine.broadcast_fanout import TemplateHeld, run_batch
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.runtime import Runtime

log = get_logger(__name__)
Clock = Callable[[], datetime]
IDLE_SECONDS = 0.5


def utcnow() -> datetime:
    return datetime.now(UTC)


async def scheduler_forever(rt: Runtime, stop: asyncio.Event, clock: Clock = utcnow) -> None:
    while not stop.is_set():
        try:
            busy = await tick(rt, clock)
        except Exception as err:  # an outage: resume where the tables say
            log.warning("scheduler interrupted; retrying", error=repr(err))
            busy = 0
            await _sleep(stop, 1.0)
        if not busy:
            await _sleep(stop, IDLE_SECONDS)


async def tick(rt: Runtime, clock: Clock = utcnow) -> int:
    """One round of every step; how much it did (0: nothing was due)."""
    done = await programmes.fire_due(rt, clock())
    done += await reminders.fire_due(rt, clock())
    done += await start_due(rt, clock())
    done += await fan_out(rt, clock)
    return done


async def start_due(rt: Runtime, now: datetime) -> int:
    rows = await rt.owner_pool.fetch(
        """SELECT id, organization_id FROM broadcasts WHERE status = 'scheduled' AND scheduled_at <= $1
           ORDER BY scheduled_at LIMIT 20""",
        now,
    )
    started = 0
    for row in rows:
        started += await start_one(rt, row["organization_id"], row["id"], now)
    return started


async def start_one(rt: Runtime, org_id: UUID, broadcast_id: UUID, now: datetime) -> int:
    org = await rt.orgs.get(org_id)
    try:
        async with tenant_tx(rt.app_pool, org_id) as conn:
            return 0 if await broadcasts.start(conn, org, broadcast_id, now) is None else 1
    except broadcasts.NotStarted as err:  # rolled back: nothing resolved, nothing reserved
        async with tenant_tx(rt.app_pool, org_id) as conn:
            await broadcasts.block(conn, broadcast_id, err.reason)
        return 1


async def fan_out(rt: Runtime, clock: Clock) -> int:
    rows = await rt.owner_pool.fetch(
        "SELECT id, organization_id FROM broadcasts WHERE status = 'running' ORDER BY started_at LIMIT 50"
    )
    done = 0
    for row in rows:
        done += await batch_once(rt, row["organization_id"], row["id"], clock())
    return done


async def batch_once(rt: Runtime, org_id: UUID, broadcast_id: UUID, now: datetime) -> int:
    """One batch of the broadcast; when nothing is left to take, its completion."""
    org = await rt.orgs.get(org_id)
    s = rt.settings
    try:
        async with tenant_tx(rt.app_pool, org_id) as conn:
            taken = await run_batch(
                conn, org, broadcast_id, now, s.broadcast_batch_size, s.broadcast_in_flight
            )
    except TemplateHeld as held:  # rolled back: the broadcast waits, with the reason, for a resume
        async with tenant_tx(rt.app_pool, org_id) as conn:
            await broadcasts.hold(conn, broadcast_id, held.reason)
        return 1
    if taken == 0:
        async with tenant_tx(rt.app_pool, org_id) as conn:
            return 1 if await broadcasts.complete_if_done(conn, org_id, broadcast_id) else 0
    return taken or 0


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
