"""Broadcasts: an organisation speaks first, to many contacts, exactly once each.

- ``create``: validated, stored ``scheduled`` (due now or at ``at``). Nothing is resolved yet.
- ``start`` (the scheduler, when due): recipients resolved from the audience (``broadcast_recipients``, unique
  per contact) and tokens reserved, in one transaction; a wallet that cannot cover it leaves the broadcast
  ``blocked`` with the reason, and nothing resolved.
- the fan-out (engine/broadcast_fanout.py), in batches, each batch's outbox rows written in the transaction
  that marks its recipients queued; completion releases what was not spent.
- ``pause`` / ``resume`` / ``cancel``: under the broadcast's row locked FOR UPDATE, while every batch holds it
  FOR KEY SHARE, so a batch in flight finishes before the status changes and none starts after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from engine import broadcast_audience, broadcast_money
from engine.broadcast_content import (
    CAPTION_LIMIT,
    MediaInvalid,
    Recipient,
    check_media,
    fill,
    media_type_of,
    unknown_variables,
)
from engine.db import savepoint
from engine.logging import get_logger
from engine.messaging_limit import check_messaging_limit
from engine.templates import TemplateError, load_template, template_send
from engine.turn import SERVICE_WINDOW

log = get_logger(__name__)
CATEGORIES = ("marketing", "utility", "authentication")


class BroadcastError(ValueError):
    """A broadcast that cannot be created or changed as asked; the message says why."""


@dataclass
class NewBroadcast:
    name: str | None = None
    text: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    template_params: list[str] = field(default_factory=list)
    template_category: str | None = None
    audience: dict[str, Any] = field(default_factory=dict)
    event_id: UUID | None = None
    at: datetime | None = None
    media_url: str | None = None  # an https link or an uploaded media id; the text is its caption
    media_type: str | None = None  # image | video | document (from the link's extension when not given)
    source: str = "operator"
    source_key: str | None = None
    created_by: str | None = None

    def message_type(self) -> str:
        kind = self.media_type or ("text" if self.text else None)
        if kind and self.template_name:
            return f"{kind}_or_template"  # free-form inside the 24-hour window, the template outside it
        return kind or "template"

    def check(self) -> None:
        if self.media_url is not None:
            self.media_type = self.media_type or media_type_of(self.media_url)
            if self.media_type is None:
                raise BroadcastError(
                    f"media {self.media_url!r}: say whether it is an image, a video or a document"
                )
            try:
                check_media(self.media_type, self.media_url)
            except MediaInvalid as err:
                raise BroadcastError(str(err)) from None
        elif self.media_type is not None:
            raise BroadcastError(f"--{self.media_type} needs its URL or media id")
        if not self.text and not self.template_name and not self.media_url:
            raise BroadcastError("a broadcast needs --text or --template (or --image, --video, --document)")
        if self.template_name and not self.template_language:
            raise BroadcastError("a template needs its --language")
        if self.template_category and self.template_category not in CATEGORIES:
            raise BroadcastError(f"template category must be one of {', '.join(CATEGORIES)}")
        for what in [self.text or "", *self.template_params]:
            if bad := unknown_variables(what):
                raise BroadcastError(
                    f"unknown variable {', '.join('{{' + b + '}}' for b in bad)}: "
                    "use {{name}}, {{event}}, {{event_time}} or {{event_venue}}"
                )
        if self.text and len(self.text) > 4096:
            raise BroadcastError("a text is at most 4096 characters")
        if self.media_url and self.text and len(self.text) > CAPTION_LIMIT:
            raise BroadcastError(
                f"a caption (the --text of a media broadcast) is at most {CAPTION_LIMIT} characters"
            )
        if self.at is not None and self.at.tzinfo is None:
            raise BroadcastError("the start time needs its time zone")


async def create(conn: asyncpg.Connection, org_id: UUID, new: NewBroadcast) -> UUID | None:
    """The new broadcast's id; None when one with the same ``source_key`` exists (a firing seen twice)."""
    new.check()
    audience = broadcast_audience.normalise(new.audience)
    if new.event_id is not None:
        if not await conn.fetchval("SELECT true FROM events WHERE id = $1", new.event_id):
            raise BroadcastError(f"no event {new.event_id}")
        if not {"event_id", "ticket_type_id", "program_id", "phones"} & audience.keys():
            audience["event_id"] = str(new.event_id)  # --event alone: its ticket holders
    return await conn.fetchval(
        """INSERT INTO broadcasts (organization_id, name, message_type, message_content, media_url, template_name,
                                   template_language, template_params, template_category, audience_filter,
                                   event_id, scheduled_at, status, source, source_key, created_by, media_type)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, COALESCE($12, now()), 'scheduled', $13, $14, $15,
                   $16)
           ON CONFLICT (organization_id, source_key) WHERE source_key IS NOT NULL DO NOTHING
           RETURNING id""",
        org_id,
        new.name,
        new.message_type(),
        new.text,
        new.media_url,
        new.template_name,
        new.template_language,
        list(new.template_params),
        new.template_category or ("marketing" if new.template_name else None),
        audience,
        new.event_id,
        new.at,
        new.source,
        new.source_key,
        new.created_by,
        new.media_type,
    )


async def create_stored(
    conn: asyncpg.Connection, org_id: UUID, new: NewBroadcast
) -> tuple[UUID | None, str | None]:
    """``create`` for content stored beforehand (a reminder, a programme item), whose row may have been written
    past the content import's checks: (the id, None), or (None, why it cannot be sent) with nothing written, so
    that the scheduler marks that row refused and its round goes on (sql/075)."""
    try:
        async with savepoint(conn, "stored_broadcast"):
            return await create(conn, org_id, new), None
    except (BroadcastError, asyncpg.DataError) as err:
        return None, str(err)


def free_form(b: asyncpg.Record | dict[str, Any]) -> bool:
    """The broadcast has a free-form message (a text, or media with or without a caption) for those inside their
    24-hour window."""
    return bool(b["message_content"] or b["media_type"])


async def lock(conn: asyncpg.Connection, broadcast_id: UUID, *, shared: bool) -> asyncpg.Record | None:
    """The broadcast's row, locked for this transaction: shared by batches (FOR KEY SHARE, which the counters'
    updates do not wait for), exclusive for a change of status (FOR UPDATE, which waits for the batches in
    flight and holds off new ones)."""
    mode = "FOR KEY SHARE" if shared else "FOR UPDATE"
    return await conn.fetchrow(f"SELECT * FROM broadcasts WHERE id = $1 {mode}", broadcast_id)


class NotStarted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def start(conn: asyncpg.Connection, org: Any, broadcast_id: UUID, now: datetime) -> int | None:
    """Resolve and reserve a due broadcast (the caller's tenant transaction). The number of recipients; None
    when another scheduler has it or it is no longer due. Raises ``NotStarted`` (the caller rolls back and
    records ``blocked`` with the reason)."""
    row = await conn.fetchrow(
        """SELECT * FROM broadcasts WHERE id = $1 AND status = 'scheduled' AND scheduled_at <= $2
           FOR UPDATE SKIP LOCKED""",
        broadcast_id,
        now,
    )
    if row is None:
        return None
    count = await broadcast_audience.resolve(conn, org.id, broadcast_id, row["audience_filter"] or {})
    category = await _check_template(conn, org.id, row, now) if row["template_name"] else None
    prices = broadcast_money.prices_for(org.settings, category)
    each = prices.per_recipient(free_form(row), bool(row["template_name"]))
    await conn.execute(
        """UPDATE broadcasts SET status = 'running', started_at = $2, recipient_count = $3, tokens_reserved = $4,
                                 price_text = $5, price_template = $6, status_reason = NULL,
                                 template_category = COALESCE($7, template_category)
           WHERE id = $1""",
        broadcast_id,
        now,
        count,
        each * count,
        prices.text,
        prices.template,
        category,
    )
    try:  # last: the wallet's row, which every reply of the organisation pays from, is locked only to the commit
        await broadcast_money.reserve(conn, org.id, broadcast_id, each * count)
    except broadcast_money.CannotCover as err:
        raise NotStarted(f"{err} ({count} recipients at {each} each)") from None
    log.info("broadcast started", broadcast_id=str(broadcast_id), recipients=count, reserved=each * count)
    return count


async def _check_template(conn: asyncpg.Connection, org_id: UUID, row: asyncpg.Record, now: datetime) -> str:
    """The template can be sent (APPROVED, its parameters fit its components) and its recipients outside the
    24-hour window stay within the messaging limit; its category (what it costs). Raises ``NotStarted``."""
    name, language = row["template_name"], row["template_language"]
    sample = Recipient(None, "254700000000", None, None)
    params = [fill(str(p), sample, None) for p in row["template_params"] or []]
    try:
        template = await load_template(conn, org_id, name, language)
        await template_send(conn, org_id, name, language, params, to=sample.phone)
    except TemplateError as err:
        raise NotStarted(err.message) from None
    reached = await conn.fetch(  # who will get the template: everyone, or those outside the window
        """SELECT r.contact_id FROM broadcast_recipients r
           LEFT JOIN conversations c ON c.contact_id = r.contact_id AND c.status = 'active'
           WHERE r.broadcast_id = $1 AND ($2 OR c.last_user_message_at IS NULL OR c.last_user_message_at <= $3)""",
        row["id"],
        not free_form(row),
        now - SERVICE_WINDOW,
    )
    limit = await check_messaging_limit(conn, org_id, [r["contact_id"] for r in reached], now)
    if not limit.fits:
        raise NotStarted(str(limit.reason))
    return (template.category or row["template_category"] or "marketing").lower()


async def block(conn: asyncpg.Connection, broadcast_id: UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE broadcasts SET status = 'blocked', status_reason = $2 WHERE id = $1 AND status = 'scheduled'",
        broadcast_id,
        reason,
    )
    log.warning("broadcast not started", broadcast_id=str(broadcast_id), reason=reason)


# ---------------------------------------------------------------- control

_PAST = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}
_NEXT = {
    "pause": ({"scheduled", "running"}, "paused"),
    "resume": ({"paused", "blocked"}, None),  # running again if it had started, else scheduled
    "cancel": ({"scheduled", "running", "paused", "blocked", "draft"}, "cancelled"),
}


async def control(conn: asyncpg.Connection, org_id: UUID, broadcast_id: UUID, action: str) -> dict[str, Any]:
    """pause | resume | cancel, under the broadcast's exclusive lock; cancel releases the reservation. The
    broadcast's status after it; raises ``BroadcastError`` when the status does not allow it."""
    row = await lock(conn, broadcast_id, shared=False)
    if row is None:
        raise LookupError(f"no broadcast {broadcast_id}")
    allowed, target = _NEXT[action]
    if row["status"] not in allowed:
        raise BroadcastError(f"a {row['status']} broadcast cannot be {_PAST[action]}")
    if target is None:
        target = "running" if row["started_at"] is not None else "scheduled"
    now = datetime.now(UTC)
    await conn.execute(
        """UPDATE broadcasts SET status = $2::text, status_reason = NULL,
                  paused_at = CASE WHEN $2::text = 'paused' THEN $3 ELSE paused_at END,
                  cancelled_at = CASE WHEN $2::text = 'cancelled' THEN $3 ELSE cancelled_at END
           WHERE id = $1""",
        broadcast_id,
        target,
        now,
    )
    released = await broadcast_money.release(conn, org_id, broadcast_id) if target == "cancelled" else 0
    return {"id": str(broadcast_id), "status": target, "released": released}


async def hold(conn: asyncpg.Connection, broadcast_id: UUID, reason: str) -> None:
    """A running broadcast paused with the reason (its template was paused or disabled): resume sends it on."""
    await lock(conn, broadcast_id, shared=False)
    await conn.execute(
        """UPDATE broadcasts SET status = 'paused', paused_at = now(), status_reason = $2
           WHERE id = $1 AND status = 'running'""",
        broadcast_id,
        reason,
    )
    log.warning("broadcast held", broadcast_id=str(broadcast_id), reason=reason)


async def complete_if_done(conn: asyncpg.Connection, org_id: UUID, broadcast_id: UUID) -> bool:
    """A running broadcast with no pending recipient left: completed, and the unused tokens released."""
    await lock(conn, broadcast_id, shared=False)
    done = await conn.fetchval(
        """UPDATE broadcasts SET status = 'completed', completed_at = now()
           WHERE id = $1 AND status = 'running'
             AND NOT EXISTS (SELECT FROM broadcast_recipients WHERE broadcast_id = $1 AND status = 'pending')
           RETURNING true""",
        broadcast_id,
    )
    if done:
        released = await broadcast_money.release(conn, org_id, broadcast_id)
        log.info("broadcast completed", broadcast_id=str(broadcast_id), released=released)
    return bool(done)
