"""WhatsApp media: uploading what we send and downloading what users send (photos, voice notes, documents).

- Upload: ``POST {base}/{version}/{phone_number_id}/media``, multipart (``file``, ``type``,
  ``messaging_product=whatsapp``) -> ``{"id": MEDIA_ID}``.
- Download, in two steps with the organisation's token: ``GET {base}/{version}/{media_id}`` ->
  ``{"url", "mime_type", "sha256", "file_size", "id"}``, then ``GET url`` with the same bearer token. The URL
  expires after about five minutes, so the two steps run back to back; a retry starts again from the first.

Errors come back as ``ApiError`` (transport failures with HTTP status 0), classified like a send's, so a caller
decides on ``err.action``; ``download_with_retries`` retries the transient ones itself. ``inbound_media``
reads the media reference out of an inbound message (image, audio, video, document, sticker).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from engine.whatsapp.outbound import ApiError

MEDIA_KINDS = frozenset({"image", "audio", "video", "document", "sticker"})
IMAGE_MAX_BYTES = 5 * 1024 * 1024  # the Cloud API's limit for images (JPEG, PNG)
DOWNLOAD_MAX_BYTES = 16 * 1024 * 1024  # audio and video up to 16 MB; documents beyond that are refused here
MEDIA_NOT_FOUND = 100  # what an unknown or deleted media id answers (with HTTP 400/404)
TOO_LARGE = 131052  # media download error, as Meta reports it for media it cannot hand over


@dataclass(frozen=True)
class InboundMedia:
    """The media reference of an inbound message; ``sha256`` as the webhook gives it (base64)."""

    kind: str
    media_id: str
    mime_type: str = ""
    sha256: str = ""
    caption: str = ""
    voice: bool = False  # an audio message recorded in the app (a voice note)


@dataclass(frozen=True)
class MediaInfo:
    media_id: str
    url: str
    mime_type: str
    sha256: str
    file_size: int | None


@dataclass(frozen=True)
class Media:
    media_id: str
    data: bytes
    mime_type: str
    sha256: str  # hex of the bytes received (checked against what the API announced)


def inbound_media(message: dict[str, Any]) -> InboundMedia | None:
    """The media an inbound message carries, or None (text, a tap, a location ...)."""
    kind = str(message.get("type") or "")
    body = message.get(kind)
    if kind not in MEDIA_KINDS or not isinstance(body, dict) or not body.get("id"):
        return None
    return InboundMedia(
        kind=kind,
        media_id=str(body["id"]),
        mime_type=str(body.get("mime_type") or ""),
        sha256=str(body.get("sha256") or ""),
        caption=str(body.get("caption") or ""),
        voice=bool(body.get("voice", False)),
    )


def digest_matches(data: bytes, announced: str) -> bool:
    """Meta announces SHA-256 as hex in the media endpoint and as base64 in webhooks: accept either; an empty
    announcement cannot be checked and passes."""
    if not announced:
        return True
    digest = hashlib.sha256(data).digest()
    if announced.lower() == digest.hex():
        return True
    try:
        return base64.b64decode(announced, validate=True) == digest
    except (binascii.Error, ValueError):
        return False


class MediaClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, version: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._version = version

    async def upload(
        self, phone_number_id: str, token: str, data: bytes, mime_type: str, filename: str = "image.png"
    ) -> str:
        """The media id of the uploaded bytes (images up to 5 MB are checked here, before the request)."""
        if mime_type.startswith("image/") and len(data) > IMAGE_MAX_BYTES:
            raise ApiError(
                code=TOO_LARGE,
                subcode=None,
                message=f"image of {len(data)} bytes is over WhatsApp's 5 MB limit",
                http_status=413,
            )
        form = aiohttp.FormData({"messaging_product": "whatsapp", "type": mime_type})
        form.add_field("file", data, filename=filename, content_type=mime_type)
        url = f"{self._base}/{self._version}/{phone_number_id}/media"
        status, body, _ = await self._request("POST", url, token, data=form)
        answer = _json(body)
        if status == 200 and isinstance(answer, dict) and answer.get("id"):
            return str(answer["id"])
        raise ApiError.from_body(answer, status)

    async def info(self, media_id: str, token: str) -> MediaInfo:
        status, body, _ = await self._request("GET", f"{self._base}/{self._version}/{media_id}", token)
        answer = _json(body)
        if status != 200 or not isinstance(answer, dict) or not answer.get("url"):
            raise ApiError.from_body(answer, status)
        size = answer.get("file_size")
        return MediaInfo(
            media_id=str(answer.get("id") or media_id),
            url=str(answer["url"]),
            mime_type=str(answer.get("mime_type") or "application/octet-stream"),
            sha256=str(answer.get("sha256") or ""),
            file_size=int(size) if isinstance(size, int | str) and str(size).isdigit() else None,
        )

    async def download(self, media_id: str, token: str, *, max_bytes: int = DOWNLOAD_MAX_BYTES) -> Media:
        """Both steps; refuses media over ``max_bytes`` (announced or received) and bytes whose SHA-256
        differs from the announced one (a truncated or corrupted transfer: retried as transient)."""
        info = await self.info(media_id, token)
        if info.file_size is not None and info.file_size > max_bytes:
            raise ApiError(
                code=TOO_LARGE,
                subcode=None,
                message=f"media {media_id} is {info.file_size} bytes, over the limit of {max_bytes}",
                http_status=413,
            )
        status, data, content_type = await self._request("GET", info.url, token, limit=max_bytes)
        if status != 200:
            raise ApiError.from_body(_json(data), status)
        if not digest_matches(data, info.sha256):
            raise ApiError(
                code=0,
                subcode=None,
                message=f"media {media_id}: SHA-256 of the download differs from the announced one",
                http_status=0,  # a network-level failure: worth another try
            )
        mime = (content_type or info.mime_type).split(";")[0].strip() or info.mime_type
        return Media(media_id, data, mime, hashlib.sha256(data).hexdigest())

    async def _request(
        self, method: str, url: str, token: str, *, limit: int | None = None, **kwargs: Any
    ) -> tuple[int, bytes, str]:
        try:
            async with self._session.request(
                method, url, headers={"Authorization": f"Bearer {token}"}, **kwargs
            ) as response:
                if limit is not None and (response.content_length or 0) > limit:
                    raise ApiError(
                        code=TOO_LARGE,
                        subcode=None,
                        message=f"media over the limit of {limit} bytes",
                        http_status=413,
                    )
                body = await _read_capped(response, limit)
                return response.status, body, response.headers.get("Content-Type", "")
        except (TimeoutError, aiohttp.ClientError) as err:  # no answer at all: timeouts, refused connections
            raise ApiError(
                code=0, subcode=None, message=f"{type(err).__name__}: {err}", http_status=0
            ) from err


async def _read_capped(response: aiohttp.ClientResponse, limit: int | None) -> bytes:
    if limit is None:
        return await response.read()
    chunks, size = [], 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ApiError(
                code=TOO_LARGE,
                subcode=None,
                message=f"media over the limit of {limit} bytes",
                http_status=413,
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def download_with_retries(
    client: MediaClient,
    media_id: str,
    token: str,
    *,
    max_bytes: int = DOWNLOAD_MAX_BYTES,
    attempts: int = 4,
) -> Media:
    """``download``, retrying transient failures (network, 5xx, throttling, a bad digest) with backoff; each
    try asks for a fresh URL, since an old one may have expired. Permanent errors raise at once."""
    async for attempt in AsyncRetrying(
        retry=retry_if_exception(lambda err: isinstance(err, ApiError) and err.action == "retry"),
        wait=wait_exponential_jitter(multiplier=0.2, max=5, jitter=0.2),
        stop=stop_after_attempt(attempts),
        reraise=True,
    ):
        with attempt:
            return await client.download(media_id, token, max_bytes=max_bytes)
    raise AssertionError("unreachable")  # AsyncRetrying either returns or raises


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return {"raw": body[:500].decode("utf-8", "replace")}
