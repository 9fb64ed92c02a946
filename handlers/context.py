"""What a step may know (``Context``), loaded in the event's transaction.

``offers`` (the menu: active surveys, events on sale with their ticket types, open polls, HypeCards) and the door staff's
phones are cached per organisation for a few seconds: the hot path reads them for every message. The item the conversation is
in (``survey`` / ``event`` / ``poll``) is always read fresh, because availability decides sales.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import asyncpg

from engine import mailer
from engine.expiring import Expiring
from engine.turn import Turn
from state_machines import menu
from state_machines.base import Context, Inbound, State

OFFERS_TTL_SECONDS = 3.0
_offers: Expiring[UUID, dict[str, Any]] = Expiring(OFFERS_TTL_SECONDS)
_staff: Expiring[UUID, frozenset[str]] = Expiring(OFFERS_TTL_SECONDS)


async def load_context(turn: Turn, state: State, event: object) -> Context:
    conn, org = turn.conn, turn.org
    data: dict[str, Any] = {
        "timezone": org.settings.get("timezone", "Africa/Nairobi"),
        **{
            k: org.settings[k]
            for k in (
                "survey_reminder_seconds",
                "survey_abandon_seconds",
                "payment_timeout_seconds",
                "hold_seconds",
                "payment_grace_seconds",
                "handover_wait_seconds",
                "handover_hours",
            )
            if k in org.settings
        },
    }
    if turn.runtime is not None:  # the engine's settings (the slow-card notice)
        data["hypecard_slow_seconds"] = turn.runtime.settings.hypecard_slow_seconds
        data["hypecard_give_up_seconds"] = turn.runtime.settings.hypecard_give_up_seconds
    data["offers"] = await offers(conn, org.id)  # any step may end at the menu (cached: cheap)
    if data["offers"]["programmes"] and isinstance(event, Inbound):  # subscribe or leave in the menu
        data["subscriptions"] = [
            str(r["program_id"])
            for r in await conn.fetch(
                "SELECT program_id FROM program_subscriptions WHERE contact_id = $1 AND status = 'subscribed'",
                turn.contact.id,
            )
        ]
    if turn.runtime is not None:  # the ticket flow asks for an e-mail address only when tickets are e-mailed
        data["email_tickets"] = mailer.enabled(turn.runtime.settings)
    ids = state.data
    if ids.get("survey_id"):
        data["survey"] = await read_once(turn, "survey", ids["survey_id"], load_survey)
    if ids.get("event_id"):  # read at every step: ticket holds change what remains within the transaction
        data["event"] = await load_event(conn, ids["event_id"])
    if ids.get("poll_id"):
        data["poll"] = await read_once(turn, "poll", ids["poll_id"], load_poll)
    if isinstance(event, Inbound) and (tapped := await _tapped_elsewhere(turn, event, data["offers"])):
        data["tapped"] = tapped
    if isinstance(event, Inbound) and "event" not in data and (chosen := _event_tapped(event)):
        data["event"] = await load_event(conn, chosen)  # what is left is said fresh, never from the cache
    return Context(
        now=turn.now,
        language=turn.language,
        contact_id=str(turn.contact.id),
        contact_phone=turn.contact.phone,
        contact_name=turn.contact.name,
        opted_in=turn.contact.opted_in,
        is_first_message=turn.trigger == "message" and turn.contact.message_count <= 1,
        is_staff=isinstance(event, Inbound)
        and (_is_admin(org.settings, turn.contact.phone) or await is_staff(conn, org.id, turn.contact.phone)),
        org_name=org.name,
        data=data,
    )


async def read_once(
    turn: Turn,
    kind: str,
    item_id: str,
    load: Callable[[asyncpg.Connection, str], Awaitable[dict[str, Any] | None]],
) -> dict[str, Any] | None:
    """A survey or a poll is read once per event (a survey's start, then its first question, is one read): no
    applier changes its row inside the transaction (their counters move at commit, sql/013)."""
    key = f"{kind}:{item_id}"
    if key not in turn.loaded:
        remember(turn, kind, item_id, await load(turn.conn, item_id))
    return turn.loaded[key]


async def _tapped_elsewhere(turn: Turn, event: Inbound, on_offer: dict[str, Any]) -> dict[str, Any] | None:
    """A menu item tapped from an old menu and no longer on offer (a closed poll, a full survey, an event off
    sale): loaded, so that its module can say why instead of "didn't understand"."""
    tapped = menu.parse_item_id(event.choice_id or "")
    if tapped is None:
        return None
    kind, item_id = tapped
    if any(str(o.get("id")) == item_id for o in on_offer.get(menu.OFFER_LISTS[kind]) or []):
        return None
    try:
        UUID(item_id)
    except ValueError:
        return None
    loader = {"survey": load_survey, "event": load_event, "poll": load_poll}.get(kind)
    if loader is None:  # a HypeCard's module says itself when it is gone
        return None
    item = await loader(turn.conn, item_id)
    return {**item, "kind": kind} if item else None


def _event_tapped(event: Inbound) -> str | None:
    tapped = menu.parse_item_id(event.choice_id or "")
    if tapped is None or tapped[0] != "event":
        return None
    try:
        return str(UUID(tapped[1]))
    except ValueError:
        return None


def remember(turn: Turn, kind: str, item_id: str, item: dict[str, Any] | None) -> dict[str, Any] | None:
    """What ``read_once`` returns for the rest of the event (a row re-read under a lock replaces it)."""
    turn.loaded[f"{kind}:{item_id}"] = item
    return item


async def offers(conn: asyncpg.Connection, org_id: UUID) -> dict[str, Any]:
    async def load() -> dict[str, Any]:
        surveys = [
            survey_of(r)
            for r in await conn.fetch(
                """SELECT * FROM surveys WHERE status = 'active' AND (starts_at IS NULL OR starts_at <= now())
                 AND (ends_at IS NULL OR ends_at > now()) ORDER BY created_at LIMIT 10"""
            )
        ]
        events = [
            await _event(conn, r)
            for r in await conn.fetch(
                """SELECT * FROM events WHERE status = 'published' AND ends_at > now() ORDER BY starts_at LIMIT 10"""
            )
        ]
        cards = [
            _card(r)
            for r in await conn.fetch(
                """SELECT t.id, t.name, t.title, t.event_id, t.poll_id, t.in_menu, t.variables FROM hypecard_templates t
                   WHERE t.is_active AND (t.event_id IS NULL OR EXISTS (
                       SELECT FROM events e WHERE e.id = t.event_id AND e.status = 'published' AND e.ends_at > now()))
                   ORDER BY t.created_at LIMIT 10"""
            )
        ]
        polls = [
            _poll(r)
            for r in await conn.fetch(
                """SELECT * FROM polls WHERE status = 'active' AND (ends_at IS NULL OR ends_at > now())
               ORDER BY created_at LIMIT 10"""
            )
        ]
        programmes = [
            {
                "id": str(r["id"]),
                "name": r["name"],
                "menu_title": r["menu_title"],
                "subscribe": list(r["subscribe_keywords"] or []),
                "unsubscribe": list(r["unsubscribe_keywords"] or []),
            }
            for r in await conn.fetch(
                """SELECT id, name, menu_title, subscribe_keywords, unsubscribe_keywords FROM programs
                   WHERE is_active ORDER BY created_at LIMIT 10"""
            )
        ]
        return {
            "surveys": surveys,
            "events": events,
            "polls": polls,
            "cards": cards,
            "programmes": programmes,
        }

    return await _offers.get(org_id, load)


async def load_survey(conn: asyncpg.Connection, survey_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM surveys WHERE id = $1", UUID(survey_id))
    return survey_of(row) if row else None


async def load_event(conn: asyncpg.Connection, event_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM events WHERE id = $1", UUID(event_id))
    return await _event(conn, row) if row else None


async def load_poll(conn: asyncpg.Connection, poll_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM polls WHERE id = $1", UUID(poll_id))
    return _poll(row) if row else None


def _is_admin(org_settings: dict[str, Any], phone: str) -> bool:
    """The organisation's admins (settings.admin_phones) may check tickets in at any of its events."""
    return phone in {str(p) for p in org_settings.get("admin_phones") or []}


async def is_staff(conn: asyncpg.Connection, org_id: UUID, phone: str) -> bool:
    """Door staff of an event that is not a draft and ended less than 30 days ago: they may send codes, and the
    check-in itself says which event a ticket admits to and why not (a cancelled or ended event's staff are told
    so). Their phones are cached with the offers."""

    async def load() -> frozenset[str]:
        return frozenset(
            r["phone"]
            for r in await conn.fetch(
                """SELECT DISTINCT p.phone FROM participants p JOIN events e ON e.id = p.event_id
               WHERE p.role = 'staff' AND e.status <> 'draft' AND e.ends_at > now() - interval '30 days'"""
            )
        )

    return phone in await _staff.get(org_id, load)


def survey_of(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "title": r["title"],
        "description": r["description"] or "",
        "questions": r["questions"],
        "settings": r["settings"] or {},
        "status": r["status"],
        "starts_at": r["starts_at"],
        "ends_at": r["ends_at"],
        "max_responses": r["max_responses"],
        "response_count": r["response_count"],
    }


async def _event(conn: asyncpg.Connection, r: asyncpg.Record) -> dict[str, Any]:
    types = await conn.fetch(
        """SELECT id, name, price, currency, max_per_order, sales_start_at, sales_end_at, is_active,
                  quantity_held AS held,
                  CASE WHEN quantity_total IS NULL THEN NULL
                       ELSE quantity_total - quantity_sold - quantity_held END AS remaining
           FROM ticket_types WHERE event_id = $1 ORDER BY sort_order, price""",
        r["id"],
    )
    guide = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM sessions WHERE event_id = $1 AND status = 'scheduled') AS sessions,
                  (SELECT count(*) FROM exhibitors WHERE event_id = $1 AND status = 'approved') AS exhibitors""",
        r["id"],
    )
    return {
        "id": str(r["id"]),
        "name": r["name"],
        # an agenda, exhibitors, RSVP: the menu offers the event's guide (state_machines/agenda.py)
        "sessions": guide["sessions"],
        "exhibitors": guide["exhibitors"],
        "rsvp": r["rsvp"],
        "venue": r["venue_id"] is not None,
        "starts_at": r["starts_at"],
        "venue_name": r["venue_name"],
        "status": r["status"],
        "timezone": r["timezone"],
        "ticket_types": [{**dict(t), "id": str(t["id"])} for t in types],
    }


def _card(r: asyncpg.Record) -> dict[str, Any]:
    """A HypeCard template as the conversation sees it: what to ask, where it is offered."""
    return {
        "id": str(r["id"]),
        "name": r["name"],
        "title": r["title"] or {},
        "event_id": str(r["event_id"]) if r["event_id"] else None,
        "poll_id": str(r["poll_id"]) if r["poll_id"] else None,
        "in_menu": r["in_menu"],
        "asked": [v for v in r["variables"] or [] if v.get("ask")],
    }


def _poll(r: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(r["id"]),
        "question": r["question"],
        "options": r["options"],
        "allow_multiple": r["allow_multiple"],
        "show_results": r["show_results"],
        "ends_at": r["ends_at"],
        "status": r["status"],
        "voters": r["voter_count"],
    }
