"""Browsing the parking queue: reading it leaves every message in place, in order, whatever the broker's delivery
limit; one message is found without reading the rest; RabbitMQ 4's default limit is lifted on parking.

Run against the broker at RABBITMQ_URL: RabbitMQ 3.10 on these machines, and by `make compat` against RabbitMQ
4.0 (compose.yaml's) and 4.3 too (scripts/rabbitmq_compat.sh). What only some versions do — 4.0 to 4.2 counting
every read, 4.3 a nack that counts no delivery — is asserted where the broker is that version.
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
    PARKING_POLICY_PRIORITY,
    ManagementApi,
    ParkingLot,
    ParkingReadsUnsafe,
    ensure_parking_unlimited,
    management_url,
    parking_policy,
    parking_policy_problem,
    reads_count_deliveries,
    server_version,
    vhost_of,
)
from engine.settings import Settings
from tests.helpers import wait_until


@pytest.fixture
async def management(settings: Settings) -> AsyncIterator[ManagementApi]:
    api = ManagementApi(management_url(settings), vhost_of(settings), timeout=3)
    yield api
    await api.aclose()


@pytest.fixture
async def topology(
    broker: AbstractRobustConnection, settings: Settings, management: ManagementApi
) -> AsyncIterator[Topology]:
    """A parking queue of its own (the session's is shared by every test that parks), its delivery limit
    lifted as a worker lifts it when it starts (engine/runtime.py)."""
    topology = Topology(f"park{uuid.uuid4().hex[:8]}", 1, 1, 20)
    channel = await broker.channel()
    await topology.declare(channel)
    assert await ensure_parking_unlimited(settings, broker, topology)
    yield topology
    await topology.delete(await broker.channel())
    if server_version(broker) >= (4, 0):
        await management.delete_policy(parking_policy(topology)[0])


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
    await wait_until(lambda: _counted(lot, 5))  # the last read's returns, counted a moment later as above
    assert await lot.count() == 5  # and not more: none doubled


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
    # 3.x has no default limit, and refuses -1: nothing must be set
    assert await ensure_parking_unlimited(settings, broker, Topology("none", 1, 1, 20))


async def test_the_policy_call_is_accepted_by_the_management_api(management: ManagementApi) -> None:
    name, _, _ = parking_policy(Topology(f"nothing{uuid.uuid4().hex[:8]}", 1, 1, 20))
    try:
        try:
            # a pattern no queue has: on RabbitMQ 3 the definition itself would drop returned messages
            await management.put_policy(name, "^no-such-queue-anywhere$", {"delivery-limit": 1000}, "queues")
        except httpx.ConnectError:
            pytest.skip("the RabbitMQ management API does not answer here")
        got = await management._client.get(f"/api/policies/{management._vhost}/{name}")
        assert got.status_code == 200 and got.json()["definition"] == {"delivery-limit": 1000}
    finally:
        await management.delete_policy(name)


def _policy(
    name: str, pattern: str, priority: int, apply_to: str = "all", definition: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "name": name,
        "pattern": pattern,
        "priority": priority,
        "apply-to": apply_to,
        "definition": definition or {},
    }


def test_the_parking_policy_is_in_force_only_when_no_other_policy_outranks_it() -> None:
    topology = Topology("cn", 1, 1, 20)
    name, pattern, definition = parking_policy(topology)
    ours = _policy(name, pattern, PARKING_POLICY_PRIORITY, "queues", definition)
    assert parking_policy_problem([], [], topology) == "the policy cn.parking-unlimited is not set"
    catch_all = _policy("ha", ".*", 1, definition={"max-length": 10})
    assert parking_policy_problem([ours, catch_all], [], topology) is None  # outranked by ours
    rival = _policy("limits", "^cn\\.", 20, definition={"max-length": 10})
    assert parking_policy_problem([ours, rival], [], topology) == (
        "the policy limits (priority 20) also matches cn.parking and wins over cn.parking-unlimited (priority 10)"
    )
    tie = _policy(
        "same", "parking", PARKING_POLICY_PRIORITY
    )  # which of two equals RabbitMQ takes is not said
    assert "the policy same" in (parking_policy_problem([ours, tie], [], topology) or "")
    elsewhere = [_policy("streams", ".*", 99, "streams"), _policy("other", "^cn\\.inbound", 99)]
    assert parking_policy_problem([ours, *elsewhere], [], topology) is None
    operator = _policy("cap", ".*", 0, "queues", {"delivery-limit": 50})
    assert parking_policy_problem([ours], [operator], topology) == (
        "the operator policy cap sets a delivery limit on cn.parking"
    )


async def test_the_check_reads_the_policies_as_the_management_api_gives_them(
    management: ManagementApi,
) -> None:
    """The shapes parking_policy_problem reads (name, pattern, apply-to, priority), from the real API. No queue of
    that name exists: the definitions touch nothing (and RabbitMQ 3 refuses a delivery limit of -1)."""
    topology = Topology(f"nothing{uuid.uuid4().hex[:8]}", 1, 1, 20)
    name, pattern, _ = parking_policy(topology)
    rival = f"{topology.prefix}.rival"
    try:
        try:
            limit = {"delivery-limit": 1000000}
            await management.put_policy(name, pattern, limit, "queues", PARKING_POLICY_PRIORITY)
        except httpx.ConnectError:
            pytest.skip("the RabbitMQ management API does not answer here")
        assert parking_policy_problem(await management.policies(), [], topology) is None
        await management.put_policy(rival, f"^{topology.prefix}\\.", {"max-length": 1000000}, "all", 50)
        problem = parking_policy_problem(await management.policies(), [], topology)
        assert problem is not None and problem.startswith(f"the policy {rival} (priority 50)")
    finally:
        await management.delete_policy(rival)
        await management.delete_policy(name)


async def test_parking_is_not_read_where_reads_would_wear_it_out(
    broker: AbstractRobustConnection, topology: Topology, settings: Settings, management: ManagementApi
) -> None:
    """Another policy outranking the parking one: on RabbitMQ 4.0 to 4.2 a lot that knows the settings reads
    nothing and says why; elsewhere reading is harmless and it reads."""
    ids = await park(broker, topology, 3)
    rival = f"{topology.prefix}.rival"
    version = server_version(broker)
    try:
        if version >= (4, 0):
            await management.put_policy(rival, f"^{topology.prefix}\\.", {"max-length": 1000000}, "all", 50)
        lot = ParkingLot(broker, topology, 5.0, settings=settings)
        if reads_count_deliveries(version):
            with pytest.raises(ParkingReadsUnsafe, match=f"the policy {rival} .priority 50. also matches"):
                await lot.peek()
            assert lot.read == 0
        else:
            assert [p.id for p in await lot.peek()] == ids
    finally:
        await management.delete_policy(rival)
    await wait_until(lambda: _counted(ParkingLot(broker, topology, 5.0), 3))
