"""The organisation's menu of offers: active surveys, events on sale, open polls, HypeCards.

Reads ``ctx.data["offers"]`` = {"surveys": [...], "events": [...], "polls": [...], "cards": [...]} (missing =
nothing on offer). Menu item ids are ``survey:<id>``, ``event:<id>``, ``poll:<id>`` and ``card:<id>``; every
active HypeCard template can be started by its id (offered after a purchase or a vote), those with
``in_menu`` are listed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from state_machines.base import Context, Inbound, Reply, Text
from state_machines.choices import Option, match, offer
from state_machines.i18n import t

# item kind -> the key of its list in ctx.data["offers"]
OFFER_LISTS = {"survey": "surveys", "event": "events", "poll": "polls", "card": "cards"}
DISPLAY_ZONE = ZoneInfo("Africa/Nairobi")


def offers_of(ctx: Context, kind: str) -> list[Mapping[str, Any]]:
    return list((ctx.data.get("offers") or {}).get(OFFER_LISTS[kind]) or [])


def find_offer(ctx: Context, kind: str, item_id: str) -> Mapping[str, Any] | None:
    return next((o for o in offers_of(ctx, kind) if str(o.get("id")) == item_id), None)


def parse_item_id(item: str) -> tuple[str, str] | None:
    """``"survey:42"`` -> ``("survey", "42")``; None for anything that is not a menu item id."""
    kind, sep, item_id = item.partition(":")
    return (kind, item_id) if sep and kind in OFFER_LISTS and item_id else None


def _when(starts_at: Any) -> str:
    if not isinstance(starts_at, datetime):
        return ""
    local = starts_at.astimezone(DISPLAY_ZONE) if starts_at.tzinfo else starts_at
    return local.strftime("%d/%m/%Y %H:%M")


def items(ctx: Context) -> list[Option]:
    """Every offer as a menu option, surveys first, then events, polls, HypeCards."""
    options = [
        Option(f"survey:{s['id']}", str(s.get("title") or ""), str(s.get("description") or ""))
        for s in offers_of(ctx, "survey")
    ]
    for e in offers_of(ctx, "event"):
        where = " · ".join(x for x in (_when(e.get("starts_at")), str(e.get("venue_name") or "")) if x)
        options.append(Option(f"event:{e['id']}", str(e.get("name") or ""), where))
    options += [Option(f"poll:{p['id']}", str(p.get("question") or "")) for p in offers_of(ctx, "poll")]
    options += [
        Option(f"card:{c['id']}", _title(c, ctx.language), "HypeCard")
        for c in offers_of(ctx, "card")
        if c.get("in_menu")
    ]
    return options


def _title(card: Mapping[str, Any], lang: str) -> str:
    titles = card.get("title") or {}
    return str(titles.get(lang) or titles.get("en") or card.get("name") or "")


def menu_replies(ctx: Context, lead: str = "") -> tuple[Reply, ...]:
    """The menu (buttons, list or numbered text), with ``lead`` (e.g. "Sorry, I didn't understand") on top."""
    lang = ctx.language
    options = items(ctx)
    prefix = f"{lead}\n\n" if lead else ""
    if not options:
        return (Text(prefix + t("menu.empty", lang)),)
    body = t("menu.body_org", lang, org=ctx.org_name) if ctx.org_name else t("menu.body", lang)
    return (offer(prefix + body, options, list_button=t("menu.button", lang)),)


def choose(event: Inbound, ctx: Context) -> tuple[str, str] | None:
    """The menu item the user picked (tapped, typed number or typed title) as (kind, id)."""
    picked = match(event, items(ctx))
    return parse_item_id(picked.id) if picked else None
