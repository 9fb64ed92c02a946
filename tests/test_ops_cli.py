"""The operations commands (`chatnation queues | parked | workers`) and the metrics endpoints, against the real
broker, database and worker processes. Commands run as subprocesses, as an operator would run them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import uuid
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.broker import Publisher, Topology
from engine.broker_admin import ManagementApi, ParkingLot, describe_parked, management_url, vhost_of
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.metrics import exposition
from engine.settings import PROJECT_ROOT
from tests.helpers import phone, wait_until

CLOSED_MANAGEMENT = "http://guest:guest@127.0.0.1:1/"  # nothing listens: the AMQP-only figures


async def cli(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.cli",
        *args,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode() if stdin else None)
    assert proc.returncode is not None
    if proc.returncode not in (0, 1, 3):
        raise AssertionError(
            f"chatnation {' '.join(args)} failed ({proc.returncode}): {err.decode()[-2000:]}"
        )
    return proc.returncode, out.decode()


async def cli_json(*args: str, env: dict[str, str] | None = None) -> Any:
    code, out = await cli(*args, "--json", env=env)
    assert code == 0, out
    return json.loads(out)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def samples(exposition: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    ]


def value_of(exposition: str, name: str, **labels: str) -> float | None:
    """The sum of the samples called ``name`` whose labels include ``labels`` (None: no such sample)."""
    found = [v for n, lab, v in samples(exposition) if n == name and labels.items() <= lab.items()]
    return sum(found) if found else None


async def management_answers(settings) -> bool:  # type: ignore[no-untyped-def]
    api = ManagementApi(management_url(settings), vhost_of(settings), timeout=2)
    try:
        await api.queues([])
        return True
    except httpx.HTTPError:
        return False
    finally:
        await api.aclose()


async def publish(
    broker,
    exchange: str,
    routing_key: str,
    bodies: list[dict[str, Any]],  # type: ignore[no-untyped-def]
    headers: dict[str, Any] | None = None,
) -> None:
    channel = await broker.channel(publisher_confirms=True, on_return_raises=True)
    publisher = Publisher(channel, 5.0)
    for body in bodies:
        await publisher.publish(
            exchange, routing_key, body, message_id=body.get("external_id"), headers=headers
        )
    await channel.close()


@pytest.fixture
def topology(settings) -> Topology:  # type: ignore[no-untyped-def]
    return Topology.from_settings(settings)


# ------------------------------------------------------------------------------------------------ queues


@pytest.mark.parametrize("figures", ["management", "amqp"])
async def test_queues_reports_the_depth_of_a_shard_queue(broker, settings, topology, figures) -> None:  # type: ignore[no-untyped-def]
    if figures == "management" and not await management_answers(settings):
        pytest.skip(
            "the RabbitMQ management API does not answer (scripts/ensure_rabbitmq.sh enables it as root)"
        )
    env = {} if figures == "management" else {"RABBITMQ_MANAGEMENT_URL": CLOSED_MANAGEMENT}
    shard, n = 5, 7
    queue_name = topology.inbound_queue(shard)
    await publish(
        broker,
        topology.inbound_exchange,
        str(shard),
        [{"kind": "other", "external_id": f"depth-{uuid.uuid4().hex}"} for _ in range(n)],
    )
    try:

        async def settled():  # type: ignore[no-untyped-def]
            # the management API's consumer counts lag a few seconds behind an earlier test's workers leaving
            found = {r["queue"]: r for r in await cli_json("queues", env=env)}
            return found if found[queue_name]["consumers"] == 0 else None

        rows = await wait_until(settled, timeout=30)
        assert list(rows) == topology.all_queues()
        row = rows[queue_name]
        assert (row["ready"], row["consumers"], row["kind"], row["source"]) == (n, 0, "inbound", figures)
        if figures == "amqp":
            assert row["unacked"] is None and row["publish_rate"] is None
        assert (await cli("queues", "--max-ready", str(n - 1), env=env))[0] == 3
        assert (await cli("queues", "--max-ready", str(n), env=env))[0] == 0
    finally:
        channel = await broker.channel()
        await (await channel.get_queue(queue_name, ensure=False)).purge()
        await channel.close()


# ------------------------------------------------------------------------------------------------ parked


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def stored_inbound(app_pool, org) -> int:  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM messages WHERE direction = 'inbound'"))


async def test_a_parked_message_is_processed_once_when_replayed_after_the_fix(  # type: ignore[no-untyped-def]
    stack: LocalStack, broker, settings, topology, make_org, app_pool
) -> None:
    pn, wa_id = f"pn{uuid.uuid4().hex[:10]}", phone()
    posted = await stack.user(pn, wa_id).say(
        "hello"
    )  # no organisation has this number yet: a permanent error
    assert posted.response.status_code == 200
    lot = ParkingLot(broker, topology, 5.0)

    async def parked_now():  # type: ignore[no-untyped-def]
        return [p for p in await lot.peek() if p.id == posted.message_id]

    await wait_until(parked_now)
    rows = [r for r in await cli_json("parked", "list") if r["id"] == posted.message_id]
    assert len(rows) == 1
    assert rows[0]["reason"] == "parked" and "unknown phone_number_id" in rows[0]["error"]
    assert rows[0]["original_queue"] == topology.inbound_queue(int(topology.inbound_route(wa_id)))
    assert (rows[0]["exchange"], rows[0]["attempts"]) == (topology.inbound_exchange, 1)

    org, _ = await make_org("Replay", tokens=100, phone_number_id=pn)  # the fix
    for rt in stack._runtimes:  # the worker remembers the unknown number for 2 s; a fresh worker would not
        rt.orgs.forget()
    replayed = await cli_json("parked", "replay", posted.message_id)
    assert [(r["id"], r["replayed"]) for r in replayed] == [(posted.message_id, True)]

    await stack.whatsapp.wait_for_messages(1, to=wa_id, timeout=15)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert len(stack.whatsapp.messages(to=wa_id)) == 1
    assert await stored_inbound(app_pool, org) == 1
    assert not await parked_now()
    code, _ = await cli("parked", "replay", posted.message_id)  # gone from parking: nothing to replay
    assert code == 1


async def test_a_message_the_broker_dead_lettered_is_shown_and_replayed_to_its_queue(  # type: ignore[no-untyped-def]
    broker, topology
) -> None:
    shard = 6
    body = {"kind": "other", "external_id": f"dead-{uuid.uuid4().hex}"}
    await publish(broker, topology.inbound_exchange, str(shard), [body])
    channel = await broker.channel()
    queue = await channel.get_queue(topology.inbound_queue(shard), ensure=False)
    async with queue.iterator() as messages:  # single-active-consumer quorum queues refuse basic.get
        async for message in messages:
            await message.reject(requeue=False)  # what the broker also does past the delivery limit
            break

    lot = ParkingLot(broker, topology, 5.0)
    await wait_until(lambda: _has(lot, body["external_id"]))
    [shown] = await cli_json("parked", "show", body["external_id"])
    assert (shown["reason"], shown["original_queue"], shown["exchange"], shown["routing_key"]) == (
        "rejected",
        topology.inbound_queue(shard),
        topology.inbound_exchange,
        str(shard),
    )
    assert shown["body"] == body

    assert (await cli("parked", "replay", body["external_id"]))[0] == 0
    async with queue.iterator() as messages:
        async for message in messages:
            assert json.loads(message.body) == body
            assert message.headers.get("x-replayed") == 1 and "x-death" not in message.headers
            await message.ack()
            break
    await channel.close()
    assert not await _has(lot, body["external_id"])


async def _has(lot: ParkingLot, message_id: str) -> bool:
    return any(p.id == message_id for p in await lot.peek())


async def test_purge_asks_first_and_empties_parking(broker, topology) -> None:  # type: ignore[no-untyped-def]
    headers = {
        "x-error": "Park: test",
        "x-original-queue": topology.inbound_queue(0),
        "x-original-exchange": topology.inbound_exchange,
        "x-original-routing-key": "0",
        "x-attempts": 1,
    }
    await publish(
        broker,
        topology.dead_letter_exchange,
        "",
        [{"kind": "other", "external_id": f"purge-{i}-{uuid.uuid4().hex}"} for i in range(3)],
        headers,
    )
    lot = ParkingLot(broker, topology, 5.0)
    await wait_until(lambda: _at_least(lot, 3))
    before = await lot.count()
    code, _ = await cli("parked", "purge", stdin="n\n")
    assert code == 1 and await lot.count() == before  # declined: nothing deleted
    code, out = await cli("parked", "purge", "--yes")
    assert code == 0 and f"purged {before}" in out
    assert await lot.count() == 0


async def _at_least(lot: ParkingLot, n: int) -> bool:
    return await lot.count() >= n


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "x-error": "Park: bad",
                "x-original-queue": "p.inbound.001",
                "x-original-exchange": "p.inbound",
                "x-original-routing-key": "1",
                "x-attempts": 3,
            },
            ("parked", "Park: bad", "p.inbound.001", ("p.inbound", "1"), 3),
        ),
        (
            {
                "x-death": [
                    {
                        "count": 1,
                        "reason": "delivery_limit",
                        "queue": "p.outbound.002",
                        "exchange": "p.outbound",
                        "routing-keys": ["2"],
                    }
                ]
            },
            (
                "delivery_limit",
                "dead-lettered by the broker: delivery_limit",
                "p.outbound.002",
                ("p.outbound", "2"),
                6,
            ),
        ),
        (
            {
                "x-death": [
                    {
                        "count": 1,
                        "reason": "rejected",
                        "queue": "p.payments",
                        "exchange": "",
                        "routing-keys": ["p.payments"],
                    }
                ]
            },
            ("rejected", "dead-lettered by the broker: rejected", "p.payments", ("", "p.payments"), 1),
        ),
    ],
)
def test_describe_parked(headers, expected) -> None:  # type: ignore[no-untyped-def]
    parked = describe_parked("wamid.X", headers, b"{}", delivery_limit=5)
    assert (parked.reason, parked.error, parked.original_queue, parked.target, parked.attempts) == expected
    assert describe_parked(None, headers, b"{}", 5).id.startswith("sha1:")


# ------------------------------------------------------------------------------------- workers and metrics


async def test_workers_and_metrics_of_a_running_worker_and_the_gateway(  # type: ignore[no-untyped-def]
    settings, broker, db_urls, make_org, topology
) -> None:
    stack = await LocalStack(settings).start(in_process_workers=False)
    try:
        port = free_port()
        proc = stack.spawn_worker("all", metrics_port=port)
        worker_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(timeout=5) as http:
            await wait_until(lambda: _ready(http, f"{worker_url}/readyz"), timeout=30)
            org, new = await make_org("Metrics", tokens=5)  # below the default low-balance threshold
            wa_id = phone()
            await stack.user(new.phone_number_id, wa_id).say("hi")
            await stack.whatsapp.wait_for_messages(1, to=wa_id, timeout=20)

            async def listed():  # type: ignore[no-untyped-def]
                rows = await cli_json("workers")
                mine = [r for r in rows if r["pid"] == proc.pid]
                by_role = {r["role"]: r for r in mine}
                # the heartbeat names the shards taken one beat after taking them
                return (
                    by_role
                    if {"inbound", "sender", "relay"} <= set(by_role) and by_role["inbound"]["shards"]
                    else None
                )

            mine = await wait_until(listed)
            assert sorted(mine["inbound"]["shards"]) == list(range(settings.inbound_shards))
            assert mine["inbound"]["host"] == socket.gethostname() and mine["inbound"]["live"] is True

            async def worker_metrics():  # type: ignore[no-untyped-def]
                text = (await http.get(f"{worker_url}/metrics")).text
                sampled = value_of(text, "chatnation_queue_consumers", queue=topology.inbound_queue(0)) == 1
                return (
                    text
                    if sampled and (value_of(text, "chatnation_wallet_below_threshold") or 0) >= 1
                    else None
                )

            text = await wait_until(worker_metrics, timeout=20)
            gateway_text = exposition()[0].decode()  # the in-process gateway's registry
    finally:
        await stack.stop()
    assert (value_of(text, "chatnation_worker_events_total", kind="message", outcome="processed") or 0) >= 1
    assert (value_of(text, "chatnation_worker_processing_seconds_count", kind="message") or 0) >= 1
    assert (value_of(text, "chatnation_sender_results_total") or 0) >= 1
    # a reply goes out by the inbound worker that wrote it (issue 16); the relay's counter is exported beside it
    assert (value_of(text, "chatnation_replies_published_total") or 0) >= 1
    assert value_of(text, "chatnation_relay_published_total") is not None
    assert (
        value_of(text, "chatnation_queue_messages", queue=topology.inbound_queue(0), state="ready")
        is not None
    )
    assert (
        value_of(gateway_text, "chatnation_gateway_requests_total", route="webhook", outcome="accepted") or 0
    ) >= 1
    assert (value_of(gateway_text, "chatnation_gateway_publish_seconds_count") or 0) >= 1


async def _ready(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False
