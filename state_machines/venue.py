"""Finding your way at the venue: "where is booth K12?" and "find an exhibitor" by name or category, answered
with the booth's hall and position and the venue's map as an image when it has one.

Typed at the menu ("where is booth K12", "K12 iko wapi", "find solar", "tafuta SunGrid"), or from the event's
agenda home ("Find a booth or exhibitor", then the words). ``FindPlace`` is answered by ``PlacesFound`` with
``places``: [{exhibitor_id, exhibitor, booth, hall, position, category, venue, map}] (a booth without an
exhibitor has exhibitor None), best first (handlers/venue_effects.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from state_machines import agenda
from state_machines.base import MAX_LIST_ROWS, Context, Effect, Image, Inbound, Reply, State, Step, Text
from state_machines.choices import Option, offer
from state_machines.i18n import t

MODULE = "venue"
PREFIX = "vn:"
ASK = "ask"
_BOOTH = r"#?([A-Za-z]{0,3}-?\d{1,4}[A-Za-z]?)"
_CODE = r"#?([A-Za-z]{1,3}-?\d{1,4}[A-Za-z]?)"
_WHERE = [
    re.compile(rf"(?:where\s+is|where's|wheres|find)\s+(?:the\s+)?(?:booth|stand|banda)\s+{_BOOTH}\??", re.I),
    re.compile(rf"(?:booth|stand|banda)\s+{_BOOTH}\s+(?:iko\s+wapi|liko\s+wapi|wapi)\??", re.I),
    re.compile(rf"(?:where\s+is|where's|wapi)\s+{_CODE}\??", re.I),  # without the word booth: a code like K12
    re.compile(rf"{_CODE}\s+(?:iko|liko)\s+wapi\??", re.I),
]
_FIND = re.compile(
    r"(?:find|search|tafuta|where\s+is\s+exhibitor|(?:mwonyeshaji\s+)?iko\s+wapi)\s+(?:exhibitor\s+|mwonyeshaji\s+)?"
    r"(.{2,60}?)\??",
    re.I,
)


@dataclass(frozen=True)
class FindPlace(Effect):
    """Booths and exhibitors matching ``booth`` (a booth number) or ``words`` (a name or a category); of the
    event ``event_id`` or the organisation's current one. ``exhibitor_id``: exactly that exhibitor."""

    booth: str | None = None
    words: str | None = None
    event_id: str | None = None
    exhibitor_id: str | None = None


@dataclass(frozen=True)
class PlacesFound:
    asked: str
    places: tuple[Mapping[str, Any], ...]


def question(event: Inbound) -> FindPlace | None:
    """The place a typed message asks for; None when it asks for none."""
    if event.choice_id is not None:
        return None
    text = event.text.strip()
    for pattern in _WHERE:
        if found := pattern.fullmatch(text):
            return FindPlace(booth=found[1].upper())
    if found := _FIND.fullmatch(text):
        return FindPlace(words=found[1].strip())
    return None


def wants(event: Inbound, ctx: Context) -> bool:
    """A tap of the guide's "Find a booth", or a question about a place when an event on offer has a venue."""
    if event.choice_id is not None:
        return event.choice_id.startswith(PREFIX)
    has_place = agenda.offered(ctx, "venue") or agenda.offered(ctx, "exhibitors")
    return has_place and question(event) is not None


def step(state: State, event: Any, ctx: Context) -> Step:
    if isinstance(event, PlacesFound):
        return Step(State() if state.module == MODULE else state, _answer(event, ctx))
    if not isinstance(event, Inbound):
        return Step(state)
    tap = event.choice_id or ""
    if tap.startswith(f"{PREFIX}ask:"):
        asking = State(MODULE, ASK, {"event_id": tap.removeprefix(f"{PREFIX}ask:"), "failures": 0})
        return Step(asking, (Text(t("venue.ask", ctx.language)),))
    if tap.startswith(f"{PREFIX}x:"):
        return Step(state, (), (FindPlace(exhibitor_id=tap.removeprefix(f"{PREFIX}x:")),))
    if (asked := question(event)) is not None:
        return Step(state, (), (asked,))
    if state.module == MODULE and state.step == ASK:
        words = event.text.strip()
        if not words:
            return Step(state, (Text(t("venue.ask", ctx.language)),))
        booth = re.fullmatch(_BOOTH, words)
        event_id = state.data.get("event_id")
        find = (
            FindPlace(booth=booth[1].upper(), event_id=event_id)
            if booth
            else FindPlace(words=words, event_id=event_id)
        )
        return Step(state, (), (find,))
    return Step(state)


def reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    return (Text(t("venue.ask", ctx.language)),) if state.module == MODULE else ()


def _answer(event: PlacesFound, ctx: Context) -> tuple[Reply, ...]:
    lang, places = ctx.language, event.places
    if not places:
        return (Text(t("venue.not_found", lang, asked=event.asked)),)
    if len(places) > 1:
        options = [
            Option(
                f"{PREFIX}x:{p['exhibitor_id']}",
                str(p["exhibitor"]),
                " · ".join(str(v) for v in (p["booth"], p.get("hall"), p.get("category")) if v),
            )
            for p in places[:MAX_LIST_ROWS]
            if p.get("exhibitor_id")
        ]
        return (
            offer(t("venue.several", lang, asked=event.asked), options, list_button=t("venue.button", lang)),
        )
    return _place(places[0], ctx)


def _place(p: Mapping[str, Any], ctx: Context) -> tuple[Reply, ...]:
    lang = ctx.language
    who = (
        t("venue.booth_of", lang, booth=p["booth"], exhibitor=p["exhibitor"])
        if p.get("exhibitor")
        else t("venue.booth", lang, booth=p["booth"])
    )
    lines = [f"📍 {who}"]
    if p.get("hall"):
        lines.append(t("venue.hall", lang, hall=p["hall"]))
    if p.get("position"):
        lines.append(str(p["position"]))
    if not p.get("hall") and not p.get("position"):
        lines.append(t("venue.no_position", lang, venue=p.get("venue") or "-"))
    text = "\n".join(lines)
    if p.get("map"):
        return (
            Text(text),
            Image(ref=f"link:{p['map']}", caption=t("venue.map", lang, venue=p.get("venue") or "")),
        )
    return (Text(text),)
