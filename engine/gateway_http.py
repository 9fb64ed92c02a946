"""Serving the gateway over HTTP: uvicorn, with the read deadlines it lacks.

uvicorn closes idle kept-alive connections (``timeout_keep_alive``) but has no timeout for a request still
arriving: a client that sends its headers or its body a byte at a time holds the connection open for as long as
it likes, and a few hundred such clients hold the process. ``deadline_protocol`` wraps uvicorn's HTTP protocol
(httptools or h11, whichever uvicorn would pick) so that on every connection

- a request's head (request line and headers) has ``header_timeout`` seconds, counted from the connection's
  opening or from the first byte of a request that follows another on a kept-alive connection;
- its body has ``body_timeout`` seconds in all, counted from the end of the head.

Past either deadline the connection is closed and counted (``chatnation_gateway_timeouts_total{phase}``); the
application sees the client gone. Nothing is timed while the application works on a request that has fully
arrived: that is bounded by the publish timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from engine import metrics
from engine.logging import get_logger
from engine.settings import Settings

log = get_logger("gateway")

_IDLE, _HEAD, _BODY, _APP = "idle", "header", "body", "app"


def deadline_protocol(base: type[asyncio.Protocol], header_timeout: float, body_timeout: float) -> type[Any]:
    """``base`` (a uvicorn HTTP protocol class) with the head and body deadlines."""

    class DeadlineProtocol(base):  # type: ignore[valid-type, misc]
        _phase = _IDLE
        _timer: asyncio.TimerHandle | None = None
        _seen: object = None  # the request cycle whose head was last seen complete

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._enter(_HEAD, header_timeout)

        def data_received(self, data: bytes) -> None:
            if self._phase == _IDLE:  # the first byte of the next request on a kept-alive connection
                self._enter(_HEAD, header_timeout)
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()  # h11 may start a pipelined request in here
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                self._enter(_IDLE, None)  # idle: uvicorn's keep-alive timeout applies
            self._follow()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel()
            super().connection_lost(exc)

        def _follow(self) -> None:
            cycle = self.cycle
            if cycle is None:
                return
            if cycle is not self._seen:  # a new request's head is complete
                self._seen = cycle
                self._enter(_BODY, body_timeout)
            if self._phase == _BODY and (not cycle.more_body or cycle.response_complete):
                self._enter(_APP, None)

        def _enter(self, phase: str, timeout: float | None) -> None:
            self._cancel()
            self._phase = phase
            if timeout is not None:
                self._timer = asyncio.get_running_loop().call_later(timeout, self._expired, phase)

        def _cancel(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expired(self, phase: str) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            metrics.GATEWAY_TIMEOUTS.labels(phase).inc()
            log.info("connection_timed_out", phase=phase, client=_client(self.client))
            self.transport.close()  # the application, if it was reading the body, sees a disconnect

    DeadlineProtocol.__name__ = DeadlineProtocol.__qualname__ = f"Deadline{base.__name__}"
    return DeadlineProtocol


def _client(addr: Any) -> str | None:
    return f"{addr[0]}:{addr[1]}" if addr else None


def default_protocol() -> type[asyncio.Protocol]:
    """The HTTP protocol uvicorn itself would choose: httptools when installed, else h11."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    return AutoHTTPProtocol


def server_config(
    app: ASGIApp, settings: Settings, *, protocol: type[asyncio.Protocol] | None = None, **options: Any
) -> uvicorn.Config:
    """The gateway's uvicorn configuration: its own logging, no server header, and the read deadlines."""
    http = deadline_protocol(
        protocol or default_protocol(),
        settings.gateway_header_timeout_seconds,
        settings.gateway_body_timeout_seconds,
    )
    defaults: dict[str, Any] = {
        "host": settings.gateway_host,
        "port": settings.gateway_port,
        "access_log": False,
        "proxy_headers": False,
        "server_header": False,
        "log_config": None,  # logging is ours (configure_logging); uvicorn's warnings and errors go through it
        "timeout_graceful_shutdown": int(settings.shutdown_grace_seconds),
    }
    return uvicorn.Config(app, http=http, **{**defaults, **options})
