"""A CRM's webhook receiver on loopback for the tests: records every request (headers and raw body) and answers
with the statuses it is told, then 200. Given the endpoints' secrets it checks each signature as a CRM would
(engine/webhooks.verify over the raw body) and refuses a bad one with 401."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from engine import webhooks


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    verified: bool | None = None  # None: no secret to check with


@dataclass
class CrmReceiver:
    answers: list[int] = field(default_factory=list)  # statuses for the next requests, then 200
    delay: float = 0.0  # seconds before each answer (a slow CRM)
    received: list[Received] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # signatures checked with these (any of them)
    _runner: web.AppRunner | None = None
    url: str = ""

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signature = request.headers.get(webhooks.SIGNATURE_HEADER, "")
        verified = any(webhooks.verify(s, body, signature) for s in self.secrets) if self.secrets else None
        self.received.append(Received(dict(request.headers), body, verified))
        if self.delay:
            await asyncio.sleep(self.delay)
        if verified is False:
            return web.Response(status=401, text="bad signature")
        status = self.answers.pop(0) if self.answers else 200
        return web.Response(status=status, text="ok" if status < 300 else "not now")

    async def start(self) -> CrmReceiver:
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server: Any = site._server
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/hooks"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
