"""End to end through the gateway, RabbitMQ, the workers, PostgreSQL and the WhatsApp simulator."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg
import pytest
from aio_pika.abc import AbstractIncomingMessage

from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.whatsapp import build_text_envelope
from tests.helpers import phone, wait_until


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def counts(app_pool: asyncpg.Pool, org) -> dict[str, int]:  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        row = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM messages WHERE direction = 'inbound') AS inbound,
                      (SELECT count(*) FROM messages WHERE direction = 'outbound') AS outbound,
                      (SELECT count(*) FROM token_transactions WHERE type = 'debit') AS debits,
                      (SELECT balance FROM wallets) AS balance"""
        )
    return dict(row)


async def everyone_says_hi(
    stack: LocalStack,
    app_pool,
    org,
    phone_number_id: str,  # type: ignore[no-untyped-def]
    n: int,
) -> tuple[dict[str, int], int]:
    """n new contacts say hi at once; once all n are stored (and a second for late replies): the counts, and how
    many replies reached the simulator."""
    users = [stack.user(phone_number_id, phone()) for _ in range(n)]
    responses = await asyncio.gather(*(u.say("hi") for u in users))
    assert all(r.response.status_code == 200 for r in responses)

    async def all_stored():  # type: ignore[no-untyped-def]
        return (await counts(app_pool, org))["inbound"] == n

    await wait_until(all_stored, timeout=30)
    await asyncio.sleep(1.0)
    return await counts(app_pool, org), len([m for u in users for m in stack.whatsapp.messages(to=u.wa_id)])


async def parked(stack: LocalStack, broker, wanted: Callable[[AbstractIncomingMessage], bool]):  # type: ignore[no-untyped-def]
    """The first message in the parking queue that ``wanted`` picks, taken off it (others are put back)."""
    channel = await broker.channel()
    assert stack.settings is not None
    parking = await channel.get_queue(f"{stack.settings.broker_prefix}.parking")

    async def find():  # type: ignore[no-untyped-def]
        async with parking.iterator(timeout=0.5) as it:
            try:
                async for m in it:
                    if wanted(m):
                        await m.ack()
                        return m
                    await m.nack(requeue=True)
            except TimeoutError:
                return None
        return None

    try:
        return await wait_until(find, timeout=20)
    finally:
        await channel.close()


async def test_one_webhook_one_reply_one_ledger_row(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("E2E", tokens=100)
    user = stack.user(new.phone_number_id, phone())
    posted = await user.say("hi")
    assert posted.response.status_code == 200
    sent = await stack.whatsapp.wait_for_messages(1, to=user.wa_id, timeout=15)
    assert sent[0]["phone_number_id"] == new.phone_number_id
    await asyncio.sleep(0.5)  # nothing more arrives
    assert len(stack.whatsapp.messages(to=user.wa_id)) == 1
    c = await counts(app_pool, org)
    assert (c["inbound"], c["outbound"], c["debits"], c["balance"]) == (1, 1, 1, 99)
    async with tenant_tx(app_pool, org) as conn:
        out = await conn.fetchrow(
            "SELECT wa_message_id, wa_status FROM messages WHERE direction = 'outbound'"
        )
    assert out["wa_message_id"] == sent[0]["wamid"] and out["wa_status"] == "sent"


async def test_a_reply_the_broker_did_not_confirm_after_commit_is_published_again_once(  # type: ignore[no-untyped-def]
    stack: LocalStack, make_org, app_pool, monkeypatch
) -> None:
    """The inbound worker publishes its replies itself after the commit (issue 16, sql/071): when the broker does
    not confirm them, the event is not acked; its retry is a duplicate that publishes the unsent replies again,
    so the contact gets the reply once and is charged once; no row waits for the relay."""
    import engine.inbound

    real = engine.inbound.publish_jobs
    failed: list[object] = []

    async def flaky(rt, jobs):  # type: ignore[no-untyped-def]
        if jobs and not failed:
            failed.append(jobs)
            raise ConnectionResetError("broker gone between the commit and the confirm")
        await real(rt, jobs)

    monkeypatch.setattr(engine.inbound, "publish_jobs", flaky)
    org, new = await make_org("Direct", tokens=100)
    user = stack.user(new.phone_number_id, phone())
    assert (await user.say("hi")).response.status_code == 200
    await stack.whatsapp.wait_for_messages(1, to=user.wa_id, timeout=15)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert failed and len(stack.whatsapp.messages(to=user.wa_id)) == 1
    c = await counts(app_pool, org)
    assert (c["inbound"], c["outbound"], c["debits"], c["balance"]) == (1, 1, 1, 99)
    async with tenant_tx(app_pool, org) as conn:
        row = await conn.fetchrow("SELECT event_key, relayed_at FROM outbox")
    assert row["event_key"].startswith("wa_message:") and row["relayed_at"] is not None


async def test_same_webhook_three_times_one_reply_one_debit(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Dup", tokens=100)
    wa_id = phone()
    envelope = build_text_envelope(
        new.phone_number_id, "254700000000", wa_id, "Otieno", "hi", "wamid.DUP" + wa_id
    )
    assert stack.poster is not None
    for _ in range(3):
        assert (await stack.poster.post(envelope)).status_code == 200
    await stack.whatsapp.wait_for_messages(1, to=wa_id)
    await asyncio.sleep(1.0)
    assert len(stack.whatsapp.messages(to=wa_id)) == 1
    c = await counts(app_pool, org)
    assert (c["inbound"], c["outbound"], c["debits"]) == (1, 1, 1)


async def test_wallet_for_ten_replies_and_fifty_messages(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Poor", tokens=10)
    c, replies = await everyone_says_hi(stack, app_pool, org, new.phone_number_id, 50)
    # 10 paid menus; the 40 others hear once, free, that we cannot answer right now (issue 20)
    assert (c["outbound"], c["debits"], c["balance"]) == (50, 10, 0)
    assert replies == 50
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT min(balance_after) FROM token_transactions") == 0


async def test_replies_paid_at_commit_on_a_misread_balance_are_run_again_exactly(
    stack: LocalStack,
    make_org,  # type: ignore[no-untyped-def]
    app_pool,
) -> None:
    """A threshold far below zero makes every unlocked balance read look ample, so replies are paid at commit
    unchecked; the commits the wallet cannot pay fail whole and their events run again under the lock."""
    org, new = await make_org("Misread", tokens=10)
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute("UPDATE wallets SET low_balance_threshold = -1000000")
    c, replies = await everyone_says_hi(stack, app_pool, org, new.phone_number_id, 30)
    assert (c["outbound"], c["debits"], c["balance"]) == (30, 10, 0)  # 10 paid, 20 free "cannot answer"
    assert replies == 30


async def test_throttled_then_accepted_is_delivered_once(stack: LocalStack, make_org) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Throttle", tokens=100)
    user = stack.user(new.phone_number_id, phone())
    stack.whatsapp.add_faults([{"status": 429, "code": 130429, "to": user.wa_id}])
    await user.say("hi")
    await stack.whatsapp.wait_for_messages(1, to=user.wa_id)
    await asyncio.sleep(1.0)
    assert len(stack.whatsapp.messages(to=user.wa_id)) == 1


async def test_outside_window_error_marks_failed_without_retry(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Window", tokens=100)
    user = stack.user(new.phone_number_id, phone())
    stack.whatsapp.add_faults([{"status": 400, "code": 131047, "to": user.wa_id}])
    await user.say("hi")

    async def failed():  # type: ignore[no-untyped-def]
        async with tenant_tx(app_pool, org) as conn:
            return await conn.fetchrow(
                "SELECT wa_status, error_code FROM messages WHERE direction = 'outbound' AND wa_status = 'failed'"
            )

    row = await wait_until(failed)
    assert row["error_code"] == 131047
    await asyncio.sleep(1.0)
    assert stack.whatsapp.messages(to=user.wa_id) == []  # refused once, never sent again


async def test_expired_token_parks_the_send_and_pauses_the_organisation(
    stack: LocalStack, make_org, broker
) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Token", tokens=100)
    user = stack.user(new.phone_number_id, phone())
    stack.whatsapp.add_faults([{"status": 401, "code": 190, "to": user.wa_id}])
    await user.say("hi")
    message = await parked(stack, broker, lambda m: user.wa_id.encode() in m.body)
    assert "190" in message.headers["x-error"]
    assert stack.settings is not None
    assert message.headers["x-original-queue"].startswith(f"{stack.settings.broker_prefix}.outbound.")
    assert stack.whatsapp.messages(to=user.wa_id) == []


async def test_an_outbox_row_that_is_no_send_job_is_parked_and_blocks_nothing(
    stack: LocalStack,
    make_org,  # type: ignore[no-untyped-def]
    broker,
    app_pool,
) -> None:
    org, new = await make_org("BadRow", tokens=100)
    first, second = stack.user(new.phone_number_id, phone()), stack.user(new.phone_number_id, phone())
    await first.say("hi")
    await stack.whatsapp.wait_for_messages(1, to=first.wa_id, timeout=15)
    async with tenant_tx(app_pool, org) as conn:  # a hand-made row for that reply, without a send job
        row_id = await conn.fetchval(
            """INSERT INTO outbox (organization_id, message_id, contact_id, payload)
               SELECT organization_id, id, contact_id, '{"note": "hand-made"}' FROM messages
               WHERE direction = 'outbound' RETURNING id"""
        )
    await second.say("hi")
    await stack.whatsapp.wait_for_messages(1, to=second.wa_id, timeout=15)  # the relay went past the bad row
    message = await parked(stack, broker, lambda m: m.message_id == f"outbox-{row_id}")
    assert "not a send job" in message.headers["x-error"] and message.headers["x-original-queue"] == "outbox"


async def test_worker_process_stops_cleanly_on_sigterm(stack: LocalStack, owner_pool) -> None:  # type: ignore[no-untyped-def]
    import signal

    proc = stack.spawn_worker("inbound", concurrency=4)

    async def registered():  # type: ignore[no-untyped-def]
        return await owner_pool.fetchval("SELECT count(*) FROM worker_heartbeats WHERE pid = $1", proc.pid)

    await wait_until(registered, timeout=30)
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0
    assert await owner_pool.fetchval("SELECT count(*) FROM worker_heartbeats WHERE pid = $1", proc.pid) == 0
