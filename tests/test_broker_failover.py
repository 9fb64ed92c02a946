"""Several broker addresses (issue 22): RABBITMQ_URL as a comma-separated list or RABBITMQ_URLS, the first node
that answers taken, and a lost connection moved to the next node. Fast: two loopback forwarders to the shared
broker stand for two nodes (the private 2- and 3-node clusters are in tests/faults/test_cluster.py)."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import pytest
from pydantic import ValidationError

from engine.broker import FailoverConnection, connect
from engine.settings import Settings
from tests.test_gateway import TcpProxy, free_port

A = "amqp://u:p@10.0.0.1:5672/"
B = "amqp://u:p@10.0.0.2:5672/"
C = "amqp://u:p@10.0.0.3:5673/"


@pytest.fixture(autouse=True)
def _no_broker_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The session's settings first (they come from the environment), then no broker variables."""
    for name in ("RABBITMQ_URL", "RABBITMQ_URLS", "WORKER_HOST"):
        monkeypatch.delenv(name, raising=False)


def test_one_url_is_a_list_of_one() -> None:
    s = Settings(rabbitmq_url=A)
    assert s.broker_urls == [A]
    assert Settings().broker_urls == ["amqp://guest:guest@127.0.0.1:5672/"]


def test_rabbitmq_url_with_commas_is_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_URL", f"{A}, {B},{C}")
    s = Settings()
    assert str(s.rabbitmq_url) == A  # the main URL (management API, ops commands) is the first
    assert s.broker_urls == [A, B, C]


def test_rabbitmq_urls_alone_and_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RABBITMQ_URLS", f"{B},{C}")
    assert Settings().broker_urls == [B, C]
    assert str(Settings().rabbitmq_url) == B
    monkeypatch.setenv("RABBITMQ_URL", A)
    assert Settings().broker_urls == [A, B, C]
    monkeypatch.setenv("RABBITMQ_URL", f"{A},{B}")  # listed twice: once
    assert Settings().broker_urls == [A, B, C]


def test_a_bad_address_in_the_list_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(rabbitmq_url=f"{A},http://10.0.0.2/")


def test_worker_host_defaults_to_the_hostname() -> None:
    import socket

    assert Settings().worker_host == socket.gethostname()
    assert Settings(worker_host="host-b").worker_host == "host-b"


def test_aio_pika_still_has_the_per_attempt_hook() -> None:
    # FailoverConnection overrides it; if an upgrade renames it, every reconnection would go to one node.
    assert hasattr(aio_pika.RobustConnection, "_RobustConnection__connect_transport")


def _url(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/"


async def test_connect_skips_a_node_that_does_not_answer(settings: Settings) -> None:
    target = (settings.rabbitmq_url.host or "127.0.0.1", settings.rabbitmq_url.port or 5672)
    live = TcpProxy(target)
    await live.start()
    try:
        s = settings.model_copy(update={"rabbitmq_url": _url(free_port()), "rabbitmq_urls": _url(live.port)})
        assert len(s.broker_urls) == 2
        connection = await asyncio.wait_for(connect(s), 30)
        async with connection:
            assert isinstance(connection, FailoverConnection)
            assert connection.url.port == live.port
    finally:
        await live.stop()


async def test_a_lost_connection_moves_to_the_next_node(settings: Settings) -> None:
    """Node A goes away under a consumer and a confirmed publisher: both carry on through node B."""
    target = (settings.rabbitmq_url.host or "127.0.0.1", settings.rabbitmq_url.port or 5672)
    node_a, node_b = TcpProxy(target), TcpProxy(target)
    await node_a.start()
    await node_b.start()
    s = settings.model_copy(update={"rabbitmq_url": _url(node_a.port), "rabbitmq_urls": _url(node_b.port)})
    connection = await asyncio.wait_for(connect(s), 30)
    assert isinstance(connection, FailoverConnection)
    try:
        assert connection.url.port == node_a.port
        channel = await connection.channel(publisher_confirms=True)
        # exclusive: gone with the test's connection; the robust channel declares it again on node B
        queue = await channel.declare_queue(f"failover-{uuid.uuid4().hex[:8]}", exclusive=True)
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                await got.put(message.body)

        await queue.consume(on_message)
        await channel.default_exchange.publish(aio_pika.Message(b"before"), routing_key=queue.name)
        assert await asyncio.wait_for(got.get(), 10) == b"before"

        await node_a.stop()  # the connection is cut; node A refuses from now on
        async with asyncio.timeout(20):
            while not (connection.connected.is_set() and connection.url.port == node_b.port):
                await asyncio.sleep(0.1)
            while True:  # the channel and its consumer are restored just after the connection
                try:
                    await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=queue.name)
                    break
                except (aio_pika.exceptions.AMQPError, RuntimeError, ConnectionError):
                    await asyncio.sleep(0.2)
        assert await asyncio.wait_for(got.get(), 10) == b"after"
    finally:
        await connection.close()
        await node_b.stop()
