"""Dividing shard queues among the live worker processes of a role, and handing them over in order.

Each process heartbeats into ``worker_heartbeats``; the live processes of a role in the same deployment (its
BROKER_PREFIX and shard count: another deployment on the same database has queues of its own), sorted by start
time, take shards round-robin. A process that loses a shard stops starting its messages, finishes the running
ones, then closes that shard's channel, which returns the rest to the head of the queue; the new owner's
consumer (waiting as single-active-consumer stand-by) continues from there. So adding or removing
workers never reorders a contact's messages.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from engine.logging import get_logger

log = get_logger(__name__)
LIVE_SECONDS = 6
HEARTBEAT_SECONDS = 2


def deployment_lock(kind: int, deployment: str) -> tuple[int, int]:
    """The two keys of a deployment's advisory lock of ``kind`` (the relay's, the timer scanner's): one holder
    per deployment, and deployments on one database do not wait for each other."""
    key = zlib.crc32(deployment.encode())
    return kind, key - (1 << 32) if key >= 1 << 31 else key


def assign(shards: int, workers: list[str], me: str) -> set[int]:
    """Round-robin over the live workers in a stable order: shard i belongs to workers[i % len]."""
    if me not in workers:
        return set()
    rank = workers.index(me)
    return {i for i in range(shards) if i % len(workers) == rank}


@dataclass
class ShardCoordinator:
    owner_url: str
    role: str
    shards: int
    start_shard: Callable[[int], Awaitable[None]]
    stop_shard: Callable[[int], Awaitable[None]]
    stats: Callable[[], tuple[int, int]] = lambda: (0, 0)  # (in flight, processed)
    worker_id: str = ""  # unset: host-pid-random

    owned: set[int] = field(default_factory=set)
    deployment: str = ""  # the BROKER_PREFIX: workers of other deployments are not counted
    host: str = field(default_factory=socket.gethostname)  # WORKER_HOST: the heartbeat's host name

    def __post_init__(self) -> None:
        if not self.worker_id:
            self.worker_id = f"{self.host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    async def run(self, stop: asyncio.Event) -> None:
        conn: asyncpg.Connection | None = None
        while not stop.is_set():
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(self.owner_url)
                await self._tick(conn)
            except Exception as err:  # database away: keep the shards we have, try again
                log.warning("shard coordination failed; keeping current shards", error=repr(err))
                conn = None
            try:
                await asyncio.wait_for(stop.wait(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                pass
        for shard in sorted(self.owned):
            await self.stop_shard(shard)
        self.owned.clear()
        if conn is not None and not conn.is_closed():
            await conn.execute("DELETE FROM worker_heartbeats WHERE worker_id = $1", self.worker_id)
            await conn.close()

    async def _tick(self, conn: asyncpg.Connection) -> None:
        in_flight, processed = self.stats()
        await conn.execute(
            """INSERT INTO worker_heartbeats (worker_id, role, host, pid, shards, in_flight, processed,
                                              deployment, shard_count)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now(), shards = $5, in_flight = $6, processed = $7""",
            self.worker_id,
            self.role,
            self.host,
            os.getpid(),
            sorted(self.owned),
            in_flight,
            processed,
            self.deployment,
            self.shards,
        )
        live = [
            r["worker_id"]
            for r in await conn.fetch(
                f"""SELECT worker_id FROM worker_heartbeats
                WHERE role = $1 AND deployment = $2 AND shard_count = $3
                  AND heartbeat_at > now() - interval '{LIVE_SECONDS} seconds'
                ORDER BY started_at, worker_id""",
                self.role,
                self.deployment,
                self.shards,
            )
        ]
        await conn.execute("DELETE FROM worker_heartbeats WHERE heartbeat_at < now() - interval '1 hour'")
        wanted = assign(self.shards, live, self.worker_id)
        changed = wanted != self.owned
        for shard in sorted(self.owned - wanted):
            await self.stop_shard(shard)
            self.owned.discard(shard)
        for shard in sorted(wanted - self.owned):
            await self.start_shard(shard)
            self.owned.add(shard)
        if changed:
            log.info("shards rebalanced", role=self.role, shards=sorted(self.owned), workers=len(live))
