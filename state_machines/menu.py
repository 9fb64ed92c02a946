"""The organisation's menu of offers: active surveys, events on sale, open polls, HypeCards.

Reads ``ctx.data["offers"]`` = {"surveys": [...], "events": [...], "polls": [...], "cards": [...]} (missing =
nothing on offer). Menu item ids are ``survey:<id>``, ``event:<id>``, ``poll:<id>`` and ``card:<id>``; every
active HypeCard template can be started by its id (offered after a purchase or a vote), those with
``in_menu`` are listed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from state_machines.base import INTERACTIVE_BODY_MAX, Context, Inbound, Reply, State, Step, Text
from state_machines.choices import Option, match, offer
from state_machines.i18n import t

# item kind -> the key of its list in ctx.data["offers"]
OFFER_LISTS = {
    "survey": "surveys",
    "event": "events",
    "poll": "polls",
    "card": "cards",
    "program": "programmes",
    "agenda": "events",
}
DISPLAY_ZONE = ZoneInfo("Africa/Nairobi")


def offers_of(ctx: Context, kind: str) -> list[Mapping[str, Any]]:
    return list((ctx.data.get("offers") or {}).get(OFFER_LISTS[kind]) or [])


def find_offer(ctx: Context, kind: str, item_id: str) -> Mapping[str, Any] | None:
    """The item on offer, or the one an old menu's tap named (``ctx.data["tapped"]``: no longer on offer, loaded
    so that its module can say why: closed, full, not on sale)."""
    found = next((o for o in offers_of(ctx, kind) if str(o.get("id")) == item_id), None)
    tapped = ctx.data.get("tapped") or {}
    if found is None and tapped.get("kind") == kind and str(tapped.get("id")) == item_id:
        return tapped
    return found


def parse_item_id(item: str) -> tuple[str, str] | None:
    """``"survey:42"`` -> ``("survey", "42")``; None for anything that is not a menu item id."""
    kind, sep, item_id = item.partition(":")
    return (kind, item_id) if sep and kind in OFFER_LISTS and item_id else None


def _when(starts_at: Any) -> str:
    if not isinstance(starts_at, datetime):
        return ""
    local = starts_at.astimezone(DISPLAY_ZONE) if starts_at.tzinfo else starts_at
    return local.strftime("%d/%m/%Y %H:%M")


def is_full(survey: Mapping[str, Any]) -> bool:
    """A capped survey that has all the responses it needs: off the menu (a tap from an old menu says so)."""
    cap = survey.get("max_responses")
    return cap is not None and int(survey.get("response_count") or 0) >= int(cap)


def items(ctx: Context, exclude: Collection[str] = ()) -> list[Option]:
    """Every offer as a menu option, surveys first, then events, polls, HypeCards; ``exclude``: item ids to
    leave out (the survey just completed, the event that is not on sale)."""
    options = [
        Option(f"survey:{s['id']}", str(s.get("title") or ""), str(s.get("description") or ""))
        for s in offers_of(ctx, "survey")
        if not is_full(s)
    ]
    for e in offers_of(ctx, "event"):
        where = " · ".join(x for x in (_when(e.get("starts_at")), str(e.get("venue_name") or "")) if x)
        options.append(Option(f"event:{e['id']}", str(e.get("name") or ""), where))
        if e.get("sessions") or e.get("exhibitors") or e.get("rsvp"):  # its guide: state_machines/agenda.py
            key = "agenda.menu_item" if e.get("sessions") else "agenda.menu_item_info"
            name = t(key, ctx.language, event=e.get("name") or "")
            options.append(Option(f"agenda:{e['id']}", name, where))
    options += [Option(f"poll:{p['id']}", str(p.get("question") or "")) for p in offers_of(ctx, "poll")]
    options += [
        Option(f"card:{c['id']}", _title(c, ctx.language), "HypeCard")
        for c in offers_of(ctx, "card")
        if c.get("in_menu")
    ]
    subscribed = set(ctx.data.get("subscriptions") or ())
    options += [  # a programme with a menu title: subscribe, or leave (state_machines/programme.py)
        Option(
            f"program:{p['id']}",
            str(p["menu_title"]),
            t(
                "programmes.menu_leave" if str(p["id"]) in subscribed else "programmes.menu_join",
                ctx.language,
            ),
        )
        for p in offers_of(ctx, "program")
        if p.get("menu_title")
    ]
    return [o for o in options if o.id not in exclude]


def _title(card: Mapping[str, Any], lang: str) -> str:
    titles = card.get("title") or {}
    return str(titles.get(lang) or titles.get("en") or card.get("name") or "")


def menu_replies(ctx: Context, lead: str = "", exclude: Collection[str] = ()) -> tuple[Reply, ...]:
    """The menu (buttons, list or numbered text), with ``lead`` (e.g. "Sorry, I didn't understand") on top;
    a lead too long for an interactive message's body goes in a message of its own before it."""
    lang = ctx.language
    options = items(ctx, exclude)
    body = t("menu.body_org", lang, org=ctx.org_name) if ctx.org_name else t("menu.body", lang)
    if not options:
        body = t("menu.empty", lang)
    if lead and len(lead) + 2 + len(body) > INTERACTIVE_BODY_MAX:
        return (Text(lead), *menu_replies(ctx, exclude=exclude))
    prefix = f"{lead}\n\n" if lead else ""
    if not options:
        return (Text(prefix + body),)
    return (offer(prefix + body, options, list_button=t("menu.button", lang)),)


def back_to_menu(ctx: Context, lead: str, exclude: Collection[str] = ()) -> Step:
    """The end of a flow with its next step: idle, ``lead`` said on top of the menu."""
    return Step(State(), menu_replies(ctx, lead, exclude))


def then_menu(replies: Sequence[Reply], ctx: Context) -> tuple[Reply, ...]:
    """``replies`` followed by the menu; plain texts become the menu's lead (one message, not two)."""
    if replies and all(isinstance(r, Text) for r in replies):
        return menu_replies(ctx, "\n\n".join(r.body for r in replies if isinstance(r, Text)))
    return (*replies, *menu_replies(ctx))


def choose(event: Inbound, ctx: Context) -> tuple[str, str] | None:
    """The menu item the user picked (tapped, typed number or typed title) as (kind, id)."""
    picked = match(event, items(ctx))
    return parse_item_id(picked.id) if picked else None
