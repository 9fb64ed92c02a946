"""The worker roles, wired: which queues each consumes and which loops it runs.

- inbound: the inbound shards this process owns (see ``engine.shards``), plus the payments queue router.
- relay: the outbox relay and the timer scanner (each active in one process at a time, the rest stand by), and
  the tickets mailer when SMTP_HOST is set and the CRM's event webhooks (every relay process; e-mails and
  deliveries are claimed with SKIP LOCKED), and the periodic template sync (TEMPLATE_SYNC_SECONDS, one process
  at a time).
- sender: the outbound shards this process owns: for each, its replies queue and its bulk queue (two consumers,
  so bulk never holds a reply's place; engine/pacing.py serves replies first within the number's rate).
- cards: HypeCards to render (``engine/hypecards/cards_role.py``), any number of processes.
- scheduler: broadcasts started and fanned out, programme items and event reminders fired
  (``engine/scheduler.py``), any number of processes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from engine import inbound
from engine import metrics_worker as metrics
from engine.broker import Topology, ordering_of, outbound_ordering
from engine.consumer import Batcher, Limits, OrderedConsumer
from engine.logging import get_logger
from engine.mailer import mail_forever
from engine.outbox import relay_forever
from engine.queue_sampler import sample_forever
from engine.runtime import Runtime
from engine.scheduler import scheduler_forever
from engine.sender import Sender
from engine.shards import ShardCoordinator
from engine.templates import templates_sync_forever
from engine.timers import timers_forever
from engine.webhooks import deliver_forever
from handlers.payments import reconcile_forever, route_callback

log = get_logger(__name__)
PREFETCH = {"inbound": 100, "sender": 20}  # a sender's jobs wait on HTTP: hold few, so a crash re-counts few


@dataclass
class ShardedConsumers:
    """Consumes whichever shard queues the coordinator gives this process, one channel per shard."""

    rt: Runtime
    role: str
    queue_name: Callable[[int], str]
    handler: Callable[[AbstractIncomingMessage], Awaitable[None]]
    key_of: Callable[[AbstractIncomingMessage], tuple[str, str]]
    limits: Limits
    batcher: Batcher | None = None  # shared by every shard of the process
    active: dict[int, tuple[AbstractChannel, OrderedConsumer]] = field(default_factory=dict)
    processed: int = 0

    async def start_shard(self, shard: int) -> None:
        channel = await self.rt.connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH[self.role])
        queue_name = self.queue_name(shard)

        async def park(message: AbstractIncomingMessage, error: str) -> None:
            await park_message(self.rt, message, error, queue_name)

        consumer = OrderedConsumer(
            handler=self.handler,
            key_of=self.key_of,
            park=park,
            limits=self.limits,
            attempts=self.rt.settings.handler_attempts,
            on_outcome=self._outcome,
            role=self.role,
            batcher=self.batcher,
        )
        queue = await channel.get_queue(
            queue_name
        )  # ensure: a robust queue then re-consumes after a reconnect
        await queue.consume(consumer.on_message)
        self.active[shard] = (channel, consumer)

    async def stop_shard(self, shard: int) -> None:
        """Finish what runs, then close the channel: the rest goes back to the queue's head, in order."""
        channel, consumer = self.active.pop(shard)
        if not await consumer.stop(self.rt.settings.shutdown_grace_seconds):
            log.warning("shard stopped with work still running; it will be redelivered", shard=shard)
        await channel.close()

    def stats(self) -> tuple[int, int]:
        """(in flight now, processed by this process since it started, across every shard it held)."""
        return sum(c.in_flight for _, c in self.active.values()), self.processed

    def _outcome(self, outcome: str, seconds: float) -> None:
        self.processed += 1
        metrics.in_flight.labels(self.role).set(self.stats()[0])


@dataclass
class LaneConsumers:
    """A sender's shard is two queues, replies and bulk, taken and given up together."""

    replies: ShardedConsumers
    bulk: ShardedConsumers

    @property
    def role(self) -> str:
        return self.replies.role

    async def start_shard(self, shard: int) -> None:
        await self.replies.start_shard(shard)
        await self.bulk.start_shard(shard)

    async def stop_shard(self, shard: int) -> None:
        await asyncio.gather(self.replies.stop_shard(shard), self.bulk.stop_shard(shard))

    def stats(self) -> tuple[int, int]:
        (a, b), (c, d) = self.replies.stats(), self.bulk.stats()
        return a + c, b + d


async def park_message(rt: Runtime, message: AbstractIncomingMessage, error: str, queue: str) -> None:
    """Poison message: to the parking queue with the error attached (confirmed); the caller then acks it."""
    headers = dict(message.headers or {})
    headers.update(
        {
            "x-error": error[:2000],
            "x-original-queue": queue,
            "x-original-exchange": message.exchange,
            "x-original-routing-key": message.routing_key,
            "x-attempts": int(str(headers.get("x-delivery-count") or 0)) + 1,
        }
    )
    await rt.publisher.publish(
        rt.topology.dead_letter_exchange, "", message.body, message_id=message.message_id, headers=headers
    )


async def run_roles(rt: Runtime, roles: set[str], concurrency: int, stop: asyncio.Event) -> None:
    tasks: list[asyncio.Task[None]] = []
    limits = Limits(concurrency)  # shared fairly between organisations (engine/consumer.py)
    if "inbound" in roles:
        sharded = ShardedConsumers(
            rt,
            "inbound",
            rt.topology.inbound_queue,
            lambda m: inbound.handle(rt, m),
            inbound.key_of,
            limits,
            batcher=inbound_batcher(rt),
        )
        tasks.append(asyncio.create_task(_inbound_shards(rt, sharded, stop)))
        tasks.append(asyncio.create_task(_payments(rt, stop)))
    if "sender" in roles:
        sender = Sender(rt)

        # slots of their own per lane: bulk waiting for its slots never holds a reply's place
        replies = ShardedConsumers(
            rt, "sender", rt.topology.outbound_queue, sender.handle, _outbound_key, Limits(concurrency)
        )
        bulk = ShardedConsumers(
            rt, "sender", rt.topology.bulk_queue, sender.handle, _outbound_key, Limits(concurrency)
        )
        both = LaneConsumers(replies, bulk)
        tasks.append(asyncio.create_task(_coordinate(rt, both, rt.topology.outbound_shards, stop)))
    if "cards" in roles:
        tasks.append(asyncio.create_task(_cards(rt, stop)))
        tasks.append(asyncio.create_task(_announce(rt, "cards", stop)))
    if "relay" in roles:
        tasks.append(asyncio.create_task(relay_forever(rt, stop)))
        tasks.append(asyncio.create_task(timers_forever(rt, stop)))
        tasks.append(asyncio.create_task(mail_forever(rt, stop)))
        tasks.append(asyncio.create_task(templates_sync_forever(rt, stop)))
        tasks.append(asyncio.create_task(deliver_forever(rt, stop)))
        tasks.append(asyncio.create_task(_announce(rt, "relay", stop)))
    if "scheduler" in roles:
        tasks.append(asyncio.create_task(scheduler_forever(rt, stop)))
        tasks.append(asyncio.create_task(_announce(rt, "scheduler", stop)))
    # every process offers to sample (one does at a time), so the figures outlive any one role
    tasks.append(asyncio.create_task(sample_forever(rt, stop)))
    await asyncio.gather(*tasks)


def inbound_batcher(rt: Runtime) -> Batcher | None:
    """Status webhooks applied set-based in batches (engine/status_batch.py), when STATUS_BATCH_SIZE > 1; the
    other events of different contacts in one transaction (engine/inbound_batch.py), when INBOUND_BATCH_SIZE > 1."""
    events: Batcher | None = None
    if rt.settings.inbound_batch_size > 1:
        from engine.inbound_batch import handle_batch

        async def run(messages: list[AbstractIncomingMessage]) -> list[BaseException | None]:
            return await handle_batch(rt, messages)

        events = Batcher(
            run, size=rt.settings.inbound_batch_size, window=rt.settings.inbound_batch_window_ms / 1000
        )
    if rt.settings.status_batch_size <= 1:
        return events
    from engine.status_batch import handle_statuses, is_status

    async def statuses(messages: list[AbstractIncomingMessage]) -> list[BaseException | None]:
        return await handle_statuses(rt, messages)

    return Batcher(
        statuses,
        size=rt.settings.status_batch_size,
        window=rt.settings.status_batch_window_ms / 1000,
        accepts=is_status,
        otherwise=events,
    )


async def _coordinate(
    rt: Runtime, sharded: ShardedConsumers | LaneConsumers, shards: int, stop: asyncio.Event
) -> None:
    coordinator = ShardCoordinator(
        rt.urls.owner,
        sharded.role,
        shards,
        sharded.start_shard,
        sharded.stop_shard,
        sharded.stats,
        deployment=rt.settings.broker_prefix,
        host=rt.settings.worker_host,
    )
    await coordinator.run(stop)


async def _inbound_shards(rt: Runtime, sharded: ShardedConsumers, stop: asyncio.Event) -> None:
    """The inbound shards of the generation the layout says to consume (engine/layout.py): when a reshard
    completes, this process gives up the old generation's shards (their queues are empty by then) and takes
    its share of the new one's, coordinated with the processes already on it."""
    while not stop.is_set():
        consumed = rt.consumed_topology()
        sharded.queue_name = consumed.inbound_queue
        this_round = asyncio.Event()
        watcher = asyncio.create_task(_until_layout_changes(rt, consumed, stop, this_round))
        try:
            await _coordinate(rt, sharded, consumed.inbound_shards, this_round)
        finally:
            watcher.cancel()
        if not stop.is_set():
            log.info("inbound generation changed", generation=rt.consumed_topology().inbound_generation)


async def _until_layout_changes(
    rt: Runtime, consumed: Topology, stop: asyncio.Event, changed: asyncio.Event
) -> None:
    """Sets ``changed`` once the layout names other inbound queues to consume than ``consumed`` (or at stop)."""
    while not stop.is_set() and rt.consumed_topology() == consumed:
        await (stop.wait() if rt.layout is None else rt.layout.wait_change(1.0))
    changed.set()


async def _announce(rt: Runtime, role: str, stop: asyncio.Event) -> None:
    """A role without shards still heartbeats, so that `chatnation workers` lists it."""

    async def nothing(shard: int) -> None:
        return None

    await ShardCoordinator(
        rt.urls.owner,
        role,
        0,
        nothing,
        nothing,
        deployment=rt.settings.broker_prefix,
        host=rt.settings.worker_host,
    ).run(stop)


async def _payments(rt: Runtime, stop: asyncio.Event) -> None:
    """M-Pesa callbacks: any number of routers; each callback is re-published into its contact's shard."""
    await asyncio.gather(
        work_queue(rt, rt.topology.payments_queue, lambda m: route_callback(rt, m), "mpesa", 20, stop),
        reconcile_forever(rt, stop),  # requests left open are asked about again
    )


async def _cards(rt: Runtime, stop: asyncio.Event) -> None:
    from engine.hypecards.cards_role import CardMaker

    maker = CardMaker(rt)
    try:
        concurrency = rt.settings.hypecard_concurrency
        await work_queue(rt, rt.topology.cards_queue, maker.handle, "cards", concurrency, stop)
    finally:
        maker.close()


async def work_queue(
    rt: Runtime,
    queue_name: str,
    handler: Callable[[AbstractIncomingMessage], Awaitable[None]],
    tenant: str,
    concurrency: int,
    stop: asyncio.Event,
) -> None:
    """A queue any number of processes share (no order between messages), until ``stop``; poison is parked."""
    channel = await rt.connection.channel()
    await channel.set_qos(prefetch_count=concurrency)

    async def park(message: AbstractIncomingMessage, error: str) -> None:
        await park_message(rt, message, error, queue_name)

    consumer = OrderedConsumer(
        handler=handler,
        key_of=lambda m: (str(m.message_id), tenant),
        park=park,
        limits=Limits(concurrency),
        attempts=rt.settings.handler_attempts,
        role="inbound",  # the payments router runs in the inbound role
    )
    queue = await channel.get_queue(queue_name)
    await queue.consume(consumer.on_message)
    await stop.wait()
    await consumer.stop(rt.settings.shutdown_grace_seconds)
    await channel.close()


def _outbound_key(message: AbstractIncomingMessage) -> tuple[str, str]:
    return ordering_of(message.headers) or outbound_ordering(json.loads(message.body))
