"""A worker SIGKILLed while one transaction holds a batch of six contacts' events (engine/inbound_batch.py):
nothing was committed and nothing acked, so the broker redelivers all six to the next worker, and each takes
effect once: one stored message, its replies sent once, paid once. In make faults (``slow``): the two worker
processes take most of its 20 seconds to start."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from engine.broker import Topology
from engine.local_stack import LocalStack
from tests.helpers import wait_until
from tests.test_inbound_batch import _counts, replied
from tests.test_scaling import contacts_on_shards, ledger

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings, roles=("relay", "sender")).start()
    yield st
    await st.stop()


async def test_a_worker_killed_while_its_batch_commits_loses_nothing_and_doubles_nothing(  # type: ignore[no-untyped-def]
    stack: LocalStack, settings, make_org, app_pool, owner_pool, monkeypatch
) -> None:
    tokens = 1_000_000  # ample: no reply's count takes the wallet's lock before the commit (engine/wallet.py)
    org, new = await make_org("BatchKill", tokens=tokens)
    monkeypatch.setenv("INBOUND_BATCH_SIZE", "8")
    monkeypatch.setenv("INBOUND_BATCH_WINDOW_MS", "100")
    victim = stack.spawn_worker("inbound")
    await wait_until(lambda: _live_inbound(owner_pool), timeout=20)
    phones = contacts_on_shards(Topology.from_settings(settings), [0, 1, 2, 3, 4, 5])
    async with owner_pool.acquire() as holder:
        wallet = holder.transaction()  # the replies are paid at COMMIT: the batch's commit waits on this lock
        await wallet.start()
        await holder.execute("SELECT FROM wallets WHERE organization_id = $1 FOR UPDATE", org)
        users = [stack.user(new.phone_number_id, p) for p in phones]
        assert all(r.response.status_code == 200 for r in await asyncio.gather(*(u.say("hi") for u in users)))
        waiting = await wait_until(lambda: _commits_waiting(owner_pool), timeout=20)
        victim.kill()  # SIGKILL while one transaction holds all six events, unacked
        assert victim.wait(timeout=5) == -9
        await wallet.rollback()
    assert waiting == 1  # the six events went in one transaction
    await owner_pool.execute("DELETE FROM worker_heartbeats WHERE pid = $1", victim.pid)  # as if it aged out
    stack.spawn_worker("inbound")
    got = await replied(stack, phones)
    money = await ledger(app_pool, org)
    assert money["receipts"] == len(phones) and (await _counts(app_pool, org))["inbound"] == len(phones)
    assert sum(got.values()) == money["replies"] == money["debits"] == tokens - money["balance"]
    assert money["ledger_sum"] == money["balance"]


async def _live_inbound(owner_pool: asyncpg.Pool) -> bool:
    return bool(
        await owner_pool.fetchval(
            """SELECT count(*) FROM worker_heartbeats
               WHERE role = 'inbound' AND heartbeat_at > now() - interval '6 seconds' AND cardinality(shards) > 0"""
        )
    )


async def _commits_waiting(owner_pool: asyncpg.Pool) -> int | None:
    """The application's COMMITs waiting on a lock, once one does (and the gathering window has passed)."""
    await asyncio.sleep(0.3)
    n = await owner_pool.fetchval(
        """SELECT count(*) FROM pg_stat_activity
           WHERE datname = current_database() AND query = 'COMMIT' AND wait_event_type = 'Lock'"""
    )
    return int(n) or None
