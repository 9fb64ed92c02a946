"""The inbound layout (engine/layout.py): its records, the queue names and routing keys of a generation, and a
follower told of a new record by the broker at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.broker import Topology, connect, shard_of
from engine.layout import Layout, LayoutFollower, LayoutUnknown, append, layout_queue


def test_a_reshard_is_two_records_publish_first_then_consume() -> None:
    start = Layout.initial(8)
    switching = start.next(12)
    assert switching == Layout(1, 12, 0, 8) and switching.draining
    assert switching.completed() == Layout(1, 12, 1, 12) and not switching.completed().draining
    assert Layout.decode(switching.encode()) == switching


def test_generation_zero_keeps_the_names_from_before_resharding() -> None:
    topology = Topology("p", 8, 8, 20)
    assert topology.inbound_queue(3) == "p.inbound.003" and topology.inbound_key(3) == "3"
    later = Layout(2, 12, 1, 8)
    published, consumed = later.publishing(topology), later.consuming(topology)
    assert published.inbound_queue(3) == "p.inbound.g2.003" and published.inbound_key(3) == "g2.3"
    assert consumed.inbound_queues()[-1] == "p.inbound.g1.007"
    assert published.inbound_route("254700000001") == f"g2.{shard_of('254700000001', 12)}"
    assert published.inbound_exchange == topology.inbound_exchange  # one exchange for every generation


async def test_a_follower_reads_the_last_record_and_is_told_of_the_next(settings, broker) -> None:  # type: ignore[no-untyped-def]
    own = settings.model_copy(update={"broker_prefix": f"ly{uuid.uuid4().hex[:8]}", "inbound_shards": 2})
    topology = Topology.from_settings(own)
    connection = await connect(own)
    try:
        first = LayoutFollower(topology, 2)
        assert await first.start(connection, timeout=5) == Layout.initial(2)  # a new deployment's record
        await append(connection, topology, Layout(1, 3, 0, 2))
        await asyncio.wait_for(_until(lambda: first.current == Layout(1, 3, 0, 2)), 5)
        assert (await first.publishing(1)).inbound_queue(0) == f"{topology.prefix}.inbound.g1.000"
        later = LayoutFollower(topology, 2)  # started after: the last record, not INBOUND_SHARDS
        assert await later.start(connection, timeout=5) == Layout(1, 3, 0, 2)
        await later.close()
        with pytest.raises(LayoutUnknown):  # its channel is gone: it does not route by what it last read
            await later.publishing(0.3)
        await first.close()
    finally:
        channel = await connection.channel()
        for generation, shards in ((0, 2), (1, 3)):
            for name in topology.at_inbound(generation, shards).inbound_queues():
                await channel.queue_delete(name)
        await channel.queue_delete(layout_queue(topology))
        await connection.close()


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.02)
