"""The gateway's read deadlines (engine/gateway_http.py) over real sockets, with both of uvicorn's HTTP parsers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from engine.metrics import exposition
from engine.settings import Settings
from tests.test_gateway import metric_value, running_gateway, wait_ready

HEADER_TIMEOUT = BODY_TIMEOUT = 1.0
CLOSED_WITHIN = 3.0  # "a few seconds": the deadline and some slack for a loaded machine


@pytest.fixture(scope="module", params=[HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
async def gateway(
    request: pytest.FixtureRequest, broker: object, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    quick = settings.model_copy(
        update={
            "gateway_header_timeout_seconds": HEADER_TIMEOUT,
            "gateway_body_timeout_seconds": BODY_TIMEOUT,
        }
    )
    async with running_gateway(quick, protocol=request.param) as client:
        await wait_ready(client)
        yield client


def counter(name: str, labels: dict[str, str]) -> float:
    return metric_value(exposition()[0].decode(), name, labels)


async def trickle(
    client: httpx.AsyncClient, first: bytes, then: bytes, every: float = 0.2
) -> tuple[float, bytes]:
    """Sends ``first``, then ``then`` a byte every ``every`` seconds until the server closes the connection (or
    ten seconds pass); the seconds it stayed open and what the server answered."""
    reader, writer = await asyncio.open_connection(client.base_url.host, client.base_url.port)
    started = time.monotonic()
    answer = b""
    read = asyncio.create_task(reader.read())  # to the end: the server closed
    try:
        writer.write(first)
        for i in range(int(10 / every)):
            if read.done():
                break
            writer.write(then[i % len(then) : i % len(then) + 1])
            try:
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.wait([read], timeout=every)
        async with asyncio.timeout(2):
            answer = await read
    except ConnectionError:
        pass
    finally:
        read.cancel()
        writer.close()
    return time.monotonic() - started, answer


async def test_a_connection_that_sends_nothing_is_closed(gateway: httpx.AsyncClient) -> None:
    reader, writer = await asyncio.open_connection(gateway.base_url.host, gateway.base_url.port)
    started = time.monotonic()
    async with asyncio.timeout(CLOSED_WITHIN):
        assert await reader.read() == b""
    assert time.monotonic() - started >= HEADER_TIMEOUT * 0.9
    writer.close()


async def test_a_slow_header_is_closed_within_seconds(gateway: httpx.AsyncClient) -> None:
    before = counter("chatnation_gateway_timeouts_total", {"phase": "header"})
    seconds, _ = await trickle(gateway, b"POST /webhook HTTP/1.1\r\nHost: x\r\n", b"X-Slow: aaaaaaaaaaaaaaaa")
    assert HEADER_TIMEOUT * 0.9 <= seconds < CLOSED_WITHIN
    assert counter("chatnation_gateway_timeouts_total", {"phase": "header"}) == before + 1


async def test_a_slow_body_is_closed_within_seconds_and_counted(gateway: httpx.AsyncClient) -> None:
    body_timeouts = counter("chatnation_gateway_timeouts_total", {"phase": "body"})
    gone = counter("chatnation_gateway_requests_total", {"route": "webhook", "outcome": "disconnected"})
    head = b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
    seconds, _ = await trickle(gateway, head, b'"a":1,')
    assert BODY_TIMEOUT * 0.9 <= seconds < CLOSED_WITHIN
    assert counter("chatnation_gateway_timeouts_total", {"phase": "body"}) == body_timeouts + 1
    async with asyncio.timeout(2):  # the application saw its client go
        while (
            counter("chatnation_gateway_requests_total", {"route": "webhook", "outcome": "disconnected"})
            == gone
        ):
            await asyncio.sleep(0.02)


async def test_a_slow_body_the_application_does_not_read_is_closed(gateway: httpx.AsyncClient) -> None:
    seconds, answer = await trickle(
        gateway, b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", b"z"
    )
    assert answer.startswith(b"HTTP/1.1 404")
    assert seconds < CLOSED_WITHIN


async def test_requests_in_time_are_answered_on_a_kept_alive_connection(gateway: httpx.AsyncClient) -> None:
    """A body in pieces inside its deadline is read; the next request on the connection gets its own deadline."""
    reader, writer = await asyncio.open_connection(gateway.base_url.host, gateway.base_url.port)
    try:
        for _ in range(3):
            writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
            for piece in (b"{}  ", b"  "):
                await asyncio.sleep(BODY_TIMEOUT / 5)
                writer.write(piece)
            async with asyncio.timeout(5):
                assert (await reader.readline()).startswith(b"HTTP/1.1 401")  # read whole, refused unsigned
                while (await reader.readline()) != b"\r\n":
                    pass
                await reader.readexactly(len(b"bad signature"))
            await asyncio.sleep(HEADER_TIMEOUT * 0.6)  # idle less than the keep-alive timeout
    finally:
        writer.close()
