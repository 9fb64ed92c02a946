"""A broadcast to many contacts across two business numbers at their throughput while people keep chatting
(issue 15's measurement).

    python bench/broadcast.py --contacts 100000 --rate 80 --chat 30

What runs, each its own process: the WhatsApp simulator (``bench/common.py simulator``), the gateway, two
inbound workers, the relay, two senders and the scheduler. ``--contacts`` opted-in contacts inside their 24-hour
window are split over two organisations (one business number each, ``--rate`` messages/s each); one text
broadcast per organisation is created and the scheduler role does the rest (resolve, reserve, fan-out in
batches). Meanwhile ``--chat`` people per second say "hi" on the two numbers (new contacts, so the pair rate
never applies), and this process posts three status webhooks (sent, delivered, read) for every message the
simulator accepted, through the gateway, as WhatsApp would.

Printed and written to bench/results/broadcast-<contacts>-<rate>.json: resolve time and fan-out time; per number
the steady send rate against the limit and the busiest second of any 1-s window (all sends: bulk and replies
share the limit); reply p50/p99 from the webhook post to the reply's arrival at the simulator; the status
webhooks posted and applied over time (the backlog) and the inbound queues' depth; worker RSS at the start,
the middle and the end; the CPU of every process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import deque
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    DISPLAY_PHONE,
    RESULTS,
    CpuMeter,
    KeepAliveClient,
    RssMeter,
    broker_processes,
    new_tag,
    percentile,
    postgres_processes,
    python_process,
    signed,
    start_simulator,
    status_envelope,
)
from bench.e2e import LOOPBACK, Samplers, Stack  # noqa: E402
from bench.pacing import busiest_second, recorded  # noqa: E402
from engine.settings import Settings  # noqa: E402
from simulators.whatsapp import build_text_envelope, new_message_id  # noqa: E402

LISTENER_PREFIX = "2548"  # the broadcast's contacts; people chatting are 25471...
STATUS_STAGES = (("sent", 0.0), ("delivered", 1.0), ("read", 2.0))  # each after the accept, seconds
WORKERS = (
    ("inbound-1", "inbound"),
    ("inbound-2", "inbound"),
    ("relay", "relay"),
    ("sender-1", "sender"),
    ("sender-2", "sender"),
    ("scheduler", "scheduler"),
)


async def seed(app: asyncpg.Pool, org_id: uuid.UUID, count: int, first: int) -> None:
    """``count`` opted-in listeners, each with a conversation whose last message was an hour ago."""
    async with app.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.current_org', $1, true)", str(org_id))
        await conn.execute(
            """WITH c AS (INSERT INTO contacts (organization_id, phone, whatsapp_id, name, tags, opted_in,
                                                opted_in_at)
                          SELECT $1, p, p, 'Listener ' || g, '{listeners}', true, now()
                          FROM generate_series($2::int, $2::int + $3::int - 1) g, LATERAL (SELECT $4 || lpad(g::text, 8, '0') AS p) x
                          RETURNING id)
               INSERT INTO conversations (organization_id, contact_id, current_state, last_user_message_at)
               SELECT $1, id, 'idle', now() - interval '1 hour' FROM c""",
            org_id,
            first,
            count,
            LISTENER_PREFIX,
        )


class Statuses:
    """Three status webhooks per accepted message, posted through the gateway over keep-alive connections."""

    def __init__(self, port: int, secret: str, connections: int) -> None:
        self.port, self.secret = port, secret
        self.pending: deque[tuple[float, str, str, str, str]] = deque()  # due, pnid, wamid, to, status
        self.work: asyncio.Queue[tuple[bytes, str, bool] | None] = asyncio.Queue()
        self.connections = connections
        self.posted_bulk = 0  # delivered and read of broadcast messages, answered 200
        self.posted = 0
        self.refused = 0

    def add(self, rows: list[list[Any]], now: float) -> None:
        for to, wamid, _, pnid in rows:
            for status, delay in STATUS_STAGES:
                self.pending.append((now + delay, pnid, wamid, to, status))

    async def feed(self, stop: asyncio.Event) -> None:
        waiting: list[tuple[float, str, str, str, str]] = []
        while not (stop.is_set() and not self.pending and not waiting):
            now = time.time()
            while self.pending:
                waiting.append(self.pending.popleft())
            waiting.sort()
            due = 0
            while due < len(waiting) and waiting[due][0] <= now:
                _, pnid, wamid, to, status = waiting[due]
                body, sig = signed(status_envelope(pnid, wamid, to, status), self.secret)
                counts = status != "sent" and to.startswith(LISTENER_PREFIX)  # a broadcast's, not a reply
                self.work.put_nowait((body, sig, counts))
                due += 1
            del waiting[:due]
            await asyncio.sleep(0.1)
        for _ in range(self.connections):
            self.work.put_nowait(None)

    async def post(self) -> None:
        client = KeepAliveClient("127.0.0.1", self.port)
        try:
            while (item := await self.work.get()) is not None:
                body, sig, counts = item
                for _ in range(5):
                    try:
                        code = await client.post("/webhook", body, sig)
                    except (OSError, TimeoutError, asyncio.IncompleteReadError):
                        code = 0
                    if code == 200:
                        self.posted += 1
                        self.posted_bulk += counts
                        break
                    self.refused += 1
                    await asyncio.sleep(0.5)
        finally:
            await client.close()


async def chat(
    port: int, pnids: list[str], rate: float, stop: asyncio.Event, secret: str, posted: dict[str, float]
) -> None:
    """People saying hi at ``rate`` per second, spread over the numbers; when each webhook was posted."""
    client = KeepAliveClient("127.0.0.1", port)
    started, n = time.monotonic(), 0
    try:
        while not stop.is_set():
            wa_id = f"25471{uuid.uuid4().int % 10**7:07d}"
            body, sig = signed(
                build_text_envelope(
                    pnids[n % len(pnids)], DISPLAY_PHONE, wa_id, "Chatty", "hi", new_message_id()
                ),
                secret,
            )
            posted[wa_id] = time.time()
            try:
                await client.post("/webhook", body, sig)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                posted.pop(wa_id, None)
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    finally:
        await client.close()


def send_rates(times: list[float], limit: float) -> dict[str, Any]:
    """The steady rate (the middle 80% of the sends) against the limit, and the busiest 1-s window."""
    times = sorted(times)
    steady = times[len(times) // 10 : -max(1, len(times) // 10)]
    rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
    per_second: dict[int, int] = {}
    for t in steady:
        per_second[int(t)] = per_second.get(int(t), 0) + 1
    inner = sorted(per_second.values())[1:-1] or [0]  # whole seconds only
    interval = 1.0 / limit
    gaps = [b - a for a, b in zip(steady, steady[1:], strict=False)]
    lost = sum(g for g in gaps if g > 1.5 * interval)  # time between sends beyond back-to-back slots
    return {
        "sent": len(times),
        "steady_rate": round(rate, 1),
        # where the steady window's time went: sends back to back (gap under 1.5 slots) and longer gaps
        "gaps_over_1_5_slots": sum(1 for g in gaps if g > 1.5 * interval),
        "gaps_over_5_slots": sum(1 for g in gaps if g > 5 * interval),
        "time_in_long_gaps_percent": round(100 * lost / max(1e-9, steady[-1] - steady[0]), 1)
        if gaps
        else 0.0,
        "of_limit_percent": round(100 * rate / limit, 1),
        "busiest_second": busiest_second(times),
        "slowest_whole_second": inner[0],
    }


async def broadcast_rows(app: asyncpg.Pool, org_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    out = []
    for org_id in org_ids:
        async with app.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.current_org', $1, true)", str(org_id))
            row = await conn.fetchrow(
                """SELECT status, recipient_count, queued_count, sent_count, delivered_count, read_count,
                          failed_count, extract(epoch FROM created_at)::float8 AS created,
                          extract(epoch FROM started_at)::float8 AS started,
                          extract(epoch FROM completed_at)::float8 AS completed
                   FROM broadcasts"""
            )
            out.append(dict(row))
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    from engine.broadcasts import NewBroadcast, create
    from engine.db import database_urls, tenant_tx
    from engine.orgs import NewOrganization, create_organization

    tag = new_tag()
    settings = Settings(broker_prefix=f"bench{tag}", send_rate_per_second=args.rate)
    if settings.rabbitmq_url.host not in LOOPBACK:
        raise SystemExit("this benchmark only talks to a loopback broker")
    base = await database_urls(settings)
    stack = await Stack.on_new_database(settings, base.owner, tag)
    secret = settings.whatsapp_app_secret
    try:
        app, owner = await stack.migrated_pools()
        orgs: list[tuple[uuid.UUID, str]] = []
        t0 = time.time()
        for i in range(2):
            pnid = f"pn{tag}{i}"
            org_id = await create_organization(
                app,
                NewOrganization(
                    name=f"Radio {tag} {i}", phone_number_id=pnid, access_token="t", tokens=10**8
                ),
            )
            share = args.contacts // 2 + (args.contacts % 2 if i == 0 else 0)
            await seed(app, org_id, share, 1 + i * args.contacts)
            orgs.append((org_id, pnid))
        seeded = time.time() - t0
        env = {**stack.env(), "SEND_RATE_PER_SECOND": str(args.rate)}
        stack.procs["simulator"] = start_simulator(stack.sim_port)
        stack.procs["gateway"] = python_process([str(ROOT / "webhook_gateway.py")], env)
        for name, role in WORKERS:
            stack.procs[name] = python_process(
                [str(ROOT / "worker.py"), "--role", role, "--concurrency", "64", "--metrics-port", "0"], env
            )
        await stack.wait_ready(owner)
        await asyncio.sleep(3)  # both senders hold their shards

        workers = {n: psutil.Process(stack.procs[n].pid) for n, _ in WORKERS}
        cpu = CpuMeter()
        for name in ("gateway", "simulator"):
            cpu.add(name, [stack.procs[name].pid])
        for name, proc in workers.items():
            cpu.add(name, [proc])
        cpu.add("loadgen", [os.getpid()])
        cpu.add("rabbitmq", broker_processes(settings.rabbitmq_url.port or 5672))
        pg = await postgres_processes(stack.db_url)
        samplers = Samplers(cpu, RssMeter(workers), pg[0], stack.db_name)
        cpu.add("postgres", samplers.postgres())

        stop_sampling, stop_chat, stop_statuses = asyncio.Event(), asyncio.Event(), asyncio.Event()
        started = time.time()
        cpu.start()
        sampling = asyncio.create_task(samplers.run(stop_sampling, stack.settings, owner, started))
        posted: dict[str, float] = {}
        chatting = asyncio.create_task(
            chat(stack.gateway_port, [p for _, p in orgs], args.chat, stop_chat, secret, posted)
        )
        statuses = Statuses(stack.gateway_port, secret, args.status_connections)
        feeding = asyncio.create_task(statuses.feed(stop_statuses))
        posting = [asyncio.create_task(statuses.post()) for _ in range(args.status_connections)]
        for org_id, _ in orgs:
            async with tenant_tx(app, org_id) as conn:
                await create(
                    conn,
                    org_id,
                    NewBroadcast(
                        name="Tonight",
                        text="Hi {{name}}, the show starts at 20:00",
                        audience={"tags": ["listeners"]},
                    ),
                )
        rows: list[list[Any]] = []
        timeline: list[dict[str, Any]] = []
        deadline = time.time() + args.contacts / (2 * args.rate) * 2.5 + 180  # at least 40% of the rate
        last_sample = 0.0
        async with httpx.AsyncClient(timeout=10) as client:
            while time.time() < deadline:
                new = await recorded(client, stack.sim_port, len(rows))
                rows.extend(new)
                statuses.add(new, time.time())
                now = time.time()
                if now - last_sample >= 5.0:
                    last_sample = now
                    b = await broadcast_rows(app, [o for o, _ in orgs])
                    applied = sum(r["delivered_count"] + r["read_count"] for r in b)
                    timeline.append(
                        {
                            "t": round(now - started),
                            "sent": sum(r["sent_count"] for r in b),
                            "queued": sum(r["queued_count"] for r in b),
                            "status_backlog": statuses.posted_bulk - applied,
                            "status_queue": statuses.work.qsize() + len(statuses.pending),
                            **{
                                k: samplers.queues[-1][k] if samplers.queues else None
                                for k in ("inbound_ready", "outbox", "outbound_in_workers", "db_lock_waits")
                            },
                        }
                    )
                    print(json.dumps(timeline[-1]), flush=True)
                    if all(r["status"] == "completed" and r["sent_count"] == r["recipient_count"] for r in b):
                        break
                await asyncio.sleep(0.5)
        sending_done = time.time()
        usage = cpu.percent()
        stop_chat.set()
        await chatting
        await asyncio.sleep(3)  # the last replies
        async with httpx.AsyncClient(timeout=10) as client:
            new = await recorded(client, stack.sim_port, len(rows))
            rows.extend(new)
            statuses.add(new, time.time())
        stop_statuses.set()
        await feeding
        await asyncio.gather(*posting)
        drained_at = None
        for _ in range(120):  # the status backlog left when the sends end drains
            b = await broadcast_rows(app, [o for o, _ in orgs])
            if statuses.posted_bulk - sum(r["delivered_count"] + r["read_count"] for r in b) <= 0:
                drained_at = time.time()
                break
            await asyncio.sleep(0.5)
        stop_sampling.set()
        await sampling
        b = await broadcast_rows(app, [o for o, _ in orgs])

        result: dict[str, Any] = {
            "contacts": args.contacts,
            "rate_limit": args.rate,
            "chat_per_s": args.chat,
            "seed_s": round(seeded, 1),
            "broadcasts": [
                {
                    "recipients": r["recipient_count"],
                    "resolve_s": round(r["started"] - r["created"], 2),  # due -> resolved and reserved
                    "fan_out_s": round(r["completed"] - r["started"], 1) if r["completed"] else None,
                    "last_send_s": round(
                        max(t for to, _, t, pn in rows if pn == pnid and to.startswith(LISTENER_PREFIX))
                        - r["created"],
                        1,
                    ),
                    "sent": r["sent_count"],
                    "delivered": r["delivered_count"],
                    "read": r["read_count"],
                    "failed": r["failed_count"],
                }
                for r, (_, pnid) in zip(b, orgs, strict=True)
            ],
            "numbers": {
                pnid: send_rates([r[2] for r in rows if r[3] == pnid], args.rate) for _, pnid in orgs
            },
        }
        waits = [r[2] - posted[r[0]] for r in rows if r[0] in posted]
        result["replies"] = {
            "n": len(waits),
            "p50_ms": round(1000 * percentile(waits, 50), 1),
            "p99_ms": round(1000 * percentile(waits, 99), 1),
            "max_ms": round(1000 * max(waits, default=0), 1),
        }
        backlog = [p["status_backlog"] for p in timeline]
        half = len(backlog) // 2
        result["statuses"] = {
            "posted": statuses.posted,
            "refused_then_retried": statuses.refused,
            "backlog_first_half_max": max(backlog[:half], default=0),
            "backlog_second_half_max": max(backlog[half:], default=0),
            "drained_s_after_sends": round(drained_at - sending_done, 1) if drained_at else None,
            "inbound_ready_max": max((q["inbound_ready"] for q in samplers.queues), default=0),
        }
        rss = samplers.rss.samples
        result["worker_rss_mib"] = {
            name: [round(s[i][1] / 2**20, 1) for i in (0, len(s) // 2, -1)] for name, s in rss.items() if s
        }
        result["cpu_percent_of_one_core"] = usage
        result["cores"] = psutil.cpu_count()
        result["sending_s"] = round(sending_done - started, 1)
        result["timeline"] = timeline
        result["load_average"] = os.getloadavg()
        await app.close()
        await owner.close()
        return result
    finally:
        await stack.teardown()


def table(r: dict[str, Any]) -> str:
    lines = [
        f"broadcast of {r['contacts']} contacts, 2 numbers at {r['rate_limit']:.0f}/s, {r['chat_per_s']:.0f} chats/s"
    ]
    for i, b in enumerate(r["broadcasts"]):
        lines.append(
            f"  broadcast {i + 1}: {b['recipients']} recipients, resolve {b['resolve_s']} s, fan-out {b['fan_out_s']} s, "
            f"last send {b['last_send_s']} s after its creation; sent {b['sent']} delivered {b['delivered']} read {b['read']}"
        )
    for pnid, n in r["numbers"].items():
        lines.append(
            f"  {pnid}: steady {n['steady_rate']}/s ({n['of_limit_percent']}% of {r['rate_limit']:.0f}), busiest 1-s "
            f"window {n['busiest_second']}, slowest whole second {n['slowest_whole_second']}, sends {n['sent']}; "
            f"gaps over 1.5 slots {n['gaps_over_1_5_slots']}, over 5 slots {n['gaps_over_5_slots']}, "
            f"{n['time_in_long_gaps_percent']}% of the time in gaps"
        )
    rep = r["replies"]
    lines.append(
        f"  replies: n {rep['n']}, p50 {rep['p50_ms']} ms, p99 {rep['p99_ms']} ms, max {rep['max_ms']} ms"
    )
    s = r["statuses"]
    lines.append(
        f"  status webhooks: {s['posted']} posted; backlog max {s['backlog_first_half_max']} (first half) / "
        f"{s['backlog_second_half_max']} (second half); drained {s['drained_s_after_sends']} s after the sends; "
        f"inbound ready max {s['inbound_ready_max']}"
    )
    lines.append(
        "  worker RSS MiB start/middle/end: "
        + "; ".join(f"{k} {'/'.join(str(v) for v in vs)}" for k, vs in r["worker_rss_mib"].items())
    )
    lines.append(
        f"  CPU % of one core ({r['cores']} cores): "
        + ", ".join(f"{k} {v}" for k, v in r["cpu_percent_of_one_core"].items())
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--contacts", type=int, default=100_000, help="recipients in all, split over 2 numbers"
    )
    parser.add_argument("--rate", type=float, default=80.0, help="each number's throughput")
    parser.add_argument("--chat", type=float, default=30.0, help="people saying hi per second")
    parser.add_argument(
        "--status-connections", type=int, default=32, help="keep-alive connections for statuses"
    )
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print(table(result))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"broadcast-{args.contacts}-{args.rate:.0f}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
