"""A local SMTP server that keeps what it receives: the tickets e-mail's counterpart in tests and the demo.

A real server (aiosmtpd's SMTP protocol on an asyncio listener in the running loop) that the engine's real
client (aiosmtplib) talks to. ``messages`` holds each accepted message parsed; ``refuse`` makes the next
deliveries to an address fail with a given SMTP code (e.g. 550 for good, 451 for a while).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session


class _Handler:
    def __init__(self, sim: SmtpSimulator) -> None:
        self.sim = sim

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        code = self.sim.refusals.get(address.lower())
        if code:
            return f"{code} {'mailbox unavailable' if code >= 500 else 'try again later'}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or envelope.content or b""
        raw = content if isinstance(content, bytes) else content.encode()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.sim.messages.append(message)
        self.sim.envelopes.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos)})
        self.sim.arrived.set()
        return "250 Message accepted for delivery"


class SmtpSimulator:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[dict[str, Any]] = []
        self.refusals: dict[str, int] = {}
        self.arrived = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        handler = _Handler(self)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(handler, hostname="smtp.simulator", loop=loop), host, port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def refuse(self, address: str, code: int) -> None:
        self.refusals[address.lower()] = code

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in str(m["To"]).lower()]

    async def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
        async with asyncio.timeout(timeout):
            while len(self.to(address)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.to(address)
