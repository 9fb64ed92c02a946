"""Worker hosts as network namespaces of the test's own (issue 22). A bridge in the root namespace holds the lab's
address (``.1`` of a private /24 no route of the machine uses); each host is a namespace joined to the bridge by a
veth pair, with its own address and loopback and no other route, so it reaches nothing but the lab. The services
of the root namespace (RabbitMQ nodes, PostgreSQL, the simulators) listen on the lab's address as well, so a
host's traffic to them crosses its veth: ``cut`` drops the broker's ports inside the host's namespace (an
nftables table, both directions; the database stays reachable) and ``restore`` deletes the table.

Names carry the creating process's id (``chatnation-<pid>-<host>``, bridge ``cnb<pid>``): a run that was killed
leaves them behind, and the next run deletes those whose process is gone (``sweep``)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field

from engine.logging import get_logger

log = get_logger(__name__)
NS_PREFIX = "chatnation-"
BRIDGE_PREFIX = "cnb"
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")  # the lab takes one /24 of it
CUT_TABLE = "chatnation_cut"


def unavailable() -> str | None:
    """Why the lab cannot be made here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    return None


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> None:
    """Delete the namespaces and bridges of lab runs whose process is gone (killed before its clean-up)."""
    for name in _ip("netns", "list").split():
        if (m := re.fullmatch(rf"{NS_PREFIX}(\d+)-.+", name)) and not _alive(int(m[1])):
            _kill_inside(name)
            _ip("netns", "del", name, check=False)
            log.warning("netlab_leftover_deleted", netns=name)
    for line in _ip("-o", "link", "show", "type", "bridge").splitlines():
        if (m := re.search(rf": ({BRIDGE_PREFIX}(\d+))[:@]", line)) and not _alive(int(m[2])):
            _ip("link", "del", m[1], check=False)
            log.warning("netlab_leftover_deleted", bridge=m[1])


def _kill_inside(ns: str) -> None:
    for pid in _ip("netns", "pids", ns, check=False).split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of SUBNETS that no address or route of the machine overlaps, chosen by our pid first."""
    used = [
        ipaddress.IPv4Network(word, strict=False)
        for word in (_ip("-4", "-o", "addr") + _ip("-4", "route")).split()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+(/\d+)?", word)
    ]
    candidates = list(SUBNETS.subnets(new_prefix=24))
    start = os.getpid() % len(candidates)
    for net in candidates[start:] + candidates[:start]:
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError(f"no free /24 in {SUBNETS}")


@dataclass
class NetLab:
    subnet: ipaddress.IPv4Network
    bridge: str
    hosts: dict[str, str] = field(default_factory=dict)  # host name -> its address

    @classmethod
    def create(cls, hosts: list[str]) -> NetLab:
        sweep()
        pid = os.getpid()
        lab = cls(_free_subnet(), f"{BRIDGE_PREFIX}{pid}")
        try:
            _ip("link", "add", lab.bridge, "type", "bridge")
            _ip("addr", "add", f"{lab.address}/24", "dev", lab.bridge)
            _ip("link", "set", lab.bridge, "up")
            for i, host in enumerate(hosts):
                lab._add_host(host, i)
        except BaseException:
            lab.destroy()
            raise
        return lab

    @property
    def address(self) -> str:
        """The root namespace's address on the bridge: where the hosts reach the services."""
        return str(self.subnet[1])

    def netns(self, host: str) -> str:
        return f"{NS_PREFIX}{os.getpid()}-{host}"

    def _add_host(self, host: str, i: int) -> None:
        ns, outer = self.netns(host), f"{BRIDGE_PREFIX}{os.getpid()}{chr(ord('a') + i)}"
        address = str(self.subnet[11 + i])
        _ip("netns", "add", ns)
        self.hosts[host] = address
        _ip("link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", outer, "master", self.bridge, "up")
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")  # the workers' metrics listen on the host's own loopback

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` run inside the host's namespace (ip netns exec execs it: the same process id)."""
        return ["ip", "netns", "exec", self.netns(host), *argv]

    def cut(self, host: str, ports: list[int]) -> None:
        """Drop every packet between the host and the lab's address on ``ports``, both ways (silently, as a lost
        link does: established connections see no reset)."""
        p = ", ".join(map(str, ports))
        rules = (
            f"table inet {CUT_TABLE} {{\n"
            f" chain out {{ type filter hook output priority 0; ip daddr {self.address} tcp dport {{ {p} }} drop; }}\n"
            f" chain in {{ type filter hook input priority 0; ip saddr {self.address} tcp sport {{ {p} }} drop; }}\n"
            "}\n"
        )
        subprocess.run(self.command(host, ["nft", "-f", "-"]), input=rules, text=True, check=True, timeout=30)

    def restore(self, host: str) -> None:
        subprocess.run(
            self.command(host, ["nft", "delete", "table", "inet", CUT_TABLE]), check=True, timeout=30
        )

    def destroy(self) -> None:
        for host in self.hosts:
            ns = self.netns(host)
            _kill_inside(ns)
            _ip("netns", "del", ns, check=False)  # its veth goes with it
        _ip("link", "del", self.bridge, check=False)
