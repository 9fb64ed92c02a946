"""``chatnation reshard --inbound N``: a new inbound shard count without stopping intake, each contact's
messages still handled in order.

1. The new generation's queues are declared and a layout record (engine/layout.py) says: publish into the new
   generation, consume the old one. Every gateway and worker is told at once by the broker and routes new
   messages into the new queues, which nobody consumes yet: intake goes on, nothing is refused.
2. A grace of PUBLISH_TIMEOUT_SECONDS + 1 s: a publish begun under the old layout is confirmed or has failed
   (and is retried by its sender, under the new one) by then.
3. The old generation drains: every old queue has no ready message and every live inbound process on it
   reports nothing in flight in a heartbeat taken after that was seen, twice in a row (a message handed from
   one process to another between two looks is seen on the second). A process whose heartbeat stopped is waited
   for until its broker connection is surely gone (its unacked messages then are ready again) or it returns.
4. The last record: consume the new generation. Each inbound process gives up its old shards and takes its
   share of the new ones; the old queues, unbound first (a straggler's publish would be refused, and retried,
   rather than stranded), are deleted once they hold nothing.

Each contact's older messages are all handled before any of its newer ones, since no new queue is consumed
before the old ones are empty; the cost is that new messages wait during the drain (seconds: the backlog of the
old queues at the moment of the switch, plus two heartbeats). Interrupted, the command can be run again with
the same N: it resumes from the record it finds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractRobustConnection

from engine.broker import Topology, connect
from engine.broker_admin import amqp_queue_stats
from engine.db import database_urls
from engine.layout import LayoutFollower, append
from engine.logging import get_logger
from engine.settings import Settings
from engine.shards import HEARTBEAT_SECONDS

log = get_logger(__name__)
GONE_SECONDS = 90  # a silent process's broker connection is closed by then (AMQP heartbeat 60 s)
CLEAN_ROUNDS = 2


class ReshardRefused(Exception):
    pass


@dataclass
class Report:
    """What a reshard did, with the time each step took (seconds from the start)."""

    old: tuple[int, int]  # (generation, shards)
    new: tuple[int, int]
    steps: dict[str, float] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def step(self, name: str) -> None:
        self.steps[name] = round(time.monotonic() - self.started, 2)
        log.info("reshard step", step=name, seconds=self.steps[name])

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": {"generation": self.old[0], "shards": self.old[1]},
            "to": {"generation": self.new[0], "shards": self.new[1]},
            "seconds": self.steps,
            "deleted_queues": self.deleted,
        }


async def reshard(
    settings: Settings, shards: int, *, on_step: Callable[[str], None] | None = None
) -> Report | None:
    """Move the inbound queues to ``shards`` shards; None when they already are."""
    topology = Topology.from_settings(settings)
    owner_url = (await database_urls(settings)).owner
    connection = await connect(settings)
    follower = LayoutFollower(topology, settings.inbound_shards)
    try:
        layout = await follower.start(connection)
        if layout.draining and layout.shards != shards:
            raise ReshardRefused(
                f"a reshard to {layout.shards} shards is under way: run `chatnation reshard --inbound "
                f"{layout.shards}` to finish it first"
            )
        if not layout.draining and layout.shards == shards:
            return None
        target = layout if layout.draining else layout.next(shards)
        report = Report((target.consume_generation, target.consume_shards), (target.generation, shards))
        if not layout.draining:
            await _declare(connection, target.publishing(topology))
            await append(connection, topology, target)
        await _until(lambda: follower.current == target, 10)
        report.step("switched")
        await asyncio.sleep(settings.publish_timeout_seconds + 1)
        report.step("grace")
        old = target.consuming(topology)
        await drained(connection, owner_url, old)
        report.step("drained")
        done = target.completed()
        await append(connection, topology, done)
        await _until(lambda: follower.current == done, 10)
        report.step("cut over")
        report.deleted = await retire(connection, owner_url, old)
        report.step("old queues deleted")
        return report
    finally:
        await follower.close()
        await connection.close()


async def _declare(connection: AbstractRobustConnection, topology: Topology) -> None:
    channel = await connection.channel()
    try:
        await topology.declare_inbound(channel)
    finally:
        await channel.close()


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def drained(connection: AbstractRobustConnection, owner_url: str, old: Topology) -> None:
    """Until the old generation holds nothing: no ready message in its queues, nothing in flight at any
    process consuming it, ``CLEAN_ROUNDS`` looks in a row."""
    conn = await asyncpg.connect(owner_url)
    try:
        clean = 0
        while clean < CLEAN_ROUNDS:
            since = await conn.fetchval("SELECT now()")
            ready = sum(s.ready or 0 for s in await amqp_queue_stats(connection, old.inbound_queues()))
            if ready:
                clean = 0
                await asyncio.sleep(0.2)
                continue
            clean = clean + 1 if await _nothing_in_flight(conn, old, since) else 0
    finally:
        await conn.close()


async def _nothing_in_flight(conn: asyncpg.Connection, old: Topology, since: Any) -> bool:
    """Every process of the old generation, heard from after ``since``, reports nothing in flight."""
    deadline = time.monotonic() + 3 * HEARTBEAT_SECONDS + GONE_SECONDS
    while time.monotonic() < deadline:
        rows = await conn.fetch(
            f"""SELECT heartbeat_at > $3 AS fresh, in_flight FROM worker_heartbeats
                WHERE role = 'inbound' AND deployment = $1 AND shard_count = $2
                  AND heartbeat_at > now() - interval '{GONE_SECONDS} seconds'""",
            old.prefix,
            old.inbound_shards,
            since,
        )
        if all(r["fresh"] for r in rows):
            return all(r["in_flight"] == 0 for r in rows)
        await asyncio.sleep(0.2)
    return False


async def retire(connection: AbstractRobustConnection, owner_url: str, old: Topology) -> list[str]:
    """Once no live process consumes the old generation: unbind its queues, delete those left empty."""
    conn = await asyncpg.connect(owner_url)
    try:
        await _until_none_left(conn, old)
    finally:
        await conn.close()
    channel = await connection.channel()
    deleted = []
    try:
        exchange = await channel.get_exchange(old.inbound_exchange)
        for shard, name in enumerate(old.inbound_queues()):
            queue = await channel.get_queue(name)
            await queue.unbind(exchange, routing_key=old.inbound_key(shard))
        for stats in await amqp_queue_stats(connection, old.inbound_queues()):
            if stats.exists and stats.ready == 0:
                await channel.queue_delete(stats.name)
                deleted.append(stats.name)
            elif stats.exists:
                log.error(
                    "an old inbound queue still holds messages; kept", queue=stats.name, ready=stats.ready
                )
    except aio_pika.exceptions.ChannelClosed as err:
        log.warning("old inbound queues not all retired", error=repr(err))
    finally:
        if not channel.is_closed:
            await channel.close()
    return deleted


async def _until_none_left(conn: asyncpg.Connection, old: Topology, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = await conn.fetchval(
            """SELECT count(*) FROM worker_heartbeats
               WHERE role = 'inbound' AND deployment = $1 AND shard_count = $2
                 AND heartbeat_at > now() - interval '6 seconds'""",
            old.prefix,
            old.inbound_shards,
        )
        if not left:
            return
        await asyncio.sleep(0.2)
