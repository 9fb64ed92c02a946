"""An M-Pesa Daraja simulator: OAuth, STK push (Lipa na M-Pesa Online), STK query, and the asynchronous
result callback to the CallBackURL the client gave.

Outcomes per phone number (default "success"): success (0), insufficient_funds (1), cancelled (1032),
timeout (1037), no_callback (the customer never answers: no callback, STK query keeps answering "being
processed"), lost_callback (the customer pays but the callback never arrives; the query says paid).

The STK Push Query (``/mpesa/stkpushquery/v1/query``, Daraja's request and response) answers from what
happened: "being processed" until the customer has answered (``callback_delay`` after the push), then the
outcome. ``set_query`` overrides that per phone number or for all ("*"): auto, paid, failed, processing, or
unreachable (HTTP 503, no JSON), the way Daraja is seen to fail.

Control endpoints: POST /_sim/outcomes {"2547...": "cancelled" | ["cancelled", "success"], "*": default}
(a list is consumed one push at a time), POST /_sim/query {"2547..." | "*": "unreachable" | ...},
GET /_sim/requests, POST /_sim/callback/{checkout_id} (re-send the callback now, optionally
{"outcome": ...} to send a different one), GET /_sim/health.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import random
import re
import string
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators import SimulatorServer

OUTCOMES: dict[str, tuple[int, str]] = {
    "success": (0, "The service request is processed successfully."),
    "insufficient_funds": (1, "The balance is insufficient for the transaction."),
    "cancelled": (1032, "Request cancelled by user"),
    "timeout": (1037, "DS timeout user cannot be reached"),
}
NO_CALLBACK = "no_callback"
LOST_CALLBACK = "lost_callback"
QUERY_MODES = ("auto", "paid", "failed", "processing", "unreachable")
TOKEN_TTL_SECONDS = 3599
EAT = timezone(timedelta(hours=3))  # Daraja timestamps are Nairobi local time

_PHONE = re.compile(r"^254(7|1)\d{8}$")
_TRANSACTION_TYPES = ("CustomerPayBillOnline", "CustomerBuyGoodsOnline")
_ACCEPTED = "Success. Request accepted for processing"


def daraja_error(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"requestId": uuid.uuid4().hex[:12], "errorCode": code, "errorMessage": message}, status_code=status
    )


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()


class MpesaSimulator(SimulatorServer):
    """Daraja on a local port, configured with the credentials the engine uses."""

    def __init__(
        self,
        consumer_key: str = "dev-consumer-key",
        consumer_secret: str = "dev-consumer-secret",
        shortcode: str = "174379",
        passkey: str = "dev-passkey",
        *,
        callback_delay: float = 0.2,
        callback_attempts: int = 3,
        default_outcome: str = "success",
    ) -> None:
        self.consumer_key, self.consumer_secret = consumer_key, consumer_secret
        self.shortcode, self.passkey = shortcode, passkey
        self.callback_delay, self.callback_attempts = callback_delay, callback_attempts
        self.outcomes: dict[str, str | list[str]] = {"*": default_outcome}
        self.query_modes: dict[str, str] = {"*": "auto"}
        self.queries: list[dict[str, Any]] = []  # every STK Push Query received, with what it was told
        self.requests: list[dict[str, Any]] = []
        self._tokens: dict[str, float] = {}
        self._client: httpx.AsyncClient | None = None
        super().__init__(
            Starlette(
                routes=[
                    Route("/_sim/health", self._health, methods=["GET"]),
                    Route("/_sim/outcomes", self._outcomes_endpoint, methods=["GET", "POST"]),
                    Route("/_sim/requests", self._requests_endpoint, methods=["GET"]),
                    Route("/_sim/query", self._query_endpoint, methods=["GET", "POST"]),
                    Route("/_sim/callback/{checkout_id}", self._resend_endpoint, methods=["POST"]),
                    Route("/oauth/v1/generate", self._oauth, methods=["GET"]),
                    Route("/mpesa/stkpush/v1/processrequest", self._stk_push, methods=["POST"]),
                    Route("/mpesa/stkpushquery/v1/query", self._stk_query, methods=["POST"]),
                ]
            )
        )

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._client = httpx.AsyncClient(timeout=5)
        return await super().start(host, port)

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            await self._client.aclose()

    def set_outcomes(self, outcomes: dict[str, str | list[str]]) -> None:
        for phone, outcome in outcomes.items():
            for name in [outcome] if isinstance(outcome, str) else outcome:
                if name not in OUTCOMES and name not in (NO_CALLBACK, LOST_CALLBACK):
                    raise ValueError(f"unknown outcome {name!r} for {phone}")
            self.outcomes[phone] = outcome if isinstance(outcome, str) else list(outcome)

    def set_query(self, modes: dict[str, str]) -> None:
        """How the STK Push Query answers, per phone number or "*" (auto: from what happened)."""
        for phone, mode in modes.items():
            if mode not in QUERY_MODES:
                raise ValueError(f"unknown query mode {mode!r} for {phone}")
            self.query_modes[phone] = mode

    def _next_outcome(self, phone: str) -> str:
        scripted = self.outcomes.get(phone)
        if isinstance(scripted, list):
            if scripted:
                return scripted.pop(0)
            scripted = None
        default = self.outcomes["*"]
        return scripted or (default if isinstance(default, str) else "success")

    # ------------------------------------------------------------ OAuth

    async def _oauth(self, request: Request) -> Response:
        if request.query_params.get("grant_type") != "client_credentials":
            return daraja_error("400.008.02", "Invalid grant type passed", 400)
        if not self._basic_auth_ok(request.headers.get("authorization", "")):
            return daraja_error("400.008.01", "Invalid Authentication passed", 400)
        token = uuid.uuid4().hex
        self._tokens[token] = time.monotonic() + TOKEN_TTL_SECONDS
        return JSONResponse({"access_token": token, "expires_in": str(TOKEN_TTL_SECONDS)})

    def _basic_auth_ok(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = f"{self.consumer_key}:{self.consumer_secret}"
        return scheme.lower() == "basic" and hmac.compare_digest(decoded, expected)

    def _bearer_ok(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expires = self._tokens.get(token)
        return scheme.lower() == "bearer" and expires is not None and expires > time.monotonic()

    # ------------------------------------------------------------ STK push and query

    async def _stk_push(self, request: Request) -> Response:
        if not self._bearer_ok(request):
            return daraja_error("404.001.03", "Invalid Access Token", 401)
        try:
            body = await request.json()
        except ValueError:
            return daraja_error("400.002.02", "Bad Request - Invalid JSON", 400)
        if (problem := self._invalid_field(body)) is not None:
            return daraja_error("400.002.02", f"Bad Request - Invalid {problem}", 400)
        record = self._accept(body)
        if record["outcome"] not in (NO_CALLBACK, LOST_CALLBACK):
            self._in_background(self._deliver_later(record))
        return JSONResponse(
            {
                "MerchantRequestID": record["merchant_request_id"],
                "CheckoutRequestID": record["checkout_request_id"],
                "ResponseCode": "0",
                "ResponseDescription": _ACCEPTED,
                "CustomerMessage": _ACCEPTED,
            }
        )

    def _invalid_field(self, body: Any) -> str | None:
        """The name of the first invalid field, as Daraja names it in its error message, or None."""
        if not isinstance(body, dict):
            return "Request"
        timestamp = str(body.get("Timestamp", ""))
        checks = {
            "BusinessShortCode": str(body.get("BusinessShortCode", "")) == self.shortcode,
            "Timestamp": _is_timestamp(timestamp),
            "Password": body.get("Password") == stk_password(self.shortcode, self.passkey, timestamp),
            "TransactionType": body.get("TransactionType") in _TRANSACTION_TYPES,
            "Amount": _positive_whole(body.get("Amount")),
            "PartyA": bool(_PHONE.match(str(body.get("PartyA", "")))),
            "PartyB": str(body.get("PartyB", "")).isdigit(),
            "PhoneNumber": bool(_PHONE.match(str(body.get("PhoneNumber", "")))),
            "CallBackURL": str(body.get("CallBackURL", "")).startswith(("http://", "https://")),
            "AccountReference": _text(body.get("AccountReference"), 12),
            "TransactionDesc": _text(body.get("TransactionDesc"), 13),
        }
        return next((name for name, ok in checks.items() if not ok), None)

    def _accept(self, body: dict[str, Any]) -> dict[str, Any]:
        now = datetime.now(EAT)
        record = {
            "merchant_request_id": f"{random.randint(10000, 99999)}-{random.randint(10**7, 10**8 - 1)}-1",
            "checkout_request_id": "ws_CO_"
            + now.strftime("%d%m%Y%H%M%S")
            + str(random.randint(10**8, 10**9)),
            "request": body,
            "phone": str(body["PhoneNumber"]),
            "amount": int(body["Amount"]),
            "outcome": self._next_outcome(str(body["PhoneNumber"])),
            "received_at": time.time(),
            "callback": None,
            "deliveries": [],
        }
        if record["outcome"] != NO_CALLBACK:
            paid = "success" if record["outcome"] == LOST_CALLBACK else str(record["outcome"])
            record["callback"] = build_callback(record, paid, now)
        self.requests.append(record)
        return record

    async def _stk_query(self, request: Request) -> Response:
        if not self._bearer_ok(request):
            return daraja_error("404.001.03", "Invalid Access Token", 401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return daraja_error("400.002.02", "Bad Request - Invalid JSON", 400)
        timestamp = str(body.get("Timestamp", ""))
        if str(body.get("BusinessShortCode", "")) != self.shortcode:
            return daraja_error("400.002.02", "Bad Request - Invalid BusinessShortCode", 400)
        if not _is_timestamp(timestamp) or body.get("Password") != stk_password(
            self.shortcode, self.passkey, timestamp
        ):
            return daraja_error("400.002.02", "Bad Request - Invalid Password", 400)
        record = self._find(str(body.get("CheckoutRequestID", "")))
        if record is None:
            return daraja_error("400.002.02", "Bad Request - Invalid CheckoutRequestID", 400)
        mode = self.query_modes.get(record["phone"], self.query_modes["*"])
        self.queries.append(
            {"checkout_request_id": record["checkout_request_id"], "mode": mode, "at": time.time()}
        )
        if mode == "unreachable":
            return Response("Service Unavailable", status_code=503, media_type="text/html")
        answered = (
            record["callback"] is not None and time.time() >= record["received_at"] + self.callback_delay
        )
        if mode == "processing" or (mode == "auto" and not answered):
            return daraja_error("500.001.1001", "The transaction is being processed", 500)
        if mode == "auto":
            result = record["callback"]["Body"]["stkCallback"]
            code, desc = result["ResultCode"], result["ResultDesc"]
        else:
            code, desc = OUTCOMES["success" if mode == "paid" else "cancelled"]
        return JSONResponse(
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successsfully",
                "MerchantRequestID": record["merchant_request_id"],
                "CheckoutRequestID": record["checkout_request_id"],
                "ResultCode": str(code),
                "ResultDesc": desc,
            }
        )

    def _find(self, checkout_id: str) -> dict[str, Any] | None:
        return next((r for r in self.requests if r["checkout_request_id"] == checkout_id), None)

    # ------------------------------------------------------------ callbacks

    async def _deliver_later(self, record: dict[str, Any]) -> None:
        await asyncio.sleep(self.callback_delay)
        for attempt in range(self.callback_attempts):
            if await self._deliver(record) == 200:
                return
            await asyncio.sleep(0.2 * (attempt + 1))

    async def _deliver(self, record: dict[str, Any]) -> int:
        """POST the callback once; returns the HTTP status (0 when the receiver could not be reached)."""
        assert self._client is not None, "start() the simulator first"
        try:
            response = await self._client.post(record["request"]["CallBackURL"], json=record["callback"])
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        record["deliveries"].append({"at": time.time(), "status": status})
        return status

    # ------------------------------------------------------------ control endpoints

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _outcomes_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.set_outcomes(await request.json())
            except (ValueError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.outcomes)

    async def _query_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.set_query(await request.json())
            except (ValueError, AttributeError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.query_modes)

    async def _requests_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.requests)

    async def _resend_endpoint(self, request: Request) -> Response:
        record = self._find(request.path_params["checkout_id"])
        if record is None:
            return JSONResponse({"error": "unknown CheckoutRequestID"}, status_code=404)
        raw = await request.body()
        try:
            outcome = json.loads(raw).get("outcome") if raw else None
        except (ValueError, AttributeError):
            return JSONResponse({"error": 'expected {"outcome": ...}'}, status_code=400)
        if outcome is not None:
            if outcome not in OUTCOMES:
                return JSONResponse({"error": f"unknown outcome {outcome!r}"}, status_code=400)
            record["outcome"], record["callback"] = (
                outcome,
                build_callback(record, outcome, datetime.now(EAT)),
            )
        if record["callback"] is None:
            return JSONResponse(
                {"error": "no callback for a no_callback request; pass an outcome"}, status_code=409
            )
        return JSONResponse({"status": await self._deliver(record), "callback": record["callback"]})


def build_callback(record: dict[str, Any], outcome: str, now: datetime) -> dict[str, Any]:
    """The Daraja STK result callback body for ``outcome``."""
    code, desc = OUTCOMES[outcome]
    result: dict[str, Any] = {
        "MerchantRequestID": record["merchant_request_id"],
        "CheckoutRequestID": record["checkout_request_id"],
        "ResultCode": code,
        "ResultDesc": desc,
    }
    if code == 0:
        receipt = "SIM" + "".join(random.choices(string.ascii_uppercase + string.digits, k=7))
        result["CallbackMetadata"] = {
            "Item": [
                {"Name": "Amount", "Value": float(record["amount"])},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "TransactionDate", "Value": int(now.strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(record["phone"])},
            ]
        }
    return {"Body": {"stkCallback": result}}


def _is_timestamp(value: str) -> bool:
    if not re.fullmatch(r"\d{14}", value):
        return False
    try:
        datetime.strptime(value, "%Y%m%d%H%M%S")  # only checks the calendar
    except ValueError:
        return False
    return True


def _positive_whole(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 0
    return isinstance(value, str) and value.isdigit() and int(value) > 0


def _text(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length
