"""Looking into the broker for operators: queue depths and consumers, and the parked (dead-lettered) messages.

Queue figures: the ready count always from an AMQP passive declare (exact and immediate, where the management
API lags by ~5 s and knows nothing of a queue for its first seconds); unacked counts, consumers and publish and
deliver rates from the RabbitMQ management HTTP API when it answers (unacked unknown otherwise). Parked messages are read with basic.get and manual acks on a short-lived
channel: what is not acked goes back to the head of the parking queue when the channel closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import httpx
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from engine.broker import Publisher, Topology
from engine.logging import get_logger
from engine.settings import Settings

log = get_logger(__name__)
MANAGEMENT_PORT = 15672
# Headers that describe a message's stay in parking; a replayed message starts clean without them.
PARKING_HEADERS = (
    "x-error",
    "x-original-queue",
    "x-original-exchange",
    "x-original-routing-key",
    "x-attempts",
    "x-death",
    "x-first-death-queue",
    "x-first-death-exchange",
    "x-first-death-reason",
    "x-last-death-queue",
    "x-last-death-exchange",
    "x-last-death-reason",
    "x-delivery-count",
)


# ------------------------------------------------------------------------------------------ queue figures


@dataclass(frozen=True)
class QueueStats:
    name: str
    ready: int | None
    unacked: int | None  # None: unknown (AMQP fallback)
    consumers: int | None
    publish_rate: float | None = None  # messages/s into the queue (management API)
    deliver_rate: float | None = None  # messages/s delivered to consumers (management API)
    growth_rate: float | None = None  # change of ready messages/s between two samples
    exists: bool = True


def queue_kind(topology: Topology, name: str) -> str:
    if name == topology.parking_queue:
        return "parking"
    if name == topology.payments_queue:
        return "payments"
    if name == topology.cards_queue:
        return "cards"
    return "inbound" if name.startswith(f"{topology.inbound_exchange}.") else "outbound"


def management_url(settings: Settings) -> str:
    """RABBITMQ_MANAGEMENT_URL, or the AMQP URL's host on port 15672 with the same credentials."""
    if settings.rabbitmq_management_url is not None:
        return str(settings.rabbitmq_management_url)
    amqp = urlsplit(str(settings.rabbitmq_url))
    userinfo = f"{amqp.username or 'guest'}:{amqp.password or 'guest'}@"
    return f"http://{userinfo}{amqp.hostname or '127.0.0.1'}:{MANAGEMENT_PORT}/"


def vhost_of(settings: Settings) -> str:
    path = urlsplit(str(settings.rabbitmq_url)).path
    return unquote(path[1:]) if path not in ("", "/") else "/"


class ManagementApi:
    """The few calls of the management HTTP API this project needs."""

    def __init__(self, url: str, vhost: str, *, timeout: float = 3.0) -> None:
        parts = urlsplit(url)
        auth = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
        base = f"{parts.scheme}://{parts.hostname}:{parts.port or MANAGEMENT_PORT}{parts.path.rstrip('/')}"
        self._client = httpx.AsyncClient(base_url=base, auth=auth, timeout=timeout)
        self._vhost = quote(vhost, safe="")

    async def queues(self, names: Sequence[str]) -> list[QueueStats]:
        """Figures for ``names`` (one request for the whole vhost); raises when the API does not answer."""
        response = await self._client.get(
            f"/api/queues/{self._vhost}",
            params={
                "columns": ",".join(
                    (
                        "name",
                        "messages_ready",
                        "messages_unacknowledged",
                        "consumers",
                        "message_stats.publish_details.rate",
                        "message_stats.deliver_get_details.rate",
                    )
                )
            },
        )
        response.raise_for_status()
        found = {q["name"]: q for q in response.json()}
        return [_from_management(name, found.get(name)) for name in names]

    async def put_policy(
        self, name: str, pattern: str, definition: dict[str, Any], apply_to: str, priority: int = 0
    ) -> None:
        response = await self._client.put(
            f"/api/policies/{self._vhost}/{quote(name, safe='')}",
            json={"pattern": pattern, "definition": definition, "apply-to": apply_to, "priority": priority},
        )
        response.raise_for_status()

    async def delete_policy(self, name: str) -> None:
        response = await self._client.delete(f"/api/policies/{self._vhost}/{quote(name, safe='')}")
        if response.status_code != 404:
            response.raise_for_status()

    async def policies(self, kind: str = "policies") -> list[dict[str, Any]]:
        """The vhost's policies (``kind``: "policies", or "operator-policies")."""
        response = await self._client.get(f"/api/{kind}/{self._vhost}")
        response.raise_for_status()
        return list(response.json())

    @property
    def address(self) -> str:
        """Where the API is, without credentials (for messages)."""
        return str(self._client.base_url)

    async def aclose(self) -> None:
        await self._client.aclose()


def server_version(connection: AbstractConnection) -> tuple[int, ...]:
    """The broker's version, as it announced itself when the connection opened ((0,) when unknown)."""
    try:
        announced = connection.transport.connection.server_properties.get("version")  # type: ignore[union-attr]
    except AttributeError:
        return (0,)
    text = announced.decode() if isinstance(announced, bytes) else str(announced or "")
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3]) or (0,)


# The priority of the parking policy: above the catch-all policies deployments often have (priority 0 or 1),
# since only the one policy of highest priority applies to a queue (docs/operations.md, Parked messages).
PARKING_POLICY_PRIORITY = 10
# Queue kinds a policy's apply-to may name that take in the parking (quorum) queue.
_APPLIES_TO_QUORUM = {"all", "queues", "quorum_queues"}


class ParkingReadsUnsafe(RuntimeError):
    """Reading the parking queue would count deliveries toward a limit that drops parked messages."""


def parking_policy(topology: Topology) -> tuple[str, str, dict[str, Any]]:
    """(name, pattern, definition) of the policy that lifts RabbitMQ 4's default delivery limit (20) on the
    parking queue, where every browse returns messages: there it would drop parked messages after ~20 reads."""
    return (
        f"{topology.prefix}.parking-unlimited",
        f"^{re.escape(topology.parking_queue)}$",
        {"delivery-limit": -1},
    )


def _matches(policy: dict[str, Any], queue: str) -> bool:
    if policy.get("apply-to", "all") not in _APPLIES_TO_QUORUM:
        return False
    try:
        return re.search(str(policy.get("pattern", "")), queue) is not None
    except re.error:  # an Erlang pattern Python does not read: assume it may apply
        return True


def parking_policy_problem(
    policies: list[dict[str, Any]], operator_policies: list[dict[str, Any]], topology: Topology
) -> str | None:
    """Why ``parking_policy`` is not the one in force on the parking queue (None when it is): RabbitMQ applies
    only the matching policy of highest priority, and an operator policy's delivery limit on top of it."""
    ours = parking_policy(topology)[0]
    queue = topology.parking_queue
    matching = [p for p in policies if _matches(p, queue)]
    mine = [p for p in matching if p.get("name") == ours]
    if not mine:
        return f"the policy {ours} is not set"
    priority = int(mine[0].get("priority", 0))
    rivals = sorted(
        (p for p in matching if p.get("name") != ours and int(p.get("priority", 0)) >= priority),
        key=lambda p: -int(p.get("priority", 0)),
    )
    if rivals:
        rival = rivals[0]
        return (
            f"the policy {rival.get('name')} (priority {rival.get('priority', 0)}) also matches {queue} and wins "
            f"over {ours} (priority {priority})"
        )
    for p in operator_policies:
        if _matches(p, queue) and "delivery-limit" in (p.get("definition") or {}):
            return f"the operator policy {p.get('name')} sets a delivery limit on {queue}"
    return None


async def lift_parking_limit(
    settings: Settings, connection: AbstractConnection, topology: Topology
) -> str | None:
    """On RabbitMQ 4 and later, set ``parking_policy`` through the management API and check that it is the one
    in force. None when parked messages are safe from reads; otherwise why they may not be (logged too).
    Earlier versions have no default limit (and refuse -1): nothing to do there."""
    if server_version(connection) < (4, 0):
        return None
    api = ManagementApi(management_url(settings), vhost_of(settings))
    name, pattern, definition = parking_policy(topology)
    try:
        await api.put_policy(name, pattern, definition, "queues", PARKING_POLICY_PRIORITY)
        try:
            operator = await api.policies("operator-policies")
        except httpx.HTTPError:  # a user that may not read them: the user policies are what we set
            operator = []
        problem = parking_policy_problem(await api.policies(), operator, topology)
    except httpx.HTTPError as err:
        problem = f"the management API at {api.address} did not take the policy {name} ({type(err).__name__})"
    finally:
        await api.aclose()
    if problem is not None:
        log.warning(
            "RabbitMQ 4's delivery limit is not lifted on the parking queue: parked messages may be dropped "
            "after about 20 reads; set the policy by hand (docs/operations.md, Parked messages)",
            problem=problem,
        )
    return problem


async def ensure_parking_unlimited(
    settings: Settings, connection: AbstractConnection, topology: Topology
) -> bool:
    """``lift_parking_limit``: True when the parking queue's messages are safe from reads."""
    return await lift_parking_limit(settings, connection, topology) is None


def reads_count_deliveries(version: tuple[int, ...]) -> bool:
    """Whether a read given back with basic.nack counts a delivery toward a quorum queue's limit: from
    RabbitMQ 4.0 (its default limit of 20) to 4.3 (which counts only basic.reject)."""
    return (4, 0) <= version < (4, 3)


def _from_management(name: str, q: dict[str, Any] | None) -> QueueStats:
    if q is None:
        return QueueStats(name, None, None, None, exists=False)
    stats = q.get("message_stats") or {}  # a figure the API has not collected yet is absent, not zero
    return QueueStats(
        name,
        q.get("messages_ready"),
        q.get("messages_unacknowledged"),
        q.get("consumers"),
        (stats.get("publish_details") or {}).get("rate", 0.0),
        (stats.get("deliver_get_details") or {}).get("rate", 0.0),
    )


def merged(amqp: QueueStats, managed: QueueStats) -> QueueStats:
    """AMQP's exact ready count, the management API's unacked, rates (and consumers when it has them)."""
    consumers = managed.consumers if managed.consumers is not None else amqp.consumers
    return replace(managed, ready=amqp.ready, consumers=consumers, exists=amqp.exists)


async def amqp_queue_stats(connection: AbstractConnection, names: Sequence[str]) -> list[QueueStats]:
    """Ready count and consumers by passive declare. A missing queue closes the channel, so open another."""
    result: list[QueueStats] = []
    channel = await connection.channel()
    try:
        for name in names:
            try:
                queue = await channel.declare_queue(name, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                result.append(QueueStats(name, None, None, None, exists=False))
                channel = await connection.channel()
                continue
            declared = queue.declaration_result
            result.append(QueueStats(name, declared.message_count, None, declared.consumer_count))
    finally:
        if not channel.is_closed:
            await channel.close()
    return result


@dataclass
class QueueInspector:
    """Samples queues through AMQP, completed by the management API while it answers. Remembers the
    previous sample to compute how fast each queue's ready count grows."""

    settings: Settings
    connection: AbstractConnection
    retry_management_after: float = 60.0
    source: str = "management"
    _api: ManagementApi | None = None
    _management_failed_at: float | None = None
    _previous: dict[str, tuple[float, int]] = field(default_factory=dict)

    async def sample(self, names: Sequence[str]) -> list[QueueStats]:
        stats = await amqp_queue_stats(self.connection, names)
        managed = await self._management(names)
        if managed is None:
            self.source = "amqp"
        else:
            stats = [merged(a, m) for a, m in zip(stats, managed, strict=True)]
        return self._with_growth(stats)

    async def _management(self, names: Sequence[str]) -> list[QueueStats] | None:
        failed = self._management_failed_at
        if failed is not None and time.monotonic() - failed < self.retry_management_after:
            return None
        if self._api is None:
            self._api = ManagementApi(management_url(self.settings), vhost_of(self.settings))
        try:
            stats = await self._api.queues(names)
        except (httpx.HTTPError, ValueError) as err:
            if failed is None:
                log.info("RabbitMQ management API unavailable; using AMQP queue figures", error=repr(err))
            self._management_failed_at = time.monotonic()
            return None
        self._management_failed_at = None
        self.source = "management"
        return stats

    def _with_growth(self, stats: list[QueueStats]) -> list[QueueStats]:
        now = time.monotonic()
        out = []
        for s in stats:
            before = self._previous.get(s.name)
            growth = None
            if before is not None and s.ready is not None and now > before[0]:
                growth = (s.ready - before[1]) / (now - before[0])
            if s.ready is not None:
                self._previous[s.name] = (now, s.ready)
            out.append(replace(s, growth_rate=growth))
        return out

    async def aclose(self) -> None:
        if self._api is not None:
            await self._api.aclose()


# ----------------------------------------------------------------------------------------- parked messages


@dataclass(frozen=True)
class ParkedMessage:
    id: str
    reason: str  # "parked" (by a worker, with its error), or the broker's: "delivery_limit", "rejected", ...
    error: str | None
    original_queue: str | None
    original_exchange: str | None
    original_routing_key: str | None
    attempts: int | None
    headers: dict[str, Any]
    body: bytes

    @property
    def target(self) -> tuple[str, str]:
        """Where a replay publishes: the original exchange and routing key, else the queue itself."""
        if self.original_exchange is not None and self.original_routing_key is not None:
            return self.original_exchange, self.original_routing_key
        return "", self.original_queue or ""

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason,
            "error": self.error,
            "original_queue": self.original_queue,
            "exchange": self.original_exchange,
            "routing_key": self.original_routing_key,
            "attempts": self.attempts,
        }


def message_key(message_id: str | None, body: bytes) -> str:
    """A parked message's id: its message_id (the WhatsApp or M-Pesa id), else a digest of its body."""
    return message_id or "sha1:" + hashlib.sha1(body).hexdigest()[:16]


def describe_parked(
    message_id: str | None, headers: dict[str, Any], body: bytes, delivery_limit: int
) -> ParkedMessage:
    """What a parked message says about itself: a worker's x-* headers, or the broker's x-death record."""
    headers = dict(headers)
    key = message_key(message_id, body)
    if "x-original-queue" in headers:
        return ParkedMessage(
            key,
            "parked",
            _text(headers.get("x-error")),
            _text(headers.get("x-original-queue")),
            _text(headers.get("x-original-exchange")),
            _text(headers.get("x-original-routing-key")),
            _int(headers.get("x-attempts")),
            headers,
            body,
        )
    deaths = headers.get("x-death") or [{}]
    death = deaths[0] if isinstance(deaths, list) and deaths else {}
    reason = _text(death.get("reason")) or _text(headers.get("x-first-death-reason")) or "unknown"
    keys = death.get("routing-keys") or []
    attempts = delivery_limit + 1 if reason == "delivery_limit" else _int(death.get("count"))
    return ParkedMessage(
        key,
        reason,
        f"dead-lettered by the broker: {reason}",
        _text(death.get("queue") or headers.get("x-first-death-queue")),
        _text(death.get("exchange", headers.get("x-first-death-exchange"))),
        _text(keys[0]) if keys else None,
        attempts,
        headers,
        body,
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def replay_headers(parked: ParkedMessage) -> dict[str, Any]:
    headers = {k: v for k, v in parked.headers.items() if k not in PARKING_HEADERS}
    headers["x-replayed"] = (_int(parked.headers.get("x-replayed")) or 0) + 1
    return headers


class _Taken:
    """Messages taken from the parking queue on one channel of its own, streamed (prefetch) rather than fetched
    one round trip each. What is not acked goes back at the end, in its order, with basic.nack(requeue): RabbitMQ 4.3 and later count no delivery attempt for that (x-delivery-count
    stays as it was; basic.reject would count one), earlier
    versions count one, which the parking queue's unlimited delivery limit makes harmless
    (``ensure_parking_unlimited``); the attempts shown come from the worker's and the broker's own records."""

    def __init__(self, channel: AbstractChannel, queue: aio_pika.abc.AbstractQueue, timeout: float) -> None:
        self.channel, self.queue, self.timeout = channel, queue, timeout
        self.count = queue.declaration_result.message_count or 0
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        self._unacked: dict[int, AbstractIncomingMessage] = {}
        self._consumer: str | None = None
        self._batch_left = 0

    async def next(self, batch: int) -> AbstractIncomingMessage | None:
        """The next message, in queue order. They come in batches of ``batch`` to a consumer of their own: the
        taken ones stay unacked on this channel, so each new consumer gets the ones after them."""
        if self._batch_left == 0 and self._inbox.empty():
            await self._cancel()
            batch = max(1, min(batch, 1000))
            await self.channel.set_qos(prefetch_count=batch)
            self._consumer = await self.queue.consume(self._inbox.put, no_ack=False)
            self._batch_left = batch
        try:
            message = await asyncio.wait_for(self._inbox.get(), timeout=self.timeout)
        except TimeoutError:  # fewer than counted (another reader took some)
            return None
        self._batch_left = max(0, self._batch_left - 1)
        self._unacked[message.delivery_tag or 0] = message
        return message

    async def _cancel(self) -> None:
        if self._consumer is not None:
            await self.queue.cancel(self._consumer)
            self._consumer = None
            await asyncio.sleep(0)  # deliveries that came before the cancel's answer
            while not self._inbox.empty():
                message = self._inbox.get_nowait()
                self._unacked[message.delivery_tag or 0] = message

    async def ack(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        self._unacked.pop(message.delivery_tag or 0, None)

    async def give_back(self) -> None:
        await self._cancel()
        # One nack each, oldest first: a quorum queue serves returned messages first, in the order they came
        # back, so the queue's order is kept (one multiple nack returns them grouped by consumer instead).
        for tag in sorted(self._unacked):
            await self._unacked[tag].nack(requeue=True)
        self._unacked.clear()


class ParkingLot:
    """Reads, replays and purges the parking queue of one topology.

    Made with ``of`` (settings known), a lot reads nothing on a broker where reading would wear parked messages
    out — RabbitMQ 4.0 to 4.2 with the parking queue's delivery limit not lifted (``lift_parking_limit``) — and
    raises ParkingReadsUnsafe saying why instead."""

    def __init__(
        self,
        connection: AbstractConnection,
        topology: Topology,
        publish_timeout: float,
        *,
        settings: Settings | None = None,
    ) -> None:
        self.connection = connection
        self.topology = topology
        self.publish_timeout = publish_timeout
        self.read = 0  # messages taken from the queue by this lot (the find of one message stops early)
        self._settings = settings
        self._checked = settings is None  # without settings the caller has lifted the limit (the tests)

    @classmethod
    def of(cls, connection: AbstractConnection, settings: Settings) -> ParkingLot:
        """The parking lot of the deployment ``settings`` describe, checked before its first read."""
        return cls(
            connection, Topology.from_settings(settings), settings.publish_timeout_seconds, settings=settings
        )

    async def _check_reads_are_safe(self) -> None:
        if self._checked or self._settings is None:
            return
        problem = await lift_parking_limit(self._settings, self.connection, self.topology)
        version = server_version(self.connection)
        if problem is not None and reads_count_deliveries(version):
            raise ParkingReadsUnsafe(
                f"RabbitMQ {'.'.join(map(str, version))} counts every read of a parked message as a delivery "
                f"and drops it after its delivery limit, which is not lifted on {self.topology.parking_queue}: "
                f"{problem} (docs/operations.md, Parked messages)"
            )
        self._checked = True

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[_Taken]:
        channel = await self.connection.channel()
        try:
            queue = await channel.declare_queue(self.topology.parking_queue, passive=True)
            taken = _Taken(channel, queue, self.publish_timeout)
            try:
                yield taken
            finally:
                if not channel.is_closed:
                    await taken.give_back()
        finally:
            if not channel.is_closed:
                await channel.close()

    def _describe(self, message: AbstractIncomingMessage) -> ParkedMessage:
        self.read += 1
        return describe_parked(
            message.message_id, dict(message.headers or {}), message.body, self.topology.delivery_limit
        )

    async def browse(self, limit: int = 1000, *, until: str | None = None) -> list[ParkedMessage]:
        """Up to ``limit`` parked messages from the head, left in place; with ``until``, stop at the first
        message of that id (the ones before it are read, none after)."""
        found: list[ParkedMessage] = []
        await self._check_reads_are_safe()
        async with self._session() as taken:
            wanted = min(limit, taken.count)
            prefetch = 50 if until is not None else wanted
            while len(found) < wanted:
                message = await taken.next(prefetch)
                if message is None:
                    break
                found.append(self._describe(message))
                if until is not None and found[-1].id == until:
                    break
        return found

    async def peek(self, limit: int = 1000) -> list[ParkedMessage]:
        """Up to ``limit`` parked messages from the head, left in place."""
        return await self.browse(limit)

    async def find(self, message_id: str) -> ParkedMessage | None:
        """The first parked message with this id, reading the queue only up to it."""
        found = await self.browse(100_000_000, until=message_id)
        return found[-1] if found and found[-1].id == message_id else None

    async def count(self) -> int:
        async with self._session() as taken:
            return taken.count

    async def replay(
        self, ids: set[str] | None
    ) -> tuple[list[ParkedMessage], list[tuple[ParkedMessage, str]]]:
        """Re-publish the parked messages with these ids (None: all there are now) to where they came from.
        Each leaves parking only after the broker confirmed its copy; one that cannot be published (its
        exchange or binding is gone) stays parked and is returned with the error."""
        replayed: list[ParkedMessage] = []
        failed: list[tuple[ParkedMessage, str]] = []
        publish_channel: AbstractChannel | None = None
        await self._check_reads_are_safe()
        try:
            async with self._session() as taken:
                # messages parked again meanwhile queue up behind these: not seen twice
                for _ in range(taken.count):
                    message = await taken.next(200)
                    if message is None:
                        break
                    parked = self._describe(message)
                    if ids is not None and parked.id not in ids:
                        continue
                    if publish_channel is None or publish_channel.is_closed:
                        publish_channel = await self.connection.channel(
                            publisher_confirms=True, on_return_raises=True
                        )
                    try:
                        await self._republish(
                            Publisher(publish_channel, self.publish_timeout), message, parked
                        )
                    except (aio_pika.exceptions.AMQPError, TimeoutError) as err:
                        failed.append((parked, repr(err)))
                        continue
                    await taken.ack(message)
                    replayed.append(parked)
                    if ids is not None and {p.id for p in replayed} >= ids:
                        break  # all found: the rest of the queue is not read
        finally:
            if publish_channel is not None and not publish_channel.is_closed:
                await publish_channel.close()
        return replayed, failed

    @staticmethod
    async def _republish(
        publisher: Publisher, message: AbstractIncomingMessage, parked: ParkedMessage
    ) -> None:
        exchange, routing_key = parked.target
        await publisher.publish(
            exchange, routing_key, parked.body, message_id=message.message_id, headers=replay_headers(parked)
        )

    async def purge(self) -> int:
        async with self._session() as taken:
            result = await taken.queue.purge()
            return int(result.message_count or 0)
