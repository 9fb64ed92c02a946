"""Handover to people: the conversation is handed to the organisation's agents and the bot stays silent.

Asked for by typing AGENT, "talk to a person" or a Swahili equivalent, after the knowledge base failed to answer
twice in a row, or by a module (``request``). While handed over every message is only stored (STOP still
works: the router handles it first); agents answer through the API. If nobody has answered after
``handover_wait_seconds`` the contact is told politely, with the hours of service when the organisation gave
them. An agent's assignment or reply moves the state's version on (the API does it), which makes that timer
stale; closing starts a ``handover_closed`` timer that brings the contact back to the menu, in order with
everything else they sent.

ctx.data read: ``handover_wait_seconds`` (default 600), ``handover_hours`` (text, optional).
"""

from __future__ import annotations

from dataclasses import dataclass

from state_machines import menu
from state_machines.base import Context, Effect, Inbound, StartTimer, State, Step, Text, TimerFired
from state_machines.choices import normalise
from state_machines.i18n import t

MODULE = "handover"
WAITING = "waiting"
UNANSWERED_TIMER = "handover_unanswered"
CLOSED_TIMER = "handover_closed"
DEFAULT_WAIT_SECONDS = 600
KNOWLEDGE_MISSES = 2  # answers the knowledge base could not give in a row, then people take over

PHRASES = frozenset(
    {
        "agent",
        "human",
        "person",
        "operator",
        "talk to a person",
        "talk to someone",
        "talk to a human",
        "talk to an agent",
        "speak to a person",
        "speak to someone",
        "speak to an agent",
        "customer care",
        "wakala",
        "mhudumu",
        "binadamu",
        "ongea na mtu",
        "nataka kuongea na mtu",
        "nataka kuzungumza na mtu",
        "niongee na mtu",
    }
)


@dataclass(frozen=True)
class RequestHandover(Effect):
    """Open a handover for this conversation (one at a time) with why and what the contact said."""

    reason: str  # keyword | knowledge | module
    text: str = ""


def wants(event: Inbound) -> bool:
    """A typed request for a person ("Agent", "talk to a person", "nataka kuongea na mtu")."""
    if event.choice_id is not None:
        return False
    return normalise(event.text).strip(" .!?") in PHRASES


def request(ctx: Context, reason: str, text: str = "") -> Step:
    wait = int(ctx.data.get("handover_wait_seconds") or DEFAULT_WAIT_SECONDS)
    return Step(
        State(MODULE, WAITING),
        (Text(t("handover.requested", ctx.language)),),
        (RequestHandover(reason, text[:500]), StartTimer(UNANSWERED_TIMER, wait)),
    )


def step(state: State, event: object, ctx: Context) -> Step:
    match event:
        case TimerFired(kind=kind) if kind == UNANSWERED_TIMER:
            hours = str(ctx.data.get("handover_hours") or "")
            said = t("handover.hours", ctx.language, hours=hours) if hours else ""
            return Step(state, (Text(t("handover.unanswered", ctx.language, hours=said)),))
        case TimerFired(kind=kind) if kind == CLOSED_TIMER:
            return Step(State(), menu.menu_replies(ctx, t("handover.closed", ctx.language)))
    return Step(state)  # a message while people have the conversation: stored, not answered


def leave(state: State, ctx: Context) -> Step:
    """MENU, a tapped menu item or START do not take the conversation back from people."""
    return Step(state)


def knowledge_missed(state: State) -> int:
    """How many knowledge answers in a row failed before this one (kept in the idle state's data)."""
    return int(state.data.get("kb_misses", 0)) if state.module is None else 0
