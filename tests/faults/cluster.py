"""A private RabbitMQ cluster for the scale and cluster-fault tests (issue 22): N nodes of Debian's
rabbitmq-server on loopback, each a ``PrivateRabbit`` (own node name, AMQP and distribution ports, mnesia and
logs in a temporary directory) sharing one Erlang cookie, joined with ``rabbitmqctl join_cluster``. New queues'
leaders are placed by ``queue_leader_locator = balanced`` and quorum queues get a member on every node
(RabbitMQ 3.10's default initial group size: all nodes), so the engine's own declarations (engine/broker.py, unchanged) spread over the
nodes. ``python -m tests.faults.cluster`` starts a 3-node cluster, declares a topology, prints where the
leaders are and stops it."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.services import PrivateRabbit


@dataclass
class PrivateCluster:
    base: Path
    nodes: list[PrivateRabbit]
    down: set[int] = field(default_factory=set)  # indexes of stopped nodes

    @classmethod
    def create(cls, base: Path, tag: str, size: int = 3, also_on: str | None = None) -> PrivateCluster:
        """``also_on``: an address every node listens on besides loopback (PrivateRabbit.create)."""
        cookie = secrets.token_hex(16).upper()
        nodes = []
        for i in range(size):
            node = PrivateRabbit.create(base / f"node{i + 1}", f"{tag}-{i + 1}", also_on)
            with (node.base / "rabbitmq.conf").open("a") as conf:
                conf.write("queue_leader_locator = balanced\n")
            cookie_file = node.base / ".erlang.cookie"  # HOME is the node's base: one cookie for all
            cookie_file.write_text(cookie)
            cookie_file.chmod(0o400)
            nodes.append(node)
        return cls(base, nodes)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def urls_on(self, address: str) -> list[str]:
        return [n.url_on(address) for n in self.nodes]

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self) -> float:
        """Start every node, join the others to the first; the seconds it took."""
        began = time.monotonic()
        for node in self.nodes:
            node.start()
        first = self.nodes[0].node
        for node in self.nodes[1:]:
            for args in (("stop_app",), ("join_cluster", first), ("start_app",)):
                done = node._ctl(*args, timeout=120)
                if done.returncode != 0:
                    raise RuntimeError(f"{node.node} {args[0]}: {done.stderr or done.stdout}")
        running = self.running_nodes()
        if len(running) != len(self.nodes):
            raise RuntimeError(f"cluster has {running}, wanted {len(self.nodes)} nodes")
        return time.monotonic() - began

    def _live(self) -> PrivateRabbit:
        return next(n for i, n in enumerate(self.nodes) if i not in self.down)

    def running_nodes(self) -> list[str]:
        done = self._live()._ctl("cluster_status", "--formatter", "json")
        return list(json.loads(done.stdout).get("running_nodes", []))

    def stop_node(self, i: int) -> None:
        self.nodes[i].stop()
        self.down.add(i)

    def start_node(self, i: int) -> float:
        """Start a stopped node again (it rejoins by itself); seconds until it answers AMQP."""
        began = time.monotonic()
        self.nodes[i].start()
        self.down.discard(i)
        return time.monotonic() - began

    def queues(self, prefix: str) -> list[dict[str, object]]:
        """name, leader and members of the quorum queues whose name starts with ``prefix``."""
        done = self._live()._ctl(
            "list_queues", "name", "type", "leader", "members", "online", "--formatter", "json"
        )
        rows = json.loads(done.stdout or "[]")
        return [r for r in rows if str(r.get("name", "")).startswith(prefix) and r.get("type") == "quorum"]

    def leaders(self, prefix: str) -> Counter[str]:
        return Counter(str(q["leader"]) for q in self.queues(prefix))

    def node_index(self, node_name: str) -> int:
        return next(i for i, n in enumerate(self.nodes) if n.node == node_name)

    def rebalance(self) -> None:
        """Move quorum leaders so that each node leads about as many (after a node came back, it leads none)."""
        live = self._live()
        subprocess.run(
            [str(live.scripts / "rabbitmq-queues"), "-n", live.node, "rebalance", "quorum"],
            env=live.env(),
            capture_output=True,
            timeout=120,
        )

    def destroy(self) -> None:
        for i, node in enumerate(self.nodes):
            if i not in self.down:
                try:
                    node.stop()
                except subprocess.TimeoutExpired:  # never started: nothing to stop
                    pass
        shutil.rmtree(self.base, ignore_errors=True)


async def _declare_and_show(size: int = 3) -> None:
    import tempfile

    from engine.broker import Topology, connect
    from engine.settings import Settings

    base = Path(tempfile.mkdtemp(prefix="chatnation-cluster-"))
    cluster = PrivateCluster.create(base, secrets.token_hex(3), size)
    try:
        took = await asyncio.to_thread(cluster.start)
        print(f"{size} nodes clustered in {took:.1f} s: {cluster.running_nodes()}")
        settings = Settings(rabbitmq_url=",".join(cluster.urls), broker_prefix="clustercheck")
        topology = Topology.from_settings(settings)
        connection = await connect(settings)
        async with connection:
            await topology.declare(await connection.channel())
        queues = cluster.queues("clustercheck.")
        print(f"{len(queues)} quorum queues, members per queue {Counter(len(q['members']) for q in queues)}")  # type: ignore[arg-type]
        print(f"leaders: {dict(cluster.leaders('clustercheck.'))}")
    finally:
        await asyncio.to_thread(cluster.destroy)


if __name__ == "__main__":
    asyncio.run(_declare_and_show())
