"""A WhatsApp Cloud API simulator: the send and media endpoints the engine calls, scripted faults, and a
simulated user that posts signed webhooks to the gateway.

Control endpoints (for tests in another process):
  POST /_sim/faults     [{"status":429,"code":130429}, {"delay":2.0}, ...] queued, one consumed per request;
                        optional per fault: "endpoint" ("messages" | "media"), "to", "message", "subcode".
                        {"rate": 5} limits each number to 5 sends per second (130429 beyond); {"rate": null} lifts it.
  GET|DELETE /_sim/faults, GET|DELETE /_sim/messages?to=&phone_number_id=, GET /_sim/reads,
  POST /_sim/tokens {phone_number_id: token} ("*" matches any number), GET /_sim/media/{id} (the bytes of any
  media, no token), POST /_sim/media?phone_number_id= (raw body: media a user sends; answers {id, sha256}),
  GET /_sim/health.
Media as the Cloud API serves it: GET /{version}/{media_id} -> {url, mime_type, sha256, file_size, id} with the
number's token, then GET url with the same token; the URL expires after ``media_url_seconds`` (5 minutes).
Fault endpoints: "messages", "media" (upload), "media_info", "media_download", "templates".
Templates: GET /{version}/{waba_id}/message_templates?limit=&after= serves ``templates[waba_id]`` page by page
(``paging.cursors.after``, ``paging.next`` while more remain), with any known token; POST /_sim/templates
{waba_id: [template, ...]} replaces an account's templates. Once any are registered, template sends are
checked as Meta checks them: unknown name or language 132001, PAUSED 132015, DISABLED 132016, not APPROVED
132001, a body parameter count that does not match 132000. ``template_status_envelope`` and
``template_quality_envelope`` build the template webhooks (``post_template_status`` also applies the change).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.whatsapp.outbound import MarkRead, SendRequestInvalid, validate_send_request
from simulators import SimulatorServer, parse_multipart

_DEFAULT_CODES = {400: 100, 401: 190, 403: 200, 404: 100, 429: 130429}


def error_body(
    code: int,
    message: str,
    *,
    subcode: int | None = None,
    details: str | None = None,
    is_transient: bool | None = None,
    type_: str = "OAuthException",
) -> dict[str, Any]:
    """An error answer shaped like the Cloud API's."""
    err: dict[str, Any] = {
        "message": message,
        "type": type_,
        "code": code,
        "fbtrace_id": "SIM" + uuid.uuid4().hex[:20],
    }
    if subcode is not None:
        err["error_subcode"] = subcode
    if details:
        err["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if is_transient is not None:
        err["is_transient"] = is_transient
    return {"error": err}


def _fault_response(fault: dict[str, Any]) -> JSONResponse:
    status = int(fault["status"])
    code = int(fault.get("code", _DEFAULT_CODES.get(status, 2 if status >= 500 else 131000)))
    message = str(fault.get("message", f"Simulated error {code}"))
    transient = True if status >= 500 or status == 429 else None
    body = error_body(code, message, subcode=fault.get("subcode"), is_transient=transient)
    return JSONResponse(body, status_code=status)


class WhatsAppSimulator(SimulatorServer):
    """The Cloud API on a local port. ``tokens`` maps phone_number_id (or "*") to the accepted access token."""

    def __init__(self, tokens: dict[str, str] | None = None, *, accept_any_token: bool = False) -> None:
        self.tokens: dict[str, str] = dict(tokens or {})
        self.accept_any_token = accept_any_token
        self.faults: list[dict[str, Any]] = []
        self.faults_served: list[dict[str, Any]] = []  # each fault as it was answered, with served_at
        self.rate_per_second: float | None = None
        self.recorded: list[dict[str, Any]] = []
        self.reads: list[dict[str, Any]] = []
        self.media: dict[str, dict[str, Any]] = {}
        self.media_url_seconds = 300.0  # how long a download URL stays valid, as Meta's (about 5 minutes)
        self.downloads: list[dict[str, Any]] = []  # each served download: media id, bytes, when
        self._url_key = uuid.uuid4().hex  # signs download URLs, so that a made-up one is refused
        self._recent: dict[str, deque[float]] = {}
        self._changed = asyncio.Event()
        self._status_poster: WebhookPoster | None = None
        self._auto_statuses: tuple[str, ...] = ()
        self.undeliverable: dict[
            str, tuple[int, int]
        ] = {}  # to -> (error code, times its 'failed' is posted)
        self.templates: dict[str, list[dict[str, Any]]] = {}  # per business account id
        self.template_pages: list[dict[str, Any]] = []  # each page served: waba id, after, count
        super().__init__(Starlette(routes=self._routes()))

    def _routes(self) -> list[Route]:
        return [
            Route("/_sim/health", self._health, methods=["GET"]),
            Route("/_sim/faults", self._faults_endpoint, methods=["GET", "POST", "DELETE"]),
            Route("/_sim/messages", self._messages_endpoint, methods=["GET", "DELETE"]),
            Route("/_sim/reads", self._reads_endpoint, methods=["GET"]),
            Route("/_sim/tokens", self._tokens_endpoint, methods=["POST"]),
            Route("/_sim/media", self._media_add_endpoint, methods=["POST"]),
            Route("/_sim/media/{media_id}", self._media_download, methods=["GET"]),
            Route("/_sim/download/{media_id}", self._media_url_download, methods=["GET"]),
            Route("/_sim/templates", self._templates_endpoint, methods=["GET", "POST"]),
            Route("/{version}/{waba_id}/message_templates", self._list_templates, methods=["GET"]),
            Route("/{version}/{phone_number_id}/messages", self._send, methods=["POST"]),
            Route("/{version}/{phone_number_id}/media", self._upload, methods=["POST"]),
            Route("/{version}/{media_id}", self._media_info, methods=["GET"]),
        ]

    # ------------------------------------------------------------ in-process helpers

    def add_faults(self, faults: Iterable[dict[str, Any]]) -> None:
        self.faults.extend(dict(f) for f in faults)

    def add_media(self, data: bytes, mime_type: str, phone_number_id: str | None = None) -> str:
        """Media a user sends (a photo, a voice note): its id goes in the webhook; the engine downloads it.
        ``phone_number_id`` None: any number's token may fetch it."""
        return self._store_media(data, mime_type, phone_number_id)

    def _store_media(self, data: bytes, mime_type: str, phone_number_id: str | None) -> str:
        media_id = str(uuid.uuid4().int)[:16]
        self.media[media_id] = {
            "id": media_id,
            "phone_number_id": phone_number_id,
            "mime_type": mime_type,
            "sha256": hashlib.sha256(data).hexdigest(),
            "file_size": len(data),
            "data": data,
        }
        return media_id

    def messages(self, to: str | None = None, phone_number_id: str | None = None) -> list[dict[str, Any]]:
        return [
            m
            for m in self.recorded
            if (to is None or m["to"] == to)
            and (phone_number_id is None or m["phone_number_id"] == phone_number_id)
        ]

    def clear(self) -> None:
        self.recorded.clear()
        self.reads.clear()

    async def wait_for_messages(
        self, count: int, to: str | None = None, timeout: float = 10, phone_number_id: str | None = None
    ) -> list[dict[str, Any]]:
        """All recorded messages (to ``to``, from ``phone_number_id``) once there are at least ``count``;
        TimeoutError otherwise."""
        try:
            async with asyncio.timeout(timeout):
                while len(found := self.messages(to, phone_number_id)) < count:
                    await self._changed.wait()
                return found
        except TimeoutError:
            raise TimeoutError(
                f"{len(self.messages(to, phone_number_id))} of {count} messages to {to or 'anyone'} after {timeout}s"
            ) from None

    def set_templates(self, waba_id: str, templates: Iterable[dict[str, Any]]) -> None:
        """The business account's templates, as Meta lists them (id, name, language, status, category,
        components, quality_score); an id is made up for each that has none."""
        self.templates[waba_id] = [{"id": str(uuid.uuid4().int)[:15], **dict(t)} for t in templates]

    def find_template(self, name: str, language: str) -> dict[str, Any] | None:
        for templates in self.templates.values():
            for t in templates:
                if t.get("name") == name and t.get("language") == language:
                    return t
        return None

    async def post_template_status(
        self, poster: WebhookPoster, waba_id: str, name: str, language: str, event: str, reason: str = "NONE"
    ) -> httpx.Response:
        """Change a template's status here and tell the engine as Meta does (the status update webhook)."""
        template = self.find_template(name, language)
        if template is not None and event in ("APPROVED", "REJECTED", "PAUSED", "DISABLED", "PENDING"):
            template["status"] = event
        template_id = template["id"] if template else "0"
        return await poster.post(
            template_status_envelope(waba_id, template_id, name, language, event, reason)
        )

    async def post_template_quality(
        self, poster: WebhookPoster, waba_id: str, name: str, language: str, new: str, previous: str = "GREEN"
    ) -> httpx.Response:
        template = self.find_template(name, language)
        if template is not None:
            template["quality_score"] = {"score": new}
        template_id = template["id"] if template else "0"
        return await poster.post(
            template_quality_envelope(waba_id, template_id, name, language, new, previous)
        )

    def report_statuses(
        self, poster: WebhookPoster | None, statuses: Iterable[str] = ("sent", "delivered", "read")
    ) -> None:
        """After each accepted message, post these status updates to the gateway, in order (None: stop)."""
        self._status_poster = poster
        self._auto_statuses = tuple(statuses)

    def fail_deliveries(self, to: str, code: int = 131026, times: int = 2) -> None:
        """Messages accepted for ``to`` are reported 'sent' and then 'failed' with ``code``, that status posted
        ``times`` times (Meta redelivers webhooks), instead of the statuses of ``report_statuses``."""
        self.undeliverable[to] = (code, times)

    # ------------------------------------------------------------ the Cloud API

    async def _send(self, request: Request) -> Response:
        phone_number_id = request.path_params["phone_number_id"]
        denied = self._check_token(request, phone_number_id)
        if denied is not None:
            return denied
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(error_body(100, "(#100) The request body is not valid JSON"), status_code=400)
        to = body.get("to") if isinstance(body, dict) else None
        if (faulted := await self._apply_fault("messages", to)) is not None:
            return faulted
        if (limited := self._rate_limited(phone_number_id)) is not None:
            return limited
        try:
            validated = validate_send_request(body)
        except SendRequestInvalid as exc:
            return JSONResponse(error_body(exc.code, exc.message, details=exc.message), status_code=400)
        if (refused := self._template_refused(body)) is not None:
            return refused
        if isinstance(validated, MarkRead):
            self.reads.append(
                {
                    "phone_number_id": phone_number_id,
                    "message_id": validated.message_id,
                    "received_at": time.time(),
                }
            )
            return JSONResponse({"success": True})
        wamid = self._record(phone_number_id, body)
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            }
        )

    def _template_refused(self, body: dict[str, Any]) -> Response | None:
        """Template sends as Meta checks them, once the simulator knows any templates."""
        if body.get("type") != "template" or not self.templates:
            return None
        sent = body.get("template") or {}
        name, language = sent.get("name"), (sent.get("language") or {}).get("code")
        template = self.find_template(str(name), str(language))
        status = (template or {}).get("status")
        if template is None or status not in ("APPROVED", "PAUSED", "DISABLED"):
            details = f"template name ({name}) does not exist in {language}"
            return JSONResponse(
                error_body(
                    132001, "(#132001) Template name does not exist in the translation", details=details
                ),
                status_code=404,
            )
        if status in ("PAUSED", "DISABLED"):
            code = 132015 if status == "PAUSED" else 132016
            message = f"(#{code}) Template is {status.lower()}"
            return JSONResponse(error_body(code, message, details=message), status_code=400)
        wanted = sum(
            len(set(re.findall(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}", str(c.get("text") or ""))))
            for c in template.get("components") or []
            if str(c.get("type", "")).upper() == "BODY"
        )
        given = sum(
            len(c.get("parameters") or [])
            for c in sent.get("components") or []
            if str(c.get("type", "")).lower() == "body"
        )
        if wanted != given:
            message = "(#132000) Number of parameters does not match the expected number of params"
            details = f"body: number of localizable_params ({given}) does not match the expected number of params ({wanted})"
            return JSONResponse(error_body(132000, message, details=details), status_code=400)
        return None

    async def _list_templates(self, request: Request) -> Response:
        waba_id = request.path_params["waba_id"]
        if (denied := self._check_any_token(request)) is not None:
            return denied
        if (faulted := await self._apply_fault("templates", None)) is not None:
            return faulted
        if waba_id not in self.templates:
            return _unknown_media(waba_id)  # the same "object does not exist" answer Meta gives
        try:
            limit = max(1, min(int(request.query_params.get("limit", "25")), 1000))
            start = int(base64.b64decode(request.query_params.get("after", "")).decode() or 0)
        except ValueError:
            return JSONResponse(error_body(100, "(#100) Invalid parameter"), status_code=400)
        templates = self.templates[waba_id]
        page = templates[start : start + limit]
        self.template_pages.append({"waba_id": waba_id, "start": start, "count": len(page)})
        cursors = {
            "before": base64.b64encode(str(start).encode()).decode(),
            "after": base64.b64encode(str(start + len(page)).encode()).decode(),
        }
        paging: dict[str, Any] = {"cursors": cursors}
        if start + len(page) < len(templates):
            paging["next"] = str(request.url.include_query_params(after=cursors["after"]))
        return JSONResponse({"data": page, "paging": paging})

    def _check_any_token(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse(error_body(190, "Invalid OAuth access token"), status_code=401)
        if self.accept_any_token or any(hmac.compare_digest(token, t) for t in self.tokens.values()):
            return None
        return JSONResponse(error_body(190, "Error validating access token", subcode=463), status_code=401)

    async def _templates_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            if not isinstance(body, dict) or not all(isinstance(v, list) for v in body.values()):
                return JSONResponse({"error": "expected {waba_id: [template, ...]}"}, status_code=400)
            for waba_id, templates in body.items():
                self.set_templates(waba_id, templates)
        return JSONResponse(self.templates)

    def _check_token(self, request: Request, phone_number_id: str) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse(
                error_body(190, "Invalid OAuth access token - Cannot parse access token"), status_code=401
            )
        if self.accept_any_token:
            return None
        expected = self.tokens.get(phone_number_id, self.tokens.get("*"))
        if expected is None:
            message = (
                f"Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be "
                "loaded due to missing permissions, or does not support this operation."
            )
            return JSONResponse(
                error_body(100, message, subcode=33, type_="GraphMethodException"), status_code=400
            )
        if not hmac.compare_digest(token, expected):
            return JSONResponse(
                error_body(190, "Error validating access token: Session has expired", subcode=463),
                status_code=401,
            )
        return None

    async def _apply_fault(self, endpoint: str, to: str | None) -> Response | None:
        for i, fault in enumerate(self.faults):
            if fault.get("endpoint", "messages") == endpoint and fault.get("to") in (None, to):
                del self.faults[i]
                self.faults_served.append({**fault, "served_at": time.time()})
                if fault.get("delay"):
                    await asyncio.sleep(float(fault["delay"]))
                return _fault_response(fault) if fault.get("status") else None
        return None

    def _rate_limited(self, phone_number_id: str) -> Response | None:
        if self.rate_per_second is None:
            return None
        now = time.monotonic()
        recent = self._recent.setdefault(phone_number_id, deque())
        while recent and now - recent[0] >= 1.0:
            recent.popleft()
        if len(recent) >= self.rate_per_second:
            return _fault_response({"status": 429, "code": 130429, "message": "(#130429) Rate limit hit"})
        recent.append(now)
        return None

    def _record(self, phone_number_id: str, body: dict[str, Any]) -> str:
        wamid = "wamid.SIM" + uuid.uuid4().hex
        self.recorded.append(
            {
                "phone_number_id": phone_number_id,
                "to": body["to"],
                "type": body.get("type", "text"),
                "payload": body,
                "wamid": wamid,
                "received_at": time.time(),
            }
        )
        self._changed.set()
        self._changed = asyncio.Event()  # waiters hold the set event; later waits use a fresh one
        if self._status_poster is not None and self._auto_statuses:
            self._in_background(self._post_statuses(phone_number_id, wamid, body["to"]))
        return wamid

    async def _post_statuses(self, phone_number_id: str, wamid: str, to: str) -> None:
        assert self._status_poster is not None
        updates = [status_update(wamid, to, status) for status in self._auto_statuses]
        if to in self.undeliverable:
            code, times = self.undeliverable[to]
            errors = [{"code": code, "title": "Message undeliverable", "message": "Message undeliverable"}]
            updates = [status_update(wamid, to, "sent")]
            updates += [status_update(wamid, to, "failed", errors=errors)] * times
        for update in updates:
            await asyncio.sleep(0.02)
            with contextlib.suppress(httpx.HTTPError):
                await self._status_poster.post(build_status_envelope(phone_number_id, [update]))

    async def _upload(self, request: Request) -> Response:
        phone_number_id = request.path_params["phone_number_id"]
        if (denied := self._check_token(request, phone_number_id)) is not None:
            return denied
        if (faulted := await self._apply_fault("media", None)) is not None:
            return faulted
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), await request.body())
        except ValueError:
            fields = {}
        if "file" not in fields or fields.get("messaging_product", (b"",))[0] != b"whatsapp":
            return JSONResponse(
                error_body(100, "(#100) multipart fields file and messaging_product=whatsapp are required"),
                status_code=400,
            )
        data, content_type = fields["file"]
        media_id = self._store_media(data, content_type, phone_number_id)
        return JSONResponse({"id": media_id})

    async def _media_info(self, request: Request) -> Response:
        item = self.media.get(request.path_params["media_id"])
        if (denied := self._check_media_token(request, item)) is not None:
            return denied
        if (faulted := await self._apply_fault("media_info", None)) is not None:
            return faulted
        if item is None:
            return _unknown_media(request.path_params["media_id"])
        expires = int(time.time() + self.media_url_seconds)
        url = f"{self.base_url}/_sim/download/{item['id']}?expires={expires}&sig={self._url_sig(item['id'], expires)}"
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": item["mime_type"],
                "sha256": item["sha256"],
                "file_size": item["file_size"],
                "id": item["id"],
            }
        )

    def _check_media_token(self, request: Request, item: dict[str, Any] | None) -> Response | None:
        """Media of a number needs that number's token; a user's media (no number) any token we know."""
        owner = (item or {}).get("phone_number_id")
        if owner is not None or self.accept_any_token:
            return self._check_token(request, owner or "*")
        token = request.headers.get("authorization", "").partition(" ")[2]
        if token and any(hmac.compare_digest(token, known) for known in self.tokens.values()):
            return None
        return JSONResponse(error_body(190, "Error validating access token", subcode=463), status_code=401)

    def _url_sig(self, media_id: str, expires: int) -> str:
        return hmac.new(self._url_key.encode(), f"{media_id}:{expires}".encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    async def _media_url_download(self, request: Request) -> Response:
        """The URL ``_media_info`` handed out: the bearer token again, unexpired, unaltered."""
        media_id = request.path_params["media_id"]
        item = self.media.get(media_id)
        if (denied := self._check_media_token(request, item)) is not None:
            return denied
        if (faulted := await self._apply_fault("media_download", None)) is not None:
            return faulted
        try:
            expires = int(request.query_params.get("expires", ""))
        except ValueError:
            expires = 0
        signed = hmac.compare_digest(request.query_params.get("sig", ""), self._url_sig(media_id, expires))
        if item is None or not signed:
            return _unknown_media(media_id)
        if time.time() > expires:
            return JSONResponse(
                error_body(100, "URL signature expired", type_="OAuthException"), status_code=404
            )
        self.downloads.append({"id": media_id, "bytes": item["file_size"], "at": time.time()})
        return Response(item["data"], media_type=item["mime_type"])

    # ------------------------------------------------------------ control endpoints

    async def _media_add_endpoint(self, request: Request) -> Response:
        data = await request.body()
        mime = request.headers.get("content-type", "application/octet-stream").split(";")[0]
        media_id = self.add_media(data, mime, request.query_params.get("phone_number_id"))
        return JSONResponse({"id": media_id, "sha256": self.media[media_id]["sha256"]})

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            if isinstance(body, dict) and "rate" in body:
                self.rate_per_second = None if body["rate"] is None else float(body["rate"])
            self.add_faults(body if isinstance(body, list) else body.get("faults", []))
        elif request.method == "DELETE":
            self.faults.clear()
            self.rate_per_second = None
        return JSONResponse({"faults": self.faults, "rate": self.rate_per_second})

    async def _messages_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.clear()
            return JSONResponse([])
        params = request.query_params
        return JSONResponse(self.messages(params.get("to"), params.get("phone_number_id")))

    async def _reads_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.reads)

    async def _tokens_endpoint(self, request: Request) -> Response:
        body = await request.json()
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in body.values()):
            return JSONResponse({"error": "expected {phone_number_id: token}"}, status_code=400)
        self.tokens.update(body)
        return JSONResponse({"phone_number_ids": sorted(self.tokens)})

    async def _media_download(self, request: Request) -> Response:
        item = self.media.get(request.path_params["media_id"])
        if item is None:
            return JSONResponse(error_body(100, "Unknown media id"), status_code=404)
        return Response(item["data"], media_type=item["mime_type"])


def _unknown_media(media_id: str) -> Response:
    message = (
        f"Unsupported get request. Object with ID '{media_id}' does not exist, cannot be loaded due to missing "
        "permissions, or does not support this operation."
    )
    return JSONResponse(error_body(100, message, subcode=33, type_="GraphMethodException"), status_code=400)


# ---------------------------------------------------------------- the user's side: signed webhooks


def sign(body: bytes, secret: str) -> str:
    """The ``X-Hub-Signature-256`` header value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def serialise(envelope: dict[str, Any], *, escape_slashes: bool = False) -> bytes:
    """Compact JSON with non-ASCII as ``\\uXXXX`` like Meta; ``escape_slashes`` also writes ``/`` as ``\\/``
    (Meta does), which catches a gateway that re-serialises before checking the signature."""
    text = json.dumps(envelope, separators=(",", ":"))
    return (text.replace("/", "\\/") if escape_slashes else text).encode()


def new_message_id() -> str:
    return "wamid.SIMU" + uuid.uuid4().hex


def _now() -> str:
    return str(int(time.time()))


def _message_envelope(
    phone_number_id: str, display_phone: str, wa_id: str, name: str | None, message: dict[str, Any]
) -> dict[str, Any]:
    contact: dict[str, Any] = {"wa_id": wa_id}
    if name is not None:
        contact["profile"] = {"name": name}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone, "phone_number_id": phone_number_id},
        "contacts": [contact],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "SIMWABA", "changes": [{"field": "messages", "value": value}]}],
    }


def _message(
    wa_id: str,
    kind: str,
    body: dict[str, Any],
    msg_id: str | None,
    timestamp: int | None,
    context_id: str | None = None,
    business_phone: str = "",
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "from": wa_id,
        "id": msg_id or new_message_id(),
        "timestamp": str(timestamp) if timestamp is not None else _now(),
        "type": kind,
        kind: body,
    }
    if context_id:
        message["context"] = {"from": business_phone, "id": context_id}
    return message


def build_text_envelope(
    phone_number_id: str,
    display_phone: str,
    wa_id: str,
    name: str | None,
    text: str,
    msg_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    message = _message(wa_id, "text", {"body": text}, msg_id, timestamp)
    return _message_envelope(phone_number_id, display_phone, wa_id, name, message)


def build_button_reply_envelope(
    phone_number_id: str,
    display_phone: str,
    wa_id: str,
    name: str | None,
    button_id: str,
    title: str,
    msg_id: str | None = None,
    timestamp: int | None = None,
    context_id: str | None = None,
) -> dict[str, Any]:
    body = {"type": "button_reply", "button_reply": {"id": button_id, "title": title}}
    message = _message(wa_id, "interactive", body, msg_id, timestamp, context_id, display_phone)
    return _message_envelope(phone_number_id, display_phone, wa_id, name, message)


def build_list_reply_envelope(
    phone_number_id: str,
    display_phone: str,
    wa_id: str,
    name: str | None,
    row_id: str,
    title: str,
    description: str | None = None,
    msg_id: str | None = None,
    timestamp: int | None = None,
    context_id: str | None = None,
) -> dict[str, Any]:
    reply = {"id": row_id, "title": title} | ({"description": description} if description else {})
    message = _message(
        wa_id,
        "interactive",
        {"type": "list_reply", "list_reply": reply},
        msg_id,
        timestamp,
        context_id,
        display_phone,
    )
    return _message_envelope(phone_number_id, display_phone, wa_id, name, message)


def build_media_envelope(
    phone_number_id: str,
    display_phone: str,
    wa_id: str,
    name: str | None,
    kind: str,
    media: dict[str, Any],
    msg_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, Any]:
    """An inbound image / audio / video / document / sticker: ``media`` is ``{id, mime_type, sha256, ...}``."""
    message = _message(wa_id, kind, media, msg_id, timestamp)
    return _message_envelope(phone_number_id, display_phone, wa_id, name, message)


def status_update(
    wamid: str,
    recipient_id: str,
    status: str,
    timestamp: int | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``statuses[]`` item; a ``failed`` status gets a 131026 error unless ``errors`` are given."""
    item: dict[str, Any] = {
        "id": wamid,
        "status": status,
        "recipient_id": recipient_id,
        "timestamp": str(timestamp) if timestamp is not None else _now(),
    }
    if status == "failed":
        item["errors"] = errors or [
            {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable"}
        ]
    elif status in ("sent", "delivered"):
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    return item


def build_status_envelope(
    phone_number_id: str, statuses: list[dict[str, Any]], display_phone: str = ""
) -> dict[str, Any]:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display_phone, "phone_number_id": phone_number_id},
        "statuses": statuses,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "SIMWABA", "changes": [{"field": "messages", "value": value}]}],
    }


def template_status_envelope(
    waba_id: str, template_id: str, name: str, language: str, event: str, reason: str = "NONE"
) -> dict[str, Any]:
    """A ``message_template_status_update`` webhook: ``event`` APPROVED, REJECTED, PAUSED, DISABLED, ..."""
    value = {
        "event": event,
        "message_template_id": int(template_id) if str(template_id).isdigit() else template_id,
        "message_template_name": name,
        "message_template_language": language,
        "reason": reason,
    }
    return _template_envelope(waba_id, "message_template_status_update", value)


def template_quality_envelope(
    waba_id: str, template_id: str, name: str, language: str, new: str, previous: str = "GREEN"
) -> dict[str, Any]:
    """A ``message_template_quality_update`` webhook: the template's new quality score."""
    value = {
        "previous_quality_score": previous,
        "new_quality_score": new,
        "message_template_id": int(template_id) if str(template_id).isdigit() else template_id,
        "message_template_name": name,
        "message_template_language": language,
    }
    return _template_envelope(waba_id, "message_template_quality_update", value)


def _template_envelope(waba_id: str, field: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": waba_id, "time": int(time.time()), "changes": [{"field": field, "value": value}]}],
    }


class WebhookPoster:
    """Posts envelopes to the gateway the way Meta does: compact JSON, signed with the app secret."""

    def __init__(
        self,
        gateway_url: str,
        app_secret: str,
        *,
        escape_slashes: bool = False,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.gateway_url = gateway_url
        self.app_secret = app_secret
        self.escape_slashes = escape_slashes
        # Idle connections expire before a server's keep-alive (uvicorn: 5 s) can close them under a request.
        self._client = client or httpx.AsyncClient(timeout=10, limits=httpx.Limits(keepalive_expiry=2.0))
        self._owns_client = client is None

    async def post(self, envelope: dict[str, Any], *, signature: str | None = None) -> httpx.Response:
        """POST one envelope; ``signature`` overrides the computed header (tests of rejected webhooks)."""
        body = serialise(envelope, escape_slashes=self.escape_slashes)
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature if signature is not None else sign(body, self.app_secret),
        }
        return await self._client.post(self.gateway_url, content=body, headers=headers)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


@dataclass(frozen=True)
class Posted:
    message_id: str
    response: httpx.Response


class SimulatedUser:
    """One WhatsApp user writing to one business number through ``poster``."""

    def __init__(
        self,
        poster: WebhookPoster,
        phone_number_id: str,
        display_phone: str,
        wa_id: str,
        name: str | None = "Sim User",
    ) -> None:
        self.poster = poster
        self.phone_number_id, self.display_phone = phone_number_id, display_phone
        self.wa_id, self.name = wa_id, name

    async def say(self, text: str, msg_id: str | None = None) -> Posted:
        msg_id = msg_id or new_message_id()
        env = build_text_envelope(
            self.phone_number_id, self.display_phone, self.wa_id, self.name, text, msg_id
        )
        return Posted(msg_id, await self.poster.post(env))

    async def tap_button(self, button_id: str, title: str, context_id: str | None = None) -> Posted:
        msg_id = new_message_id()
        env = build_button_reply_envelope(
            self.phone_number_id,
            self.display_phone,
            self.wa_id,
            self.name,
            button_id,
            title,
            msg_id,
            context_id=context_id,
        )
        return Posted(msg_id, await self.poster.post(env))

    async def pick_row(
        self, row_id: str, title: str, description: str | None = None, context_id: str | None = None
    ) -> Posted:
        msg_id = new_message_id()
        env = build_list_reply_envelope(
            self.phone_number_id,
            self.display_phone,
            self.wa_id,
            self.name,
            row_id,
            title,
            description,
            msg_id,
            context_id=context_id,
        )
        return Posted(msg_id, await self.poster.post(env))

    async def send_media(
        self, kind: str, media_id: str, mime_type: str, sha256_hex: str = "", caption: str | None = None
    ) -> Posted:
        """A photo, voice note ... whose bytes the simulator holds (``WhatsAppSimulator.add_media``). The webhook
        carries the digest in base64, as Meta's do."""
        media: dict[str, Any] = {"id": media_id, "mime_type": mime_type}
        if sha256_hex:
            media["sha256"] = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        if caption is not None:
            media["caption"] = caption
        if kind == "audio":
            media["voice"] = True
        msg_id = new_message_id()
        env = build_media_envelope(
            self.phone_number_id, self.display_phone, self.wa_id, self.name, kind, media, msg_id
        )
        return Posted(msg_id, await self.poster.post(env))

    async def react(self, wamid: str, emoji: str = "👍") -> Posted:
        """A reaction to a message the business sent (``emoji`` "" removes it)."""
        return await self._send_kind("reaction", {"message_id": wamid, "emoji": emoji})

    async def share_location(
        self, latitude: float, longitude: float, name: str | None = None, address: str | None = None
    ) -> Posted:
        place: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        place |= {k: v for k, v in (("name", name), ("address", address)) if v}
        return await self._send_kind("location", place)

    async def _send_kind(self, kind: str, body: dict[str, Any]) -> Posted:
        msg_id = new_message_id()
        message = _message(self.wa_id, kind, body, msg_id, None)
        env = _message_envelope(self.phone_number_id, self.display_phone, self.wa_id, self.name, message)
        return Posted(msg_id, await self.poster.post(env))

    async def acknowledge(
        self, wamid: str, statuses: Iterable[str] = ("sent", "delivered", "read")
    ) -> list[httpx.Response]:
        """Post status updates for a message the business sent to this user, one webhook per status."""
        responses = []
        for status in statuses:
            env = build_status_envelope(
                self.phone_number_id, [status_update(wamid, self.wa_id, status)], self.display_phone
            )
            responses.append(await self.poster.post(env))
        return responses
