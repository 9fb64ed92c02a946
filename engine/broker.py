"""RabbitMQ: the topology (declared idempotently by whichever process starts first), confirmed publishing,
and the sharding that keeps one contact's events in order.

Topology, for prefix ``p``:
- ``p.inbound`` (direct) -> quorum queues ``p.inbound.NNN``: one per shard, single-active-consumer, so a
  contact's events are handled by one consumer at a time, in order, however many workers run.
- ``p.outbound`` (direct) -> ``p.outbound.NNN``: replies, sharded the same way so they never overtake.
- ``p.bulk`` (direct) -> ``p.bulk.NNN``: what the engine sends first (broadcasts, programmes, reminders), sharded
  like the replies and consumed by the same sender processes, which serve replies first (engine/pacing.py).
- ``p.payments`` (direct) -> ``p.payments``: M-Pesa callbacks, routed to the contact's inbound shard by a worker.
- ``p.cards`` (direct) -> ``p.cards``: HypeCards to render (the cards role), any number of consumers.
- ``p.dlx`` (fanout) -> ``p.parking``: poison messages, dead-lettered by the broker after ``delivery_limit``
  deliveries (a message that crashes its worker) or parked by a worker with the error in its headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from yarl import URL

from engine.logging import get_logger
from engine.settings import Settings

log = get_logger(__name__)


def shard_of(key: str, shards: int) -> int:
    """A stable shard for a contact key (same on every host and Python run, unlike hash())."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


@dataclass(frozen=True)
class Topology:
    prefix: str
    inbound_shards: int
    outbound_shards: int
    delivery_limit: int
    inbound_generation: int = 0  # which generation of inbound queues (engine/layout.py); 0 before any reshard

    @classmethod
    def from_settings(cls, s: Settings) -> Topology:
        return cls(s.broker_prefix, s.inbound_shards, s.outbound_shards, s.delivery_limit)

    @property
    def inbound_exchange(self) -> str:
        return f"{self.prefix}.inbound"

    @property
    def outbound_exchange(self) -> str:
        return f"{self.prefix}.outbound"

    @property
    def bulk_exchange(self) -> str:
        return f"{self.prefix}.bulk"

    @property
    def payments_exchange(self) -> str:
        return f"{self.prefix}.payments"

    @property
    def cards_exchange(self) -> str:
        return f"{self.prefix}.cards"

    @property
    def cards_queue(self) -> str:
        return f"{self.prefix}.cards"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def payments_queue(self) -> str:
        return f"{self.prefix}.payments"

    @property
    def parking_queue(self) -> str:
        return f"{self.prefix}.parking"

    def at_inbound(self, generation: int, shards: int) -> Topology:
        """The same deployment with the inbound queues of another layout generation (engine/layout.py)."""
        return replace(self, inbound_generation=generation, inbound_shards=shards)

    def inbound_queue(self, shard: int) -> str:
        g = self.inbound_generation
        return f"{self.prefix}.inbound.{shard:03d}" if g == 0 else f"{self.prefix}.inbound.g{g}.{shard:03d}"

    def inbound_key(self, shard: int) -> str:
        """The routing key of an inbound shard: its number, prefixed by the generation after a reshard."""
        return str(shard) if self.inbound_generation == 0 else f"g{self.inbound_generation}.{shard}"

    def outbound_queue(self, shard: int) -> str:
        return f"{self.prefix}.outbound.{shard:03d}"

    def bulk_queue(self, shard: int) -> str:
        return f"{self.prefix}.bulk.{shard:03d}"

    def bulk_queues(self) -> list[str]:
        return [self.bulk_queue(i) for i in range(self.outbound_shards)]

    def inbound_queues(self) -> list[str]:
        return [self.inbound_queue(i) for i in range(self.inbound_shards)]

    def outbound_queues(self) -> list[str]:
        return [self.outbound_queue(i) for i in range(self.outbound_shards)]

    def all_queues(self) -> list[str]:
        return [
            *self.inbound_queues(),
            self.payments_queue,
            *self.outbound_queues(),
            *self.bulk_queues(),
            self.cards_queue,
            self.parking_queue,
        ]

    def inbound_route(self, contact_key: str) -> str:
        return self.inbound_key(shard_of(contact_key, self.inbound_shards))

    def outbound_route(self, contact_key: str) -> str:
        return str(shard_of(contact_key, self.outbound_shards))

    def _work_queue_args(self, single_active: bool) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            "x-dead-letter-exchange": self.dead_letter_exchange,
        }
        if single_active:
            args["x-single-active-consumer"] = True
        return args

    async def declare(self, channel: AbstractChannel, *, inbound: bool = True) -> None:
        """Everything, idempotently. ``inbound=False``: not the inbound queues, which the processes that
        follow the layout declare for the generations it names (engine/layout.py), so that a restart after a
        reshard does not make the old generation's queues again."""
        dlx = await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
        )
        parking = await channel.declare_queue(
            self.parking_queue, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await parking.bind(dlx)
        await channel.declare_exchange(self.inbound_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
        if inbound:
            await self.declare_inbound(channel)
        for exchange_name, queues in (
            (self.outbound_exchange, self.outbound_queues()),
            (self.bulk_exchange, self.bulk_queues()),
        ):
            exchange = await channel.declare_exchange(
                exchange_name, aio_pika.ExchangeType.DIRECT, durable=True
            )
            for shard, name in enumerate(queues):
                queue = await channel.declare_queue(name, durable=True, arguments=self._work_queue_args(True))
                await queue.bind(exchange, routing_key=str(shard))
        payments_x = await channel.declare_exchange(
            self.payments_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        payments = await channel.declare_queue(
            self.payments_queue, durable=True, arguments=self._work_queue_args(False)
        )
        await payments.bind(payments_x, routing_key="mpesa")
        cards_x = await channel.declare_exchange(
            self.cards_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        cards = await channel.declare_queue(
            self.cards_queue, durable=True, arguments=self._work_queue_args(False)
        )
        await cards.bind(cards_x, routing_key="card")

    async def declare_inbound(self, channel: AbstractChannel) -> None:
        """This generation's inbound queues, bound to the inbound exchange by their keys."""
        exchange = await channel.declare_exchange(
            self.inbound_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        for shard, name in enumerate(self.inbound_queues()):
            queue = await channel.declare_queue(name, durable=True, arguments=self._work_queue_args(True))
            await queue.bind(exchange, routing_key=self.inbound_key(shard))

    async def delete(self, channel: AbstractChannel) -> None:
        """Remove everything (tests use a prefix of their own and clean up)."""
        for name in [*self.all_queues(), f"{self.prefix}.layout"]:
            await channel.queue_delete(name)
        for name in (
            self.inbound_exchange,
            self.outbound_exchange,
            self.bulk_exchange,
            self.payments_exchange,
            self.cards_exchange,
            self.dead_letter_exchange,
        ):
            await channel.exchange_delete(name)


class FailoverConnection(aio_pika.RobustConnection):
    """aio-pika's robust connection over several nodes of a cluster: each reconnection attempt goes to the next
    address in turn, so a lost node is replaced by a live one at the first attempt (the queues are quorum
    queues with replicas on every node: any node serves them). Channels, consumers and declarations are
    restored by aio-pika as for one node.

    The hook is RobustConnection's per-attempt ``__connect_transport`` (a private method of aio-pika 10; the
    unit test asserts it exists, so that an upgrade that renames it fails loudly rather than silently pinning
    one node)."""

    def __init__(self, urls: list[str], **kwargs: Any) -> None:
        if not urls:
            raise ValueError("no broker address")
        self.addresses = [URL(u) for u in urls]
        self.address_index = 0
        self._attempts = 0
        super().__init__(self.addresses[0], **kwargs)

    def _next_address(self) -> None:
        self.address_index = (self.address_index + 1) % len(self.addresses)
        # keep a secret refreshed by update_secret: only the host and port change
        current = self.addresses[self.address_index]
        self.url = current.with_password(self.url.password) if self.url.password else current

    async def _RobustConnection__connect_transport(self) -> None:
        if self._attempts and len(self.addresses) > 1:
            self._next_address()
            log.warning("broker_failover", to=f"{self.url.host}:{self.url.port}")
        self._attempts += 1
        await super()._RobustConnection__connect_transport()  # type: ignore[misc]


RECONNECT_INTERVAL_SECONDS = 1.0


async def connect(settings: Settings) -> AbstractRobustConnection:
    """A connection that reconnects by itself once established, to the next of ``settings.broker_urls`` each
    time (FailoverConnection). The first connect tries each address in turn, from the first; one that fails
    (or is cancelled) is closed, so that aio-pika does not keep retrying a half-made connection in the
    background."""
    urls = settings.broker_urls
    last: BaseException | None = None
    for start in range(len(urls)):
        connection = FailoverConnection(
            urls[start:] + urls[:start],
            timeout=settings.publish_timeout_seconds,
            reconnect_interval=RECONNECT_INTERVAL_SECONDS,
        )
        try:
            await connection.connect(timeout=settings.publish_timeout_seconds)
            return connection
        except asyncio.CancelledError:
            await connection.close()
            raise
        except Exception as err:  # refused, timed out: the next node
            await connection.close()
            last = err
            if start + 1 < len(urls):
                log.warning("broker_unreachable", url=_where(urls[start]), error=repr(err))
    assert last is not None
    raise last


def _where(url: str) -> str:
    u = URL(url)
    return f"{u.host}:{u.port}"


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=str).encode()


class Publisher:
    """Publishes persistent messages and returns only once the broker confirmed them (or raises)."""

    def __init__(self, channel: AbstractChannel, timeout: float) -> None:
        self._channel = channel
        self._timeout = timeout
        self._exchanges: dict[str, aio_pika.abc.AbstractExchange] = {}

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, timeout: float) -> Publisher:
        # on_return_raises: an unroutable (returned) message raises instead of passing for confirmed
        return cls(await connection.channel(publisher_confirms=True, on_return_raises=True), timeout)

    async def _exchange(self, name: str) -> aio_pika.abc.AbstractExchange:
        if name not in self._exchanges:
            self._exchanges[name] = await self._channel.get_exchange(name, ensure=False)
        return self._exchanges[name]

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: dict[str, Any] | bytes,
        *,
        message_id: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> None:
        message = aio_pika.Message(
            body if isinstance(body, bytes) else encode(body),
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            headers=headers or {},
        )
        # mandatory: an unroutable message (no queue bound) is an error, not a silent drop.
        await (await self._exchange(exchange)).publish(
            message, routing_key=routing_key, mandatory=True, timeout=self._timeout
        )

    @property
    def is_open(self) -> bool:
        return not self._channel.is_closed


# Ordering keys travel in headers, so that a consumer lines a message up (its contact's lane, its tenant's
# cap) without decoding the body; the body stays the authority when a message has no such headers.
def ordering_headers(contact: str, tenant: str, kind: str | None = None) -> dict[str, str]:
    """The headers a consumer orders by, and the event's kind beside its body so that it routes without decoding
    the JSON (issue 16)."""
    headers = {"x-contact": contact, "x-tenant": tenant}
    if kind is not None:
        headers["x-kind"] = kind
    return headers


def _header(headers: dict[str, Any] | None, name: str) -> str | None:
    found = (headers or {}).get(name)
    if not found:
        return None
    return found.decode() if isinstance(found, bytes) else str(found)


def kind_of(headers: dict[str, Any] | None) -> str | None:
    return _header(headers, "x-kind")


def ordering_of(headers: dict[str, Any] | None) -> tuple[str, str] | None:
    contact, tenant = _header(headers, "x-contact"), _header(headers, "x-tenant")
    if contact is None or tenant is None:
        return None
    return contact, tenant


def inbound_ordering(event: dict[str, Any], message_id: str | None) -> tuple[str, str]:
    """(contact, tenant) of a queued event: one contact's events run in order, each number's under its cap."""
    return str(event.get("wa_id") or event.get("external_id") or message_id), str(
        event.get("phone_number_id")
    )


def outbound_ordering(job: dict[str, Any]) -> tuple[str, str]:
    """(recipient, sending number) of a send job."""
    return str(job.get("to")), str(job.get("phone_number_id"))
