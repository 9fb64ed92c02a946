"""Samples the broker's queues and the wallets below their threshold into this process's gauges, every few
seconds, for Prometheus. Runs in the relay role (one task per relay process; the figures are the same from
every relay, so dashboards take ``max by (queue)``)."""

from __future__ import annotations

import asyncio

from engine import metrics_worker as metrics
from engine.broker_admin import QueueInspector, QueueStats
from engine.logging import get_logger
from engine.runtime import Runtime

log = get_logger(__name__)
SAMPLE_SECONDS = 5.0


def record(stats: list[QueueStats]) -> None:
    for s in stats:
        if not s.exists:
            continue
        if s.ready is not None:
            metrics.queue_depth.labels(s.name, "ready").set(s.ready)
        if s.unacked is not None:
            metrics.queue_depth.labels(s.name, "unacked").set(s.unacked)
        if s.consumers is not None:
            metrics.queue_consumers.labels(s.name).set(s.consumers)


async def wallets_below_threshold(rt: Runtime) -> int:
    # Cross-tenant: the owner's connection, like the outbox relay and the timer scan.
    return int(
        await rt.owner_pool.fetchval(
            "SELECT count(*) FROM wallets WHERE balance < COALESCE(low_balance_threshold, 0)"
        )
    )


async def sample_forever(rt: Runtime, stop: asyncio.Event, interval: float = SAMPLE_SECONDS) -> None:
    inspector = QueueInspector(rt.settings, rt.connection)
    names = rt.topology.all_queues()
    try:
        while not stop.is_set():
            try:
                record(await inspector.sample(names))
                metrics.wallet_low_balance.set(await wallets_below_threshold(rt))
            except Exception as err:  # broker or database away: the gauges keep their last values
                log.warning("queue sampling failed", error=repr(err))
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
    finally:
        await inspector.aclose()
