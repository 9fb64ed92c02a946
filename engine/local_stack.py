"""The whole engine on one machine, for the demo, the end-to-end tests and the benchmarks: the WhatsApp
and M-Pesa simulators, the gateway and the workers, wired to each other on loopback.

Workers run in this process (fast to start, easy to inspect) or as real ``worker.py`` processes (to kill
them). Everything talks over real HTTP, AMQP and PostgreSQL connections.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from engine.settings import PROJECT_ROOT, Settings
from simulators import ServerRunner
from simulators.mpesa import MpesaSimulator
from simulators.smtp import SmtpSimulator
from simulators.whatsapp import SimulatedUser, WebhookPoster, WhatsAppSimulator


@dataclass
class LocalStack:
    base: Settings
    roles: tuple[str, ...] = ("inbound", "relay", "sender", "cards", "scheduler")
    concurrency: int = 32
    statuses: tuple[str, ...] = ()  # status webhooks the simulator posts back for each accepted message
    whatsapp: WhatsAppSimulator = field(default_factory=lambda: WhatsAppSimulator(accept_any_token=True))
    mpesa: MpesaSimulator = field(default_factory=lambda: MpesaSimulator(callback_delay=0.2))
    smtp: SmtpSimulator | None = field(default_factory=SmtpSimulator)  # None: tickets are not e-mailed
    host: str = "127.0.0.1"  # where the simulators and the gateway listen (the scale test's lab address)
    settings: Settings | None = None
    poster: WebhookPoster | None = None
    _gateway: ServerRunner | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _runtimes: list[Any] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    async def start(self, *, in_process_workers: bool = True) -> LocalStack:
        from webhook_gateway import create_app

        wa_url = await self.whatsapp.start(self.host)
        mpesa_url = await self.mpesa.start(self.host)
        mail = {}
        if self.smtp is not None:
            mail = {
                "smtp_host": self.host,
                "smtp_port": await self.smtp.start(self.host),
                "smtp_security": "none",
            }
        gateway_settings = self.base.model_copy(update={"gateway_port": 0})
        self._gateway = ServerRunner(create_app(gateway_settings), lifespan="on")
        gateway_url = await self._gateway.start(self.host)
        self.settings = self.base.model_copy(
            update={
                "whatsapp_api_base_url": wa_url,
                "mpesa_base_url": mpesa_url,
                "mpesa_callback_url": f"{gateway_url}/payments/mpesa/callback",
                "send_rate_per_second": 1000.0,
                "pair_rate_per_second": 1000.0,
                "pair_rate_burst": 1000,
                **mail,
            }
        )
        self.poster = WebhookPoster(f"{gateway_url}/webhook", self.base.whatsapp_app_secret)
        if self.statuses:
            self.whatsapp.report_statuses(self.poster, self.statuses)
        await self._wait_gateway_ready(gateway_url)
        if in_process_workers:
            await self.start_worker_in_process()
        return self

    async def _wait_gateway_ready(self, url: str) -> None:
        import httpx

        async with httpx.AsyncClient() as client:
            for _ in range(200):
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
                await asyncio.sleep(0.05)
        raise RuntimeError("the gateway did not connect to the broker")

    async def start_worker_in_process(self) -> None:
        from engine.roles import run_roles
        from engine.runtime import Runtime

        assert self.settings is not None
        rt = await Runtime.start(self.settings)
        self._runtimes.append(rt)
        self._tasks.append(asyncio.create_task(run_roles(rt, set(self.roles), self.concurrency, self._stop)))

    def worker_env(self) -> dict[str, str]:
        assert self.settings is not None
        s = self.settings
        return {
            **os.environ,
            "WHATSAPP_API_BASE_URL": str(s.whatsapp_api_base_url),
            "MPESA_BASE_URL": str(s.mpesa_base_url),
            "MPESA_CALLBACK_URL": str(s.mpesa_callback_url),
            "SEND_RATE_PER_SECOND": "1000",
            "PAIR_RATE_PER_SECOND": "1000",
            "PAIR_RATE_BURST": "1000",
            **(
                {"SMTP_HOST": s.smtp_host, "SMTP_PORT": str(s.smtp_port), "SMTP_SECURITY": s.smtp_security}
                if s.smtp_host
                else {}
            ),
            "BROKER_PREFIX": s.broker_prefix,
            "INBOUND_SHARDS": str(s.inbound_shards),
            "OUTBOUND_SHARDS": str(s.outbound_shards),
            "DATABASE_URL": s.database_url or "",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "warning",
        }

    def spawn_worker(
        self, role: str, *, metrics_port: int = 0, concurrency: int | None = None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(PROJECT_ROOT / "worker.py"),
                "--role",
                role,
                "--concurrency",
                str(concurrency or self.concurrency),
                "--metrics-port",
                str(metrics_port),
            ],
            env=self.worker_env(),
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            # Inherited, not a pipe: nobody reads a pipe here, and a worker that logs more than the pipe holds
            # (64 KiB) would block in its next log call, heartbeats included, and lose its shards.
            stderr=None,
        )
        self.processes.append(proc)
        return proc

    def user(self, phone_number_id: str, wa_id: str, name: str = "Wanjiku") -> SimulatedUser:
        assert self.poster is not None
        return SimulatedUser(self.poster, phone_number_id, "254700000000", wa_id, name)

    async def stop(self) -> None:
        self._stop.set()
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes:
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for rt in self._runtimes:
            await rt.close()
        if self.poster is not None:
            await self.poster.aclose()
        if self._gateway is not None:
            await self._gateway.stop()
        await self.whatsapp.stop()
        await self.mpesa.stop()
        if self.smtp is not None:
            await self.smtp.stop()
