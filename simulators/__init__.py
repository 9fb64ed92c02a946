"""Local stand-ins for the external APIs (WhatsApp Cloud API, M-Pesa Daraja), as real HTTP servers.

Tests start them in-process (``await WhatsAppSimulator().start()``); other processes drive them over HTTP
(``/_sim/...``) or run them from the command line: ``python -m simulators whatsapp --port 8090``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Coroutine
from email import policy
from email.parser import BytesParser
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp


class ServerRunner:
    """Runs one ASGI app under uvicorn inside the current event loop."""

    def __init__(self, app: ASGIApp, *, lifespan: Literal["auto", "on", "off"] = "off") -> None:
        self._app = app
        self._lifespan = lifespan  # "on" for apps that connect to things at start-up (the gateway)
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.base_url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 = any free port) and return the base URL once it accepts connections."""
        if self._server is not None:
            raise RuntimeError("already started")
        # Bind here rather than in uvicorn: a busy port raises OSError to the caller instead of SystemExit.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
        # Keep-alive longer than any client's pool expiry (httpx: 5 s), so the client always closes an idle
        # connection first; with equal timeouts a request can go out on a connection the server is closing.
        config = uvicorn.Config(
            self._app, log_level="warning", lifespan=self._lifespan, access_log=False, timeout_keep_alive=30
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError("the server stopped during start-up")
            await asyncio.sleep(0.01)
        self.base_url = f"http://{host}:{sock.getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
        self._task = None


class SimulatorServer:
    """What the simulators share: their app on a ``ServerRunner``, and the background work they start (callbacks,
    status webhooks), which ``stop`` cancels."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._runner = ServerRunner(app)
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        return await self._runner.start(host, port)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._runner.stop()

    @property
    def base_url(self) -> str:
        return self._runner.base_url

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str]]:
    """``{field: (bytes, content type)}`` of a multipart/form-data body (stdlib parser, no extra dependency)."""
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise ValueError("not multipart")
    fields = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            fields[name] = (payload if isinstance(payload, bytes) else b"", part.get_content_type())
    return fields
