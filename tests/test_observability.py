"""What operators see: log lines on the per-event path name the organisation, the message, the event kind, the
role and the (masked) contact; a message parked for a permanent error is logged and counted; every debit is
counted; the queue figures come from one sampler whichever roles run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aio_pika
import pytest
import structlog
from prometheus_client import REGISTRY

from engine.local_stack import LocalStack
from engine.logging import configure_logging, masked
from engine.queue_sampler import SamplerLease
from engine.runtime import Runtime
from engine.settings import Settings
from tests.helpers import phone, wait_until


@contextmanager
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event of this process, with the context bound where it was logged."""
    entries: list[dict[str, Any]] = []

    def keep(_: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        entries.append({**event, "level": method})
        raise structlog.DropEvent

    processors = structlog.get_config()["processors"]
    before = list(processors)
    processors[:] = [structlog.contextvars.merge_contextvars, keep]  # in place: cached loggers see it too
    try:
        yield entries
    finally:
        processors[:] = before


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def stack(settings: Settings, broker: object, db_urls: object) -> Any:
    configure_logging(settings)
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


def test_contacts_are_masked_in_logs() -> None:
    assert masked("254712345678") == "2547*****678"
    assert masked("12345") == "*****" and masked(None) is None


async def test_a_message_for_an_unknown_number_is_parked_logged_and_counted(stack: LocalStack) -> None:
    before = sample("chatnation_worker_events_total", kind="message", outcome="parked")
    wa_id, pnid = phone(), f"unknown{phone()}"
    with captured_logs() as logs:
        posted = await stack.user(pnid, wa_id).say("hello")

        def parked_line() -> dict[str, Any] | None:
            return next((e for e in logs if e["event"].startswith("message parked")), None)

        line = await wait_until(lambda: asyncio.sleep(0, parked_line()))
    assert line["level"] == "warning" and "unknown phone_number_id" in line["reason"]
    assert (line["role"], line["message_id"], line["kind"]) == ("inbound", posted.message_id, "message")
    assert line["contact"] == masked(wa_id) and wa_id not in str(line)
    assert sample("chatnation_worker_events_total", kind="message", outcome="parked") == before + 1


async def test_lines_on_the_event_path_name_the_organisation_and_replies_count_as_debits(
    stack: LocalStack, make_org: Any
) -> None:
    empty_org, empty = await make_org("Empty", tokens=0)
    paying_org, paying = await make_org("Paying", tokens=100)
    debits = sample("chatnation_wallet_debits_total", action="outbound_reply")
    with captured_logs() as logs:
        silent, talker = phone(), phone()
        posted = await stack.user(empty.phone_number_id, silent).say("hi")
        await stack.user(paying.phone_number_id, talker).say("hi")
        replies = await stack.whatsapp.wait_for_messages(1, to=talker, timeout=20)

        def wallet_empty() -> dict[str, Any] | None:
            return next((e for e in logs if e["event"].startswith("wallet empty")), None)

        line = await wait_until(lambda: asyncio.sleep(0, wallet_empty()))
        sends = [e for e in logs if e.get("kind") == "send"]
    assert line["organization_id"] == str(empty_org)
    assert (line["message_id"], line["kind"], line["role"]) == (posted.message_id, "message", "inbound")
    assert line["contact"] == masked(silent)
    assert all(e["organization_id"] == str(paying_org) and e["role"] == "sender" for e in sends)
    await wait_until(
        lambda: asyncio.sleep(
            0, sample("chatnation_wallet_debits_total", action="outbound_reply") >= debits + len(replies)
        )
    )


async def test_one_process_samples_and_another_takes_over_when_it_goes(
    settings: Settings, broker: object
) -> None:
    first = await Runtime.start(settings, pool_size=1)
    second = await Runtime.start(settings, pool_size=1)
    try:
        one, other = SamplerLease(first), SamplerLease(second)
        assert await one.held() and not await other.held()
        assert await one.held()  # still its own
        await first.connection.close()  # the sampling process goes away
        assert await wait_until(other.held, timeout=10)
    finally:
        await first.close()
        await second.close()


async def test_a_sampler_whose_connection_drops_reconnects_while_another_holds_the_lease(
    settings: Settings, broker: object
) -> None:
    """The lease's exclusive queue goes with its connection, and another process may take it before that
    connection is back: reconnecting must not declare it again (RESOURCE_LOCKED failed every reconnection, so
    the process's shards stood still and their messages went back to the queue on every try)."""
    first = await Runtime.start(settings, pool_size=1)
    second = await Runtime.start(settings, pool_size=1)
    try:
        one, other = SamplerLease(first), SamplerLease(second)
        assert await one.held()
        underlay = first.connection.transport
        assert underlay is not None
        # dropped, not closed by us: the robust connection reconnects
        await underlay.connection.close(ConnectionError("dropped"))
        assert await wait_until(other.held, timeout=10)  # the queue went with the dropped connection

        async def usable() -> bool:
            try:
                channel = await asyncio.wait_for(first.connection.channel(), 2)
                await asyncio.wait_for(channel.declare_queue(exclusive=True, robust=False), 2)
            except (TimeoutError, aio_pika.exceptions.AMQPError, RuntimeError):
                return False
            await channel.close()
            return True

        assert await wait_until(usable, timeout=20, interval=0.5)
        assert not await one.held() and await other.held()  # one sampler still
    finally:
        await first.close()
        await second.close()


async def test_an_inbound_only_worker_exports_the_queue_and_outbox_figures_and_no_created_series(
    settings: Settings, broker: object, db_urls: object
) -> None:
    import httpx

    from tests.test_ops_cli import free_port, value_of

    stack = await LocalStack(settings).start(in_process_workers=False)
    try:
        port = free_port()
        stack.spawn_worker("inbound", metrics_port=port)
        async with httpx.AsyncClient(timeout=5) as http:

            async def sampled() -> str | None:
                try:
                    text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.HTTPError:
                    return None
                return text if value_of(text, "chatnation_queue_sampler_active") == 1 else None

            text = await wait_until(sampled, timeout=30, interval=0.2)
    finally:
        await stack.stop()
    topology_queue = f"{settings.broker_prefix}.inbound.000"
    assert value_of(text, "chatnation_queue_messages", queue=topology_queue, state="ready") is not None
    assert value_of(text, "chatnation_outbox_backlog") is not None
    assert value_of(text, "chatnation_outbox_oldest_seconds") is not None
    assert "_created" not in text
