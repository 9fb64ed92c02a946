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

from engine.broker import Topology, kind_of, shard_of
from engine.gateway_http import server_config
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
async def running_gateway(
    settings: Settings, protocol: type[asyncio.Protocol] | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The app served by a real uvicorn, configured as webhook_gateway.py does, on a free port; yields a client
    bound to it."""
    config = server_config(
        create_app(settings), settings, protocol=protocol, host="127.0.0.1", port=0, lifespan="on"
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
    # the kind beside the body, for consumers that route without decoding it
    assert [kind_of(m.headers) for m in queued] == [json.loads(m.body)["kind"] for m in queued]


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
        assert (await client.post(CALLBACK_PATH, json=callback)).status_code == 503
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


CALLBACK_PATH = "/payments/mpesa/callback/dev-callback-secret/tok1"


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
    response = await client.post(CALLBACK_PATH, json=stk_callback("ws_CO_1"))
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
    assert (await client.post(CALLBACK_PATH, content=body)).status_code == 400
    assert await queues.drain(queues.topology.payments_queue) == []


@pytest.mark.parametrize(
    "path",
    [
        "/payments/mpesa/callback",  # no secret at all
        "/payments/mpesa/callback/tok1",  # the request's secret without the deployment's
        "/payments/mpesa/callback/dev-callback-secreT/tok1",
        "/payments/mpesa/callback/dev-callback-secret-and-more/tok1",
    ],
)
async def test_mpesa_callback_without_the_deployment_secret_in_its_path_is_refused(
    client: httpx.AsyncClient, queues: Queues, path: str
) -> None:
    response = await client.post(path, json=stk_callback("ws_CO_2"))
    assert response.status_code == 404
    assert await queues.drain(queues.topology.payments_queue) == []


async def test_mpesa_callback_carries_the_request_secret_and_source(
    client: httpx.AsyncClient, queues: Queues
) -> None:
    response = await client.post(
        "/payments/mpesa/callback/dev-callback-secret/per-request-secret",
        json=stk_callback("ws_CO_2", result_code=1032),
    )
    assert response.status_code == 200
    [message] = await queues.drain(queues.topology.payments_queue)
    body = json.loads(message.body)
    assert (body["result_code"], body["callback_token"], body["source_ip"]) == (
        1032,
        "per-request-secret",
        "127.0.0.1",
    )


async def test_mpesa_callback_source_allow_list_and_trusted_proxies(
    broker: object, queues: Queues, gw_settings: Settings
) -> None:
    allow = gw_settings.model_copy(update={"mpesa_callback_allowed_cidrs": "196.201.214.0/24"})
    async with running_gateway(allow) as client:
        await wait_ready(client)
        # the direct peer (127.0.0.1) is not allowed, and a client's own X-Forwarded-For is not believed
        for headers in ({}, {"X-Forwarded-For": "196.201.214.200"}):
            response = await client.post(CALLBACK_PATH, json=stk_callback("ws_CO_3"), headers=headers)
            assert response.status_code == 403
    assert await queues.drain(queues.topology.payments_queue) == []
    behind_proxy = allow.model_copy(update={"trusted_proxy_cidrs": "127.0.0.0/8"})
    async with running_gateway(behind_proxy) as client:
        await wait_ready(client)
        spoofed = {"X-Forwarded-For": "196.201.214.200, 10.9.9.9"}  # the proxy saw 10.9.9.9
        assert (
            await client.post(CALLBACK_PATH, json=stk_callback("ws_CO_4"), headers=spoofed)
        ).status_code == 403
        real = {"X-Forwarded-For": "196.201.214.200"}
        assert (
            await client.post(CALLBACK_PATH, json=stk_callback("ws_CO_5"), headers=real)
        ).status_code == 200
    [message] = await queues.drain(queues.topology.payments_queue)
    assert json.loads(message.body)["source_ip"] == "196.201.214.200"


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


# ---------------------------------------------------------------- input bounds (issue 13)


@pytest.fixture(scope="module")
async def default_client(broker: object, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway with the default MAX_WEBHOOK_BYTES."""
    async with running_gateway(settings) as client:
        await wait_ready(client)
        yield client


async def test_the_default_limit_takes_a_signed_batch_of_a_thousand_messages(
    default_client: httpx.AsyncClient, queues: Queues, settings: Settings
) -> None:
    """Meta batches up to 3 MB: a 2.6 MB batch of 1,000 messages is accepted and every message queued."""
    assert settings.max_webhook_bytes >= 3 * 1024 * 1024
    text = "Habari, nataka tiketi mbili za tamasha la Jumamosi. " * 48
    messages = [(f"2547100{i % 100:05d}", f"wamid.BATCH{i:04d}", f"{i} {text}") for i in range(1000)]
    raw = json.dumps(text_envelope(messages)).encode()
    assert 2_500_000 < len(raw) < 3_000_000
    response = await post_signed(default_client, raw, settings.whatsapp_app_secret)
    assert response.status_code == 200
    queued = [m.message_id for msgs in (await queues.drain_inbound()).values() for m in msgs]
    assert sorted(str(mid) for mid in queued) == sorted(mid for _, mid, _ in messages)


async def _post_raw(port: int, head: bytes, body: bytes) -> bytes:
    """Sends the whole request before reading anything, as most clients do; the answer's status line."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        async with asyncio.timeout(10):
            return await reader.readline()
    finally:
        writer.close()


async def test_an_oversized_body_gets_its_413_not_a_reset(client: httpx.AsyncClient, queues: Queues) -> None:
    """Bodies of several times the limit, sent before the answer is read, get the 413 (no connection reset)."""
    port = int(client.base_url.port or 0)
    for size in (2 * LIMIT, 4 * LIMIT, 4 * LIMIT, 8 * LIMIT, 4 * LIMIT):
        body = b"x" * size
        head = f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()
        assert (await _post_raw(port, head, body)).startswith(b"HTTP/1.1 413"), size
    for _ in range(5):  # an ordinary client: the whole body, declared
        response = await client.post(
            "/webhook", content=b"y" * (4 * LIMIT), headers={"X-Hub-Signature-256": "x"}
        )
        assert response.status_code == 413

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(4 * LIMIT // 16384):
            yield b" " * 16384

    for _ in range(3):  # streamed without a length
        assert (await client.post("/webhook", content=chunked())).status_code == 413
    assert await queues.inbound_count() == 0


async def test_a_client_waiting_for_100_continue_is_refused_before_it_sends(
    client: httpx.AsyncClient,
) -> None:
    reader, writer = await asyncio.open_connection(client.base_url.host, client.base_url.port)
    writer.write(
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {2 * LIMIT}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(5):
        status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413")


def _requests(route: str, outcome: str) -> float:
    return metric_value(
        exposition()[0].decode(), "chatnation_gateway_requests_total", {"route": route, "outcome": outcome}
    )


@pytest.mark.parametrize("depth", [65, 1000, 20_000])
async def test_deeply_nested_json_is_a_counted_400(
    client: httpx.AsyncClient, queues: Queues, settings: Settings, depth: int
) -> None:
    deep = b"[" * depth + b"]" * depth
    webhook_before, mpesa_before = (
        _requests("webhook", "bad_request"),
        _requests("mpesa_callback", "bad_request"),
    )
    assert (await post_signed(client, deep, settings.whatsapp_app_secret)).status_code == 400
    nested = b'{"Body":' * depth + b"{}" + b"}" * depth  # the unauthenticated route
    assert (await client.post(CALLBACK_PATH, content=nested)).status_code == 400
    assert _requests("webhook", "bad_request") == webhook_before + 1
    assert _requests("mpesa_callback", "bad_request") == mpesa_before + 1
    assert await queues.inbound_count() == 0


def test_json_depth_is_counted_outside_strings() -> None:
    from engine.gateway_app import MAX_JSON_DEPTH, parse_json

    assert parse_json(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="deeper"):
        parse_json(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    brackets = '[{"x": "' + "[" * 500 + '\\"{{{{"}]'
    assert parse_json(brackets.encode()) == [{"x": "[" * 500 + '"{{{{'}]
    with pytest.raises(ValueError):  # a string cut short: not JSON
        parse_json(b'["' + b"[" * 500)


async def test_an_unexpected_error_is_a_counted_500(
    client: httpx.AsyncClient, queues: Queues, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.gateway_app

    def broken(envelope: object) -> list[object]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine.gateway_app, "split_envelope", broken)
    before = _requests("webhook", "error")
    response = await post_signed(
        client, text_envelope([("254700000013", "wamid.BUG", "x")]), settings.whatsapp_app_secret
    )
    assert response.status_code == 500
    assert _requests("webhook", "error") == before + 1
    monkeypatch.undo()
    response = await post_signed(
        client, text_envelope([("254700000013", "wamid.BUG", "x")]), settings.whatsapp_app_secret
    )
    assert response.status_code == 200
