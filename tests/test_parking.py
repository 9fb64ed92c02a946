"""Browsing the parking queue: reading it leaves every message in place, in order, whatever the broker's delivery
limit; one message is found without reading the rest; RabbitMQ 4's default limit is lifted on parking.

Run against the broker at RABBITMQ_URL (RabbitMQ 3.10 on these machines). What only RabbitMQ 4.3+ does — a
nack that counts no delivery — is asserted where the broker is that version, and said to be skipped elsewhere.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from engine.broker import Publisher, Topology
from engine.broker_admin import (
    ManagementApi,
    ParkingLot,
    ensure_parking_unlimited,
    management_url,
    parking_policy,
    server_version,
    vhost_of,
)
from engine.settings import Settings
from tests.helpers import wait_until


@pytest.fixture
async def topology(broker: AbstractRobustConnection) -> AsyncIterator[Topology]:
    """A parking queue of its own (the session's is shared by every test that parks)."""
    topology = Topology(f"park{uuid.uuid4().hex[:8]}", 1, 1, 20)
    channel = await broker.channel()
    await topology.declare(channel)
    yield topology
    await topology.delete(await broker.channel())


async def park(broker: AbstractRobustConnection, topology: Topology, n: int) -> list[str]:
    channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
    publisher = Publisher(channel, 5.0)
    ids = [f"parked-{i:03d}-{uuid.uuid4().hex[:6]}" for i in range(n)]
    for i, message_id in enumerate(ids):
        await publisher.publish(
            topology.dead_letter_exchange,
            "",
            {"kind": "message", "n": i},
            message_id=message_id,
            headers={
                "x-error": "Park: test",
                "x-original-queue": topology.inbound_queue(0),
                "x-original-exchange": topology.inbound_exchange,
                "x-original-routing-key": "0",
                "x-attempts": 3,
            },
        )
    await channel.close()
    lot = ParkingLot(broker, topology, 5.0)  # dead-lettered through the exchange: counted a moment later
    await wait_until(lambda: _counted(lot, n))
    return ids


async def _counted(lot: ParkingLot, n: int) -> bool:
    return await lot.count() >= n


def delivery_counts(parked: list[Any]) -> list[Any]:
    return [p.headers.get("x-delivery-count") for p in parked]


async def test_reading_parking_many_times_loses_nothing_and_keeps_the_order(
    broker: AbstractRobustConnection, topology: Topology
) -> None:
    ids = await park(broker, topology, 5)
    lot = ParkingLot(broker, topology, 5.0)
    first = await lot.peek()
    for _ in range(25):  # more than RabbitMQ 4's default delivery limit of 20
        # what a read gave back is counted again a moment later (the quorum queue applies the returns after
        # the channel closed): a reader right after another may see fewer for that moment
        await wait_until(lambda: _counted(lot, 5))
        again = await lot.peek()
    assert [p.id for p in first] == [p.id for p in again] == ids
    assert {p.attempts for p in again} == {3}  # from the worker's record, not from how often it was read
    if server_version(broker) >= (4, 3):
        assert delivery_counts(again) == delivery_counts(first)  # a nack returns without counting
    assert await lot.count() == 5


async def test_one_message_is_found_without_reading_the_rest(
    broker: AbstractRobustConnection, topology: Topology
) -> None:
    ids = await park(broker, topology, 300)
    lot = ParkingLot(broker, topology, 5.0)
    found = await lot.find(ids[10])
    await wait_until(lambda: _counted(lot, 300))
    assert found is not None and found.id == ids[10] and found.body == b'{"kind":"message","n":10}'
    assert lot.read == 11  # the ten before it, and it
    assert await lot.find("no-such-id") is None
    await wait_until(lambda: _counted(lot, 300))
    after = [p.id for p in await lot.peek(300)]
    # all still there, each once; RabbitMQ puts what was read back at the end of the queue, so the order changes
    # (docs/operations.md, Parked messages)
    assert sorted(after) == sorted(ids)


async def test_replaying_one_message_leaves_the_others_parked(
    broker: AbstractRobustConnection, topology: Topology
) -> None:
    ids = await park(broker, topology, 6)
    lot = ParkingLot(broker, topology, 5.0)
    replayed, failed = await lot.replay({ids[2]})
    assert ([p.id for p in replayed], failed) == ([ids[2]], [])
    await wait_until(lambda: _counted(lot, 5))
    assert sorted(p.id for p in await lot.peek()) == sorted(ids[:2] + ids[3:])  # the others stay, once each


def test_the_parking_policy_lifts_the_delivery_limit_on_that_queue_only() -> None:
    name, pattern, definition = parking_policy(Topology("chatnation", 8, 8, 20))
    assert definition == {"delivery-limit": -1} and name == "chatnation.parking-unlimited"
    import re

    assert re.fullmatch(pattern[1:-1], "chatnation.parking")
    assert not re.search(pattern, "chatnationxparking") and not re.search(pattern, "chatnation.parking2")


async def test_before_rabbitmq_4_no_policy_is_needed(
    broker: AbstractRobustConnection, settings: Settings
) -> None:
    if server_version(broker) >= (4, 0):
        pytest.skip("RabbitMQ 4 here: the policy test below covers it")
    # 3.x has no default limit, and reads -1 as "drop on the first return": nothing must be set
    assert await ensure_parking_unlimited(settings, broker, Topology("none", 1, 1, 20))


async def test_the_policy_call_is_accepted_by_the_management_api(settings: Settings) -> None:
    api = ManagementApi(management_url(settings), vhost_of(settings), timeout=3)
    name, _, _ = parking_policy(Topology(f"nothing{uuid.uuid4().hex[:8]}", 1, 1, 20))
    try:
        try:
            # a pattern no queue has: on RabbitMQ 3 the definition itself would drop returned messages
            await api.put_policy(name, "^no-such-queue-anywhere$", {"delivery-limit": 1000}, "queues")
        except httpx.ConnectError:
            pytest.skip("the RabbitMQ management API does not answer here")
        got = await api._client.get(f"/api/policies/{api._vhost}/{name}")
        assert got.status_code == 200 and got.json()["definition"] == {"delivery-limit": 1000}
    finally:
        await api._client.delete(f"/api/policies/{api._vhost}/{name}")
        await api.aclose()
