"""The webhook gateway: the only door from WhatsApp and M-Pesa into the engine.

It verifies, splits and queues; it never touches the database. A request is answered 200 only after the broker
confirmed every message it produced; anything else gets a non-200 so the sender retries (the workers dedupe by
message id, so a retried envelope whose first attempt was partly queued is harmless).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from pydantic import BaseModel, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from engine import metrics, mpesa
from engine.broker import Publisher, Topology, connect, inbound_ordering, ordering_headers
from engine.layout import LayoutFollower
from engine.logging import get_logger
from engine.pg_text import storable
from engine.settings import Settings
from engine.whatsapp.webhook import InboundPart, parse_envelope, split_envelope

log = get_logger("gateway")

RETRY_MIN_SECONDS = 0.2
DISCARD_FACTOR = 8  # a refused body up to this many times MAX_WEBHOOK_BYTES is read to its end (read_capped)
MAX_JSON_DEPTH = 64  # webhook envelopes nest about 8 deep
RETRY_MAX_SECONDS = 5.0
MPESA_ACCEPTED = {"ResultCode": 0, "ResultDesc": "Accepted"}


class BodyTooLarge(Exception):
    pass


class PublishFailed(Exception):
    pass


# ---------------------------------------------------------------- broker link


class BrokerLink:
    """Connects in the background until the broker answers; aio-pika's robust connection takes over from there."""

    def __init__(self, settings: Settings, topology: Topology) -> None:
        self._settings = settings
        self._topology = topology
        self._task: asyncio.Task[None] | None = None
        self.connection: AbstractRobustConnection | None = None
        self.publisher: Publisher | None = None
        # which inbound queues to publish into (engine/layout.py): followed from the broker, never the database
        self.layout = LayoutFollower(topology, settings.inbound_shards)

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_until_done(), name="gateway-broker-connect")

    @property
    def ready(self) -> bool:
        conn, pub = self.connection, self.publisher
        return conn is not None and pub is not None and conn.connected.is_set() and pub.is_open

    async def _connect_until_done(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                await self._connect_once()
                log.info("broker_connected", prefix=self._topology.prefix)
                return
            except Exception as exc:  # refused, timeout, auth: keep trying; requests get 503 meanwhile
                log.warning("broker_connect_failed", error=repr(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _connect_once(self) -> None:
        # engine.broker.connect closes a half-made connection if this attempt is cancelled (shutdown), or
        # aio-pika would keep reconnecting it forever; it tries every node of RABBITMQ_URL's list in turn.
        connection = await connect(self._settings)
        try:
            channel = await connection.channel()
            await self._topology.declare(channel, inbound=False)
            await channel.close()
            await self.layout.start(connection, timeout=self._settings.publish_timeout_seconds)
            # on_return_raises: an unroutable message must fail the request, not be reported as confirmed.
            confirm_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        except BaseException:
            await connection.close()
            raise
        self.publisher = Publisher(confirm_channel, self._settings.publish_timeout_seconds)
        self.connection = connection

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.connection is not None:
            await self.layout.close()
            await self.connection.close()


# ---------------------------------------------------------------- request helpers


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refused (``BodyTooLarge``) when it exceeds ``limit``, declared or streamed.

    A refused body of up to ``DISCARD_FACTOR`` times the limit is still read to its end and dropped: most clients
    send the whole body before they read the answer, and closing with their body unread resets the connection
    under them, so that they see an error instead of the 413. A larger one, or one whose client waits for
    ``100 Continue``, is refused at once."""
    bound = limit * DISCARD_FACTOR
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        waits = "100-continue" in request.headers.get("expect", "").lower()
        if int(declared) <= bound and not waits:
            async for chunk in request.stream():
                del chunk
        raise BodyTooLarge
    chunks: list[bytes] = []
    size, too_large = 0, False
    async for chunk in request.stream():
        size += len(chunk)
        if too_large or size > limit:
            too_large = True
            chunks.clear()
            if size > bound:
                break
            continue
        chunks.append(chunk)
    if too_large:
        raise BodyTooLarge
    return b"".join(chunks)


# A JSON string (also one cut short by the end of the body); what is left when they are taken out are the
# brackets that nest.
_JSON_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\Z)', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` within bounds: a document nested deeper than ``max_depth`` is a ValueError, found before
    the parser recurses into it (the parser's own RecursionError is caught too)."""
    if raw.count(b"[") + raw.count(b"{") > max_depth:
        depth = deepest = 0
        for byte in _JSON_STRING.sub(b"", raw).translate(None, _NOT_A_BRACKET):
            depth += 1 if byte in (0x5B, 0x7B) else -1
            if depth > deepest:
                deepest = depth
                if deepest > max_depth:
                    raise ValueError(f"JSON nested deeper than {max_depth}")
    try:
        return json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def signature_valid(raw: bytes, header: str | None, secret: str) -> bool:
    """``X-Hub-Signature-256: sha256=<hex>`` over the bytes exactly as received."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest().encode()
    return hmac.compare_digest(expected, header[7:].strip().lower().encode("latin-1"))


def contact_key(part: InboundPart) -> str:
    """What keeps one contact's events on one shard: wa_id, else the business-scoped user id, else the event."""
    if part.wa_id:
        return part.wa_id
    if part.user_id:
        return part.user_id
    for name in ("from_user_id", "recipient_user_id", "user_id"):
        value = part.payload.get(name)
        if isinstance(value, str) and value:
            return value
    return part.external_id


def part_body(part: InboundPart, received_at: float) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": part.kind,
        "field": part.field,
        "phone_number_id": part.phone_number_id,
        "display_phone_number": part.display_phone_number,
        "wa_id": part.wa_id,
        "user_id": part.user_id,
        "contact_name": part.contact_name,
        "external_id": part.external_id,
        "timestamp": part.timestamp,
        "payload": part.payload,
        "received_at": received_at,
        # a change without a conversation (template updates ...): which business account it is about
        **({"business_account_id": part.business_account_id} if part.kind in ("other", "error") else {}),
    }


def group_by_route(parts: list[InboundPart], topology: Topology) -> dict[str, list[InboundPart]]:
    """Parts per shard routing key (of the layout published into: ``topology``), each list in envelope
    order."""
    groups: dict[str, list[InboundPart]] = {}
    for part in parts:
        groups.setdefault(topology.inbound_route(contact_key(part)), []).append(part)
    return groups


# ---------------------------------------------------------------- M-Pesa Daraja STK callback


class _MpesaItem(BaseModel):
    Name: str
    Value: Any = None


class _MpesaMetadata(BaseModel):
    Item: list[_MpesaItem] = []


class StkCallback(BaseModel):
    MerchantRequestID: str
    CheckoutRequestID: str = Field(min_length=1)
    ResultCode: int
    ResultDesc: str = ""
    CallbackMetadata: _MpesaMetadata | None = None


class _StkBody(BaseModel):
    stkCallback: StkCallback


class DarajaCallback(BaseModel):
    Body: _StkBody


def payment_body(callback: StkCallback, raw: dict[str, Any], received_at: float) -> dict[str, Any]:
    items = callback.CallbackMetadata.Item if callback.CallbackMetadata else []
    return {
        "v": 1,
        "kind": "payment",
        "provider": "mpesa",
        "checkout_request_id": callback.CheckoutRequestID,
        "merchant_request_id": callback.MerchantRequestID,
        "result_code": callback.ResultCode,
        "result_desc": callback.ResultDesc,
        "metadata": {item.Name: item.Value for item in items},
        "payload": raw,
        "received_at": received_at,
    }


# ---------------------------------------------------------------- endpoints


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topology = Topology.from_settings(settings)
        self.link = BrokerLink(settings, self.topology)

    def counted(
        self, route: str, endpoint: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` with the requests it cannot answer counted too: a client gone before its body arrived
        (or closed by a read deadline, gateway_http.py), and any error, which is a 500."""

        async def run(request: Request) -> Response:
            try:
                return await endpoint(request)
            except ClientDisconnect:
                return self._done(route, "disconnected", _text("client disconnected", 400, close=True))
            except Exception:
                log.exception("request_failed", route=route)
                return self._done(route, "error", _text("internal error", 500, close=True))

        return run

    def _done(self, route: str, outcome: str, response: Response) -> Response:
        metrics.GATEWAY_REQUESTS.labels(route, outcome).inc()
        return response

    async def verify(self, request: Request) -> Response:
        q = request.query_params
        token = q.get("hub.verify_token", "").encode()
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token, self.settings.whatsapp_verify_token.encode()
        ):
            return self._done("webhook_verify", "accepted", PlainTextResponse(q.get("hub.challenge", "")))
        return self._done("webhook_verify", "forbidden", PlainTextResponse("forbidden", 403))

    async def receive(self, request: Request) -> Response:
        route = "webhook"
        try:
            raw = await read_capped(request, self.settings.max_webhook_bytes)
        except BodyTooLarge:
            return self._done(route, "too_large", _text("too large", 413, close=True))
        if not signature_valid(
            raw, request.headers.get("x-hub-signature-256"), self.settings.whatsapp_app_secret
        ):
            metrics.GATEWAY_SIGNATURE_FAILURES.inc()
            return self._done(route, "bad_signature", _text("bad signature", 401))
        try:
            parts = split_envelope(parse_envelope(storable(parse_json(raw))))
        except (ValueError, ValidationError, TypeError, KeyError):  # JSONDecodeError is a ValueError
            return self._done(route, "bad_request", _text("not a webhook envelope", 400))
        if not parts:  # nothing to queue: no reason to make Meta retry
            return self._done(route, "accepted", _text("ok", 200))
        if not self.link.ready:
            return self._done(route, "unavailable", _text("broker unavailable", 503))
        try:
            await self._publish_parts(parts)
        except PublishFailed:
            return self._done(route, "unavailable", _text("broker unavailable", 503))
        return self._done(route, "accepted", _text("ok", 200))

    async def _publish_parts(self, parts: list[InboundPart]) -> None:
        """Shards in parallel, each shard's parts one after the other; all confirmed within the timeout."""
        publisher = self.link.publisher
        assert publisher is not None
        exchange, received_at = self.topology.inbound_exchange, time.time()
        in_flight: dict[str, InboundPart] = {}

        async def run(route: str, group: list[InboundPart]) -> None:
            for part in group:
                in_flight[route] = part
                body = part_body(part, received_at)
                await publisher.publish(
                    exchange,
                    route,
                    body,
                    message_id=part.external_id,
                    headers=ordering_headers(*inbound_ordering(body, part.external_id), kind=part.kind),
                )
                metrics.GATEWAY_PARTS_PUBLISHED.labels(part.kind).inc()
            in_flight.pop(route, None)

        started = time.perf_counter()
        groups: dict[str, list[InboundPart]] = {}
        try:
            async with asyncio.timeout(self.settings.publish_timeout_seconds):
                # the layout as read over this connection: after a reconnect, wait for it (or 503)
                topology = await self.link.layout.publishing(self.settings.publish_timeout_seconds)
                groups = group_by_route(parts, topology)
                if len(groups) == 1:
                    await run(*next(iter(groups.items())))
                else:
                    async with asyncio.TaskGroup() as tasks:
                        for route, group in groups.items():
                            tasks.create_task(run(route, group))
        except (
            Exception
        ) as exc:  # timeout, closed channel, nack, unroutable (inside an ExceptionGroup or not)
            for part in in_flight.values():
                log.warning(
                    "publish_failed",
                    phone_number_id=part.phone_number_id,
                    wa_id=part.wa_id,
                    external_id=part.external_id,
                    kind=part.kind,
                    error=repr(exc),
                )
            raise PublishFailed from exc
        metrics.GATEWAY_PUBLISH_SECONDS.observe(time.perf_counter() - started)
        log.debug("webhook_queued", parts=len(parts), shards=len(groups))

    async def mpesa_callback(self, request: Request) -> Response:
        """``POST /payments/mpesa/callback/<deployment secret>/<request secret>`` (engine/mpesa.py): a wrong
        deployment secret or a source outside the allow-list is refused here, before anything is queued."""
        route = "mpesa_callback"
        source = mpesa.client_address(
            request.client.host if request.client else None,
            request.headers.get("x-forwarded-for"),
            self.settings.trusted_proxy_cidrs,
        )
        if not mpesa.source_allowed(self.settings, source):
            log.warning("mpesa_callback_source_refused", source_ip=source)
            return self._done(route, "forbidden", _text("forbidden", 403, close=True))
        if not mpesa.deployment_secret_ok(self.settings, request.path_params.get("secret", "")):
            return self._done(route, "unauthorized", _text("not found", 404, close=True))
        try:
            raw_bytes = await read_capped(request, self.settings.max_webhook_bytes)
        except BodyTooLarge:
            return self._done(route, "too_large", _text("too large", 413, close=True))
        try:
            raw = storable(parse_json(raw_bytes))
            callback = DarajaCallback.model_validate(raw).Body.stkCallback
        except (ValueError, ValidationError):
            return self._done(route, "bad_request", _text("not an STK callback", 400))
        if not self.link.ready:
            return self._done(route, "unavailable", _text("broker unavailable", 503))
        extra = {"callback_token": request.path_params.get("token", ""), "source_ip": source}
        return await self._publish_payment(callback, raw, extra)

    async def _publish_payment(
        self, callback: StkCallback, raw: dict[str, Any], extra: dict[str, Any]
    ) -> Response:
        route, publisher = "mpesa_callback", self.link.publisher
        assert publisher is not None
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.settings.publish_timeout_seconds):
                await publisher.publish(
                    self.topology.payments_exchange,
                    "mpesa",
                    {**payment_body(callback, raw, time.time()), **extra},
                    message_id=callback.CheckoutRequestID,
                )
        except Exception as exc:
            log.warning("publish_failed", checkout_request_id=callback.CheckoutRequestID, error=repr(exc))
            return self._done(route, "unavailable", _text("broker unavailable", 503))
        metrics.GATEWAY_PUBLISH_SECONDS.observe(time.perf_counter() - started)
        metrics.GATEWAY_PARTS_PUBLISHED.labels("payment").inc()
        return self._done(route, "accepted", JSONResponse(MPESA_ACCEPTED))

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, request: Request) -> Response:
        if self.link.ready:
            return PlainTextResponse("ready")
        return PlainTextResponse("broker not connected", 503)


def _text(body: str, status: int, *, close: bool = False) -> Response:
    # An unread request body cannot be skipped safely on a kept-alive connection: close it instead.
    return PlainTextResponse(body, status, headers={"connection": "close"} if close else None)


def create_app(settings: Settings) -> Starlette:
    gateway = Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.link.start()  # never blocks start-up: requests get 503 until the broker is reachable
        yield
        await gateway.link.close()

    routes = [
        Route("/webhook", gateway.counted("webhook_verify", gateway.verify), methods=["GET"]),
        Route("/webhook", gateway.counted("webhook", gateway.receive), methods=["POST"]),
        Route(
            "/payments/mpesa/callback/{secret}/{token}",
            gateway.counted("mpesa_callback", gateway.mpesa_callback),
            methods=["POST"],
        ),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/readyz", gateway.readyz, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app
