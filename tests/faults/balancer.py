"""A round-robin in front of the gateways of the scale test (issue 22): Debian's haproxy (scripts/ensure_netlab.sh
installs it), run in the foreground by the test with a configuration of its own. Each request goes to the next
gateway that passes its health check (``GET /readyz``: up only while it reaches the broker), a connection a dead
gateway refused is retried on the other one, and the stats socket tells how many requests each gateway took."""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.faults.services import free_low_port


def unavailable() -> str | None:
    return None if shutil.which("haproxy") else "haproxy is not installed (scripts/ensure_netlab.sh)"


@dataclass
class Balancer:
    base: Path
    servers: dict[str, str]  # name -> host:port
    port: int
    proc: subprocess.Popen[bytes]

    @classmethod
    def start(cls, base: Path, servers: dict[str, str]) -> Balancer:
        base.mkdir(parents=True, exist_ok=True)
        port = free_low_port()
        lines = "\n".join(
            f"  server {name} {where} check inter 1s fall 2 rise 1" for name, where in servers.items()
        )
        # timeout server above the gateway's own confirm wait, so that the gateway answers first
        (base / "haproxy.cfg").write_text(
            f"""global
  maxconn 2000
  stats socket {base / "stats.sock"} mode 600
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend webhooks
  bind 127.0.0.1:{port}
  default_backend gateways
backend gateways
  balance roundrobin
  option httpchk GET /readyz
{lines}
"""
        )
        log = (base / "haproxy.log").open("ab")
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(base / "haproxy.cfg")], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return cls(base, servers, port, proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, dict[str, str]]:
        """haproxy's ``show stat`` rows of the gateways, by server name."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.base / "stats.sock"))
            s.sendall(b"show stat\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        text = b"".join(chunks).decode().lstrip("# ")
        return {
            row["svname"]: row for row in csv.DictReader(text.splitlines()) if row["svname"] in self.servers
        }

    def requests(self) -> dict[str, int]:
        """Requests each gateway answered with a 2xx so far."""
        return {name: int(row.get("hrsp_2xx") or 0) for name, row in self.stats().items()}

    def wait_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(row["status"] == "UP" for row in self.stats().values()):
                    return
            except OSError:
                pass  # the socket is not there yet
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy's gateways are not up; see {self.base / 'haproxy.log'}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
