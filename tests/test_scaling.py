"""Adding and killing inbound worker PROCESSES while contacts write: nothing lost, nothing twice, and each
contact's messages processed in the order they were sent.

The relay and the sender run in this process; the inbound workers are real ``worker.py`` processes. Each
contact writes to a different shard (0..3), so that every step of the scaling hands a busy shard over.
Processing order is read from ``messages.processed_seq`` (sql/011_ops.sql): drawn while the transaction
holds the contact's conversation lock, so it increases in the order the engine processed that contact's
messages.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from uuid import UUID

import asyncpg
import pytest

from engine.broker import Topology
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.shards import HEARTBEAT_SECONDS
from simulators.whatsapp import SimulatedUser
from tests.helpers import wait_until

pytestmark = pytest.mark.timeout(240)


def contacts_on_shards(topology: Topology, shards: list[int]) -> list[str]:
    """One random phone number per shard."""
    found: dict[int, str] = {}
    while len(found) < len(shards):
        number = "2547" + str(uuid.uuid4().int)[:8]
        shard = int(topology.inbound_route(number))
        if shard in shards:
            found.setdefault(shard, number)
    return [found[s] for s in shards]


async def live_inbound_workers(owner_pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await owner_pool.fetch(
        """SELECT pid, shards, processed FROM worker_heartbeats
           WHERE role = 'inbound' AND heartbeat_at > now() - interval '6 seconds' ORDER BY started_at"""
    )


async def stream(
    user: SimulatedUser, count: int, pace: float, sent: asyncio.Event | None = None, at: int = 0
) -> None:
    """m001, m002, ... one after the other: each webhook is answered (queued) before the next is sent."""
    for i in range(1, count + 1):
        posted = await user.say(f"m{i:03d}")
        assert posted.response.status_code == 200
        if sent is not None and i == at:
            sent.set()
        await asyncio.sleep(pace)


async def stored_texts(app_pool: asyncpg.Pool, org: UUID) -> dict[str, list[str]]:
    """Each contact's inbound texts in processing order."""
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch(
            """SELECT c.phone, m.content FROM messages m JOIN contacts c ON c.id = m.contact_id
               WHERE m.direction = 'inbound' ORDER BY m.processed_seq"""
        )
    texts: dict[str, list[str]] = {}
    for row in rows:
        texts.setdefault(row["phone"], []).append(row["content"])
    return texts


async def ledger(app_pool: asyncpg.Pool, org: UUID) -> asyncpg.Record:
    async with tenant_tx(app_pool, org) as conn:
        return await conn.fetchrow(
            """SELECT (SELECT balance FROM wallets) AS balance,
                      (SELECT coalesce(sum(amount), 0) FROM token_transactions) AS ledger_sum,
                      (SELECT count(*) FROM token_transactions WHERE type = 'debit') AS debits,
                      (SELECT count(*) FROM messages WHERE direction = 'outbound') AS replies,
                      (SELECT count(*) FROM processed_events WHERE source = 'wa_message') AS receipts"""
        )


def expected_texts(count: int) -> list[str]:
    return [f"m{i:03d}" for i in range(1, count + 1)]


async def assert_each_in_order(app_pool: asyncpg.Pool, org: UUID, counts: dict[str, int]) -> None:
    """Once everything sent is stored (and a moment for a late duplicate): each contact's m001..mN once each,
    in the order sent."""

    async def all_stored():  # type: ignore[no-untyped-def]
        texts = await stored_texts(app_pool, org)
        return texts if sum(map(len, texts.values())) >= sum(counts.values()) else None

    await wait_until(all_stored, timeout=30)
    await asyncio.sleep(1.0)  # a late duplicate would show now
    texts = await stored_texts(app_pool, org)
    for p, count in counts.items():
        assert texts[p] == expected_texts(count), f"contact {p}: lost, doubled or reordered messages"


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings, roles=("relay", "sender")).start()
    yield st
    await st.stop()


async def start_inbound(stack: LocalStack, owner_pool: asyncpg.Pool, live: int) -> subprocess.Popen[bytes]:
    proc = stack.spawn_worker("inbound")
    await wait_until(lambda: _has_live(owner_pool, live), timeout=20)
    return proc


async def _has_live(owner_pool: asyncpg.Pool, n: int) -> bool:
    return len(await live_inbound_workers(owner_pool)) >= n


async def test_scaling_from_one_to_four_processes_keeps_order_and_loses_nothing(  # type: ignore[no-untyped-def]
    stack: LocalStack, settings, make_org, app_pool, owner_pool
) -> None:
    pace, after = 0.1, 30
    org, new = await make_org("Scale", tokens=10_000)
    phones = contacts_on_shards(Topology.from_settings(settings), [0, 1, 2, 3])
    await start_inbound(stack, owner_pool, 1)
    scaled = asyncio.Event()

    async def scale_up() -> None:
        for live in (2, 3, 4):
            await asyncio.sleep(2.0)
            await start_inbound(stack, owner_pool, live)
        await asyncio.sleep(2 * HEARTBEAT_SECONDS)  # every process has seen all four and taken its shards
        scaled.set()

    async def until_scaled(user: SimulatedUser) -> int:
        """m001, m002, ... through every step of the scaling (however slowly processes start on a busy
        machine), then ``after`` more once all four own shards. Returns how many were sent."""
        sent = 0

        async def say_next() -> None:
            nonlocal sent
            sent += 1
            assert (await user.say(f"m{sent:03d}")).response.status_code == 200
            await asyncio.sleep(pace)

        while not scaled.is_set():
            await say_next()
        for _ in range(after):
            await say_next()
        return sent

    scaling = asyncio.create_task(scale_up())
    sent = await asyncio.gather(*(until_scaled(stack.user(new.phone_number_id, p)) for p in phones))
    await scaling
    counts = dict(zip(phones, sent, strict=True))

    await assert_each_in_order(app_pool, org, counts)
    workers = await wait_until(lambda: _busy(owner_pool), timeout=10)
    assert len(workers) >= 3, f"the work was not spread over the processes: {workers}"


async def _busy(owner_pool: asyncpg.Pool) -> list[int] | None:
    """Processes that handled messages, once each heartbeat reports its final count."""
    rows = await live_inbound_workers(owner_pool)
    return [r["pid"] for r in rows if r["processed"] > 0] if len(rows) == 4 else None


async def test_sigkill_of_an_inbound_process_mid_stream_loses_nothing_and_doubles_nothing(  # type: ignore[no-untyped-def]
    stack: LocalStack, settings, make_org, app_pool, owner_pool
) -> None:
    count, pace, tokens = 60, 0.05, 1000
    org, new = await make_org("Kill", tokens=tokens)
    phones = contacts_on_shards(Topology.from_settings(settings), [0, 1, 2, 3])
    victim = await start_inbound(stack, owner_pool, 1)
    await start_inbound(stack, owner_pool, 2)
    halfway = asyncio.Event()

    async def kill_halfway() -> None:
        await halfway.wait()
        victim.kill()  # SIGKILL: no drain, whatever it was doing is left unacked

    await asyncio.gather(
        stream(stack.user(new.phone_number_id, phones[0]), count, pace, halfway, count // 2),
        *(stream(stack.user(new.phone_number_id, p), count, pace) for p in phones[1:]),
        kill_halfway(),
    )
    assert victim.wait(timeout=5) == -9

    async def all_stored():  # type: ignore[no-untyped-def]
        texts = await stored_texts(app_pool, org)
        return texts if sum(map(len, texts.values())) >= count * len(phones) else None

    await wait_until(
        all_stored, timeout=40
    )  # the survivor takes the dead one's shards after its heartbeat ages
    await asyncio.sleep(1.5)
    texts = await stored_texts(app_pool, org)
    for p in phones:
        assert texts[p] == expected_texts(count), f"contact {p}: lost, doubled or reordered messages"
    money = await ledger(app_pool, org)
    assert money["receipts"] == count * len(phones)
    assert money["ledger_sum"] == money["balance"]  # every token that left the wallet has its ledger row
    assert money["debits"] == money["replies"] == tokens - money["balance"]
    sent = sum(len(stack.whatsapp.messages(to=p)) for p in phones)
    assert sent == money["replies"]  # each reply sent once
