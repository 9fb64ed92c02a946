"""The webhook gateway over real HTTP (uvicorn in-process) against the real RabbitMQ.

What is queued is read back from the session's queues; every test starts with them purged.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families
from pydantic import AnyUrl

from engine.broker import Topology, shard_of
from engine.metrics import exposition
from engine.settings import Settings
from engine.whatsapp.webhook import parse_envelope, split_envelope
from tests.helpers import shared_dir
from webhook_gateway import create_app

PAYLOADS = sorted((shared_dir() / "whatsapp" / "payloads").glob("*.json"))
LIMIT = 256 * 1024  # max_webhook_bytes of the gateways under test


# ---------------------------------------------------------------- helpers


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def text_envelope(messages: list[tuple[str, str, str]], phone_number_id: str = "PNID1") -> dict[str, Any]:
    """One change holding ``(wa_id, message_id, text)`` messages in this order, with their contacts."""
    wa_ids = list(dict.fromkeys(wa for wa, _, _ in messages))
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA1",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "254711000000",
                                "phone_number_id": phone_number_id,
                            },
                            "contacts": [{"profile": {"name": f"Name {wa}"}, "wa_id": wa} for wa in wa_ids],
                            "messages": [
                                {
                                    "from": wa,
                                    "id": mid,
                                    "timestamp": "1700000000",
                                    "type": "text",
                                    "text": {"body": text},
                                }
                                for wa, mid, text in messages
                            ],
                        },
                    }
                ],
            }
        ],
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app served by a real uvicorn on a free port; yields a client bound to it."""
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=15) as client:
            yield client
    finally:
        server.should_exit = True
        await task


async def wait_ready(client: httpx.AsyncClient, want: int = 200, within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while (await client.get("/readyz")).status_code != want:
            await asyncio.sleep(0.05)


async def post_signed(client: httpx.AsyncClient, body: bytes | dict[str, Any], secret: str) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post("/webhook", content=raw, headers={"X-Hub-Signature-256": sign(raw, secret)})


class Queues:
    """Reads what the gateway published from the session's queues."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, topology: Topology) -> None:
        self.channel, self.topology = channel, topology

    async def drain(self, name: str, idle: float = 0.2) -> list[aio_pika.abc.AbstractIncomingMessage]:
        """Everything in the queue, in queue order, until it stays quiet for ``idle`` seconds.

        Consumed rather than counted: these queues refuse basic.get, and the message count a passive
        declare reports lags behind confirmed publishes."""
        queue = await self.channel.get_queue(name, ensure=False)
        delivered: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(delivered.put, no_ack=True)
        out: list[aio_pika.abc.AbstractIncomingMessage] = []
        try:
            while True:
                out.append(await asyncio.wait_for(delivered.get(), idle))
        except TimeoutError:
            return out
        finally:
            await queue.cancel(tag)

    async def drain_inbound(self) -> dict[str, list[aio_pika.abc.AbstractIncomingMessage]]:
        names = self.topology.inbound_queues()
        return dict(zip(names, await asyncio.gather(*(self.drain(n) for n in names)), strict=True))

    async def inbound_count(self) -> int:
        return sum(len(msgs) for msgs in (await self.drain_inbound()).values())

    async def purge(self) -> None:
        for name in self.topology.all_queues():
            await (await self.channel.get_queue(name, ensure=False)).purge()


class TcpProxy:
    """A loopback TCP forwarder to the broker that can be switched off and on: an unreachable broker that
    becomes reachable again on the same address."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target, self.port = target, free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
        self._writers.discard(writer)


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return float(sample.value)
    raise AssertionError(f"{name} {labels} not exposed")


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def gw_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_webhook_bytes": LIMIT})


@pytest.fixture(scope="module")
async def client(
    broker: aio_pika.abc.AbstractRobustConnection, gw_settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    async with running_gateway(gw_settings) as client:
        await wait_ready(client)
        yield client


@pytest.fixture
async def queues(broker: aio_pika.abc.AbstractRobustConnection, settings: Settings) -> AsyncIterator[Queues]:
    channel = await broker.channel()
    queues = Queues(channel, Topology.from_settings(settings))
    await queues.purge()
    yield queues
    await queues.purge()
    await channel.close()


# ---------------------------------------------------------------- handshake


@pytest.mark.parametrize(
    ("mode", "token", "status"),
    [
        ("subscribe", "dev-verify-token", 200),
        ("subscribe", "wrong", 403),
        ("unsubscribe", "dev-verify-token", 403),
        (None, "dev-verify-token", 403),
        ("subscribe", None, 403),
    ],
)
async def test_verification_handshake(
    client: httpx.AsyncClient, settings: Settings, mode: str | None, token: str | None, status: int
) -> None:
    assert settings.whatsapp_verify_token == "dev-verify-token"
    params = {k: v for k, v in {"hub.mode": mode, "hub.verify_token": token}.items() if v is not None}
    response = await client.get("/webhook", params={**params, "hub.challenge": "1158201444"})
    assert response.status_code == status
    if status == 200:
        assert response.text == "1158201444"
        assert response.headers["content-type"].startswith("text/plain")


# ---------------------------------------------------------------- happy path


async def test_signed_text_is_queued_on_the_contacts_shard(
    client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    mid = f"wamid.{uuid.uuid4().hex}"
    response = await post_signed(
        client, text_envelope([("254700000001", mid, "Habari")]), settings.whatsapp_app_secret
    )
    assert response.status_code == 200
    queued = await queues.drain_inbound()
    shard_queue = queues.topology.inbound_queue(shard_of("254700000001", settings.inbound_shards))
    assert {name: len(msgs) for name, msgs in queued.items() if msgs} == {shard_queue: 1}
    message = queued[shard_queue][0]
    assert message.message_id == mid
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    body = json.loads(message.body)
    assert isinstance(body.pop("received_at"), float)
    assert body == {
        "v": 1,
        "kind": "message",
        "field": "messages",
        "phone_number_id": "PNID1",
        "display_phone_number": "254711000000",
        "wa_id": "254700000001",
        "user_id": None,
        "contact_name": "Name 254700000001",
        "external_id": mid,
        "timestamp": 1700000000,
        "payload": {
            "from": "254700000001",
            "id": mid,
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": "Habari"},
        },
    }


async def test_signature_is_checked_over_the_raw_bytes(
    client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    # Meta escapes "/" and non-ASCII; re-serialising before hashing would break this signature.
    envelope = json.dumps(text_envelope([("254700000002", "wamid.RAW", "caf\u00e9 http://x/y @me")]))
    raw = envelope.replace("/", "\\/").encode()
    assert b"\\u00e9" in raw and b"\\/" in raw
    assert (await post_signed(client, raw, settings.whatsapp_app_secret)).status_code == 200
    assert await queues.inbound_count() == 1


async def test_unknown_types_are_queued_not_refused(
    client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    envelope = text_envelope([("254700000003", "wamid.FUT", "x")])
    value = envelope["entry"][0]["changes"][0]["value"]
    value["messages"][0] = {
        "from": "254700000003",
        "id": "wamid.FUT",
        "timestamp": "1",
        "type": "hologram",
        "hologram": {"depth": 3},
    }
    envelope["entry"][0]["changes"].append({"field": "brand_new_field", "value": {"anything": [1, 2]}})
    assert (await post_signed(client, envelope, settings.whatsapp_app_secret)).status_code == 200
    bodies = [json.loads(m.body) for msgs in (await queues.drain_inbound()).values() for m in msgs]
    assert sorted((b["kind"], b["field"]) for b in bodies) == [
        ("message", "messages"),
        ("other", "brand_new_field"),
    ]


async def test_fifty_messages_keep_each_contacts_order(
    client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    contacts = [f"2547000001{i:02d}" for i in range(7)]
    messages = [(contacts[(i * 3) % 7], f"wamid.N{i:03d}", f"m{i}") for i in range(50)]
    routes = {shard_of(wa, settings.inbound_shards) for wa in contacts}
    assert len(routes) > 1, "the contacts should spread over several shards"
    assert (
        await post_signed(client, text_envelope(messages), settings.whatsapp_app_secret)
    ).status_code == 200
    queued = await queues.drain_inbound()
    assert sum(len(v) for v in queued.values()) == 50
    for wa in contacts:
        shard_queue = queues.topology.inbound_queue(shard_of(wa, settings.inbound_shards))
        got = [m.message_id for m in queued[shard_queue] if json.loads(m.body)["wa_id"] == wa]
        assert got == [mid for w, mid, _ in messages if w == wa]


@pytest.mark.parametrize("path", PAYLOADS, ids=[p.stem for p in PAYLOADS])
async def test_every_captured_payload_is_queued(
    client: httpx.AsyncClient, queues: Queues, settings: Settings, path: Path
) -> None:
    raw = path.read_bytes()
    expected = split_envelope(parse_envelope(json.loads(raw)))
    assert expected, "each captured payload carries at least one part"
    assert (await post_signed(client, raw, settings.whatsapp_app_secret)).status_code == 200
    queued = [m for msgs in (await queues.drain_inbound()).values() for m in msgs]
    assert sorted(m.message_id or "" for m in queued) == sorted(p.external_id for p in expected)


# ---------------------------------------------------------------- refusals: nothing queued


def _refusals(secret: str) -> list[tuple[str, bytes, dict[str, str], int]]:
    good = json.dumps(text_envelope([("254700000009", "wamid.R", "x")])).encode()
    not_envelope = b'{"object":"whatsapp_business_account","entry":"nope"}'
    return [
        ("bad signature", good, {"X-Hub-Signature-256": sign(good, "not-the-secret")}, 401),
        ("missing signature", good, {}, 401),
        ("malformed signature header", good, {"X-Hub-Signature-256": "md5=abc"}, 401),
        ("signature of other bytes", good, {"X-Hub-Signature-256": sign(good + b" ", secret)}, 401),
        ("garbage", b"\x00not json{", {"X-Hub-Signature-256": sign(b"\x00not json{", secret)}, 400),
        ("json but not an envelope", not_envelope, {"X-Hub-Signature-256": sign(not_envelope, secret)}, 400),
        ("json array", b"[1,2]", {"X-Hub-Signature-256": sign(b"[1,2]", secret)}, 400),
        ("too large", b"x" * (LIMIT + 1), {"X-Hub-Signature-256": sign(b"x" * (LIMIT + 1), secret)}, 413),
    ]


@pytest.mark.parametrize("case", range(8), ids=[c[0] for c in _refusals("s")])
async def test_refused_webhooks_queue_nothing(
    client: httpx.AsyncClient, queues: Queues, settings: Settings, case: int
) -> None:
    _, body, headers, status = _refusals(settings.whatsapp_app_secret)[case]
    response = await client.post("/webhook", content=body, headers=headers)
    assert response.status_code == status
    assert await queues.inbound_count() == 0


async def test_oversized_chunked_body_is_refused(
    client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    chunk = b" " * 16384

    async def body() -> AsyncIterator[bytes]:
        for _ in range(LIMIT // len(chunk) + 2):
            yield chunk

    response = await client.post("/webhook", content=body(), headers={"X-Hub-Signature-256": "sha256=00"})
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    assert await queues.inbound_count() == 0


async def test_declared_oversize_is_refused_before_the_body_arrives(client: httpx.AsyncClient) -> None:
    reader, writer = await asyncio.open_connection(client.base_url.host, client.base_url.port)
    writer.write(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n{")
    await writer.drain()
    async with asyncio.timeout(5):  # the remaining 100 MB never come: only an early answer passes
        status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")


async def test_signature_failures_are_counted(client: httpx.AsyncClient, queues: Queues) -> None:
    def failures(text: str) -> float:
        return metric_value(text, "chatnation_gateway_signature_failures_total")

    before = failures(exposition()[0].decode())
    await client.post("/webhook", content=b"{}", headers={"X-Hub-Signature-256": "sha256=00"})
    assert failures(exposition()[0].decode()) == before + 1


# ---------------------------------------------------------------- broker unavailable


async def test_unreachable_broker_answers_503_and_queues_nothing(
    broker: object, queues: Queues, gw_settings: Settings
) -> None:
    down = gw_settings.model_copy(update={"rabbitmq_url": AnyUrl("amqp://guest:guest@127.0.0.1:1/")})
    async with running_gateway(down) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        response = await post_signed(
            client, text_envelope([("254700000010", "wamid.D", "x")]), down.whatsapp_app_secret
        )
        assert response.status_code == 503
        callback = {
            "Body": {"stkCallback": {"MerchantRequestID": "m", "CheckoutRequestID": "c", "ResultCode": 0}}
        }
        assert (await client.post("/payments/mpesa/callback", json=callback)).status_code == 503
        # nothing to queue is not a reason to make Meta retry
        empty = {"object": "whatsapp_business_account", "entry": []}
        assert (await post_signed(client, empty, down.whatsapp_app_secret)).status_code == 200
    assert await queues.inbound_count() == 0
    assert await queues.drain(queues.topology.payments_queue) == []


async def test_the_same_webhook_succeeds_once_the_broker_is_reachable(
    broker: object, queues: Queues, gw_settings: Settings
) -> None:
    url = gw_settings.rabbitmq_url
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5672))
    via_proxy = gw_settings.model_copy(
        update={
            "rabbitmq_url": AnyUrl(f"amqp://guest:guest@127.0.0.1:{proxy.port}/"),
            "publish_timeout_seconds": 2.0,
        }
    )
    secret = via_proxy.whatsapp_app_secret
    first = json.dumps(text_envelope([("254700000011", "wamid.LATER", "x")])).encode()
    async with running_gateway(via_proxy) as client:
        assert (await post_signed(client, first, secret)).status_code == 503
        assert await queues.inbound_count() == 0
        await proxy.start()  # the broker becomes reachable: the background connect loop finds it
        await wait_ready(client)
        assert (await post_signed(client, first, secret)).status_code == 200
        assert [m.message_id for msgs in (await queues.drain_inbound()).values() for m in msgs] == [
            "wamid.LATER"
        ]

        await proxy.stop()  # connection lost after start-up: 503 until the robust connection is back
        await wait_ready(client, want=503)
        second = json.dumps(text_envelope([("254700000011", "wamid.AGAIN", "y")])).encode()
        assert (await post_signed(client, second, secret)).status_code == 503
        assert await queues.inbound_count() == 0
        await proxy.start()
        await wait_ready(client, within=30)
        assert (await post_signed(client, second, secret)).status_code == 200
        assert [m.message_id for msgs in (await queues.drain_inbound()).values() for m in msgs] == [
            "wamid.AGAIN"
        ]
    await proxy.stop()


# ---------------------------------------------------------------- M-Pesa callback


def stk_callback(checkout_id: str, result_code: int = 0) -> dict[str, Any]:
    return {
        "Body": {
            "stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": checkout_id,
                "ResultCode": result_code,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {
                    "Item": [
                        {"Name": "Amount", "Value": 1.0},
                        {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                        {"Name": "Balance"},
                        {"Name": "TransactionDate", "Value": 20191219102115},
                        {"Name": "PhoneNumber", "Value": 254708374149},
                    ]
                },
            }
        }
    }


async def test_mpesa_callback_is_queued(client: httpx.AsyncClient, queues: Queues) -> None:
    response = await client.post("/payments/mpesa/callback", json=stk_callback("ws_CO_1"))
    assert response.status_code == 200
    assert response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    [message] = await queues.drain(queues.topology.payments_queue)
    assert message.message_id == "ws_CO_1"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    body = json.loads(message.body)
    assert body["received_at"] > 0
    assert {
        k: body[k]
        for k in (
            "v",
            "kind",
            "provider",
            "checkout_request_id",
            "merchant_request_id",
            "result_code",
            "metadata",
            "payload",
        )
    } == {
        "v": 1,
        "kind": "payment",
        "provider": "mpesa",
        "checkout_request_id": "ws_CO_1",
        "merchant_request_id": "29115-34620561-1",
        "result_code": 0,
        "metadata": {
            "Amount": 1.0,
            "MpesaReceiptNumber": "NLJ7RT61SV",
            "Balance": None,
            "TransactionDate": 20191219102115,
            "PhoneNumber": 254708374149,
        },
        "payload": stk_callback("ws_CO_1"),
    }


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"Body":{"stkCallback":{"MerchantRequestID":"m","ResultCode":0}}}',
        b'{"Body":{"stkCallback":{"MerchantRequestID":"m","CheckoutRequestID":"c","ResultCode":"zero"}}}',
    ],
)
async def test_mpesa_callback_of_the_wrong_shape_is_refused(
    client: httpx.AsyncClient, queues: Queues, body: bytes
) -> None:
    assert (await client.post("/payments/mpesa/callback", content=body)).status_code == 400
    assert await queues.drain(queues.topology.payments_queue) == []


async def test_mpesa_callback_token_when_configured(
    broker: object, queues: Queues, gw_settings: Settings
) -> None:
    with_token = gw_settings.model_copy(update={"mpesa_callback_token": "s3cret-token"})
    async with running_gateway(with_token) as client:
        await wait_ready(client)
        for params in ({}, {"token": "wrong"}, {"token": "s3cret-tokenX"}):
            response = await client.post(
                "/payments/mpesa/callback", params=params, json=stk_callback("ws_CO_2")
            )
            assert response.status_code == 401
        assert await queues.drain(queues.topology.payments_queue) == []
        response = await client.post(
            "/payments/mpesa/callback",
            params={"token": "s3cret-token"},
            json=stk_callback("ws_CO_2", result_code=1032),
        )
        assert response.status_code == 200
    [message] = await queues.drain(queues.topology.payments_queue)
    assert json.loads(message.body)["result_code"] == 1032


# ---------------------------------------------------------------- health and metrics


async def test_health_readiness_and_metrics(
    client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200
    await post_signed(client, text_envelope([("254700000012", "wamid.M", "x")]), settings.whatsapp_app_secret)
    assert (await client.get("/metrics")).status_code == 404  # not on the public port (GATEWAY_METRICS_PORT)
    text = exposition()[0].decode()
    assert (
        metric_value(text, "chatnation_gateway_requests_total", {"route": "webhook", "outcome": "accepted"})
        >= 1
    )
    assert metric_value(text, "chatnation_gateway_publish_seconds_count") >= 1
    assert metric_value(text, "chatnation_gateway_parts_published_total", {"kind": "message"}) >= 1
    metric_value(text, "chatnation_gateway_signature_failures_total")
    metric_value(text, "chatnation_gateway_requests_total", {"route": "webhook", "outcome": "unavailable"})
