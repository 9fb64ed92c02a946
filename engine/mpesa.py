"""M-Pesa Daraja: the provider interface payments go through, and its real HTTP client.

STK push: an OAuth token (client credentials), then ``/mpesa/stkpush/v1/processrequest``; the result comes
later as a callback to the gateway, ``POST /payments/mpesa/callback/<deployment secret>/<request secret>``.
The callback is only a hint: ``/mpesa/stkpushquery/v1/query`` (the STK Push Query) is asked before anything is
decided, with bounded retries and backoff (tenacity). See docs/tickets.md, "Payments you can trust".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Literal, Protocol
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from engine.settings import Settings

NAIROBI = ZoneInfo("Africa/Nairobi")
QueryState = Literal["paid", "failed", "pending", "unreachable"]
STILL_PROCESSING = "500.001.1001"  # Daraja's "The transaction is being processed"


@dataclass(frozen=True)
class StkPushAccepted:
    checkout_request_id: str
    merchant_request_id: str


@dataclass(frozen=True)
class QueryAnswer:
    """What the STK Push Query says: paid (ResultCode 0), failed (any other ResultCode), pending (the customer
    has not answered yet) or unreachable (no answer from Daraja after the retries)."""

    state: QueryState
    result_code: int | None = None
    result_desc: str = ""
    merchant_request_id: str | None = None
    checkout_request_id: str | None = None

    @property
    def final(self) -> bool:
        return self.state in ("paid", "failed")


class PaymentRefused(Exception):
    """The provider did not accept the payment request (bad number, provider down, ...)."""


class PaymentProvider(Protocol):
    async def stk_push(
        self, phone: str, amount: Decimal, account_reference: str, description: str, callback_token: str
    ) -> StkPushAccepted: ...

    async def stk_query(self, checkout_request_id: str) -> QueryAnswer: ...


def whole_shillings(amount: Decimal) -> int:
    """M-Pesa takes whole shillings: what the STK push asks for (and so what a callback must say)."""
    return int(Decimal(amount).to_integral_value(ROUND_CEILING))


# ---------------------------------------------------------------- the callback's secrets


def new_callback_token(organization_id: UUID) -> str:
    """The per-request secret of a CallBackURL path: the organisation (so that the router reads the request
    under that tenant's row-level security, with no cross-tenant function) and 24 random bytes, URL-safe."""
    return f"{organization_id.hex}-{secrets.token_urlsafe(24)}"


def token_org(token: str) -> UUID | None:
    """The organisation a callback secret names, or None when it is not one of ours in shape."""
    org, _, rest = token.partition("-")
    if len(org) != 32 or len(rest) < 32 or len(token) > 100:
        return None
    try:
        return UUID(hex=org)
    except ValueError:
        return None


def token_hash(token: str) -> bytes:
    """What is stored and looked up: the secret itself is never kept."""
    return hashlib.sha256(token.encode()).digest()


def callback_url(settings: Settings, callback_token: str) -> str:
    base = str(settings.mpesa_callback_url).rstrip("/")
    return f"{base}/{settings.mpesa_callback_secret}/{callback_token}"


def deployment_secret_ok(settings: Settings, given: str) -> bool:
    return hmac.compare_digest(given.encode(), settings.mpesa_callback_secret.encode())


def networks(spec: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Comma-separated CIDRs (MPESA_CALLBACK_ALLOWED_CIDRS, TRUSTED_PROXY_CIDRS); raises ValueError if bad."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip())


def _within(address: str, nets: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return False
    return any(ip in net for net in nets)


def client_address(peer: str | None, forwarded_for: str | None, trusted_proxies: str) -> str | None:
    """The caller's address: the direct peer, unless that peer is one of our proxies, in which case the
    nearest address in X-Forwarded-For that is not one of our proxies (what a client writes there itself is
    never believed)."""
    proxies = networks(trusted_proxies)
    if peer is None or not forwarded_for or not _within(peer, proxies):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _within(hop, proxies):
            return hop
    return hops[0] if hops else peer


def source_allowed(settings: Settings, address: str | None) -> bool:
    allowed = networks(settings.mpesa_callback_allowed_cidrs)
    return not allowed or (address is not None and _within(address, allowed))


# ---------------------------------------------------------------- the client


class DarajaClient:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._s = settings
        self._base = str(settings.mpesa_base_url).rstrip("/")
        self._token: tuple[float, str] | None = None
        self._token_lock = asyncio.Lock()

    async def _access_token(self) -> str:
        async with self._token_lock:  # one refresh at a time
            if self._token and self._token[0] > time.monotonic():
                return self._token[1]
            response = await self._http.get(
                f"{self._base}/oauth/v1/generate",
                params={"grant_type": "client_credentials"},
                auth=(self._s.mpesa_consumer_key, self._s.mpesa_consumer_secret),
            )
            if response.status_code != 200:
                raise PaymentRefused(f"Daraja OAuth failed: HTTP {response.status_code}")
            body = response.json()
            self._token = (time.monotonic() + int(body.get("expires_in", 3599)) - 60, body["access_token"])
            return self._token[1]

    def _password(self) -> tuple[str, str]:
        timestamp = datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")
        password = base64.b64encode(
            f"{self._s.mpesa_shortcode}{self._s.mpesa_passkey}{timestamp}".encode()
        ).decode()
        return password, timestamp

    async def stk_push(
        self, phone: str, amount: Decimal, account_reference: str, description: str, callback_token: str
    ) -> StkPushAccepted:
        password, timestamp = self._password()
        request = {
            "BusinessShortCode": self._s.mpesa_shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": whole_shillings(amount),
            "PartyA": phone,
            "PartyB": self._s.mpesa_shortcode,
            "PhoneNumber": phone,
            "CallBackURL": callback_url(self._s, callback_token),
            "AccountReference": account_reference[:12],
            "TransactionDesc": description[:13],
        }
        try:
            response = await self._http.post(
                f"{self._base}/mpesa/stkpush/v1/processrequest",
                json=request,
                headers={"Authorization": f"Bearer {await self._access_token()}"},
            )
        except httpx.HTTPError as err:
            raise PaymentRefused(f"Daraja unreachable: {err}") from err
        body = _json(response)
        if response.status_code != 200 or str(body.get("ResponseCode")) != "0":
            raise PaymentRefused(
                str(body.get("errorMessage") or body.get("ResponseDescription") or response.text)[:200]
            )
        return StkPushAccepted(str(body["CheckoutRequestID"]), str(body["MerchantRequestID"]))

    async def stk_query(self, checkout_request_id: str) -> QueryAnswer:
        """Asks until the answer is final or the tries run out (pending and unreachable are retried with
        exponential backoff); the last answer is returned, never an exception."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._s.mpesa_query_attempts),
            wait=wait_exponential(multiplier=self._s.mpesa_query_backoff_seconds, max=8),
            retry=retry_if_result(lambda answer: not answer.final),
        )
        try:
            return await retrying(self._query_once, checkout_request_id)
        except RetryError as err:
            return err.last_attempt.result()

    async def _query_once(self, checkout_request_id: str) -> QueryAnswer:
        password, timestamp = self._password()
        try:
            response = await self._http.post(
                f"{self._base}/mpesa/stkpushquery/v1/query",
                json={
                    "BusinessShortCode": self._s.mpesa_shortcode,
                    "Password": password,
                    "Timestamp": timestamp,
                    "CheckoutRequestID": checkout_request_id,
                },
                headers={"Authorization": f"Bearer {await self._access_token()}"},
            )
        except (httpx.HTTPError, PaymentRefused) as err:
            return QueryAnswer("unreachable", result_desc=str(err)[:200])
        return read_query_answer(response.status_code, _json(response), response.text)


def read_query_answer(status: int, body: dict[str, object], text: str = "") -> QueryAnswer:
    """Daraja's STK Push Query response (ResultCode is a string here) as a ``QueryAnswer``."""
    code = body.get("ResultCode")
    if status == 200 and str(body.get("ResponseCode")) == "0" and code is not None:
        try:
            result = int(str(code))
        except ValueError:
            return QueryAnswer("unreachable", result_desc=f"unreadable ResultCode {code!r}")
        return QueryAnswer(
            "paid" if result == 0 else "failed",
            result,
            str(body.get("ResultDesc") or ""),
            str(body.get("MerchantRequestID") or "") or None,
            str(body.get("CheckoutRequestID") or "") or None,
        )
    if body.get("errorCode") == STILL_PROCESSING:
        return QueryAnswer("pending", result_desc=str(body.get("errorMessage") or ""))
    return QueryAnswer(
        "unreachable", result_desc=str(body.get("errorMessage") or text or f"HTTP {status}")[:200]
    )


def _json(response: httpx.Response) -> dict[str, object]:
    if not response.headers.get("content-type", "").startswith("application/json"):
        return {}
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
