"""Send pacing under a broadcast: bulk sends on two business numbers at their throughput (80/s each by default)
through two sender processes, while people keep chatting on the same numbers.

    python bench/pacing.py --bulk 4800 --rate 80 --chat 10 --duration 30

What runs: the gateway, one inbound worker, one relay and two senders, each its own process, and the WhatsApp
simulator process (``bench/common.py simulator``). The bulk rows are written to the outbox in one go (as a
broadcast's fan-out would, lane "bulk"); chatting people post "hi" through the gateway at ``--chat`` per second
(new contacts, so the pair rate never applies). Measured at the simulator: per number, the sends per second
(the steady rate and the busiest sliding second, against the limit), and the replies' latency from the webhook
post to their arrival (p50, p99), with the bulk still sending.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    RESULTS,
    new_tag,
    percentile,
    python_process,
    signed,
)
from bench.e2e import LOOPBACK, Stack  # noqa: E402
from engine.settings import Settings  # noqa: E402
from simulators.whatsapp import build_text_envelope, new_message_id  # noqa: E402


def busiest_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def write_bulk(app_url: str, org_id: uuid.UUID, pnid: str, count: int, first: int) -> None:
    """``count`` contacts with a conversation each and one bulk text each in the outbox (one transaction)."""
    import asyncpg

    from engine.db import _init_connection

    conn = await asyncpg.connect(app_url)
    await _init_connection(conn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.current_org', $1, true)", str(org_id))
            phones = [f"2547{first + i:08d}" for i in range(count)]
            contacts = await conn.fetch(
                """INSERT INTO contacts (organization_id, phone, whatsapp_id) SELECT $1, p, p FROM unnest($2::text[]) p
                   ON CONFLICT DO NOTHING RETURNING id, phone""",
                org_id,
                phones,
            )
            convs = await conn.fetch(
                """INSERT INTO conversations (organization_id, contact_id, status) SELECT $1, c, 'active'
                   FROM unnest($2::uuid[]) c RETURNING id, contact_id""",
                org_id,
                [c["id"] for c in contacts],
            )
            conv_of = {r["contact_id"]: r["id"] for r in convs}
            now = datetime.now(UTC)
            rows = []
            for c in contacts:
                message_id = uuid.uuid4()
                request = {
                    "messaging_product": "whatsapp",
                    "recipient_type": "individual",
                    "to": c["phone"],
                    "type": "text",
                    "text": {"body": "Tonight's show starts at 20:00"},
                }
                job = {
                    "organization_id": str(org_id),
                    "phone_number_id": pnid,
                    "to": c["phone"],
                    "contact_key": c["phone"],
                    "type": "text",
                    "request": request,
                    "message_id": str(message_id),
                    "lane": "bulk",
                }
                rows.append((message_id, c["id"], conv_of[c["id"]], job))
            await conn.executemany(
                """INSERT INTO messages (id, organization_id, conversation_id, contact_id, direction, type, content,
                                         payload, wa_status, created_at)
                   VALUES ($1, $2, $3, $4, 'outbound', 'text', 'show', $5, 'queued', $6)""",
                [(m, org_id, conv, contact, job, now) for m, contact, conv, job in rows],
            )
            await conn.executemany(
                "INSERT INTO outbox (organization_id, message_id, contact_id, payload, lane) VALUES ($1, $2, $3, $4, 'bulk')",
                [(org_id, m, contact, job) for m, contact, _, job in rows],
            )
    finally:
        await conn.close()


async def recorded(client: httpx.AsyncClient, sim_port: int, after: int) -> list[list[Any]]:
    response = await client.get(f"http://127.0.0.1:{sim_port}/_bench/recorded", params={"after": after})
    return list(response.json())


async def chat(
    stack: Stack, pnids: list[str], rate: float, duration: float, secret: str, posted: dict[str, float]
) -> None:
    """People saying hi at ``rate`` per second, spread over the numbers; when each webhook was posted."""
    async with httpx.AsyncClient(timeout=10) as client:
        started, n = time.monotonic(), 0
        while time.monotonic() - started < duration:
            pnid = pnids[n % len(pnids)]
            wa_id = f"25471{uuid.uuid4().int % 10**7:07d}"
            body, signature = signed(
                build_text_envelope(pnid, "254711000000", wa_id, "Chatty", "hi", new_message_id()), secret
            )
            posted[wa_id] = time.time()
            await client.post(
                f"http://127.0.0.1:{stack.gateway_port}/webhook",
                content=body,
                headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
            )
            n += 1
            await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))


async def reply_stages(
    pool: Any, org_ids: list[uuid.UUID], rows: list[list[Any]], posted: dict[str, float]
) -> dict[str, Any]:
    """Where the replies waited: webhook posted -> the turn's transaction (gateway, queue, inbound worker),
    -> relayed to the sender's queue (commit, relay), -> at the simulator (sender: lane, slot, HTTP); p50/p99 ms
    of each stage, and the stages of the slowest reply."""
    outbox: dict[str, tuple[float, float | None]] = {}
    for org_id in org_ids:  # under row-level security: one organisation at a time
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT set_config('app.current_org', $1, true)", str(org_id))
            for r in await conn.fetch(
                """SELECT payload->>'to' AS to, extract(epoch FROM created_at)::float8 AS created,
                          extract(epoch FROM relayed_at)::float8 AS relayed FROM outbox WHERE lane = 'reply'"""
            ):
                outbox[r["to"]] = (r["created"], r["relayed"])
    arrived = {r[0]: r[2] for r in rows if r[0] in posted}
    stages: dict[str, list[float]] = {"turn": [], "relay": [], "sender": []}
    slowest: tuple[float, dict[str, float]] = (-1.0, {})
    for to, at in arrived.items():
        if to not in outbox or outbox[to][1] is None:
            continue
        created, relayed = outbox[to]
        assert relayed is not None
        split = {"turn": created - posted[to], "relay": relayed - created, "sender": at - relayed}
        for k, v in split.items():
            stages[k].append(v)
        if at - posted[to] > slowest[0]:
            slowest = (at - posted[to], split)
    out: dict[str, Any] = {
        k: {"p50_ms": round(1000 * percentile(v, 50), 1), "p99_ms": round(1000 * percentile(v, 99), 1)}
        for k, v in stages.items()
        if v
    }
    out["slowest_ms"] = {k: round(1000 * v, 1) for k, v in slowest[1].items()}
    return out


async def bench(args: argparse.Namespace) -> dict[str, Any]:

    from engine.db import database_urls, with_user
    from engine.orgs import NewOrganization, create_organization

    tag = new_tag()
    RESULTS.mkdir(parents=True, exist_ok=True)
    settings = Settings(broker_prefix=f"bench{tag}", send_rate_per_second=args.rate)
    if settings.rabbitmq_url.host not in LOOPBACK:
        raise SystemExit("this benchmark only talks to a loopback broker")
    base = await database_urls(settings)
    stack = await Stack.on_new_database(settings, base.owner, tag)
    try:
        app, owner = await stack.migrated_pools()
        orgs = []
        for i in range(2):
            pnid = f"pn{tag}{i}"
            org_id = await create_organization(
                app,
                NewOrganization(
                    name=f"Radio {tag} {i}", phone_number_id=pnid, access_token="t", tokens=10**8
                ),
            )
            orgs.append((org_id, pnid))
        env = {**stack.env(), "SEND_RATE_PER_SECOND": str(args.rate)}
        from bench.common import start_simulator

        stack.procs["simulator"] = start_simulator(stack.sim_port)
        stack.procs["gateway"] = python_process([str(ROOT / "webhook_gateway.py")], env)
        for name, role in (
            ("inbound-1", "inbound"),
            ("relay", "relay"),
            ("sender-1", "sender"),
            ("sender-2", "sender"),
        ):
            stack.procs[name] = python_process(
                [str(ROOT / "worker.py"), "--role", role, "--concurrency", "64", "--metrics-port", "0"], env
            )
        await stack.wait_ready(owner)
        await asyncio.sleep(3)  # both senders hold their shards
        cpu = {n: psutil.Process(p.pid) for n, p in stack.procs.items()}
        for p in cpu.values():
            p.cpu_percent(None)
        t0 = time.time()
        for n, (org_id, pnid) in enumerate(orgs):
            await write_bulk(
                with_user(stack.db_url, settings.app_db_role, settings.app_db_password),
                org_id,
                pnid,
                args.bulk // 2,
                10_000_000 + n * 1_000_000,
            )
        written = time.time() - t0
        posted: dict[str, float] = {}
        chatting = asyncio.create_task(
            chat(stack, [p for _, p in orgs], args.chat, args.duration, settings.whatsapp_app_secret, posted)
        )
        rows: list[list[Any]] = []
        expected = args.bulk + int(args.chat * args.duration)
        async with httpx.AsyncClient(timeout=10) as client:
            deadline = time.time() + args.duration + args.bulk / (2 * args.rate) + 60
            while time.time() < deadline:
                rows.extend(await recorded(client, stack.sim_port, len(rows)))
                if chatting.done() and len(rows) >= expected:
                    break
                await asyncio.sleep(0.5)
        await chatting
        elapsed = time.time() - t0
        shares = {
            n: round(p.cpu_percent(None) / psutil.cpu_count(), 1) for n, p in cpu.items() if p.is_running()
        }
        result: dict[str, Any] = {
            "rate_limit": args.rate,
            "bulk": args.bulk,
            "chat_per_s": args.chat,
            "fan_out_write_s": round(written, 2),
            "numbers": {},
            "cpu_share_percent": shares,
        }
        for _, pnid in orgs:
            times = sorted(r[2] for r in rows if r[3] == pnid)
            steady = times[len(times) // 10 : -max(1, len(times) // 10)]
            rate = (len(steady) - 1) / (steady[-1] - steady[0]) if len(steady) > 1 else 0.0
            result["numbers"][pnid] = {
                "sent": len(times),
                "steady_rate": round(rate, 1),
                "busiest_second": busiest_second(times),
                "of_limit_percent": round(100 * rate / args.rate, 1),
            }
        waits = [r[2] - posted[r[0]] for r in rows if r[0] in posted]
        result["replies"] = {
            "n": len(waits),
            "p50_ms": round(1000 * percentile(waits, 50), 1),
            "p99_ms": round(1000 * percentile(waits, 99), 1),
            "max_ms": round(1000 * max(waits, default=0), 1),
            "stages": await reply_stages(app, [o for o, _ in orgs], rows, posted),
        }
        result["elapsed_s"] = round(elapsed, 1)
        await app.close()
        await owner.close()
        return result
    finally:
        await stack.teardown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bulk", type=int, default=4800, help="bulk messages in all, split over 2 numbers")
    parser.add_argument("--rate", type=float, default=80.0, help="each number's throughput")
    parser.add_argument("--chat", type=float, default=10.0, help="people saying hi per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of chatting")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"pacing-{args.bulk}-{args.rate:.0f}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
