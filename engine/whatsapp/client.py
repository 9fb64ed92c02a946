"""The WhatsApp Cloud API client the sender uses: send a message, upload media. Errors come back as
``ApiError`` (transport failures too, with HTTP status 0) so that one ``classify`` decides what to do."""

from __future__ import annotations

from typing import Any

import httpx

from engine.whatsapp.outbound import ApiError, SendResult, parse_response


class CloudApiClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, version: str) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._version = version

    async def send(self, phone_number_id: str, token: str, request: dict[str, Any]) -> SendResult:
        url = f"{self._base}/{self._version}/{phone_number_id}/messages"
        result = await self._call("POST", url, token, json=request)
        return result

    async def upload_media(self, phone_number_id: str, token: str, data: bytes, mime_type: str,
                           filename: str = "image.png") -> str:
        url = f"{self._base}/{self._version}/{phone_number_id}/media"
        response = await self._raw("POST", url, token, data={"messaging_product": "whatsapp", "type": mime_type},
                                   files={"file": (filename, data, mime_type)})
        body = _json(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("id"):
            return str(body["id"])
        raise ApiError.from_body(body, response.status_code)

    async def _call(self, method: str, url: str, token: str, **kwargs: Any) -> SendResult:
        response = await self._raw(method, url, token, **kwargs)
        parsed = parse_response(response.status_code, _json(response))
        if isinstance(parsed, ApiError):
            raise parsed
        return parsed

    async def _raw(self, method: str, url: str, token: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs)
        except httpx.HTTPError as err:  # no answer at all: timeouts, refused connections
            raise ApiError(code=0, subcode=None, message=f"{type(err).__name__}: {err}", http_status=0) from err


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"raw": response.text[:500]}
