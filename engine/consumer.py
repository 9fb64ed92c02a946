"""Consuming a queue so that one key's messages run one at a time, in order, and different keys run
concurrently; the slots shared fairly between tenants, so that one organisation's flood cannot take the slots
others need while a lone organisation may use them all.

Guarantees: a message is acked only after its handler returned (its transaction committed). A handler
error is retried in place with backoff (later messages of the same key wait: order is kept), then the
message is parked with the error in its headers. An infrastructure outage (database or broker down) is
retried without limit and never parks. A message that kills the process is redelivered by the broker,
which dead-letters it to parking after the queue's delivery limit.

With a ``Batcher`` (INBOUND_BATCH_SIZE > 1), a message's first attempt goes into a batch: the heads of
different lanes of one tenant, gathered for a short window, handled in one call (the inbound role: one
transaction, a savepoint per event). Each message still holds its lane and its slot (engine.consumer.Limits)
while its batch runs, and is acked by its lane once its own after-commit work is done; what the batch did not
take (``RunAlone``) or what failed in it is tried again on its own, counted as today.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import asyncpg
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from structlog.contextvars import bind_contextvars, clear_contextvars, get_contextvars

from engine.logging import get_logger

log = get_logger(__name__)

Handler = Callable[[AbstractIncomingMessage], Awaitable[None]]
# One outcome per message, in order: None (done: ack it), RunAlone (not taken: run it on its own now), or the
# error its own part of the batch raised (classified as the handler's would be).
BatchHandler = Callable[[list[AbstractIncomingMessage]], Awaitable[list[BaseException | None]]]
KeyOf = Callable[[AbstractIncomingMessage], tuple[str, str]]  # (ordering key, tenant key)

INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncio.TimeoutError,
    aio_pika.exceptions.AMQPConnectionError,
    aio_pika.exceptions.ChannelClosed,
    # what a publish on a robust channel raises while its connection is down (a RuntimeError, so without this
    # line a reply published after its commit during a broker restart counted as the handler's failure)
    aio_pika.exceptions.ChannelInvalidStateError,
)
RETRYABLE_DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
)


def outage_delay(attempt: int) -> float:
    """Seconds to wait before the next try through an outage: doubling from 0.4 s, at most 30 s."""
    return min(30.0, 0.2 * 2 ** min(attempt, 8))


class Park(Exception):
    """Raised by a handler for a message that can never succeed (e.g. an unknown phone number)."""


class RunAlone(Exception):
    """A batch's outcome for a message it did not take, or could not commit: run it on its own, as without
    batches (not counted as a failed attempt)."""


@dataclass
class _Gathering:
    items: list[tuple[AbstractIncomingMessage, asyncio.Future[BaseException | None]]] = field(
        default_factory=list
    )
    keys: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    """Shared by every consumer of a process's role: the first attempts of messages of one tenant, from different
    lanes (never two of one key), gathered for up to ``window`` seconds or ``size`` messages, go to the batch
    handler in one call. A gathering of one message is run on its own, exactly as without a batcher."""

    def __init__(
        self,
        run: BatchHandler,
        *,
        size: int,
        window: float,
        accepts: Callable[[AbstractIncomingMessage], bool] | None = None,
        otherwise: Batcher | None = None,
    ) -> None:
        self._run = run
        self.size = size
        self.window = window
        # Only the messages ``accepts`` takes (all without it); the others go to ``otherwise``, or run alone.
        self._accepts = accepts
        self._otherwise = otherwise
        self._open: dict[str, _Gathering] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, tenant: str, key: str, message: AbstractIncomingMessage) -> BaseException | None:
        """Wait for the message's batch; its outcome (see ``BatchHandler``)."""
        if self._accepts is not None and not self._accepts(message):
            if self._otherwise is not None:
                return await self._otherwise.submit(tenant, key, message)
            return RunAlone()
        loop = asyncio.get_running_loop()
        gathering = self._open.get(tenant)
        if gathering is not None and key in gathering.keys:  # never two of one key in a batch
            self._flush(tenant, gathering)
            gathering = None
        if gathering is None:
            gathering = self._open[tenant] = _Gathering()
            gathering.timer = loop.call_later(self.window, self._flush, tenant, gathering)
        outcome: asyncio.Future[BaseException | None] = loop.create_future()
        gathering.items.append((message, outcome))
        gathering.keys.add(key)
        if len(gathering.items) >= self.size:
            self._flush(tenant, gathering)
        return await outcome

    def _flush(self, tenant: str, gathering: _Gathering) -> None:
        if self._open.get(tenant) is gathering:
            del self._open[tenant]
        if gathering.timer is not None:
            gathering.timer.cancel()
            gathering.timer = None
        # in a context of its own: the lane that filled the batch is only one of its messages
        task = asyncio.create_task(self._execute(gathering.items), context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(
        self, items: list[tuple[AbstractIncomingMessage, asyncio.Future[BaseException | None]]]
    ) -> None:
        outcomes: list[BaseException | None] = [RunAlone() for _ in items]
        try:
            if len(items) > 1:
                outcomes = await self._run([m for m, _ in items])
        except Exception as err:  # a bug of the batch itself: each message on its own, as without batches
            log.error("batch failed as a whole; its messages run on their own", error=repr(err))
            outcomes = [RunAlone() for _ in items]
        finally:
            for (_, future), outcome in zip(items, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)


@dataclass
class _Lane:
    pending: collections.deque[tuple[AbstractIncomingMessage, str]] = field(
        default_factory=collections.deque
    )  # (message, tenant)
    running: bool = False


class Limits:
    """Shared by every queue a process consumes: ``concurrency`` events at once, shared fairly between tenants
    and work-conserving. A tenant alone may use every slot; while several have work, a slot that comes free goes
    to the waiting tenant with the fewest events running (the one waiting longest among equals), so a flooding
    tenant's lanes wait for the others' and never take the slots they need: each tenant with work gets at least
    an equal share as soon as running events finish (no event is interrupted; a newcomer's first wait is the
    shortest of those running). Waiters are woken one at a time, by the slot they get (no herd)."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.running: collections.Counter[str] = collections.Counter()
        self.total = 0
        # tenant -> its lanes' waits, oldest first; the dict's order is the order tenants began waiting
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}

    async def enter(self, tenant: str) -> None:
        if self.total < self.concurrency and not self._waiting:
            self._take(tenant)
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(tenant, collections.deque()).append(granted)
        self._dispatch()
        try:
            await granted
        except asyncio.CancelledError:
            if (
                granted.done() and not granted.cancelled()
            ):  # the slot came with the cancellation: give it back
                self.leave(tenant)
            else:
                waits = self._waiting.get(tenant)
                if waits is not None and granted in waits:
                    waits.remove(granted)
                    if not waits:
                        del self._waiting[tenant]
            raise

    def leave(self, tenant: str) -> None:
        self.running[tenant] -= 1
        if self.running[tenant] <= 0:
            del self.running[tenant]
        self.total -= 1
        self._dispatch()

    def _take(self, tenant: str) -> None:
        self.running[tenant] += 1
        self.total += 1

    def _dispatch(self) -> None:
        while self.total < self.concurrency and self._waiting:
            tenant = min(self._waiting, key=lambda t: self.running[t])  # first in dict order among equals
            waits = self._waiting[tenant]
            granted = waits.popleft()
            if not waits:
                del self._waiting[tenant]
            if not granted.done():
                self._take(tenant)
                granted.set_result(None)


class OrderedConsumer:
    """Consumes one queue (one channel). To hand the queue over, call ``stop()``: running messages finish
    and are acked, the rest stay unacked, and closing the channel returns them to the head of the queue for
    the next consumer, in order."""

    def __init__(
        self,
        *,
        handler: Handler,
        key_of: KeyOf,
        park: Callable[[AbstractIncomingMessage, str], Awaitable[None]],
        limits: Limits,
        attempts: int,
        on_outcome: Callable[[str, float], None] | None = None,
        role: str = "",
        batcher: Batcher | None = None,
    ) -> None:
        self._handler = handler
        self._key_of = key_of
        self._park = park
        self._limits = limits
        self._attempts = attempts
        self._on_outcome = on_outcome or (lambda outcome, seconds: None)
        self._role = role
        self._batcher = batcher
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.received = 0
        self.running = 0
        self.processed = 0

    @property
    def in_flight(self) -> int:
        return self.received - self.processed

    async def on_message(self, message: AbstractIncomingMessage) -> None:
        """aio-pika callback: queue the message on its key's lane; start the lane when idle."""
        key, tenant = self._key_of(message)
        lane = self._lanes.setdefault(key, _Lane())
        lane.pending.append((message, tenant))
        self.received += 1
        if not lane.running and not self._stopping:
            lane.running = True
            task = asyncio.create_task(self._run_lane(key, lane))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, key: str, lane: _Lane) -> None:
        try:
            while lane.pending and not self._stopping:
                message, tenant = lane.pending[0]
                await self._limits.enter(tenant)  # a slot, shared fairly between tenants
                try:
                    if self._stopping:
                        break
                    self.running += 1
                    try:
                        await self._process(message, key, tenant)
                    finally:
                        self.running -= 1
                finally:
                    self._limits.leave(tenant)
                lane.pending.popleft()
        finally:
            lane.running = False
            if not lane.pending:
                self._lanes.pop(key, None)

    async def _process(self, message: AbstractIncomingMessage, key: str, tenant: str) -> None:
        # Every line logged while this message runs names it and the role; the handler binds the rest (its
        # kind, organisation, contact) with bind_contextvars, and all of it is dropped when the message is done.
        saved = get_contextvars()
        bind_contextvars(role=self._role, message_id=message.message_id)
        try:
            await self._process_bound(message, key, tenant)
        finally:
            clear_contextvars()
            bind_contextvars(**saved)

    async def _process_bound(self, message: AbstractIncomingMessage, key: str, tenant: str) -> None:
        started = time.perf_counter()
        failures = 0
        outage = 0
        batcher = self._batcher  # the first attempt only: a retry runs on its own
        while True:
            try:
                if batcher is not None:
                    batched, batcher = await batcher.submit(tenant, key, message), None
                    if isinstance(batched, RunAlone):
                        continue
                    if batched is not None:
                        raise batched
                else:
                    await self._handler(message)
                outcome = "processed"
                break
            except Park as err:
                log.warning("message parked: it can never succeed", reason=str(err))
                await self._park_through_outages(message, f"{type(err).__name__}: {err}")
                outcome = "parked"
                break
            except INFRASTRUCTURE_ERRORS as err:
                outage += 1
                delay = outage_delay(outage)
                log.warning("infrastructure error; retrying", error=repr(err), delay=delay)
                await asyncio.sleep(delay)
            except RETRYABLE_DB_ERRORS:
                await asyncio.sleep(0.05)
            except Exception as err:  # a handler bug or bad data: bounded retries, then park
                failures += 1
                if failures >= self._attempts:
                    log.error("handler failed; parking", error=repr(err))
                    error = "".join(traceback.format_exception_only(err)).strip()[:2000]
                    await self._park_through_outages(message, error)
                    outcome = "parked"
                    break
                log.warning("handler failed; retrying", error=repr(err), attempt=failures)
                await asyncio.sleep(0.2 * 2**failures)
        await self._ack(message)
        self.processed += 1
        self._on_outcome(outcome, time.perf_counter() - started)

    async def _park_through_outages(self, message: AbstractIncomingMessage, error: str) -> None:
        """Park, waiting out a broker that is down: an error escaping here would stop the message's lane with it
        unacked. Once the consumer is stopping, its channel is closing and the broker redelivers the message."""
        outage = 0
        while True:
            try:
                await self._park(message, error)
                return
            except INFRASTRUCTURE_ERRORS as err:
                if self._stopping:
                    raise
                outage += 1
                delay = outage_delay(outage)
                log.warning("parking failed; retrying", error=repr(err), delay=delay)
                await asyncio.sleep(delay)

    async def _ack(self, message: AbstractIncomingMessage) -> None:
        try:
            await message.ack()
        except Exception as err:  # channel gone: the broker redelivers and dedupe makes it harmless
            log.warning(
                "ack failed; message will be redelivered", message_id=message.message_id, error=repr(err)
            )

    async def stop(self, timeout: float) -> bool:
        """Start nothing new; wait for running messages to finish (True when they all did in time)."""
        self._stopping = True
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.running == 0


async def consume(queue: AbstractQueue, consumer: OrderedConsumer) -> str:
    return await queue.consume(consumer.on_message)


def header(message: AbstractIncomingMessage, name: str, default: Any = None) -> Any:
    return (message.headers or {}).get(name, default)
