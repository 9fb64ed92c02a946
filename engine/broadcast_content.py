"""What one recipient of a broadcast receives: the text or template with their variables filled in, as a send
job for the outbox. Pure, except ``template_request`` (the one place template sends are built)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from engine.templates import template_send
from engine.whatsapp.outbound import SendRequestInvalid, build_payload
from state_machines.base import Text
from state_machines.formatting import DEFAULT_TIMEZONE, local_time

VARIABLE = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
VARIABLES = ("name", "event", "event_time", "event_venue")
NAME_FALLBACK = {"en": "friend", "sw": "rafiki"}


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
