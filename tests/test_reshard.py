"""`chatnation reshard --inbound N` under a steady stream: intake never stops (every webhook is answered 200),
each contact's messages are stored once each and processed in the order they were sent, and afterwards the
gateway publishes into and two inbound processes consume only the new generation's queues.

A deployment of its own (BROKER_PREFIX), so that the session's layout stays as it is for the other tests.
Processing order is read from ``messages.processed_seq`` (see tests/test_scaling.py)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest

from engine.broker import Topology, connect
from engine.layout import Layout, LayoutFollower
from engine.local_stack import LocalStack
from engine.reshard import reshard
from simulators.whatsapp import SimulatedUser
from tests.helpers import wait_until
from tests.test_scaling import assert_each_in_order

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def deployment(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    own = settings.model_copy(
        update={
            "broker_prefix": f"rs{uuid.uuid4().hex[:8]}",
            "inbound_shards": 3,
            "publish_timeout_seconds": 2.0,
        }
    )
    stack = await LocalStack(own, roles=("inbound", "relay", "sender")).start()
    await stack.start_worker_in_process()  # a second inbound process: the shards are shared, then handed over
    yield stack
    await stack.stop()
    topology = Topology.from_settings(own)
    connection = await connect(own)
    channel = await connection.channel()
    for generation, shards in ((0, 3), (1, 5)):
        for name in topology.at_inbound(generation, shards).inbound_queues():
            await channel.queue_delete(name)
    await topology.delete(channel)
    await connection.close()


async def test_reshard_under_a_steady_stream_keeps_each_contacts_order_and_loses_nothing(  # type: ignore[no-untyped-def]
    deployment: LocalStack, make_org, app_pool, owner_pool
) -> None:
    stack = deployment
    assert stack.settings is not None
    org, new = await make_org("Reshard", tokens=10_000)
    phones = [f"2547{uuid.uuid4().int % 10**8:08d}" for _ in range(12)]
    done = asyncio.Event()
    refused: list[int] = []

    async def talk(user: SimulatedUser) -> int:
        """m001, m002, ... each answered before the next, until the reshard is over and 10 more."""
        sent, after = 0, 10
        while after:
            sent += 1
            status = (await user.say(f"m{sent:03d}")).response.status_code
            if status != 200:
                refused.append(status)
            await asyncio.sleep(0.05)
            after -= done.is_set()
        return sent

    async def reshard_meanwhile():  # type: ignore[no-untyped-def]
        await asyncio.sleep(1.5)
        try:
            return await reshard(stack.settings, 5)
        finally:
            done.set()

    result = await asyncio.gather(
        reshard_meanwhile(), *(talk(stack.user(new.phone_number_id, p)) for p in phones)
    )
    report, counts = result[0], dict(zip(phones, result[1:], strict=True))
    assert report is not None and report.new == (1, 5) and report.old == (0, 3)
    assert refused == [], "intake stopped during the reshard"
    assert sorted(report.deleted) == Topology.from_settings(stack.settings).inbound_queues()

    await assert_each_in_order(app_pool, org, counts)
    assert min(counts.values()) > 20, f"the stream was not steady across the reshard: {counts}"

    # both inbound processes are on the new generation, all five shards taken, each by one of them. While the
    # two rebalance, one may briefly hold every shard (it saw only itself): harmless, as each shard queue has a
    # single active consumer, so wait for the split to settle rather than read one heartbeat of it.
    async def on_new():  # type: ignore[no-untyped-def]
        rows = await owner_pool.fetch(
            """SELECT shard_count, shards FROM worker_heartbeats WHERE role = 'inbound' AND deployment = $1
               AND heartbeat_at > now() - interval '6 seconds'""",
            stack.settings.broker_prefix,
        )
        if len(rows) != 2 or {r["shard_count"] for r in rows} != {5}:
            return None
        split = all(r["shards"] for r in rows)
        return rows if split and sorted(s for r in rows for s in r["shards"]) == [0, 1, 2, 3, 4] else None

    await wait_until(on_new, timeout=30)

    # a process started now reads the layout from the broker, whatever its INBOUND_SHARDS says
    connection = await connect(stack.settings)
    try:
        follower = LayoutFollower(Topology.from_settings(stack.settings), 3)
        assert await follower.start(connection) == Layout(1, 5, 1, 5)
        await follower.close()
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelClosed):  # the old generation's queues are gone
            await channel.declare_queue(Topology.from_settings(stack.settings).inbound_queue(0), passive=True)
    finally:
        await connection.close()
    assert await reshard(stack.settings, 5) is None  # already there: nothing to do
