"""The WhatsApp Cloud API client the sender uses: send a message, upload media (``engine/whatsapp/media.py``).
Errors come back as ``ApiError`` (transport failures too, with HTTP status 0) so that one ``classify`` decides
what to do.

It runs on aiohttp rather than the httpx the other clients use: every reply goes through it, and httpx cost
about 4.4 ms of CPU per request here against aiohttp's 0.5 ms (docs/benchmarks.md)."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from engine.whatsapp.media import MediaClient
from engine.whatsapp.outbound import ApiError, SendResult, parse_response

TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=3.0)
TEMPLATE_FIELDS = "id,name,status,category,language,components,quality_score,parameter_format,rejected_reason"


def new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        timeout=TIMEOUT,
        connector=aiohttp.TCPConnector(limit=200),
        json_serialize=json.dumps,
        raise_for_status=False,
    )


class CloudApiClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, version: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._version = version
        self.media = MediaClient(session, base_url, version)  # upload and download (engine/whatsapp/media.py)

    async def send(self, phone_number_id: str, token: str, request: dict[str, Any]) -> SendResult:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        status, body = await self._call(url, token, json=request)
        parsed = parse_response(status, body)
        if isinstance(parsed, ApiError):
            raise parsed
        return parsed

    async def upload_media(
        self, phone_number_id: str, token: str, data: bytes, mime_type: str, filename: str = "image.png"
    ) -> str:
        return await self.media.upload(phone_number_id, token, data, mime_type, filename)

    async def list_templates(
        self, waba_id: str, token: str, *, after: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        """One page of a business account's message templates: ``{"data": [...], "paging": {...}}``
        (``GET /{waba_id}/message_templates``, paginated by ``paging.cursors.after``)."""
        url = f"{self._base}/{self._version}/{waba_id}/message_templates"
        params = {"fields": TEMPLATE_FIELDS, "limit": str(limit)} | ({"after": after} if after else {})
        try:
            async with self._session.get(
                url, headers={"Authorization": f"Bearer {token}"}, params=params
            ) as response:
                status, body = response.status, _json(await response.text())
        except (TimeoutError, aiohttp.ClientError) as err:
            raise ApiError(
                code=0, subcode=None, message=f"{type(err).__name__}: {err}", http_status=0
            ) from err
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ApiError.from_body(body, status)
        return body

    async def _call(self, url: str, token: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self._session.post(
                url, headers={"Authorization": f"Bearer {token}"}, **kwargs
            ) as response:
                text = await response.text()
                return response.status, _json(text)
        except (TimeoutError, aiohttp.ClientError) as err:  # no answer at all: timeouts, refused connections
            raise ApiError(
                code=0, subcode=None, message=f"{type(err).__name__}: {err}", http_status=0
            ) from err


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"raw": text[:500]}
