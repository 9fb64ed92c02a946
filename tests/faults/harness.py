"""The fault suite's machinery: the engine on private services with real worker processes, a load of scripted
conversations (bench.common's traffic model) posted like Meta does (retried until answered 200), and the
checks run once the load has drained. Each scenario ends in an ``Outcome``: one row of the summary table."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from bench.common import BenchOrg, Script, create_bench_orgs, make_scripts, new_tag
from engine.local_stack import LocalStack
from engine.settings import PROJECT_ROOT, Settings
from simulators.whatsapp import new_message_id, serialise, sign
from tests.faults.services import PrivatePostgres, PrivateRabbit

WORKER_CONCURRENCY = 16
ROLES = {"inbound-1": "inbound", "inbound-2": "inbound", "relay": "relay", "sender": "sender"}


@dataclass
class Workers:
    """Real ``worker.py`` processes that a scenario may SIGKILL and start again."""

    env: dict[str, str]
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    kills: Counter[str] = field(default_factory=Counter)

    def spawn(self, name: str) -> None:
        log = (self.log_dir / f"{name}.log").open("ab")  # a pipe nobody reads would block a chatty worker
        self.procs[name] = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_ROOT / "worker.py"),
                "--role",
                ROLES[name],
                "--concurrency",
                str(WORKER_CONCURRENCY),
                "--metrics-port",
                "0",
            ],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        self.kills[name] += 1

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass
class FaultStack:
    settings: Settings
    local: LocalStack
    workers: Workers
    app_pool: asyncpg.Pool
    owner_pool: asyncpg.Pool
    rabbit: PrivateRabbit
    pg: PrivatePostgres

    async def wait_workers(self, timeout: float = 90) -> None:
        """Until live workers own every inbound and outbound shard."""
        wanted = {"inbound": self.settings.inbound_shards, "sender": self.settings.outbound_shards}
        async with asyncio.timeout(timeout):
            while True:
                try:
                    rows = await self.owner_pool.fetch(
                        """SELECT role, sum(cardinality(shards))::int AS n FROM worker_heartbeats
                           WHERE heartbeat_at > now() - interval '6 seconds' GROUP BY role"""
                    )
                    if all({r["role"]: r["n"] for r in rows}.get(k) == v for k, v in wanted.items()):
                        return
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    pass
                await asyncio.sleep(0.5)

    def reset(self) -> None:
        self.local.whatsapp.faults.clear()
        self.local.whatsapp.report_statuses(None, ())


async def start_engine(
    cleanup: contextlib.AsyncExitStack,
    db_url: str,
    brokers: str,
    prefix: str,
    host: str = "127.0.0.1",
    **extra: Any,
) -> tuple[Settings, LocalStack, asyncpg.Pool, asyncpg.Pool, dict[str, str]]:
    """The schema migrated, the pools, the gateway and simulators in this process (LocalStack, listening on
    ``host``) and the workers' environment, for a database and broker addresses (a comma-separated list for a
    cluster); all closed by ``cleanup``. Returns (settings, local, app pool, owner pool, worker env)."""
    from engine.db import create_pool, with_user
    from engine.migrate import migrate

    settings = Settings(
        database_url=db_url,
        rabbitmq_url=brokers,
        broker_prefix=prefix,
        environment="test",
        log_level="warning",
        shutdown_grace_seconds=5,
        **extra,
    )
    await migrate(db_url, settings.app_db_role, settings.app_db_password)
    app_pool = await create_pool(
        with_user(db_url, settings.app_db_role, settings.app_db_password), max_size=5
    )
    cleanup.push_async_callback(app_pool.close)
    owner_pool = await create_pool(db_url, max_size=5)
    cleanup.push_async_callback(owner_pool.close)
    local = await LocalStack(settings, roles=(), host=host).start(in_process_workers=False)
    cleanup.push_async_callback(local.stop)
    env = {
        **local.worker_env(),
        "RABBITMQ_URL": brokers,
        "DATABASE_URL": db_url,
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    return settings, local, app_pool, owner_pool, env


# ---------------------------------------------------------------- the load


@dataclass
class Size:
    name: str
    messages: int
    spread_seconds: float  # contacts start over this long
    gap_seconds: float  # between one contact's messages
    drain_timeout: float
    stall_seconds: float  # give up draining when nothing moved for this long


FAST = Size("fast", 300, 4.0, 0.3, 90, 15)
SLOW = Size("slow", 5000, 60.0, 1.0, 900, 60)


@dataclass
class Load:
    orgs: list[BenchOrg]
    scripts: list[Script]
    dup_share: float
    out_of_order: bool
    rng: random.Random
    accepted: dict[str, float] = field(default_factory=dict)  # message id -> time answered 200
    steps: dict[tuple[int, int], str] = field(default_factory=dict)  # (script, step) -> message id
    poison: set[str] = field(default_factory=set)
    counts: Counter[str] = field(default_factory=Counter)
    # Posts in flight at once: thousands of waiters in httpx's pool cost it quadratic CPU, in the process that
    # also runs the gateway and the simulator.
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(32))

    def expected_replies(self) -> int:
        return sum(
            self.scripts[s].steps[k].replies for (s, k), mid in self.steps.items() if mid in self.accepted
        )


async def deliver(
    local: LocalStack, load: Load, envelope: dict[str, Any], give_up: float = 180
) -> float | None:
    """POST until answered 200 (Meta retries for days; we for ``give_up`` seconds); the time of the 200."""
    deadline = time.monotonic() + give_up
    assert local.poster is not None
    while time.monotonic() < deadline:
        load.counts["posts"] += 1
        try:
            async with load.slots:
                if (await local.poster.post(envelope)).status_code == 200:
                    return time.time()
        except httpx.HTTPError:
            pass
        load.counts["retries"] += 1
        await asyncio.sleep(0.5)
    return None


async def run_contact(local: LocalStack, load: Load, si: int, size: Size) -> None:
    await asyncio.sleep(load.rng.uniform(0, size.spread_seconds))
    script, late = load.scripts[si], None
    for k in range(len(script.steps)):
        msg_id = new_message_id()
        envelope = script.envelope(k, msg_id)
        load.steps[(si, k)] = msg_id
        if (at := await deliver(local, load, envelope)) is not None:
            load.accepted[msg_id] = at
        if late is not None:  # the previous message's second copy, after this one: out of order
            await deliver(local, load, late)
            late = None
        if load.rng.random() < load.dup_share:
            if load.out_of_order and load.rng.random() < 0.5:
                late = envelope
            else:
                await deliver(local, load, envelope)
        await asyncio.sleep(size.gap_seconds * load.rng.uniform(0.5, 1.5))
    if late is not None:
        await deliver(local, load, late)


def unknown_number_envelopes(org: BenchOrg, count: int, tag: str) -> list[tuple[str, dict[str, Any]]]:
    """Signed webhooks for a phone_number_id no organisation has: the gateway queues them, a worker parks them."""
    rng = random.Random(count)
    out = []
    for i in range(count):
        script = make_scripts([org], 1, rng, prefix=f"2548{tag}{i:03d}")[0]
        msg_id = new_message_id()
        out.append((msg_id, script.envelope(0, msg_id, phone_number_id=f"pnunknown{tag}")))
    return out


MALFORMED_PARTS = (
    b"not json {",
    b'{"v": 1, "note": "no kind"}',
    b'{"v": 1, "kind": "message", "payload": {}}',
)


async def publish_malformed(stack: FaultStack, load: Load, count: int) -> None:
    """Broken event bodies put straight on the inbound shards (what a buggy or older gateway could queue): not
    JSON, no kind, a message without its ids. The workers must park them and carry on."""
    from engine.broker import Publisher, Topology, connect

    topology = Topology.from_settings(stack.settings)
    connection = await connect(stack.settings)
    async with connection:
        publisher = await Publisher.open(connection, 10)
        for i in range(count):
            msg_id = f"malformed.{new_tag()}"
            await publisher.publish(
                topology.inbound_exchange,
                topology.inbound_route(msg_id),
                MALFORMED_PARTS[i % len(MALFORMED_PARTS)],
                message_id=msg_id,
            )
            load.poison.add(msg_id)
            load.accepted[msg_id] = time.time()


async def post_refused(local: LocalStack, count: int, counts: Counter[str]) -> None:
    """Signed bodies that are not webhook envelopes: the gateway answers 400 and nothing is queued."""
    assert local.poster is not None
    for i in range(count):
        body = serialise({"object": "whatsapp_business_account", "entry": f"not a list {i}"})
        response = await local.poster._client.post(  # a raw body: WebhookPoster only sends envelopes
            local.poster.gateway_url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": sign(body, local.poster.app_secret),
            },
        )
        counts["refused_400" if response.status_code == 400 else "refused_other"] += 1


# ---------------------------------------------------------------- one scenario


Fault = Callable[
    [FaultStack, Size], Coroutine[Any, Any, float | None]
]  # returns when the fault ended (or None)


@dataclass
class Scenario:
    fault: Fault | None = None
    dup_share: float = 0.05
    out_of_order: bool = False
    statuses: bool = False
    poison_share: float = 0.0
    refused: int = 0
    allowed_duplicates: Callable[[FaultStack], int] = lambda stack: 0
    # more measures once the checks ran (the cluster scenarios': order, throughput during the fault)
    after: Callable[[FaultStack, Load, dict[str, Any]], Coroutine[Any, Any, None]] | None = None
    org_settings: dict[str, Any] | None = None  # merged into the first organisation's settings


async def run_scenario(stack: FaultStack, name: str, scenario: Scenario, size: Size) -> dict[str, Any]:
    tag = new_tag()
    orgs = await create_bench_orgs(stack.app_pool, 2, tag, tokens=1_000_000)
    if scenario.org_settings:
        await stack.owner_pool.execute(
            "UPDATE organizations SET settings = coalesce(settings, '{}') || $2::text::jsonb WHERE id = $1",
            orgs[0].id,
            json.dumps(scenario.org_settings),
        )
    rng = random.Random(tag)
    load = Load(
        orgs,
        make_scripts(orgs, size.messages, rng, prefix=f"2547{tag[:4]}"),
        scenario.dup_share,
        scenario.out_of_order,
        rng,
    )
    if scenario.statuses:
        stack.local.whatsapp.report_statuses(stack.local.poster, ("sent", "delivered", "read"))
    poisoned = int(size.messages * scenario.poison_share)
    poison = unknown_number_envelopes(orgs[0], poisoned - poisoned // 2, tag[:4])
    started = time.time()
    tasks = [run_contact(stack.local, load, i, size) for i in range(len(load.scripts))]
    tasks += [
        _poison_later(stack.local, load, msg_id, env, rng.uniform(0, size.spread_seconds))
        for msg_id, env in poison
    ]
    fault = asyncio.create_task(scenario.fault(stack, size)) if scenario.fault else None
    await asyncio.gather(
        *tasks,
        post_refused(stack.local, scenario.refused, load.counts),
        publish_malformed(stack, load, poisoned // 2),
    )
    fault_end = await fault if fault else None
    await wait_drained(stack, load, size.drain_timeout, size.stall_seconds)
    stack.reset()
    from tests.faults.checks import check

    outcome = await check(stack, load, name, size.name, started, fault_end)
    outcome["allowed_duplicates"] = scenario.allowed_duplicates(stack)
    if scenario.after is not None:
        await scenario.after(stack, load, outcome)
    return outcome


async def _poison_later(
    local: LocalStack, load: Load, msg_id: str, envelope: dict[str, Any], delay: float
) -> None:
    await asyncio.sleep(delay)
    load.poison.add(msg_id)
    if (at := await deliver(local, load, envelope)) is not None:
        load.accepted[msg_id] = at


async def wait_drained(stack: FaultStack, load: Load, timeout: float, stall: float = 30) -> None:
    """Until every accepted message is stored and every reply it owes was accepted by WhatsApp; or until nothing
    moved for ``stall`` seconds (a stuck engine fails its checks sooner); or ``timeout``."""
    org_ids: list[UUID] = [o.id for o in load.orgs]
    wanted = (len(set(load.accepted) - load.poison), load.expected_replies())
    deadline, last, moved = time.monotonic() + timeout, None, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - moved < stall:
        try:
            row = await stack.owner_pool.fetchrow(
                """SELECT count(*) FILTER (WHERE direction = 'inbound') AS stored,
                          count(*) FILTER (WHERE direction = 'outbound' AND wa_message_id IS NOT NULL) AS sent
                   FROM messages WHERE organization_id = ANY($1::uuid[])""",
                org_ids,
            )
            now = (row["stored"], row["sent"])
            if now[0] >= wanted[0] and now[1] >= wanted[1]:
                break
            if now != last:
                last, moved = now, time.monotonic()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.5)  # late duplicate sends, parked poison still on its retries
