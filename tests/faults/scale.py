"""The cluster scenarios (issue 22): the engine on a private RabbitMQ cluster (tests/faults/cluster.py) with its
workers on three hosts, each a network namespace of the test's own with its own address (tests/faults/netlab.py)
and its own WORKER_HOST, reaching the broker nodes and PostgreSQL over its veth; two of the hosts also run a
gateway, and the load (tests/faults/harness.py: scripted conversations of thousands of contacts, posted like
Meta does) goes through a round-robin in front of both (haproxy, tests/faults/balancer.py). Under that load a
broker node that leads shards is stopped and started again, a worker host is SIGKILLed, a host is frozen
(SIGSTOP) for 30 s, or a host is cut off from the broker for 30 s (its packets dropped inside its namespace).
Besides the fault suite's checks (every accepted message stored once, every reply delivered, ledger, tallies,
answers) each scenario measures:

- **order**: per contact, the order in which the engine applied its messages (the inbound rows' ``xmin``: one
  contact's transactions run one after the other) against the order the contact sent them; a contact's next
  message is only posted once the previous one was accepted, so both can wait in a queue together and only the
  engine keeps them apart.
- **throughput**: messages applied per second before the fault and while it lasts; **max gap**: the longest
  time no message at all was applied (how long the engine stood still); **shard gap**: the longest time one
  inbound shard applied nothing (how long a cut-off host's shards waited).
- **gateways**: the requests each gateway answered 2xx (haproxy's counts).
- **pacing**: the most sends of one number the WhatsApp simulator received in any one second, against the
  number's configured throughput (senders on all three hosts share one authority, engine/pacing.py).

``make scale-test`` (``python -m tests.faults.scale``, root: namespaces) runs them on 3 nodes and prints the
table (also written to bench/results/scale.json); tests/faults/test_cluster.py runs a short variant on 2 nodes
in ``make faults`` (namespaces, no gateways: the load through the test process's own gateway).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.broker import shard_of
from tests.faults import balancer, netlab
from tests.faults.balancer import Balancer
from tests.faults.cluster import PrivateCluster
from tests.faults.harness import (
    WORKER_CONCURRENCY,
    FaultStack,
    Load,
    Scenario,
    Size,
    Workers,
    run_scenario,
    start_engine,
)
from tests.faults.services import PrivatePostgres

HOST_ROLES = {
    "host-a": ("inbound", "sender", "relay"),
    "host-b": ("inbound", "sender", "relay"),  # one relay is active (advisory lock), the other waits
    "host-c": ("inbound", "sender"),
}
GATEWAY_HOSTS = ("host-a", "host-b")
GATEWAY_PORT = 8080  # the same on both: each host has its own addresses
SCALE = Size("scale", 3000, 25.0, 0.5, 600, 60)
SHORT = Size("short", 1200, 12.0, 0.3, 240, 45)
PACED_RATE = 20  # the paced number's throughput, messages/s
PACED = "one number paced, 3 sender hosts"  # always the short load: its replies drain at PACED_RATE
CUT = "worker host cut from broker 30 s"


@dataclass
class Hosts:
    """Worker hosts: each a network namespace (NetLab) running real worker.py processes, and on GATEWAY_HOSTS a
    webhook_gateway.py, as one process group with its own WORKER_HOST."""

    env: dict[str, str]  # the hosts' view: the broker nodes and PostgreSQL at the lab's address
    log_dir: Path
    lab: netlab.NetLab
    gateways: bool
    groups: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def _programs(self, host: str) -> list[tuple[str, list[str], dict[str, str]]]:
        from engine.settings import PROJECT_ROOT

        out = []
        if self.gateways and host in GATEWAY_HOSTS:
            gateway = {"GATEWAY_HOST": self.lab.hosts[host], "GATEWAY_PORT": str(GATEWAY_PORT)}
            out.append(
                (
                    "gateway",
                    [str(PROJECT_ROOT / "webhook_gateway.py")],
                    gateway | {"GATEWAY_METRICS_PORT": "0"},
                )
            )
        for role in HOST_ROLES[host]:
            argv = [str(PROJECT_ROOT / "worker.py"), "--role", role]
            out.append((role, argv + ["--concurrency", str(WORKER_CONCURRENCY), "--metrics-port", "0"], {}))
        return out

    def spawn(self, host: str) -> None:
        from engine.settings import PROJECT_ROOT

        procs: list[subprocess.Popen[bytes]] = []
        for name, argv, extra in self._programs(host):
            log = (self.log_dir / f"{host}-{name}.log").open("ab")
            procs.append(
                subprocess.Popen(
                    self.lab.command(host, [sys.executable, *argv]),
                    env={**self.env, "WORKER_HOST": host, **extra},
                    cwd=PROJECT_ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    process_group=procs[0].pid if procs else 0,  # the host's group: killed as one
                )
            )
            log.close()
        self.groups[host] = procs

    def signal(self, host: str, sig: signal.Signals) -> None:
        os.killpg(self.groups[host][0].pid, sig)

    def kill(self, host: str) -> None:
        self.signal(host, signal.SIGKILL)
        for proc in self.groups[host]:
            proc.wait()

    def stop_all(self) -> None:
        procs = [p for group in self.groups.values() for p in group]
        for host in self.groups:
            with contextlib.suppress(ProcessLookupError):
                self.signal(host, signal.SIGCONT)  # a frozen host must be able to exit
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class ClusterStack:
    stack: FaultStack
    cluster: PrivateCluster
    hosts: Hosts
    cluster_seconds: float
    balancer: Balancer | None  # None: no gateways on the hosts, the load goes to the test process's gateway


def unavailable(gateways: bool) -> str | None:
    """Why the cluster scenarios cannot run here (None: they can)."""
    return netlab.unavailable() or (balancer.unavailable() if gateways else None)


@contextlib.asynccontextmanager
async def cluster_stack(nodes: int, gateways: bool = True) -> AsyncIterator[ClusterStack]:
    """The network lab with the three hosts, a private PostgreSQL and a private cluster of ``nodes`` RabbitMQ
    nodes listening on the lab's address too, the simulators (and a gateway for M-Pesa's callbacks) in this
    process, the hosts' workers and, with ``gateways``, their two gateways behind haproxy, which the load posts
    to."""
    from bench.common import create_database, new_tag
    from engine.logging import configure_logging
    from engine.settings import Settings
    from simulators.whatsapp import WebhookPoster

    if reason := unavailable(gateways):
        raise RuntimeError(reason)
    tag = new_tag()
    base = Path(tempfile.mkdtemp(prefix="chatnation-scale-"))
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, True)
        cleanup.callback(_keep_logs, base)
        lab = netlab.NetLab.create(list(HOST_ROLES))
        cleanup.callback(lab.destroy)  # after everything below has stopped
        pg = PrivatePostgres.create(base / "postgres")
        cleanup.callback(pg.destroy)
        pg.listen(lab.address, str(lab.subnet))
        cluster = PrivateCluster.create(base / "rabbitmq", tag[:6], nodes, also_on=lab.address)
        cleanup.callback(cluster.destroy)
        took = await asyncio.to_thread(cluster.start)
        db_url = await create_database(pg.uri("postgres"), "scale")
        configure_logging(Settings(log_level="warning"))  # the gateway in this process: warnings only
        settings, local, app_pool, owner_pool, env = await start_engine(
            cleanup,
            db_url,
            ",".join(cluster.urls),
            f"scale{tag}",
            host=lab.address,
            inbound_shards=9,
            outbound_shards=9,
        )
        hosts_env = {
            **env,
            "RABBITMQ_URL": ",".join(cluster.urls_on(lab.address)),
            "DATABASE_URL": pg.uri_on(lab.address, "scale"),
        }
        hosts = Hosts(hosts_env, base, lab, gateways)
        cleanup.callback(hosts.stop_all)
        for host in HOST_ROLES:
            hosts.spawn(host)
        front = None
        if gateways:
            servers = {h: f"{lab.hosts[h]}:{GATEWAY_PORT}" for h in GATEWAY_HOSTS}
            front = Balancer.start(base / "haproxy", servers)
            cleanup.callback(front.stop)
            await asyncio.to_thread(front.wait_up)
            assert local.poster is not None
            in_process, local.poster = (
                local.poster,
                WebhookPoster(f"{front.url}/webhook", settings.whatsapp_app_secret),
            )
            await in_process.aclose()
        stack = FaultStack(settings, local, Workers(env, base), app_pool, owner_pool, cluster.nodes[0], pg)
        await stack.wait_workers()
        yield ClusterStack(stack, cluster, hosts, took, front)


def _keep_logs(base: Path) -> None:
    """The workers' and nodes' logs outlive the run in bench/results/scale-logs/ (the rest is deleted)."""
    from bench.common import RESULTS

    keep = RESULTS / "scale-logs"
    shutil.rmtree(keep, ignore_errors=True)
    keep.mkdir(parents=True, exist_ok=True)
    for log in [
        *base.glob("host-*.log"),
        *base.glob("rabbitmq/node*/log/*.log"),
        *base.glob("haproxy/*.log"),
    ]:
        shutil.copy(log, keep / log.name)


# ---------------------------------------------------------------- faults


@dataclass
class Window:
    start: float | None = None
    end: float | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def stop_a_leading_node(cs: ClusterStack, window: Window, down_seconds: float) -> Scenario:
    """Stop the node that leads the most inbound shards (rabbitmqctl stop), start it again after
    ``down_seconds``; meanwhile check that a fresh connection given the stopped node first still connects."""

    async def fault(stack: FaultStack, size: Size) -> float:
        from engine.broker import connect

        await asyncio.sleep(size.spread_seconds / 3)
        prefix = stack.settings.broker_prefix
        leaders = cs.cluster.leaders(f"{prefix}.inbound.")
        victim_name, led = leaders.most_common(1)[0]
        victim = cs.cluster.node_index(victim_name)
        window.notes.update(node=victim_name, led_inbound_shards=led, leaders_before=dict(leaders))
        window.start = time.time()
        await asyncio.to_thread(cs.cluster.stop_node, victim)
        window.notes["stop_s"] = round(time.time() - window.start, 1)
        others = [u for i, u in enumerate(cs.cluster.urls) if i != victim]
        first_dead = stack.settings.model_copy(
            update={"rabbitmq_url": cs.cluster.urls[victim], "rabbitmq_urls": ",".join(others)}
        )
        began = time.monotonic()
        connection = await connect(first_dead)
        window.notes["connect_past_dead_node_s"] = round(time.monotonic() - began, 2)
        await connection.close()
        await asyncio.sleep(max(0.0, down_seconds - (time.time() - window.start)))
        window.notes["start_s"] = round(await asyncio.to_thread(cs.cluster.start_node, victim), 1)
        window.end = time.time()
        return window.end

    return Scenario(fault, after=measures(cs, window))


def kill_a_host(cs: ClusterStack, window: Window, host: str, back_after: float) -> Scenario:
    """SIGKILL every process of one worker host at once; start the host again after ``back_after`` s."""

    async def fault(stack: FaultStack, size: Size) -> float:
        await asyncio.sleep(size.spread_seconds / 3)
        window.start = time.time()
        cs.hosts.kill(host)
        await asyncio.sleep(back_after)
        cs.hosts.spawn(host)
        window.end = time.time()
        return window.end

    # a sender killed between WhatsApp's answer and its commit sends that reply again (no idempotency key)
    return Scenario(fault, after=measures(cs, window), allowed_duplicates=lambda s: WORKER_CONCURRENCY)


def freeze_a_host(cs: ClusterStack, window: Window, host: str, seconds: float) -> Scenario:
    """SIGSTOP every process of one host for ``seconds`` (cut off from the broker and the database alike: its
    connections stay open, so the broker keeps its single-active consumers until it answers again), then
    SIGCONT."""

    async def fault(stack: FaultStack, size: Size) -> float:
        await asyncio.sleep(size.spread_seconds / 4)
        window.start = time.time()
        cs.hosts.signal(host, signal.SIGSTOP)
        await asyncio.sleep(seconds)
        cs.hosts.signal(host, signal.SIGCONT)
        window.end = time.time()
        return window.end

    return Scenario(fault, after=measures(cs, window), allowed_duplicates=lambda s: WORKER_CONCURRENCY)


def cut_a_host(cs: ClusterStack, window: Window, host: str, seconds: float) -> Scenario:
    """Drop every packet between one host and the broker nodes for ``seconds`` (nftables inside its namespace;
    its database connections stay up), then let them through again. Silently, as a lost link does: neither side
    sees a reset, so the broker keeps the host's single-active consumers until the AMQP heartbeat gives up."""

    async def fault(stack: FaultStack, size: Size) -> float:
        await asyncio.sleep(size.spread_seconds / 4)
        window.start = time.time()
        await asyncio.to_thread(cs.hosts.lab.cut, host, cs.cluster.ports)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(cs.hosts.lab.restore, host)
        window.end = time.time()
        return window.end

    return Scenario(fault, after=measures(cs, window), allowed_duplicates=lambda s: WORKER_CONCURRENCY)


def paced_number(cs: ClusterStack, window: Window) -> Scenario:
    """No fault: the first organisation's number limited to PACED_RATE/s, its replies sent by senders on all
    three hosts; the simulator's busiest second of that number is compared with the limit."""
    return Scenario(after=measures(cs, window, paced=True), org_settings={"send_rate_per_second": PACED_RATE})


# ---------------------------------------------------------------- measures


def measures(
    cs: ClusterStack, window: Window, paced: bool = False
) -> Callable[[FaultStack, Load, dict[str, Any]], Any]:
    async def measure(stack: FaultStack, load: Load, outcome: dict[str, Any]) -> None:
        # xmin: the inserting transaction's id. One contact's transactions run one after the other (the next
        # starts once the previous committed), so their ids rise in the order the engine applied them.
        # (messages.created_at is the WhatsApp timestamp, in whole seconds: no order within a second.)
        rows = await stack.owner_pool.fetch(
            """SELECT m.wa_message_id, m.xmin::text::bigint AS xid,
                      extract(epoch FROM p.processed_at)::float8 AS t
               FROM messages m LEFT JOIN processed_events p
                 ON p.organization_id = m.organization_id AND p.external_id = m.wa_message_id
               WHERE m.organization_id = ANY($1::uuid[]) AND m.direction = 'inbound' ORDER BY xid""",
            [o.id for o in load.orgs],
        )
        position = {mid: (si, k) for (si, k), mid in load.steps.items()}
        last: dict[int, int] = {}
        broken: set[int] = set()
        for r in rows:
            if (at := position.get(r["wa_message_id"])) is None:
                continue
            si, k = at
            if last.get(si, -1) > k:
                broken.add(si)
            last[si] = max(k, last.get(si, -1))
        outcome["contacts"] = len(load.scripts)
        outcome["order_broken"] = len(broken)
        if broken:
            outcome["problems"].append(f"{len(broken)} contacts' messages applied out of order")
        times = sorted(r["t"] for r in rows if r["t"] is not None)  # when each was applied
        outcome["max_gap_s"] = round(_longest_gap(times), 2)
        by_shard: dict[int, list[float]] = {}
        for r in rows:
            if r["t"] is not None and (at := position.get(r["wa_message_id"])) is not None:
                shard = shard_of(
                    load.scripts[at[0]].wa_id, stack.settings.inbound_shards
                )  # as the gateway routes
                by_shard.setdefault(shard, []).append(r["t"])
        outcome["shard_gap_s"] = round(
            max((_longest_gap(sorted(t)) for t in by_shard.values()), default=0.0), 2
        )
        first_accept = min(load.accepted.values(), default=0.0)
        last_accept = max(load.accepted.values(), default=0.0)
        outcome["offered_per_s"] = round(len(load.accepted) / max(last_accept - first_accept, 1e-9))
        if window.start is not None and window.end is not None:
            before = [t for t in times if t < window.start]
            during = [t for t in times if window.start <= t <= window.end]
            outcome["before_per_s"] = round(len(before) / max(window.start - times[0], 1e-9)) if before else 0
            outcome["during_per_s"] = round(len(during) / max(window.end - window.start, 1e-9))
            outcome["fault_s"] = round(window.end - window.start, 1)
        elif times:
            outcome["before_per_s"] = round(len(times) / max(times[-1] - times[0], 1e-9))
        outcome["notes"] = dict(window.notes)
        if paced:
            number = load.orgs[0].phone_number_id
            sent = sorted(m["received_at"] for m in stack.local.whatsapp.messages(phone_number_id=number))
            busiest, j = 0, 0
            for i, t in enumerate(sent):
                while sent[j] <= t - 1.0:
                    j += 1
                busiest = max(busiest, i - j + 1)
            outcome["paced_max_per_s"] = busiest
            outcome["paced_limit"] = PACED_RATE
            if busiest > PACED_RATE:
                outcome["problems"].append(f"{busiest} sends of one number in a second, limit {PACED_RATE}")
            hosts = await stack.owner_pool.fetch(
                "SELECT DISTINCT host FROM worker_heartbeats WHERE role = 'sender' AND cardinality(shards) > 0"
            )
            outcome["notes"]["sender_hosts"] = sorted(r["host"] for r in hosts)
        leaders = cs.cluster.leaders(f"{stack.settings.broker_prefix}.")
        outcome["notes"]["leaders_after"] = dict(leaders)

    return measure


def _longest_gap(times: list[float]) -> float:
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


COLUMNS = [
    ("fault", "scenario", 32),
    ("contacts", "contacts", 8),
    ("accepted", "accepted", 8),
    ("processed", "applied", 7),
    ("duplicates", "dup sends", 9),
    ("lost", "lost", 4),
    ("order_broken", "order", 5),
    ("offered_per_s", "offered/s", 9),
    ("before_per_s", "before/s", 8),
    ("during_per_s", "during/s", 8),
    ("fault_s", "fault s", 7),
    ("max_gap_s", "max gap s", 9),
    ("shard_gap_s", "shard gap s", 11),
    ("recover_s", "recover s", 9),
    ("drain_s", "drain s", 7),
    ("gateways", "gw a/b", 9),
    ("ok", "ok", 3),
]


async def run(
    nodes: int, size: Size, names: list[str] | None = None, gateways: bool = True
) -> list[dict[str, Any]]:
    outcomes: list[dict[str, Any]] = []
    async with cluster_stack(nodes, gateways) as cs:
        print(f"{nodes} RabbitMQ nodes clustered in {cs.cluster_seconds:.1f} s", flush=True)
        prefix = cs.stack.settings.broker_prefix
        queues = cs.cluster.queues(f"{prefix}.")
        print(
            f"{len(queues)} quorum queues, {sorted({len(q['members']) for q in queues})} members each "  # type: ignore[arg-type]
            f"(leaders {dict(cs.cluster.leaders(f'{prefix}.'))})",
            flush=True,
        )
        builders: dict[str, Callable[[Window], Scenario]] = {
            "broker node stopped, restarted": lambda w: stop_a_leading_node(
                cs, w, 15.0 if nodes > 2 else 5.0
            ),
            "worker host SIGKILLed": lambda w: kill_a_host(cs, w, "host-b", 20.0),
            "worker host frozen 30 s": lambda w: freeze_a_host(cs, w, "host-c", 30.0),
            CUT: lambda w: cut_a_host(cs, w, "host-c", 30.0),
            PACED: lambda w: paced_number(cs, w),
        }
        for name in names or list(builders):
            window = Window()
            paced = name == PACED
            taken = cs.balancer.requests() if cs.balancer else {}
            outcome = await run_scenario(cs.stack, name, builders[name](window), SHORT if paced else size)
            outcome.update(nodes=nodes, hosts=len(HOST_ROLES))
            if cs.balancer:  # requests each gateway answered 2xx in this scenario
                now = cs.balancer.requests()
                outcome["gateway_requests"] = {h: now[h] - taken.get(h, 0) for h in GATEWAY_HOSTS}
                outcome["gateways"] = "/".join(str(n) for n in outcome["gateway_requests"].values())
            if outcome["duplicates"] > outcome["allowed_duplicates"]:
                outcome["problems"].append(
                    f"{outcome['duplicates']} duplicate sends, at most {outcome['allowed_duplicates']} allowed"
                )
            outcomes.append(outcome)
            print(_row(outcome), flush=True)
            await asyncio.to_thread(cs.cluster.rebalance)  # the restarted node leads again
            for host in HOST_ROLES:  # every host alive for the next scenario
                if any(p.poll() is not None for p in cs.hosts.groups[host]):
                    cs.hosts.kill(host)
                    cs.hosts.spawn(host)
            await cs.stack.wait_workers()
    return outcomes


def table(outcomes: list[dict[str, Any]]) -> str:
    from tests.faults.report import table as fault_table

    return fault_table(outcomes, COLUMNS)


def _row(outcome: dict[str, Any]) -> str:
    return table([outcome]).splitlines()[-1 - len(outcome["problems"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--short", action="store_true", help="the short load (1,200 messages)")
    parser.add_argument("--scenario", action="append", help="only these (by name)")
    args = parser.parse_args()
    if reason := unavailable(gateways=True):
        sys.exit(f"the cluster scenarios cannot run here: {reason}")
    began = time.monotonic()
    outcomes = asyncio.run(run(args.nodes, SHORT if args.short else SCALE, args.scenario))
    print(f"\nCluster scenarios ({args.nodes} nodes, {time.monotonic() - began:.0f} s)\n" + table(outcomes))
    for o in outcomes:
        print(
            f"  {o['fault']}: {json.dumps(o.get('notes', {}))}"
            + (
                f" paced {o['paced_max_per_s']}/s max, limit {o['paced_limit']}/s"
                if "paced_limit" in o
                else ""
            )
        )
    from bench.common import RESULTS

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"outcomes": outcomes}, indent=1, default=str))
    sys.exit(1 if any(o["problems"] for o in outcomes) else 0)


if __name__ == "__main__":
    main()
