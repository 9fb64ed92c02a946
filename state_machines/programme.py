"""Subscribing to a programme in the conversation: its keywords (typed at the menu, English and Swahili as the
content file gives them) or its menu item (which subscribes, or leaves when the contact is subscribed).
Stateless: ``SetSubscription`` is applied in the same transaction and the conversation stays idle.

Reads ``ctx.data["offers"]["programmes"]``: [{id, name, menu_title, subscribe: [...], unsubscribe: [...]}],
and ``ctx.data["subscriptions"]``: the ids of the programmes the contact is subscribed to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from state_machines import menu
from state_machines.base import Context, Effect, Inbound, State, Step, Text
from state_machines.choices import normalise
from state_machines.i18n import t


@dataclass(frozen=True)
class SetSubscription(Effect):
    program_id: str
    on: bool
    source: str  # keyword | menu


def _programmes(ctx: Context) -> list[Mapping[str, Any]]:
    return list((ctx.data.get("offers") or {}).get("programmes") or [])


def keyword(event: Inbound, ctx: Context) -> tuple[Mapping[str, Any], bool] | None:
    """(programme, subscribe?) for a typed programme keyword; None otherwise."""
    if event.choice_id is not None:
        return None
    said = " ".join(normalise(event.text).split())
    for p in _programmes(ctx):
        if said in (p.get("subscribe") or ()):
            return p, True
        if said in (p.get("unsubscribe") or ()):
            return p, False
    return None


def by_keyword(programme: Mapping[str, Any], on: bool, state: State, ctx: Context) -> Step:
    return Step(state, (_said(programme, on, ctx),), (SetSubscription(str(programme["id"]), on, "keyword"),))


def start(item_id: str, state: State, ctx: Context) -> Step:
    """The menu item: subscribe, or leave when subscribed; then the menu again."""
    programme = menu.find_offer(ctx, "program", item_id)
    if programme is None:
        return menu.back_to_menu(ctx, t("menu.gone", ctx.language))
    on = item_id not in set(ctx.data.get("subscriptions") or ())
    effect = SetSubscription(item_id, on, "menu")
    return Step(State(), menu.then_menu((_said(programme, on, ctx),), ctx), (effect,))


def step(state: State, event: object, ctx: Context) -> Step:
    return Step(State())  # never a current module: every step is answered at once


def _said(programme: Mapping[str, Any], on: bool, ctx: Context) -> Text:
    name = str(programme.get("name") or "")
    join = (programme.get("subscribe") or [None])[0]
    leave = (programme.get("unsubscribe") or [None])[0]
    if on and leave is None:
        return Text(t("programmes.subscribed_menu", ctx.language, name=name))
    if on:
        return Text(t("programmes.subscribed", ctx.language, name=name, leave=leave.upper()))
    return Text(t("programmes.unsubscribed", ctx.language, name=name, join=(join or name).upper()))
