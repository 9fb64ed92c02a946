"""Samples the broker's queues, the outbox backlog and the wallets below their threshold into this process's
gauges, every few seconds, for Prometheus.

Every worker process, whatever its role, runs a sampler; one of them samples at a time, so that the figures do
not depend on any one role staying up and the broker is asked once per interval however many processes run.
The one that samples holds an exclusive queue (``<prefix>.sampler``): RabbitMQ lets one connection own it and
deletes it when that connection goes, so another process takes over within an interval. The others export no
queue figures (their gauges are cleared), so dashboards may still take ``max by (queue)``, and
``absent(chatnation_queue_messages)`` means that no process samples at all (deploy/prometheus/alerts.yml).
"""

from __future__ import annotations

import asyncio

import aio_pika

from engine import metrics_worker as metrics
from engine.broker_admin import QueueInspector, QueueStats
from engine.logging import get_logger
from engine.runtime import Runtime

log = get_logger(__name__)
SAMPLE_SECONDS = 5.0

SAMPLED = (
    metrics.queue_depth,
    metrics.queue_consumers,
    metrics.wallet_low_balance,
    metrics.outbox_backlog,
    metrics.outbox_oldest_seconds,
)


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


def forget() -> None:
    """Export none of the sampled figures (this process does not sample, or its last sample failed)."""
    for gauge in SAMPLED:
        gauge.clear()
    metrics.sampler_active.set(0)


async def wallets_below_threshold(rt: Runtime) -> int:
    # Cross-tenant: the owner's connection, like the outbox relay and the timer scan.
    return int(
        await rt.owner_pool.fetchval(
            "SELECT count(*) FROM wallets WHERE balance < COALESCE(low_balance_threshold, 0)"
        )
    )


async def outbox_backlog(rt: Runtime) -> tuple[int, float]:
    """Rows not yet relayed, and how long the oldest has waited (seconds; 0 when there is none): this
    deployment's, and those of none that its relay will adopt (another deployment's are its own business)."""
    row = await rt.owner_pool.fetchrow(
        """SELECT count(*) AS rows,
                  COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float AS oldest
           FROM outbox WHERE relayed_at IS NULL AND (deployment = $1 OR deployment IS NULL)""",
        rt.settings.broker_prefix,
    )
    return int(row["rows"]), float(row["oldest"])


class SamplerLease:
    """This process's claim to be the one sampler: an exclusive queue on a channel of its own."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.name = f"{rt.topology.prefix}.sampler"
        self._channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._holding = False

    async def held(self) -> bool:
        """True while this process holds the lease, trying to take it when nobody does. The queue is declared
        on every call and never restored by the robust connection: after a reconnect it is gone with the old
        connection, another process may hold it already, and a restore that met RESOURCE_LOCKED failed the
        whole reconnection, again and again (its shards' messages went back to their queues on every try,
        up to the delivery limit: docs/reliability.md, 2026-12-08)."""
        if self._channel is None or self._channel.is_closed:
            self._channel = await self.rt.connection.channel()
        try:
            await self._channel.declare_queue(self.name, exclusive=True, auto_delete=True, robust=False)
        except aio_pika.exceptions.ChannelClosed:  # RESOURCE_LOCKED: another process samples
            await (
                self._channel.close()
            )  # already closed by the broker; and a robust channel must not reopen it
            self._channel, self._holding = None, False
            return False
        if not self._holding:
            log.info("sampling the queues for every process of this deployment")
        self._holding = True
        return True


async def sample_once(rt: Runtime, inspector: QueueInspector) -> None:
    record(await inspector.sample(rt.consumed_topology().all_queues()))
    metrics.wallet_low_balance.set(await wallets_below_threshold(rt))
    rows, oldest = await outbox_backlog(rt)
    metrics.outbox_backlog.set(rows)
    metrics.outbox_oldest_seconds.set(oldest)
    metrics.sampler_active.set(1)


async def sample_forever(rt: Runtime, stop: asyncio.Event, interval: float = SAMPLE_SECONDS) -> None:
    inspector = QueueInspector(rt.settings, rt.connection)
    lease = SamplerLease(rt)
    try:
        while not stop.is_set():
            try:
                if await lease.held():
                    await sample_once(rt, inspector)
                else:
                    forget()
            except Exception as err:  # broker or database away: no figures rather than stale ones
                log.warning("queue sampling failed", error=repr(err))
                forget()
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval)
            except TimeoutError:
                pass
    finally:
        forget()
        await inspector.aclose()
