"""RSVP: a place at a free event, or at a session with a capacity, without a ticket. When it is full the contact
joins the waiting list; a place that frees (someone cancels, the organiser adds places) goes to the first in
the queue at once, who is told.

Stateless: ``rv:go:<event id>`` (the agenda's home), ``rv:s:<session id>`` (a session's details) and
``rv:cancel:<registration id>`` name what they do. ``Register`` / ``CancelRegistration`` are decided by the
database under a lock on the event's or session's row (handlers/rsvp_effects.py) and answered by
``Registered`` / ``RegistrationCancelled``; the promoted contact hears of it through an ``rsvp_promoted`` timer
in their own conversation whose data names the event or session. An event's ``rsvp.survey`` (a survey of the
content file) asks its registration questions right after a new place or place in the queue: the survey
machine takes over, and its answers are the survey's responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from state_machines import survey
from state_machines.base import (
    Button,
    Buttons,
    Context,
    Effect,
    Inbound,
    Reply,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.i18n import t

MODULE = "rsvp"
PREFIX = "rv:"
PROMOTED_TIMER = "rsvp_promoted"


@dataclass(frozen=True)
class Register(Effect):
    event_id: str | None = None
    session_id: str | None = None


@dataclass(frozen=True)
class Registered:
    outcome: str  # confirmed | waiting | already_confirmed | already_waiting | closed | unknown
    title: str = ""
    registration_id: str = ""
    position: int = 0  # in the waiting list
    survey_id: str | None = None  # registration questions to ask now (the survey machine)


@dataclass(frozen=True)
class CancelRegistration(Effect):
    registration_id: str


@dataclass(frozen=True)
class RegistrationCancelled:
    outcome: str  # cancelled | left_queue | unknown
    title: str = ""


def wants(event: Inbound) -> bool:
    return (event.choice_id or "").startswith(PREFIX)


def step(state: State, event: Any, ctx: Context) -> Step:
    if isinstance(event, Registered):
        said = _registered(event, ctx)
        if event.survey_id:  # registration questions: the survey machine asks them
            asked = survey.start(event.survey_id, State(), ctx)
            return Step(asked.state, (*said, *asked.replies), asked.effects)
        return Step(state, said)
    if isinstance(event, RegistrationCancelled):
        key = {"cancelled": "rsvp.cancelled", "left_queue": "rsvp.left_queue"}.get(
            event.outcome, "rsvp.unknown"
        )
        return Step(state, (Text(t(key, ctx.language, title=event.title)),))
    if isinstance(event, TimerFired) and event.kind == PROMOTED_TIMER:
        return Step(state, _promoted(event.data, ctx))
    if not isinstance(event, Inbound):
        return Step(state)
    what, _, ref = (event.choice_id or "").removeprefix(PREFIX).partition(":")
    if what == "go":
        return Step(state, (), (Register(event_id=ref),))
    if what == "s":
        return Step(state, (), (Register(session_id=ref),))
    if what == "cancel":
        return Step(state, (), (CancelRegistration(ref),))
    return Step(state)


def _cancel_button(registration_id: str, ctx: Context, waiting: bool) -> Button:
    key = "rsvp.button_leave_queue" if waiting else "rsvp.button_cancel"
    return Button(f"{PREFIX}cancel:{registration_id}", t(key, ctx.language))


def _registered(event: Registered, ctx: Context) -> tuple[Reply, ...]:
    lang = ctx.language
    if event.outcome in ("confirmed", "already_confirmed"):
        text = t(f"rsvp.{event.outcome}", lang, title=event.title)
        return (Buttons(text, (_cancel_button(event.registration_id, ctx, False),)),)
    if event.outcome in ("waiting", "already_waiting"):
        text = t(f"rsvp.{event.outcome}", lang, title=event.title, position=event.position)
        return (Buttons(text, (_cancel_button(event.registration_id, ctx, True),)),)
    key = "rsvp.closed" if event.outcome == "closed" else "rsvp.unknown"
    return (Text(t(key, lang, title=event.title)),)


def _promoted(data: Mapping[str, Any], ctx: Context) -> tuple[Reply, ...]:
    text = t("rsvp.promoted", ctx.language, title=data.get("title", ""))
    return (Buttons(text, (_cancel_button(str(data.get("registration_id", "")), ctx, False),)),)
