"""What one recipient of a broadcast receives: the text, the media with its caption, or the template with their
variables filled in, as a send job for the outbox. Pure, except ``template_request`` (the one place template
sends are built)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg

from engine.templates import template_send
from engine.whatsapp.outbound import SendRequestInvalid, build_payload, validate_send_request
from state_machines.base import Text
from state_machines.formatting import DEFAULT_TIMEZONE, local_time

VARIABLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
VARIABLES = ("name", "event", "event_time", "event_venue")
NAME_FALLBACK = {"en": "friend", "sw": "rafiki"}
MEDIA_TYPES = ("image", "video", "document")
CAPTION_LIMIT = 1024  # the Cloud API's, for an image, a video or a document
MEDIA_ID = re.compile(r"^[0-9]{1,64}$")  # what POST /{phone_number_id}/media returns
_EXTENSIONS = {
    **dict.fromkeys(("jpg", "jpeg", "png"), "image"),
    **dict.fromkeys(("mp4", "3gp"), "video"),
    **dict.fromkeys(("pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt"), "document"),
}


class MediaInvalid(ValueError):
    """A media reference WhatsApp could not send; the message names it and says what is accepted."""


def check_media(kind: str, ref: str, label: str | None = None) -> None:
    """``ref`` is an https URL with a host (WhatsApp fetches it) or an uploaded media id (digits); ``label``
    names it in the error (default: the CLI's option)."""
    if kind not in MEDIA_TYPES:
        raise MediaInvalid(f"media type {kind!r}: one of {', '.join(MEDIA_TYPES)}")
    if MEDIA_ID.match(ref):
        return
    parts = urlsplit(ref)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() for c in ref) or len(ref) > 2000:
        raise MediaInvalid(
            f"{label or '--' + kind} {ref!r} is neither an https:// URL (WhatsApp fetches the file from it) "
            "nor an uploaded media id (digits)"
        )


def media_type_of(ref: str) -> str | None:
    """The media type a link's file extension says (for content written without one), else None."""
    return _EXTENSIONS.get(PurePosixPath(urlsplit(ref).path).suffix.lstrip(".").lower())


def media_request(kind: str, ref: str, caption: str, to: str) -> dict[str, Any]:
    """The Cloud API request for an image, video or document by id or link, with its caption (cut to the limit);
    a document by link is named after the link's file."""
    media: dict[str, Any] = {"id": ref} if MEDIA_ID.match(ref) else {"link": ref}
    if caption:
        media["caption"] = caption[:CAPTION_LIMIT]
    if kind == "document" and "link" in media:
        name = unquote(PurePosixPath(urlsplit(ref).path).name)
        if name:
            media["filename"] = name[:240]
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
        kind: media,
    }
    validate_send_request(payload)
    return payload


@dataclass(frozen=True)
class EventFacts:
    name: str
    starts_at: datetime
    timezone: str
    venue: str | None


@dataclass(frozen=True)
class Recipient:
    contact_id: Any
    phone: str
    name: str | None
    language: str | None


def unknown_variables(text: str) -> list[str]:
    """Variables a broadcast's text names that no recipient can fill (checked when it is created)."""
    return sorted({v for v in VARIABLE.findall(text) if v not in VARIABLES})


def fill(text: str, recipient: Recipient, event: EventFacts | None, org_language: str = "en") -> str:
    """``{{name}}`` (the contact's first name, else "friend"), ``{{event}}``, ``{{event_time}}`` (local time in
    the event's zone), ``{{event_venue}}``; an event variable without an event is left empty."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "name":
            first = (recipient.name or "").strip().split(" ")[0]
            return first or NAME_FALLBACK.get(recipient.language or org_language, "friend")
        if event is None:
            return ""
        if key == "event":
            return event.name
        if key == "event_time":
            return local_time(event.starts_at, event.timezone or DEFAULT_TIMEZONE)
        if key == "event_venue":
            return event.venue or ""
        return match.group(0)

    return VARIABLE.sub(value, text)


def text_request(body: str, to: str) -> dict[str, Any]:
    try:
        return build_payload(Text(body), to)
    except SendRequestInvalid:
        return build_payload(Text(body[:4096]), to)


async def template_request(
    conn: asyncpg.Connection,
    org_id: Any,
    name: str,
    language: str,
    params: list[str],
    *,
    to: str,
) -> dict[str, Any]:
    """The Cloud API request for a template send: only an APPROVED template, its parameters checked against
    its components (engine/templates.py); raises ``TemplateError``."""
    return await template_send(conn, org_id, name, language, params, to=to)


async def load_event(conn: asyncpg.Connection, event_id: Any) -> EventFacts | None:
    if event_id is None:
        return None
    row = await conn.fetchrow(
        "SELECT name, starts_at, timezone, venue_name FROM events WHERE id = $1", event_id
    )
    if row is None:
        return None
    return EventFacts(row["name"], row["starts_at"], row["timezone"] or DEFAULT_TIMEZONE, row["venue_name"])
