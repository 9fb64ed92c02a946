"""Deployments that share one database stay apart: each (its BROKER_PREFIX and shard counts) leases its own shards,
holds its own relay and timer-scanner locks, and relays, fires and mails only what it wrote (sql/070)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import asyncpg
import pytest

from engine.broker import Topology
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.outbox import RELAY_LOCK, relay_batch
from engine.runtime import Runtime
from engine.settings import PROJECT_ROOT, Settings
from engine.shards import LIVE_SECONDS, deployment_lock
from engine.timers import TIMERS_LOCK, fire_due_timers
from tests.helpers import phone, wait_until
from tests.test_ticket_email import buy_free, org_with_event


async def delete_topology(broker: aio_pika.abc.AbstractRobustConnection, settings: Settings) -> None:
    channel = await broker.channel()
    await Topology.from_settings(settings).delete(channel)
    await channel.close()


@pytest.fixture
async def two_stacks(
    settings: Settings, broker: aio_pika.abc.AbstractRobustConnection, db_urls: object
) -> AsyncIterator[tuple[LocalStack, LocalStack]]:
    """This session's deployment and a second one on the same database, each with its own WhatsApp stand-in."""
    other = settings.model_copy(update={"broker_prefix": f"{settings.broker_prefix}b"})
    first = await LocalStack(settings).start()
    try:
        second = await LocalStack(other).start()
        try:
            yield first, second
        finally:
            await second.stop()
    finally:
        await first.stop()
        await delete_topology(broker, other)


async def test_two_deployments_each_get_all_their_replies_and_none_of_the_others(
    two_stacks: tuple[LocalStack, LocalStack], make_org: Any, owner_pool: asyncpg.Pool, settings: Settings
) -> None:
    first, second = two_stacks
    org, new = await make_org("Twin", tokens=1000)
    users = {
        stack.base.broker_prefix: (stack, [stack.user(new.phone_number_id, phone()) for _ in range(12)])
        for stack in two_stacks
    }
    posted = await asyncio.gather(*(u.say("hi") for _, group in users.values() for u in group))
    assert all(p.response.status_code == 200 for p in posted)
    for stack, group in users.values():
        for user in group:
            await stack.whatsapp.wait_for_messages(1, to=user.wa_id, timeout=30)
    await asyncio.sleep(1.0)  # nothing more, nothing late
    for stack, other in ((first, second), (second, first)):
        for user in users[stack.base.broker_prefix][1]:
            assert len(stack.whatsapp.messages(to=user.wa_id)) == 1
            assert other.whatsapp.messages(to=user.wa_id) == []

    rows = await owner_pool.fetch(
        "SELECT deployment, count(*) AS n FROM outbox WHERE organization_id = $1 GROUP BY deployment", org
    )
    assert {r["deployment"]: r["n"] for r in rows} == {prefix: 12 for prefix in users}

    async def leases() -> dict[tuple[str, str], tuple[set[int], list[int]]]:
        """(deployment, role) -> (the shard counts heartbeated, the shards held)."""
        rows = await owner_pool.fetch(
            f"""SELECT deployment, role, shard_count, shards FROM worker_heartbeats
                WHERE deployment = ANY($1) AND heartbeat_at > now() - interval '{LIVE_SECONDS} seconds'""",
            list(users),
        )
        got = {
            (prefix, role): (
                {r["shard_count"] for r in rows if (r["deployment"], r["role"]) == (prefix, role)},
                sorted(
                    s for r in rows if (r["deployment"], r["role"]) == (prefix, role) for s in r["shards"]
                ),
            )
            for prefix in users
            for role in ("inbound", "sender")
        }
        return got

    full = {"inbound": list(range(settings.inbound_shards)), "sender": list(range(settings.outbound_shards))}
    for _ in range(60):  # a heartbeat names the shards taken one beat after taking them
        held = await leases()
        if all(shards == full[role] for (_, role), (_, shards) in held.items()):
            break
        await asyncio.sleep(0.25)
    for prefix in users:  # each deployment's workers hold all of its shards, and only its own
        assert held[(prefix, "inbound")] == ({settings.inbound_shards}, list(range(settings.inbound_shards)))
        assert held[(prefix, "sender")] == ({settings.outbound_shards}, list(range(settings.outbound_shards)))


async def test_each_deployment_mails_the_tickets_it_sold(
    two_stacks: tuple[LocalStack, LocalStack], make_org: Any, app_pool: asyncpg.Pool
) -> None:
    org, pnid = await org_with_event(make_org, app_pool)
    for stack, address in zip(two_stacks, ("first@example.com", "second@example.com"), strict=True):
        await buy_free(stack, pnid, address, quantity="1")
    for stack, mine in zip(two_stacks, ("first@example.com", "second@example.com"), strict=True):
        assert stack.smtp is not None
        await stack.smtp.wait_for(mine, timeout=30)
    await asyncio.sleep(1.0)
    for stack, theirs in zip(two_stacks, ("second@example.com", "first@example.com"), strict=True):
        assert stack.smtp is not None and stack.smtp.to(theirs) == []

    async def marked() -> list[tuple[str, str, str]] | None:  # committed just after the server took it
        async with tenant_tx(app_pool, org) as conn:
            rows = await conn.fetch("SELECT to_address, deployment, status FROM ticket_emails")
        got = sorted((r["to_address"], r["deployment"], r["status"]) for r in rows)
        return got if all(status == "sent" for _, _, status in got) else None

    assert await wait_until(marked) == [
        ("first@example.com", two_stacks[0].base.broker_prefix, "sent"),
        ("second@example.com", two_stacks[1].base.broker_prefix, "sent"),
    ]


async def test_relay_and_timer_locks_are_per_deployment(db_urls: Any) -> None:
    conns = [await asyncpg.connect(db_urls.owner) for _ in range(3)]
    try:
        for kind in (RELAY_LOCK, TIMERS_LOCK):
            one, two = deployment_lock(kind, "alpha"), deployment_lock(kind, "beta")
            assert await conns[0].fetchval("SELECT pg_try_advisory_lock($1, $2)", *one)
            assert await conns[1].fetchval("SELECT pg_try_advisory_lock($1, $2)", *two)  # beside it
            assert not await conns[2].fetchval("SELECT pg_try_advisory_lock($1, $2)", *one)  # a stand-by
            await conns[0].execute("SELECT pg_advisory_unlock_all()")
            await conns[1].execute("SELECT pg_advisory_unlock_all()")
    finally:
        for conn in conns:
            await conn.close()


@pytest.fixture
async def runtime(settings: Settings, broker: Any, db_urls: Any) -> AsyncIterator[Runtime]:
    """A deployment of its own (no roles running): its relay's and scanner's steps are called by the test."""
    mine = settings.model_copy(update={"broker_prefix": f"{settings.broker_prefix}x{uuid.uuid4().hex[:4]}"})
    rt = await Runtime.start(mine, pool_size=2)
    try:
        yield rt
    finally:
        await rt.close()
        await delete_topology(broker, mine)


async def drain(channel: aio_pika.abc.AbstractChannel, names: list[str]) -> list[str]:
    """The message ids in these queues, consumed until they stay quiet."""
    got: list[str] = []
    for name in names:
        queue = await channel.get_queue(name, ensure=False)
        delivered: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(delivered.put, no_ack=True)
        try:
            while True:
                got.append(str((await asyncio.wait_for(delivered.get(), 0.3)).message_id))
        except TimeoutError:
            pass
        finally:
            await queue.cancel(tag)
    return got


async def seed_contact(conn: asyncpg.Connection, org: Any) -> tuple[Any, Any, str]:
    wa_id = phone()
    contact = await conn.fetchval(
        "INSERT INTO contacts (organization_id, phone, whatsapp_id) VALUES ($1, $2, $2) RETURNING id",
        org,
        wa_id,
    )
    conversation = await conn.fetchval(
        "INSERT INTO conversations (organization_id, contact_id, current_state) VALUES ($1, $2, 'idle') RETURNING id",
        org,
        contact,
    )
    return contact, conversation, wa_id


async def test_a_deployment_relays_and_fires_its_own_rows_and_adopts_unowned_ones(
    runtime: Runtime, make_org: Any, db_urls: Any, broker: Any
) -> None:
    org, new = await make_org("Owned", tokens=100)
    mine, other = runtime.settings.broker_prefix, "someone-else"
    conn = await asyncpg.connect(db_urls.owner)  # no chatnation.deployment: what it writes has no deployment
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    channel = await broker.channel()
    try:
        contact, conversation, wa_id = await seed_contact(conn, org)
        timers, outbox = {}, {}
        for owner in (mine, other, None):
            timers[owner] = await conn.fetchval(
                """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind,
                                                    state_version, due_at, deployment)
                   VALUES ($1, $2, $3, 'reminder', 0, now() - interval '1 second', $4) RETURNING id""",
                org,
                conversation,
                contact,
                owner,
            )
            message = await conn.fetchval(
                """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content)
                   VALUES ($1, $2, $3, 'outbound', 'text', 'x') RETURNING id""",
                org,
                conversation,
                contact,
            )
            job = {"contact_key": wa_id, "message_id": str(message), "phone_number_id": new.phone_number_id}
            outbox[owner] = await conn.fetchval(
                """INSERT INTO outbox (organization_id, message_id, contact_id, payload, deployment)
                   VALUES ($1, $2, $3, $4, $5) RETURNING id""",
                org,
                message,
                contact,
                job,
                owner,
            )
            outbox[owner] = (outbox[owner], str(message))

        assert await fire_due_timers(runtime, conn) >= 2
        status = {
            r["id"]: (r["status"], r["deployment"])
            for r in await conn.fetch(
                "SELECT id, status, deployment FROM conversation_timers WHERE id = ANY($1)",
                list(timers.values()),
            )
        }
        assert status == {
            timers[mine]: ("fired", mine),
            timers[None]: ("fired", mine),  # adopted
            timers[other]: ("pending", other),
        }
        fired = await drain(channel, runtime.topology.inbound_queues())
        assert {f"timer:{timers[mine]}", f"timer:{timers[None]}"} <= set(fired)
        assert f"timer:{timers[other]}" not in fired

        assert await relay_batch(runtime, conn) >= 2
        relayed = {
            r["id"]: (r["relayed_at"] is not None, r["deployment"])
            for r in await conn.fetch(
                "SELECT id, relayed_at, deployment FROM outbox WHERE id = ANY($1)",
                [i for i, _ in outbox.values()],
            )
        }
        assert relayed == {
            outbox[mine][0]: (True, mine),
            outbox[None][0]: (True, mine),
            outbox[other][0]: (False, other),
        }
        sent = await drain(channel, runtime.topology.outbound_queues())
        assert {outbox[mine][1], outbox[None][1]} <= set(sent) and outbox[other][1] not in sent
    finally:
        await conn.execute("UPDATE outbox SET relayed_at = now() WHERE deployment = $1", other)
        await conn.execute("UPDATE conversation_timers SET status = 'cancelled' WHERE deployment = $1", other)
        await channel.close()
        await conn.close()


async def test_the_engines_pools_write_their_deployment(runtime: Runtime) -> None:
    for pool in (runtime.app_pool, runtime.owner_pool):
        assert (
            await pool.fetchval("SELECT current_setting('chatnation.deployment')")
            == runtime.settings.broker_prefix
        )


# ---------------------------------------------------------------- `chatnation chat` beside a running engine


class Chat:
    """One `chatnation chat` process, written to and read line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, wa_id: str) -> Chat:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.cli",
            "chat",
            "--phone",
            wa_id,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
            cwd=PROJECT_ROOT,
        )
        return cls(proc)

    async def say(self, text: str, expect: str, within: float = 60) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{text}\n".encode())
        await self.proc.stdin.drain()
        seen: list[str] = []
        try:
            async with asyncio.timeout(within):
                while line := (await self.proc.stdout.readline()).decode():
                    seen.append(line)
                    if line.startswith("bot → ") and expect in line:
                        return
        except TimeoutError:
            pass
        raise AssertionError(f"no reply with {expect!r}; the chat printed: {''.join(seen)!r}")

    async def quit(self) -> int:
        assert self.proc.stdin is not None
        if self.proc.returncode is None:
            self.proc.stdin.write(b"/quit\n")
            await self.proc.stdin.drain()
            self.proc.stdin.close()
        try:
            async with asyncio.timeout(60):
                await self.proc.communicate()
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        return int(self.proc.returncode or 0)


async def test_two_chat_sessions_beside_a_running_engine(
    settings: Settings, broker: Any, db_urls: Any, make_org: Any
) -> None:
    """A buyer and a door-staff member chat at once, each in their own `chatnation chat`, while an engine runs on
    the same (embedded) database: every one of them gets every reply."""
    engine = await LocalStack(settings, smtp=None).start()
    chats: list[Chat] = []
    try:
        org, new = await make_org("Running", tokens=100)
        listener = engine.user(new.phone_number_id, phone())
        buyer = await Chat.start("254711000301")
        chats.append(buyer)
        await buyer.say("hi", "Welcome")
        staff = await Chat.start("254700000001")
        chats.append(staff)
        await staff.say("hi", "Welcome")
        assert (await listener.say("hi")).response.status_code == 200
        await engine.whatsapp.wait_for_messages(1, to=listener.wa_id, timeout=30)
        await buyer.say("menu", "Welcome")  # still answered with the second session running
        await staff.say("menu", "Welcome")
    finally:
        codes = [await chat.quit() for chat in chats]
        await engine.stop()
    assert codes == [0, 0]
