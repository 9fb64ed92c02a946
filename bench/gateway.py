"""Webhook gateway throughput and latency against the real RabbitMQ, publisher confirms on.

Starts `python webhook_gateway.py` on a free loopback port with a private broker prefix, drives it with
signed one-message webhooks over keep-alive connections at increasing concurrency, prints a table, and removes
its queues at the end. The load generator runs on the same machine and shares its cores with the gateway.

    python bench/gateway.py [--requests 3000] [--levels 1,8,32,64,128]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.broker import Topology  # noqa: E402
from engine.settings import Settings  # noqa: E402

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
LEVEL_TIMEOUT_SECONDS = 300


@dataclass
class Level:
    concurrency: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    errors: int
    gateway_cpu: float
    loadgen_cpu: float

    def row(self) -> str:
        lat = sorted(self.latencies_ms) or [0.0]
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        return (
            f"{self.concurrency:>11} {self.requests / self.seconds:>10.0f} {p50:>8.1f} {p99:>8.1f} "
            f"{lat[-1]:>8.1f} {self.errors:>7} {self.gateway_cpu:>8.0f}% {self.loadgen_cpu:>8.0f}%"
        )


HEADER = f"{'concurrency':>11} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} {'gw CPU':>9} {'load CPU':>9}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def signed_bodies(count: int, secret: str, contacts: int = 1000) -> list[tuple[bytes, str]]:
    out = []
    for i in range(count):
        wa = f"2547{i % contacts:08d}"
        body = json.dumps(
            {
                "object": "whatsapp_business_account",
                "entry": [
                    {
                        "id": "WABA",
                        "changes": [
                            {
                                "field": "messages",
                                "value": {
                                    "messaging_product": "whatsapp",
                                    "metadata": {
                                        "display_phone_number": "254711000000",
                                        "phone_number_id": "BENCHPNID",
                                    },
                                    "contacts": [{"profile": {"name": "Bench"}, "wa_id": wa}],
                                    "messages": [
                                        {
                                            "from": wa,
                                            "id": f"wamid.{uuid.uuid4().hex}",
                                            "timestamp": str(int(time.time())),
                                            "type": "text",
                                            "text": {"body": f"vote {i % 5}"},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            }
        ).encode()
        out.append((body, "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()))
    return out


async def run_level(
    base_url: str, bodies: list[tuple[bytes, str]], concurrency: int, gateway: psutil.Process
) -> Level:
    """``concurrency`` keep-alive connections, each with one request in flight at a time."""
    latencies: list[float] = []
    errors = 0
    todo = iter(bodies)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for body, signature in todo:
            started = time.perf_counter()
            try:
                response = await client.post(
                    "/webhook", content=body, headers={"X-Hub-Signature-256": signature}
                )
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok

    # One single-connection client per worker: httpx's shared pool costs more CPU than the gateway at
    # high concurrency, and the load generator shares the machine.
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base_url, limits=one, timeout=30) for _ in range(concurrency)]
    me = psutil.Process()
    try:
        gateway.cpu_percent(None), me.cpu_percent(None)
        started = time.perf_counter()
        async with asyncio.timeout(LEVEL_TIMEOUT_SECONDS):
            await asyncio.gather(*(worker(client) for client in clients))
        seconds = time.perf_counter() - started
        gw_cpu, load_cpu = gateway.cpu_percent(None), me.cpu_percent(None)
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return Level(concurrency, len(bodies), seconds, latencies, errors, gw_cpu, load_cpu)


async def wait_ready(base_url: str, proc: subprocess.Popen[bytes], within: float = 30) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client, asyncio.timeout(within):
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"gateway exited with {proc.returncode}")
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


async def purge(settings: Settings, delete: bool = False) -> None:
    import aio_pika

    connection = await aio_pika.connect(str(settings.rabbitmq_url))
    async with connection:
        channel = await connection.channel()
        topology = Topology.from_settings(settings)
        if delete:
            await topology.delete(channel)
            return
        for name in topology.inbound_queues():
            await (await channel.get_queue(name, ensure=False)).purge()


async def bench(
    args: argparse.Namespace, settings: Settings, proc: subprocess.Popen[bytes], base_url: str
) -> None:
    await wait_ready(base_url, proc)
    gateway = psutil.Process(proc.pid)
    await run_level(base_url, signed_bodies(300, settings.whatsapp_app_secret), 8, gateway)  # warm-up
    print(
        f"gateway pid {proc.pid}, {args.requests} signed one-message webhooks per level, "
        f"{psutil.cpu_count()} CPUs shared by gateway, load generator and RabbitMQ\n{HEADER}"
    )
    for concurrency in args.levels:
        await purge(settings)
        bodies = signed_bodies(args.requests, settings.whatsapp_app_secret)
        print((await run_level(base_url, bodies, concurrency, gateway)).row(), flush=True)


def start_gateway(settings: Settings, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "BROKER_PREFIX": settings.broker_prefix,
        "LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen([sys.executable, str(ROOT / "webhook_gateway.py")], cwd=ROOT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000, help="requests per concurrency level")
    parser.add_argument(
        "--levels", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 32, 64, 128]
    )
    args = parser.parse_args()
    if not 1 <= args.requests <= 100_000 or not all(1 <= c <= 1024 for c in args.levels):
        raise SystemExit("--requests must be 1..100000 and each level 1..1024")
    settings = Settings(broker_prefix=f"bench{uuid.uuid4().hex[:8]}")
    if settings.rabbitmq_url.host not in LOOPBACK:
        raise SystemExit("this benchmark only talks to a loopback broker")
    port = free_port()
    proc = start_gateway(settings, port)
    try:
        asyncio.run(bench(args, settings, proc, f"http://127.0.0.1:{port}"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        asyncio.run(purge(settings, delete=True))


if __name__ == "__main__":
    main()
