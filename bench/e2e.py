"""End-to-end benchmark: signed webhooks in, replies out, everything real and in separate processes.

An open-loop load generator posts webhooks at a fixed arrival rate (request i at t0 + i/rate, whether or not
earlier ones were answered) over a pool of keep-alive connections, to ``python webhook_gateway.py``; the
workers (``python worker.py --role inbound`` xN, ``relay``, ``sender``) process them through RabbitMQ and
PostgreSQL and reply to a WhatsApp simulator process. The mix, over thousands of contacts of a few
organisations: a first "hi" (menu), menu choices, survey answers and poll votes, 5% of messages posted twice,
and delivered/read status updates for replies already sent.

Latency is from the gateway's 200 to the reply's arrival at the simulator, matched by contact and order.
Also measured: the achieved send rate and scheduling lag, the CPU of every process (gateway, each worker,
simulator, load generator, RabbitMQ's beam.smp, PostgreSQL's processes), queue depths over time, worker RSS,
and (unless --no-baselines) the raw limits of PostgreSQL and RabbitMQ on this machine (bench/baselines.py).

    python bench/e2e.py --rate 200 --duration 20            # one level
    python bench/e2e.py --steps 100,200,500,1000 --duration 30  # one row per rate (make bench)
    python bench/e2e.py --rate 100 --duration 600           # the 10-minute run (worker memory)
    python bench/e2e.py --rate 100 --duration 30 --profile  # py-spy profile of an inbound worker

Writes bench/results/e2e-<rate>-<duration>s.json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    BenchOrg,
    CpuMeter,
    KeepAliveClient,
    RssMeter,
    Script,
    broker_processes,
    create_bench_orgs,
    create_database,
    drop_database,
    free_port,
    make_scripts,
    new_tag,
    percentile,
    postgres_processes,
    python_process,
    signed,
    start_simulator,
    status_envelope,
    stop_processes,
)
from engine.broker import Topology  # noqa: E402
from engine.settings import Settings  # noqa: E402
from simulators.whatsapp import new_message_id  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CONTACT_GAP_SECONDS = 2.0  # a contact's next message comes about this long after the previous one
DRAIN_STALL_SECONDS = 20.0
STATUS_DELAY_SECONDS = 1.5


@dataclass
class Event:
    kind: str  # "message" | "duplicate" | "status"
    script: int = -1
    step: int = -1
    body: bytes = b""
    signature: str = ""


@dataclass
class Level:
    rate: float
    scripts: list[Script]
    events: list[Event]
    accepted: dict[tuple[int, int], float] = field(default_factory=dict)  # (script, step) -> time of the 200
    lags: list[float] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    first_post: float = 0.0
    last_post: float = 0.0


def build_schedule(
    scripts: list[Script],
    duration: float,
    status_share: float,
    dup_share: float,
    rng: random.Random,
    secret: str,
) -> list[Event]:
    """Every script's steps a few seconds apart from a random start, duplicates shortly after their original,
    status slots spread evenly; ordered by time (the sender then re-times them at exactly 1/rate)."""
    timed: list[tuple[float, Event]] = []
    for si, script in enumerate(scripts):
        span = CONTACT_GAP_SECONDS * 1.25 * (len(script.steps) - 1)
        t = rng.uniform(0, max(0.01, duration * 0.95 - span))
        for k in range(len(script.steps)):
            body, sig = signed(script.envelope(k, new_message_id()), secret)
            timed.append((t, Event("message", si, k, body, sig)))
            if rng.random() < dup_share:
                timed.append((t + rng.uniform(0.05, 1.0), Event("duplicate", si, k, body, sig)))
            t += CONTACT_GAP_SECONDS * rng.uniform(0.75, 1.25)
    statuses = int(len(timed) * status_share / max(1e-9, 1 - status_share))
    timed += [(rng.uniform(1.0, duration), Event("status")) for _ in range(statuses)]
    timed.sort(key=lambda x: x[0])
    return [e for _, e in timed]


def new_level(orgs: list[BenchOrg], rate: float, args: argparse.Namespace, secret: str, tag: str) -> Level:
    rng = random.Random(args.seed + int(rate))
    total = rate * args.duration
    messages = int(total * (1 - args.status_share) / (1 + args.dup_share))
    scripts = make_scripts(orgs, messages, rng, prefix=f"2547{tag}")
    return Level(
        rate, scripts, build_schedule(scripts, args.duration, args.status_share, args.dup_share, rng, secret)
    )


# ---------------------------------------------------------------- what the simulator received


@dataclass
class Replies:
    """Polls the simulator for newly recorded replies; feeds the status pool (delivered, then read) with replies
    old enough for the sender to have recorded their WhatsApp id, as Meta's statuses come a little later."""

    url: str
    rows: list[list[Any]] = field(default_factory=list)  # [to, wamid, received_at, phone_number_id]
    offset: int = 0
    statuses: deque[tuple[str, str, str, str]] = field(default_factory=deque)
    _maturing: deque[list[Any]] = field(default_factory=deque)

    async def poll(self, client: httpx.AsyncClient) -> int:
        new = (await client.get(f"{self.url}/_bench/recorded", params={"after": self.offset})).json()
        self.offset += len(new)
        self.rows.extend(new)
        self._maturing.extend(new)
        while self._maturing and self._maturing[0][2] < time.time() - STATUS_DELAY_SECONDS:
            to, wamid, _, pnid = self._maturing.popleft()
            self.statuses.append((to, wamid, pnid, "delivered"))
        return len(new)

    async def poll_forever(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            while not stop.is_set():
                try:
                    await self.poll(client)
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.25)

    def start_level(self) -> int:
        self.rows.clear()
        self.statuses.clear()
        self._maturing.clear()
        return self.offset


# ---------------------------------------------------------------- the open-loop sender


async def send(client: KeepAliveClient, level: Level, ev: Event, replies: Replies, secret: str) -> None:
    body, sig = ev.body, ev.signature
    if ev.kind == "status":
        if not replies.statuses:
            level.counts["status_skipped"] += 1
            return
        to, wamid, pnid, status = replies.statuses.popleft()
        if status == "delivered":
            replies.statuses.append((to, wamid, pnid, "read"))
        body, sig = signed(status_envelope(pnid, wamid, to, status), secret)
    for _ in range(5):  # like Meta: a webhook not answered 200 is delivered again
        try:
            code = await client.post("/webhook", body, sig)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            code = 0
        if code == 200:
            break
        level.counts["retries"] += 1
        await asyncio.sleep(0.5)
    else:
        level.counts["errors"] += 1
        return
    now = time.time()
    level.counts[ev.kind] += 1
    level.last_post = now
    if ev.kind == "message":
        level.accepted[(ev.script, ev.step)] = now


async def drive(level: Level, port: int, connections: int, replies: Replies, secret: str) -> None:
    """Event i is due at t0 + i/rate; a free connection takes it then. Lag = start of its POST - due time."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, Event] | None] = asyncio.Queue()
    clients = [KeepAliveClient("127.0.0.1", port) for _ in range(connections)]
    t0 = loop.time() + 0.2
    level.first_post = time.time() + 0.2

    async def produce() -> None:
        for i, ev in enumerate(level.events):
            due = t0 + i / level.rate
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((due, ev))
        for _ in clients:
            queue.put_nowait(None)

    async def consume(client: KeepAliveClient) -> None:
        while (item := await queue.get()) is not None:
            due, ev = item
            level.lags.append(loop.time() - due)
            await send(client, level, ev, replies, secret)
        await client.close()

    await asyncio.gather(produce(), *(consume(c) for c in clients))


# ---------------------------------------------------------------- sampling while it runs


@dataclass
class Samplers:
    cpu: CpuMeter
    rss: RssMeter
    postmaster: psutil.Process
    db_name: str
    queues: list[dict[str, float]] = field(default_factory=list)
    lock_waits: Counter[str] = field(default_factory=Counter)  # "waiting statement <- blocker's statement"

    async def run(self, stop: asyncio.Event, settings: Settings, owner: asyncpg.Pool, started: float) -> None:
        import aio_pika

        from engine.broker_admin import amqp_queue_stats

        topology = Topology.from_settings(settings)
        connection = await aio_pika.connect(str(settings.rabbitmq_url))
        tick = 0
        async with connection:
            while not stop.is_set():
                t = time.time() - started
                stats = await amqp_queue_stats(
                    connection, topology.inbound_queues() + topology.outbound_queues()
                )
                # Prefetched messages are not "ready": the workers' own count of received-not-acked adds them.
                held = {
                    r["role"]: r["n"]
                    for r in await owner.fetch(
                        """SELECT role, sum(in_flight)::int AS n FROM worker_heartbeats
                       WHERE heartbeat_at > now() - interval '6 seconds' GROUP BY role"""
                    )
                }
                self.queues.append(
                    {
                        "t": round(t, 2),
                        "inbound_ready": sum(s.ready or 0 for s in stats if ".inbound." in s.name),
                        "inbound_in_workers": held.get("inbound", 0),
                        "outbound_ready": sum(s.ready or 0 for s in stats if ".outbound." in s.name),
                        "outbound_in_workers": held.get("sender", 0),
                        "outbox": await owner.fetchval(
                            "SELECT count(*) FROM outbox WHERE relayed_at IS NULL"
                        ),
                        **dict(
                            await owner.fetchrow(
                                """SELECT count(*) FILTER (WHERE wait_event_type = 'Lock') AS db_lock_waits,
                                  count(*) FILTER (WHERE state = 'active') AS db_active
                           FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"""
                            )
                        ),
                    }
                )
                try:
                    await self.sample_lock_waits(owner)
                except asyncpg.PostgresError as err:  # a diagnostic: a sample lost, never the run's figures
                    self.lock_waits[f"(sample failed: {type(err).__name__})"] += 1
                self.cpu.sample({"postgres": self.postgres()})
                if tick % 5 == 0:
                    self.rss.sample(t)
                tick += 1
                await asyncio.sleep(1.0)

    async def sample_lock_waits(self, owner: asyncpg.Pool) -> None:
        """Which statements wait on a lock, and what the transaction holding it is running now."""
        # The holder through a lateral join of at most one row, not a scalar subquery: pg_stat_activity is not a
        # consistent snapshot across backends (only each row is), so one pid may show twice, and the scalar
        # subquery raised CardinalityViolationError ("more than one row returned by a subquery used as an
        # expression") in the 100,000-contact broadcast's run, which ended the sampling task and, when it was
        # awaited, the whole run before its figures.
        rows = await owner.fetch(
            """SELECT regexp_replace(left(a.query, 60), '\\s+', ' ', 'g') AS waiting, h.holder
               FROM pg_stat_activity a
               LEFT JOIN LATERAL (SELECT regexp_replace(left(b.query, 60), '\\s+', ' ', 'g') AS holder
                                  FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(a.pid))[1]
                                  LIMIT 1) AS h ON true
               WHERE a.datname = current_database() AND a.wait_event_type = 'Lock'"""
        )
        self.lock_waits.update(f"{r['waiting']}  <-  {r['holder']}" for r in rows)

    def postgres(self) -> list[psutil.Process]:
        """The server's own processes and the backends of this benchmark's database (the server may be shared)."""
        mine = [self.postmaster]
        for child in self.postmaster.children():
            try:
                cmd = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if self.db_name in cmd or "[local]" not in cmd:
                mine.append(child)
        return mine


async def scrape(ports: dict[str, int]) -> dict[str, dict[str, float]]:
    """Each worker's Prometheus counters and histogram sums, flattened to 'name{labels}': value."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=5) as client:
        for name, port in ports.items():
            try:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.HTTPError:
                continue
            flat = {}
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name.endswith(("_sum", "_count", "_total")) and s.name.startswith("chatnation_"):
                        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                        flat[f"{s.name}{{{labels}}}"] = s.value
            out[name] = flat
    return out


def time_per_event(before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Mean handling time per event kind (inbound) and per WhatsApp request (sender), over the level."""
    out: dict[str, Any] = {}
    for worker, now in after.items():
        then = before.get(worker, {})
        for key, total in now.items():
            if not key.endswith("}") or "_sum{" not in key:
                continue
            count_key = key.replace("_sum{", "_count{")
            n = now.get(count_key, 0) - then.get(count_key, 0)
            if n > 0:
                name = key.removeprefix("chatnation_").replace("_seconds_sum", "")
                out[f"{worker} {name}"] = {
                    "n": int(n),
                    "mean_ms": round((total - then.get(key, 0)) / n * 1000, 2),
                }
    return out


# ---------------------------------------------------------------- results


def match_replies(level: Level, rows: list[list[Any]]) -> dict[str, Any]:
    """Per contact, the k-th step's replies are the next ``step.replies`` replies to that contact, in arrival
    order (the engine keeps one contact's events in order). Latency: the 200 -> the step's first reply."""
    by_to: dict[str, list[float]] = defaultdict(list)
    for to, _, received_at, _ in rows:
        by_to[to].append(received_at)
    latencies: list[tuple[float, float]] = []  # (accepted at, latency ms)
    missing = extra = 0
    for si, script in enumerate(level.scripts):
        got = sorted(by_to.get(script.wa_id, []))
        used = 0
        for k, step in enumerate(script.steps):
            accepted = level.accepted.get((si, k))
            if accepted is None:
                break
            mine, used = got[used : used + step.replies], used + step.replies
            missing += step.replies - len(mine)
            if mine:
                latencies.append((accepted, (mine[0] - accepted) * 1000))
        extra += max(0, len(got) - used)
    return {"latencies": latencies, "missing": missing, "extra": extra}


def summarise(
    level: Level,
    rows: list[list[Any]],
    matched: dict[str, Any],
    samplers: Samplers,
    cpu: dict[str, float],
    limits: dict[str, Any],
) -> dict[str, Any]:
    lat = [ms for _, ms in matched["latencies"]]
    posting = max(1e-9, level.last_post - level.first_post)
    last_reply = max((r[2] for r in rows), default=level.last_post)
    sustained = len(lat) / max(1e-9, last_reply - level.first_post)
    out = {
        "rate": level.rate,
        "events": len(level.events),
        "contacts": len(level.scripts),
        "posted": dict(level.counts),
        "achieved_webhooks_per_s": round(
            sum(level.counts[k] for k in ("message", "duplicate", "status")) / posting, 1
        ),
        "lag_ms": {
            "p50": round(percentile(level.lags, 50) * 1000, 1),
            "p99": round(percentile(level.lags, 99) * 1000, 1),
            "max": round(max(level.lags, default=0) * 1000, 1),
        },
        "messages_per_s_offered": round(level.counts["message"] / posting, 1),
        "messages_per_s_sustained": round(sustained, 1),
        "latency_ms": {p: round(percentile(lat, q), 1) for p, q in (("p50", 50), ("p95", 95), ("p99", 99))}
        | {"max": round(max(lat, default=0), 1)},
        "replies": {
            "expected": sum(level.scripts[s].steps[k].replies for s, k in level.accepted),
            "received": len(rows),
            "missing": matched["missing"],
            "extra": matched["extra"],
        },
        "drain_seconds": round(last_reply - max(level.accepted.values(), default=last_reply), 2),
        "cpu_percent": cpu,
        "rss": samplers.rss.summary(),
        "max_queue": {k: max((q[k] for q in samplers.queues), default=0) for k in QUEUE_SERIES},
        "queue_samples": samplers.queues,
        "baselines": limits,
        "lock_waits_top": samplers.lock_waits.most_common(10),
        "latency_series": [(round(a - level.first_post, 3), round(ms, 1)) for a, ms in matched["latencies"]],
    }
    for name, limit in (
        ("postgres", limits.get("postgres_msgs_per_s")),
        ("broker", limits.get("broker_msgs_per_s")),
    ):
        out[f"ratio_to_{name}_limit"] = round(sustained / limit, 3) if limit else None
    return out


QUEUE_SERIES = {
    "inbound_ready": "inbound queues, ready",
    "inbound_in_workers": "inbound, prefetched by workers",
    "outbound_ready": "outbound queues, ready",
    "outbound_in_workers": "outbound, prefetched by the sender",
    "outbox": "outbox backlog",
    "db_lock_waits": "transactions waiting on a row lock",
}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    series = result["latency_series"]
    buckets: dict[int, list[float]] = defaultdict(list)
    for t, ms in series:
        buckets[int(t)].append(ms)
    secs = sorted(buckets)
    ax1.scatter([t for t, _ in series], [ms for _, ms in series], s=2, alpha=0.15, color="grey")
    for q, colour in ((50, "tab:blue"), (99, "tab:red")):
        ax1.plot(secs, [percentile(buckets[s], q) for s in secs], color=colour, label=f"p{q} per second")
    ax1.set_ylabel("webhook accepted -> reply (ms)")
    ax1.set_yscale("log")
    ax1.legend()
    ax1.set_title(
        f"{result['rate']:.0f} webhooks/s offered, {result['messages_per_s_sustained']} messages/s sustained"
    )
    qs = result["queue_samples"]
    for key, label in QUEUE_SERIES.items():
        ax2.plot([q["t"] for q in qs], [q[key] for q in qs], label=label)
    ax2.set_xlabel("seconds")
    ax2.set_ylabel("messages")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


HEADER = (
    f"{'rate':>6} {'sent/s':>7} {'lag p99':>8} {'msg/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>8} "
    f"{'max ms':>8} {'replies':>8} {'missing':>7} {'extra':>6} {'max inQ':>8} {'drain s':>8}"
)


def row(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    return (
        f"{r['rate']:>6.0f} {r['achieved_webhooks_per_s']:>7.0f} {r['lag_ms']['p99']:>8.1f} "
        f"{r['messages_per_s_sustained']:>7.0f} {lat['p50']:>7.1f} {lat['p95']:>7.1f} {lat['p99']:>8.1f} "
        f"{lat['max']:>8.1f} {r['replies']['received']:>8} {r['replies']['missing']:>7} {r['replies']['extra']:>6} "
        f"{r['max_queue']['inbound_ready'] + r['max_queue']['inbound_in_workers']:>8} {r['drain_seconds']:>8.1f}"
    )


# ---------------------------------------------------------------- the stack


@dataclass
class Stack:
    settings: Settings
    db_name: str
    owner_url: str
    db_url: str
    gateway_port: int
    sim_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    metrics_ports: dict[str, int] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        s = self.settings
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "BROKER_PREFIX": s.broker_prefix,
            "DATABASE_URL": self.db_url,
            "WHATSAPP_API_BASE_URL": f"http://127.0.0.1:{self.sim_port}",
            "SEND_RATE_PER_SECOND": "100000",
            "PAIR_RATE_PER_SECOND": "1000",
            "PAIR_RATE_BURST": "1000",
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.gateway_port),
        }

    def start(self, inbound: int, concurrency: int) -> None:
        env = self.env()
        self.procs["simulator"] = start_simulator(self.sim_port)
        self.procs["gateway"] = python_process([str(ROOT / "webhook_gateway.py")], env)
        roles = [(f"inbound-{i + 1}", "inbound") for i in range(inbound)] + [
            ("relay", "relay"),
            ("sender", "sender"),
        ]
        for name, role in roles:
            self.metrics_ports[name] = free_port()
            self.procs[name] = python_process(
                [
                    str(ROOT / "worker.py"),
                    "--role",
                    role,
                    "--concurrency",
                    str(concurrency),
                    "--metrics-port",
                    str(self.metrics_ports[name]),
                ],
                env,
            )

    def workers(self) -> dict[str, psutil.Process]:
        return {
            n: psutil.Process(p.pid)
            for n, p in self.procs.items()
            if n.startswith(("inbound", "relay", "sender"))
        }

    async def wait_ready(self, owner: asyncpg.Pool, timeout: float = 90) -> None:
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=2) as client:
            for url in (
                f"http://127.0.0.1:{self.gateway_port}/readyz",
                f"http://127.0.0.1:{self.sim_port}/_sim/health",
            ):
                while True:
                    for name, proc in self.procs.items():
                        if proc.poll() is not None:
                            raise SystemExit(f"{name} exited with {proc.returncode}")
                    try:
                        if (await client.get(url)).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.2)
            wanted = {"inbound": self.settings.inbound_shards, "sender": self.settings.outbound_shards}
            while True:
                rows = await owner.fetch(
                    """SELECT role, sum(cardinality(shards))::int AS shards FROM worker_heartbeats
                       WHERE heartbeat_at > now() - interval '6 seconds' GROUP BY role"""
                )
                if all({r["role"]: r["shards"] for r in rows}.get(k) == v for k, v in wanted.items()):
                    return
                await asyncio.sleep(0.5)

    async def samplers(self, extra: dict[str, int] | None = None) -> Samplers:
        """CPU meters on the gateway, each worker, RabbitMQ and PostgreSQL (plus ``extra`` named pids), RSS on the
        workers, and the queue and lock-wait sampling of this stack's database."""
        cpu = CpuMeter()
        cpu.add("gateway", [self.procs["gateway"].pid])
        for name, proc in self.workers().items():
            cpu.add(name, [proc])
        for name, pid in (extra or {}).items():
            cpu.add(name, [pid])
        cpu.add("rabbitmq", broker_processes(self.settings.rabbitmq_url.port or 5672))
        pg = await postgres_processes(self.db_url)
        samplers = Samplers(cpu, RssMeter(self.workers()), pg[0], self.db_name)
        cpu.add("postgres", samplers.postgres())
        return samplers

    @classmethod
    async def on_new_database(cls, settings: Settings, owner_url: str, tag: str) -> Stack:
        """A stack on a database of its own, created now (``teardown`` drops it)."""
        db_name = f"bench_{tag}"
        db_url = await create_database(owner_url, db_name)
        update = {"database_url": db_url}
        return cls(settings.model_copy(update=update), db_name, owner_url, db_url, free_port(), free_port())

    async def migrated_pools(self) -> tuple[Any, Any]:
        """The stack's database migrated; a pool as the application role and one as the owner."""
        from engine.db import create_pool, with_user
        from engine.migrate import migrate

        s = self.settings
        await migrate(self.db_url, s.app_db_role, s.app_db_password)
        app = await create_pool(with_user(self.db_url, s.app_db_role, s.app_db_password), max_size=4)
        return app, await create_pool(self.db_url, max_size=4)

    async def teardown(self) -> None:
        stop_processes(self.procs.values())
        import aio_pika

        try:
            connection = await aio_pika.connect(str(self.settings.rabbitmq_url))
            async with connection:
                await Topology.from_settings(self.settings).delete(await connection.channel())
        finally:
            await drop_database(self.owner_url, self.db_name)


# ---------------------------------------------------------------- one level


async def wait_drained(level: Level, replies: Replies, timeout: float) -> None:
    expected = sum(level.scripts[s].steps[k].replies for s, k in level.accepted)
    deadline = time.monotonic() + timeout
    seen, last_progress = -1, time.monotonic()
    while len(replies.rows) < expected and time.monotonic() < deadline:
        if len(replies.rows) != seen:
            seen, last_progress = len(replies.rows), time.monotonic()
        elif time.monotonic() - last_progress > DRAIN_STALL_SECONDS:
            break
        await asyncio.sleep(0.25)
    await asyncio.sleep(1.0)  # late extras (duplicate sends) still count


def start_profile(pid: int, seconds: float, rate: float) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """py-spy on one inbound worker: a flame graph (SVG) and the collapsed stacks the summary reads."""
    spy = Path(sys.executable).parent / "py-spy"
    RESULTS.mkdir(parents=True, exist_ok=True)  # a fresh clone has none yet: py-spy would write nothing
    out = []
    for fmt, suffix in (("flamegraph", "svg"), ("raw", "txt")):
        path = RESULTS / f"profile-inbound-{rate:.0f}.{suffix}"
        cmd = [
            str(spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--nonblocking",
            "--format",
            fmt,
            "-o",
            str(path),
        ]
        out.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), path))
    return out


def profile_summary(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """Share of samples per function by self time, from py-spy's collapsed stacks."""
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        own[stack.split(";")[-1]] += int(count)
    return [(frame, round(100 * n / max(1, total), 1)) for frame, n in own.most_common(top)]


async def run_level(
    stack: Stack,
    orgs: list[BenchOrg],
    rate: float,
    args: argparse.Namespace,
    owner: asyncpg.Pool,
    replies: Replies,
    limits: dict[str, Any],
    profile: bool,
) -> dict[str, Any]:
    secret = stack.settings.whatsapp_app_secret
    level = new_level(orgs, rate, args, secret, tag=f"{int(rate) % 1000:03d}")
    replies.start_level()
    samplers = await stack.samplers(extra={"simulator": stack.procs["simulator"].pid, "loadgen": os.getpid()})
    cpu = samplers.cpu
    before = await scrape(stack.metrics_ports)
    stop = asyncio.Event()
    started = time.time()
    cpu.start()
    sampling = asyncio.create_task(samplers.run(stop, stack.settings, owner, started))
    spies = start_profile(stack.procs["inbound-1"].pid, args.duration, rate) if profile else []
    await drive(level, stack.gateway_port, args.connections, replies, secret)
    await wait_drained(level, replies, timeout=max(120.0, args.duration * 2))
    usage = cpu.percent()
    stop.set()
    await sampling
    result = summarise(level, replies.rows, match_replies(level, replies.rows), samplers, usage, limits)
    result["time_per_event"] = time_per_event(before, await scrape(stack.metrics_ports))
    for proc, path in spies:
        await asyncio.to_thread(proc.wait, 60)
        if path.suffix == ".txt" and path.exists():
            result["profile_top_self"] = profile_summary(path)
        elif path.suffix == ".txt":
            print(f"    profile: py-spy wrote nothing (exit code {proc.returncode})", flush=True)
    return result


def write_results(result: dict[str, Any], duration: float) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RESULTS / f"e2e-{result['rate']:.0f}-{duration:.0f}s"
    base.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, base.with_suffix(".png"))


def print_details(r: dict[str, Any]) -> None:
    cpu = "  ".join(f"{k} {v:.0f}%" for k, v in r["cpu_percent"].items())
    print(f"    CPU (% of one core): {cpu}")
    print(f"    posted: {r['posted']}; lag p50/p99/max ms: {r['lag_ms']}")
    print(
        "    worker RSS MiB (first/last/max): "
        + "  ".join(f"{n} {m['first_mib']}/{m['last_mib']}/{m['max_mib']}" for n, m in r["rss"].items())
    )
    if any(len(m["by_minute_mib"]) > 2 for m in r["rss"].values()):
        for n, m in r["rss"].items():
            print(f"    {n} RSS MiB at the end of each minute: {m['by_minute_mib']}")
    if r.get("ratio_to_postgres_limit") is not None:
        print(
            f"    sustained / PostgreSQL limit: {r['ratio_to_postgres_limit']}, "
            f"/ RabbitMQ limit: {r['ratio_to_broker_limit']}"
        )
    for waits, n in r.get("lock_waits_top", [])[:5]:
        print(f"    lock waits seen {n:>4}x: {waits}")
    for name, t in r.get("time_per_event", {}).items():
        print(f"    {name}: {t['n']} x {t['mean_ms']} ms")
    for frame, share in r.get("profile_top_self", []):
        print(f"    profile {share:5.1f}%  {frame}")


# ---------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> None:
    from engine.db import database_urls

    tag = new_tag()
    settings = Settings(broker_prefix=f"bench{tag}")
    if settings.rabbitmq_url.host not in LOOPBACK:
        raise SystemExit("this benchmark only talks to a loopback broker")
    base = await database_urls(settings)
    limits: dict[str, Any] = {}
    if not args.no_baselines:
        from bench.baselines import broker_baseline, engine_limits, pgbench_baseline

        pg = await pgbench_baseline(base.owner, args.baseline_seconds)
        broker = await broker_baseline(str(settings.rabbitmq_url), args.baseline_seconds)
        limits = {"pgbench": pg, "broker": broker, **engine_limits(pg, broker)}
        print(
            f"baselines: pgbench {pg['tps']} tx/s (one inbound message's transaction), RabbitMQ "
            f"{broker['publish_per_s']} confirmed publishes/s + {broker['consume_per_s']} consumes/s; "
            f"limits for the engine: {limits['postgres_msgs_per_s']} and {limits['broker_msgs_per_s']} msg/s"
        )
    stack = await Stack.on_new_database(settings, base.owner, tag)
    try:
        app, owner = await stack.migrated_pools()
        orgs = await create_bench_orgs(app, args.orgs, tag, tokens=100_000_000)
        stack.start(args.workers, args.concurrency)
        await stack.wait_ready(owner)
        await run_levels(stack, orgs, args, owner, limits)
        await app.close()
        await owner.close()
    finally:
        await stack.teardown()


async def run_levels(
    stack: Stack, orgs: list[BenchOrg], args: argparse.Namespace, owner: asyncpg.Pool, limits: dict[str, Any]
) -> None:
    replies = Replies(f"http://127.0.0.1:{stack.sim_port}")
    stop = asyncio.Event()
    polling = asyncio.create_task(replies.poll_forever(stop))
    try:
        await warm_up(stack, orgs, replies)
        print(
            f"{len(orgs)} organisations, {args.workers} inbound worker process(es) + relay + sender, "
            f"concurrency {args.concurrency}, {args.duration:.0f} s per rate, {psutil.cpu_count()} CPUs shared "
            f"by everything\n{HEADER}",
            flush=True,
        )
        for i, rate in enumerate(args.steps or [args.rate]):
            result = await run_level(stack, orgs, rate, args, owner, replies, limits, args.profile and i == 0)
            print(row(result), flush=True)
            print_details(result)
            write_results(result, args.duration)
    finally:
        stop.set()
        await polling


async def warm_up(stack: Stack, orgs: list[BenchOrg], replies: Replies) -> None:
    """One "hi" per organisation from a few contacts: imports, pools and caches are hot before measuring."""
    client = KeepAliveClient("127.0.0.1", stack.gateway_port)
    scripts = make_scripts(orgs, 40, random.Random(0), prefix="2549")
    for s in scripts:
        await client.post(
            "/webhook", *signed(s.envelope(0, new_message_id()), stack.settings.whatsapp_app_secret)
        )
    await client.close()
    async with asyncio.timeout(60):
        while replies.offset < len(scripts):
            await asyncio.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200, help="webhooks per second (all kinds)")
    parser.add_argument(
        "--steps",
        type=lambda s: [float(x) for x in s.split(",")],
        default=None,
        help="several rates, one row each, e.g. 250,500,1000",
    )
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per rate")
    parser.add_argument("--workers", type=int, default=2, help="inbound worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="events at once per worker process")
    parser.add_argument("--orgs", type=int, default=4)
    parser.add_argument(
        "--connections", type=int, default=64, help="keep-alive connections of the load generator"
    )
    parser.add_argument(
        "--status-share", type=float, default=0.3, help="share of webhooks that are status updates"
    )
    parser.add_argument("--dup-share", type=float, default=0.05, help="share of messages posted twice")
    parser.add_argument("--no-baselines", action="store_true", help="skip pgbench and the broker baseline")
    parser.add_argument("--baseline-seconds", type=int, default=10)
    parser.add_argument(
        "--profile", action="store_true", help="py-spy an inbound worker during the first rate"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not (
        0 < args.rate <= 5000
        and 1 <= args.duration <= 3600
        and 1 <= args.workers <= 16
        and 0 <= args.status_share < 0.9
        and 0 <= args.dup_share <= 1
    ):
        raise SystemExit("out of range: --rate 0..5000, --duration 1..3600, --workers 1..16, shares 0..0.9")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
