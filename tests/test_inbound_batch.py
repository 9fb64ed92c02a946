"""Inbound events of different contacts in one transaction (engine/inbound_batch.py), on the real PostgreSQL,
RabbitMQ, sender and WhatsApp simulator: a failing event rolls back alone and runs again on its own, duplicates in
a batch take effect once, one contact's messages stay in order. A worker SIGKILLed while its batch commits:
tests/faults/test_batch_kill.py (make faults: worker processes take seconds to start)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from engine import inbound
from engine import metrics_worker as metrics
from engine.broker import inbound_ordering, ordering_headers
from engine.gateway_app import part_body
from engine.inbound_batch import handle_batch
from engine.local_stack import LocalStack
from engine.runtime import Runtime
from engine.whatsapp.webhook import parse_envelope, split_envelope
from simulators.whatsapp import build_text_envelope
from tests.helpers import phone, wait_until
from tests.test_consumer import FakeMessage
from tests.test_scaling import expected_texts, ledger, stored_texts, stream

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def stack(settings, broker, db_urls) -> AsyncIterator[LocalStack]:  # type: ignore[no-untyped-def]
    st = await LocalStack(settings, roles=("relay", "sender")).start()
    yield st
    await st.stop()


@pytest.fixture
async def rt(stack: LocalStack) -> AsyncIterator[Runtime]:
    assert stack.settings is not None
    runtime = await Runtime.start(stack.settings, pool_size=2)
    yield runtime
    await runtime.close()


def said(phone_number_id: str, wa_id: str, text: str) -> FakeMessage:
    """A user's text as the gateway queues it."""
    part = split_envelope(
        parse_envelope(build_text_envelope(phone_number_id, "254700000000", wa_id, "Amani", text))
    )[0]
    return queued(part_body(part, time.time()))


def queued(body: dict[str, Any]) -> FakeMessage:
    return FakeMessage(
        json.dumps(body).encode(),
        str(body["external_id"]),
        ordering_headers(*inbound_ordering(body, str(body["external_id"]))),
    )


async def replied(stack: LocalStack, phones: list[str]) -> dict[str, int]:
    """Replies each contact got at the simulator, once every one got some (and a moment for late copies)."""

    async def everyone() -> bool:
        return all(stack.whatsapp.messages(to=p) for p in phones)

    await wait_until(everyone, timeout=20)
    await asyncio.sleep(1.0)
    return {p: len(stack.whatsapp.messages(to=p)) for p in phones}


async def test_a_failing_event_rolls_back_alone_and_runs_again_on_its_own(  # type: ignore[no-untyped-def]
    stack: LocalStack, rt: Runtime, make_org, app_pool
) -> None:
    org, new = await make_org("Batch", tokens=1000)
    first = phone()
    await inbound.handle(rt, said(new.phone_number_id, first, "hi"))  # type: ignore[arg-type]
    others = [phone() for _ in range(4)]
    # a timer without its timer: the handler fails after the event's receipt and the conversation's lock
    broken = queued(
        {
            "kind": "timer",
            "phone_number_id": new.phone_number_id,
            "wa_id": first,
            "external_id": f"timer-{phone()}",
        }
    )
    batch = [said(new.phone_number_id, p, "hi") for p in others[:2]] + [broken]
    batch += [said(new.phone_number_id, p, "hi") for p in others[2:]]
    outcomes = await handle_batch(rt, batch)  # type: ignore[arg-type]
    assert [o is None for o in outcomes] == [True, True, False, True, True]
    assert isinstance(outcomes[2], KeyError)
    counts = await _counts(app_pool, org)
    assert (
        counts["inbound"] == 5 and counts["timer_receipts"] == 0
    )  # the others committed, its receipt undone
    with pytest.raises(KeyError):  # on its own it runs again (it is not a duplicate now) and fails as before
        await inbound.handle(rt, broken)  # type: ignore[arg-type]
    got = await replied(stack, [first, *others])
    money = await ledger(app_pool, org)
    assert sum(got.values()) == money["replies"] == money["debits"] == 1000 - money["balance"]


async def test_duplicates_in_a_batch_take_effect_once(  # type: ignore[no-untyped-def]
    stack: LocalStack, rt: Runtime, make_org, app_pool
) -> None:
    org, new = await make_org("BatchDup", tokens=1000)
    earlier, twice, once = phone(), phone(), phone()
    redelivered = said(new.phone_number_id, earlier, "hi")
    await inbound.handle(rt, redelivered)  # type: ignore[arg-type]
    copy = said(new.phone_number_id, twice, "hi")
    batch = [redelivered, copy, queued(json.loads(copy.body)), said(new.phone_number_id, once, "hi")]
    assert await handle_batch(rt, batch) == [None] * 4  # type: ignore[arg-type]
    counts = await _counts(app_pool, org)
    assert counts["inbound"] == 3 and counts["message_receipts"] == 3
    got = await replied(stack, [earlier, twice, once])
    assert (
        got[earlier] == got[twice] == got[once]
    )  # the copy published its replies again; the sender sent once
    money = await ledger(app_pool, org)
    assert sum(got.values()) == money["replies"] == money["debits"] == 1000 - money["balance"]


async def test_each_contacts_messages_stay_in_order_with_batches(  # type: ignore[no-untyped-def]
    settings, broker, db_urls, make_org, app_pool
) -> None:
    st = await LocalStack(settings.model_copy(update={"inbound_batch_size": 8})).start()
    try:
        org, new = await make_org("BatchOrder", tokens=10_000)
        phones = [phone() for _ in range(8)]
        batches_before = _batches()
        await asyncio.gather(*(stream(st.user(new.phone_number_id, p), 15, 0.01) for p in phones))

        async def all_stored():  # type: ignore[no-untyped-def]
            texts = await stored_texts(app_pool, org)
            return texts if sum(map(len, texts.values())) >= 15 * len(phones) else None

        texts = await wait_until(all_stored, timeout=30)
        assert all(texts[p] == expected_texts(15) for p in phones)
        assert _batches() > batches_before  # some went together
    finally:
        await st.stop()


async def _counts(app_pool: asyncpg.Pool, org: UUID) -> dict[str, int]:
    from engine.db import tenant_tx

    async with tenant_tx(app_pool, org) as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM messages WHERE direction = 'inbound') AS inbound,
                      (SELECT count(*) FROM processed_events WHERE source = 'timer') AS timer_receipts,
                      (SELECT count(*) FROM processed_events WHERE source = 'wa_message') AS message_receipts"""
        )
    return dict(row)


def _batches() -> float:
    return sum(
        s.value for m in metrics.batch_events.collect() for s in m.samples if s.name.endswith("_count")
    )
