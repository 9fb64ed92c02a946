"""The inbound shard layout a deployment runs under, kept in the broker, so that the gateway (which never
touches the database) and the workers follow one record; changed without stopping intake by
``chatnation reshard --inbound N`` (engine/reshard.py).

A layout names a generation of inbound queues on the one ``p.inbound`` exchange: generation 0 is
``p.inbound.NNN`` bound by routing key ``N`` (the queues as they were before resharding existed, sized by
INBOUND_SHARDS); generation g > 0 is ``p.inbound.gG.NNN`` bound by ``gG.N``. The record says which generation
publishers route into and which one the inbound workers consume. The two differ only during a reshard: new
messages already go to the new generation while the workers finish the old one, and no worker takes a new
queue before the old ones hold nothing (engine/reshard.py), so one contact's messages never run out of order.

The records are appended to a stream queue ``p.layout`` (replicated over a cluster's nodes like the quorum
queues, and read without being consumed). Each publisher and inbound worker subscribes from the last record
and is told of a new one at once. A process publishes only once it has read the record over the channel it
holds now: after a reconnect it waits for the record again, so it never routes by a layout it could have
missed.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq.abc
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection

from engine.broker import Topology
from engine.logging import get_logger

log = get_logger(__name__)


class LayoutUnknown(Exception):
    """The layout record was not read in time (broker away): publish nothing rather than guess."""


@dataclass(frozen=True)
class Layout:
    generation: int  # publishers route into this generation ...
    shards: int  # ... of this many shards
    consume_generation: int  # inbound workers consume this one (the previous generation while it drains)
    consume_shards: int

    @classmethod
    def initial(cls, shards: int) -> Layout:
        return cls(0, shards, 0, shards)

    @property
    def draining(self) -> bool:
        return self.consume_generation != self.generation

    def next(self, shards: int) -> Layout:
        """The hand-over's first record: publish into a new generation, go on consuming this one."""
        return Layout(self.generation + 1, shards, self.generation, self.shards)

    def completed(self) -> Layout:
        """The hand-over's last record: consume the generation that is published into."""
        return Layout(self.generation, self.shards, self.generation, self.shards)

    def publishing(self, topology: Topology) -> Topology:
        return topology.at_inbound(self.generation, self.shards)

    def consuming(self, topology: Topology) -> Topology:
        return topology.at_inbound(self.consume_generation, self.consume_shards)

    def encode(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> Layout:
        d = json.loads(body)
        return cls(
            int(d["generation"]), int(d["shards"]), int(d["consume_generation"]), int(d["consume_shards"])
        )


def layout_queue(topology: Topology) -> str:
    return f"{topology.prefix}.layout"


async def append(connection: AbstractRobustConnection, topology: Topology, layout: Layout) -> None:
    """One record, confirmed by the broker."""
    channel = await connection.channel(publisher_confirms=True)
    try:
        await channel.default_exchange.publish(
            aio_pika.Message(layout.encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key=layout_queue(topology),
        )
    finally:
        await channel.close()


async def ensure_stream(connection: AbstractRobustConnection, topology: Topology, shards: int) -> bool:
    """The layout stream, created with its first record (generation 0 of ``shards``, the inbound queues
    declared) when it does not exist yet. True when this call created it."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(layout_queue(topology), passive=True)
        return False
    except aio_pika.exceptions.ChannelClosed:  # not found: a new deployment, or one from before resharding
        pass
    finally:
        if not channel.is_closed:
            await channel.close()
    channel = await connection.channel()
    try:
        await channel.declare_queue(
            layout_queue(topology), durable=True, arguments={"x-queue-type": "stream"}
        )
        await topology.at_inbound(0, shards).declare_inbound(channel)
    finally:
        await channel.close()
    await append(connection, topology, Layout.initial(shards))
    log.info("inbound layout created", generation=0, shards=shards)
    return True


class LayoutFollower:
    """The current layout of a deployment as the broker's stream tells it, kept up to date."""

    def __init__(self, topology: Topology, initial_shards: int) -> None:
        self.topology = topology
        self.initial_shards = initial_shards
        self.current = Layout.initial(initial_shards)
        self._read_on: aiormq.abc.AbstractChannel | None = None  # the channel the last record came by
        self._changed = asyncio.Event()
        self._channel: AbstractChannel | None = None

    async def start(self, connection: AbstractRobustConnection, timeout: float = 10.0) -> Layout:
        """Subscribe (a robust channel: subscribed again after a reconnect), wait for the first record and
        declare the inbound queues it names (idempotent; after a reshard the old ones are not re-made)."""
        await ensure_stream(connection, self.topology, self.initial_shards)
        self._channel = await connection.channel()
        await self._channel.set_qos(prefetch_count=64)  # a stream consumer needs a prefetch
        queue = await self._channel.get_queue(layout_queue(self.topology))
        await queue.consume(self._on_record, arguments={"x-stream-offset": "last"})
        await self.wait_read(timeout)
        channel = await connection.channel()
        try:
            await self.current.publishing(self.topology).declare_inbound(channel)
            await self.current.consuming(self.topology).declare_inbound(channel)
        finally:
            await channel.close()
        return self.current

    async def close(self) -> None:
        if self._channel is not None and not self._channel.is_closed:
            await self._channel.close()

    async def _on_record(self, message: AbstractIncomingMessage) -> None:
        try:
            record = Layout.decode(message.body)
        except (ValueError, KeyError, TypeError):
            log.error("unreadable layout record ignored", body=message.body[:200])
            record = None
        await message.ack()
        if record is not None and (record.generation, record.consume_generation) >= (
            self.current.generation,
            self.current.consume_generation,
        ):
            if record != self.current:
                log.info("inbound layout", **record.__dict__)
            self.current = record
        self._read_on = message.channel
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def read(self) -> bool:
        """The record was read over the channel held now (a reconnect makes a new one)."""
        return self._read_on is not None and not self._read_on.is_closed

    async def wait_read(self, timeout: float) -> Layout:
        try:
            async with asyncio.timeout(timeout):
                while not self.read:
                    await self.wait_change()
        except TimeoutError:
            raise LayoutUnknown(f"no inbound layout read from {layout_queue(self.topology)}") from None
        return self.current

    async def wait_change(self, timeout: float = 0.5) -> None:
        """Until the next record arrives (or ``timeout``: the channel may have been renewed meanwhile)."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass

    async def publishing(self, timeout: float) -> Topology:
        """The topology to publish inbound messages by, once the layout is known on this connection."""
        return (await self.wait_read(timeout)).publishing(self.topology)

    def snapshot(self) -> dict[str, Any]:
        return {**self.current.__dict__, "draining": self.current.draining}
