"""A radio poll's burst for one organisation, against the same load spread over four (issue 16).

Thousands of contacts each tap the poll (its question comes back with the options) and then vote, as a radio
audience does after the presenter reads the poll out; everything goes as signed webhooks through the gateway
to the workers and the WhatsApp simulator, as in bench/e2e.py (whose stack, open-loop load generator and
reply matching this reuses). The same contacts-per-second is sent once with every contact in one
organisation (one poll, one wallet) and once spread over four organisations, alternately in one stack, so
that what one tenant's rows and caps cost shows as the difference between the two.

    python bench/poll_burst.py --rate 300 --duration 30             # 1 organisation, then 4
    python bench/poll_burst.py --rate 300 --duration 30 --rounds 2  # 1, 4, 1, 4

Reported per run: votes/s sustained (votes answered / first POST to last vote's reply), p50/p99 from the
gateway's 200 to the reply, PostgreSQL backends sampled 20 times a second (how many wait on a lock, on which
relation, and what the others do: their wait events, "CPU" when none), CPU per vote of each process, and the
inbound workers' time per event. The tallies are checked afterwards: each poll's votes equal the votes sent.
Writes bench/results/poll-burst-<rate>-<duration>s.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    POLL_OPTIONS,
    POLL_QUESTION,
    RESULTS,
    BenchOrg,
    Script,
    Step,
    create_bench_orgs,
    new_tag,
    percentile,
)
from bench.e2e import (  # noqa: E402
    LOOPBACK,
    Level,
    Replies,
    Stack,
    build_schedule,
    drive,
    match_replies,
    scrape,
    time_per_event,
    wait_drained,
    warm_up,
)
from engine.settings import Settings  # noqa: E402

WAIT_SAMPLE_SECONDS = 0.05


def radio_script(org: BenchOrg, wa_id: str, rng: random.Random) -> Script:
    """The poll tapped (answered with its question and options), then one option tapped."""
    vote = rng.choice(POLL_OPTIONS)
    return Script(
        org, wa_id, [Step(POLL_QUESTION, f"poll:{org.poll_id}", 1), Step(vote.title(), vote, 1)], vote=vote
    )


def radio_level(orgs: list[BenchOrg], args: argparse.Namespace, secret: str, prefix: str) -> Level:
    rng = random.Random(args.seed)
    messages = int(args.rate * args.duration * (1 - args.status_share) / (1 + args.dup_share))
    scripts = [radio_script(orgs[i % len(orgs)], f"{prefix}{i:07d}", rng) for i in range(messages // 2)]
    events = build_schedule(scripts, args.duration, args.status_share, args.dup_share, rng, secret)
    return Level(args.rate, scripts, events)


@dataclass
class WaitSampler:
    """PostgreSQL's backends of this database, sampled often: what each active one waits on."""

    db_name: str
    samples: int = 0
    states: Counter[str] = field(default_factory=Counter)  # wait event ("CPU" when none) -> backend-samples
    lock_relations: Counter[str] = field(default_factory=Counter)  # the relation a lock wait is about
    lock_waiting: list[int] = field(default_factory=list)  # waiting backends per sample

    async def run(self, stop: asyncio.Event, owner: asyncpg.Pool) -> None:
        async with owner.acquire() as conn:
            while not stop.is_set():
                rows = await conn.fetch(
                    """SELECT a.state, a.wait_event_type AS type, a.wait_event AS event,
                              (SELECT coalesce(l.relation::regclass::text, l.locktype) FROM pg_locks l
                               WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) AS relation,
                              (SELECT string_agg(DISTINCT h.relation::regclass::text, ',') FROM pg_locks h
                               WHERE h.pid = (pg_blocking_pids(a.pid))[1] AND h.relation IS NOT NULL
                                 AND h.mode IN ('RowExclusiveLock', 'RowShareLock')
                                 AND h.relation::regclass::text IN ('wallets', 'polls', 'poll_options',
                                                                     'surveys', 'wallet_stripes'))
                                 AS holder_rows
                       FROM pg_stat_activity a
                       WHERE a.datname = $1 AND a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
                         AND a.state <> 'idle'""",
                    self.db_name,
                )
                self.samples += 1
                waiting = 0
                for r in rows:
                    if r["state"] == "idle in transaction":
                        self.states["idle in transaction (the client's turn)"] += 1
                        continue
                    name = f"{r['type']}:{r['event']}" if r["type"] else "CPU (no wait event)"
                    self.states[name] += 1
                    if r["type"] == "Lock":
                        waiting += 1
                        about = r["relation"] or "?"
                        if r["holder_rows"]:
                            about += f" (holder writes {r['holder_rows']})"
                        self.lock_relations[about] += 1
                self.lock_waiting.append(waiting)
                await asyncio.sleep(WAIT_SAMPLE_SECONDS)

    def summary(self) -> dict[str, Any]:
        n = max(1, self.samples)
        return {
            "samples": self.samples,
            "lock_waiting_mean": round(sum(self.lock_waiting) / n, 2),
            "lock_waiting_max": max(self.lock_waiting, default=0),
            "backends_by_state_mean": {k: round(v / n, 2) for k, v in self.states.most_common()},
            "lock_waits_by_relation_mean": {
                k: round(v / n, 2) for k, v in self.lock_relations.most_common(8)
            },
        }


async def tallies(owner: asyncpg.Pool, orgs: list[BenchOrg]) -> dict[str, Any]:
    rows = await owner.fetch(
        """SELECT p.id::text AS poll, p.voter_count, (SELECT coalesce(sum(o.votes), 0) FROM poll_options o
                  WHERE o.poll_id = p.id) AS votes, (SELECT count(*) FROM poll_votes v WHERE v.poll_id = p.id) AS rows
           FROM polls p WHERE p.id = ANY($1::uuid[])""",
        [o.poll_id for o in orgs],
    )
    return {r["poll"]: (r["voter_count"], r["votes"], r["rows"]) for r in rows}


async def run_one(
    stack: Stack,
    orgs: list[BenchOrg],
    args: argparse.Namespace,
    owner: asyncpg.Pool,
    replies: Replies,
    prefix: str,
) -> dict[str, Any]:
    level = radio_level(orgs, args, stack.settings.whatsapp_app_secret, prefix)
    replies.start_level()
    before_tallies = await tallies(owner, orgs)
    samplers = await stack.samplers()
    cpu = samplers.cpu
    waits = WaitSampler(stack.db_name)
    metrics_before = await scrape(stack.metrics_ports)
    stop = asyncio.Event()
    started = time.time()
    cpu.start()
    sampling = [
        asyncio.create_task(samplers.run(stop, stack.settings, owner, started)),
        asyncio.create_task(waits.run(stop, owner)),
    ]
    await drive(level, stack.gateway_port, args.connections, replies, stack.settings.whatsapp_app_secret)
    await wait_drained(level, replies, timeout=max(120.0, args.duration * 3))
    usage = cpu.percent()
    elapsed = time.time() - started
    stop.set()
    await asyncio.gather(*sampling)
    matched = match_replies(level, replies.rows)
    # the vote is a contact's last step: its reply's latency, and when the last one came
    vote_steps = {(si, len(s.steps) - 1) for si, s in enumerate(level.scripts)}
    by_to: dict[str, list[float]] = {}
    for to, _, received_at, _ in replies.rows:
        by_to.setdefault(to, []).append(received_at)
    vote_latency, last_vote_reply = [], level.first_post
    for si, k in vote_steps:
        accepted = level.accepted.get((si, k))
        got = sorted(by_to.get(level.scripts[si].wa_id, []))
        if accepted is None or len(got) <= k:
            continue
        vote_latency.append((got[k] - accepted) * 1000)
        last_vote_reply = max(last_vote_reply, got[k])
    lat = [ms for _, ms in matched["latencies"]]
    votes = len(vote_latency)
    after_tallies = await tallies(owner, orgs)
    sent_votes = Counter(s.org.poll_id for si, s in enumerate(level.scripts) if (si, 1) in level.accepted)
    tally_problems = [
        f"poll {p}: voters +{a[0] - b[0]}, votes +{a[1] - b[1]}, rows +{a[2] - b[2]}, sent {sent_votes[p]}"
        for p, a in after_tallies.items()
        if not (a[0] - (b := before_tallies[p])[0] == a[1] - b[1] == a[2] - b[2] == sent_votes[p])
    ]
    cpu_s = {k: v / 100 * elapsed for k, v in usage.items()}
    return {
        "organisations": len(orgs),
        "rate": args.rate,
        "contacts": len(level.scripts),
        "posted": dict(level.counts),
        "votes_answered": votes,
        "votes_per_s_offered": round(
            level.counts["message"] / 2 / max(1e-9, level.last_post - level.first_post), 1
        ),
        "votes_per_s_sustained": round(votes / max(1e-9, last_vote_reply - level.first_post), 1),
        "messages_per_s_sustained": round(len(lat) / max(1e-9, last_vote_reply - level.first_post), 1),
        "latency_ms": {p: round(percentile(lat, q), 1) for p, q in (("p50", 50), ("p99", 99))},
        "vote_latency_ms": {p: round(percentile(vote_latency, q), 1) for p, q in (("p50", 50), ("p99", 99))},
        "replies": {"missing": matched["missing"], "extra": matched["extra"], "received": len(replies.rows)},
        "tallies_exact": not tally_problems,
        "tally_problems": tally_problems,
        "cpu_ms_per_vote": {k: round(v * 1000 / max(1, votes), 2) for k, v in cpu_s.items()},
        "cpu_percent": usage,
        "postgres_backends": waits.summary(),
        "lock_waits_top": samplers.lock_waits.most_common(6),
        "max_inbound_queue": max(
            (q["inbound_ready"] + q["inbound_in_workers"] for q in samplers.queues), default=0
        ),
        "time_per_event": time_per_event(metrics_before, await scrape(stack.metrics_ports)),
    }


HEADER = (
    f"{'orgs':>4} {'votes':>7} {'offered/s':>9} {'votes/s':>8} {'msg/s':>6} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'vote p99':>9} {'lockwait':>8} {'max':>4} {'missing':>7} {'extra':>5} {'tallies':>7}"
)


def row(r: dict[str, Any]) -> str:
    pgb = r["postgres_backends"]
    return (
        f"{r['organisations']:>4} {r['votes_answered']:>7} {r['votes_per_s_offered']:>9} "
        f"{r['votes_per_s_sustained']:>8} {r['messages_per_s_sustained']:>6} {r['latency_ms']['p50']:>8} "
        f"{r['latency_ms']['p99']:>8} {r['vote_latency_ms']['p99']:>9} {pgb['lock_waiting_mean']:>8} "
        f"{pgb['lock_waiting_max']:>4} {r['replies']['missing']:>7} {r['replies']['extra']:>5} "
        f"{'exact' if r['tallies_exact'] else 'WRONG':>7}"
    )


def details(r: dict[str, Any]) -> None:
    pgb = r["postgres_backends"]
    print(
        "    PostgreSQL backends (mean of samples): "
        + ", ".join(f"{k} {v}" for k, v in pgb["backends_by_state_mean"].items())
    )
    if pgb["lock_waits_by_relation_mean"]:
        print(
            "    lock waits on (mean backends): "
            + ", ".join(f"{k} {v}" for k, v in pgb["lock_waits_by_relation_mean"].items())
        )
    for waits, n in r["lock_waits_top"][:4]:
        print(f"    lock waits seen {n:>4}x: {waits}")
    print("    CPU ms per vote: " + "  ".join(f"{k} {v}" for k, v in r["cpu_ms_per_vote"].items()))
    for name, t in r["time_per_event"].items():
        if "inbound" in name:
            print(f"    {name}: {t['n']} x {t['mean_ms']} ms")
    for p in r["tally_problems"]:
        print(f"    TALLY: {p}")


async def bench(args: argparse.Namespace) -> None:
    from engine.db import database_urls

    tag = new_tag()
    settings = Settings(broker_prefix=f"bench{tag}")
    if settings.rabbitmq_url.host not in LOOPBACK:
        raise SystemExit("this benchmark only talks to a loopback broker")
    base = await database_urls(settings)
    stack = await Stack.on_new_database(settings, base.owner, tag)
    results = []
    try:
        app, owner = await stack.migrated_pools()
        orgs = await create_bench_orgs(app, max(args.orgs), tag, tokens=100_000_000)
        stack.start(args.workers, args.concurrency)
        await stack.wait_ready(owner)
        replies = Replies(f"http://127.0.0.1:{stack.sim_port}")
        stop = asyncio.Event()
        polling = asyncio.create_task(replies.poll_forever(stop))
        await warm_up(stack, orgs, replies)
        print(
            f"radio poll burst: {args.rate:.0f} webhooks/s for {args.duration:.0f} s, {args.workers} inbound "
            f"worker(s) + relay + sender, concurrency {args.concurrency}, {psutil.cpu_count()} CPUs\n{HEADER}",
            flush=True,
        )
        try:
            for round_ in range(args.rounds):
                for n in args.orgs:
                    prefix = f"2548{tag[:2]}{round_}{n}"
                    result = await run_one(stack, orgs[:n], args, owner, replies, prefix)
                    results.append(result)
                    print(row(result), flush=True)
                    details(result)
                    await asyncio.sleep(2)
        finally:
            stop.set()
            await polling
        await app.close()
        await owner.close()
    finally:
        await stack.teardown()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"poll-burst-{args.rate:.0f}-{args.duration:.0f}s.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"written {out.relative_to(ROOT)}; load average {os.getloadavg()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=300, help="webhooks per second (two per voter)")
    parser.add_argument("--duration", type=float, default=30, help="seconds of load per run")
    parser.add_argument(
        "--orgs", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4], help="organisations per run"
    )
    parser.add_argument("--rounds", type=int, default=1, help="the runs of --orgs, repeated")
    parser.add_argument("--workers", type=int, default=2, help="inbound worker processes")
    parser.add_argument("--concurrency", type=int, default=32, help="events at once per worker process")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--status-share", type=float, default=0.0, help="share of webhooks that are statuses")
    parser.add_argument("--dup-share", type=float, default=0.0, help="share of messages posted twice")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if not (0 < args.rate <= 5000 and 1 <= args.duration <= 600 and all(1 <= n <= 16 for n in args.orgs)):
        raise SystemExit("out of range: --rate 0..5000, --duration 1..600, --orgs 1..16 each")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
