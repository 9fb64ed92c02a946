"""M-Pesa Daraja: the provider interface the ticket flow pays through, and its real HTTP client.

STK push: an OAuth token (client credentials), then ``/mpesa/stkpush/v1/processrequest``; the result comes
later as a callback to the gateway (``POST /payments/mpesa/callback``).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

import httpx

from engine.settings import Settings

NAIROBI = ZoneInfo("Africa/Nairobi")


@dataclass(frozen=True)
class StkPushAccepted:
    checkout_request_id: str
    merchant_request_id: str


class PaymentRefused(Exception):
    """The provider did not accept the payment request (bad number, provider down, ...)."""


class PaymentProvider(Protocol):
    async def stk_push(
        self, phone: str, amount: Decimal, account_reference: str, description: str
    ) -> StkPushAccepted: ...


class DarajaClient:
    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._s = settings
        self._base = str(settings.mpesa_base_url).rstrip("/")
        self._token: tuple[float, str] | None = None

    async def _access_token(self) -> str:
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

    async def stk_push(
        self, phone: str, amount: Decimal, account_reference: str, description: str
    ) -> StkPushAccepted:
        timestamp = datetime.now(NAIROBI).strftime("%Y%m%d%H%M%S")
        password = base64.b64encode(
            f"{self._s.mpesa_shortcode}{self._s.mpesa_passkey}{timestamp}".encode()
        ).decode()
        callback = str(self._s.mpesa_callback_url)
        if self._s.mpesa_callback_token:
            callback += ("&" if "?" in callback else "?") + f"token={self._s.mpesa_callback_token}"
        request = {
            "BusinessShortCode": self._s.mpesa_shortcode,
            "Password": password,
            "Timestamp": timestamp,
            "TransactionType": "CustomerPayBillOnline",
            "Amount": int(amount.to_integral_value(ROUND_CEILING)),  # M-Pesa takes whole shillings
            "PartyA": phone,
            "PartyB": self._s.mpesa_shortcode,
            "PhoneNumber": phone,
            "CallBackURL": callback,
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
        body = (
            response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        )
        if response.status_code != 200 or str(body.get("ResponseCode")) != "0":
            raise PaymentRefused(
                str(body.get("errorMessage") or body.get("ResponseDescription") or response.text)[:200]
            )
        return StkPushAccepted(body["CheckoutRequestID"], body["MerchantRequestID"])
