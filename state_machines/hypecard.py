"""HypeCards in the conversation: ask what the template needs, have the card made, send it.

Offered from the menu (templates with ``menu: true``), after a ticket purchase for the template's event and
after a vote in its poll (``with_offer``: a "Get my HypeCard" button, whose id is the menu item ``card:<id>``).
Then: each variable with a question, in order (a text, a number, or a photo the user sends as an image, which
may be skipped when optional) -> ``RequestCard`` (the engine records the card and queues it to the cards role:
rendering runs outside this transaction) -> ``CardQueued`` -> step ``making`` -> ``CardReady`` (from the cards
role, through the contact's shard): the image with its caption, the share line, the charge. A slow card is
announced and its job queued again once, at the first ``SLOW_TIMER``; after ``hypecard_give_up_seconds`` it is
given up.
A message carrying a card's code (``HC-XXXXXX``, prefilled by the card's QR link) counts a view and a share.

Reads ``ctx.data["offers"]["cards"]``: ``[{id, name, title{en,sw}, event_id, poll_id, in_menu, asked:[{name, type,
required, max_length, ask{en,sw}}]}]`` and ``hypecard_slow_seconds`` / ``hypecard_give_up_seconds``.
State: module "hypecard", step "ask" {template_id, index, values, photo?, failures?} or "making" {template_id,
card_id?}.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from state_machines.base import (
    Button,
    Buttons,
    CancelTimers,
    Charge,
    Context,
    Effect,
    Image,
    Inbound,
    Reply,
    StartTimer,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.choices import normalise
from state_machines.i18n import t
from state_machines.menu import find_offer, menu_replies, offers_of
from state_machines.poll import VoteRecorded
from state_machines.tickets import TicketsIssued

MODULE = "hypecard"
ASK, MAKING = "ask", "making"
SLOW_TIMER = "card_slow"
ID_SKIP, ID_ME = "hypecard:skip", "hypecard:me"
CODE = re.compile(r"\bHC-[A-HJ-NP-Z2-9]{6}\b")  # the referral code a card's QR link prefills
_SKIP_WORDS = {"skip", "ruka", "no photo", "hakuna"}
_ME_WORDS = {"me", "my name", "use my name", "jina langu", "tumia jina langu"}
DEFAULT_SLOW_SECONDS, DEFAULT_GIVE_UP_SECONDS = 20, 600

# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class RequestCard(Effect):
    """Record a card to make from these answers and queue it (after commit); answered by ``CardQueued``, or
    ``CardRefused`` when the template is gone."""

    template_id: str
    values: Mapping[str, str]
    photo_media_id: str | None = None


@dataclass(frozen=True)
class RequeueCard(Effect):
    """Queue the card's job again (after commit) if it is still pending: a lost job is made up for."""

    card_id: str


@dataclass(frozen=True)
class GiveUpCard(Effect):
    """Mark the card failed if it is still pending; answered by ``CardFailed`` when it was."""

    card_id: str


@dataclass(frozen=True)
class MarkCardSent(Effect):
    card_id: str


@dataclass(frozen=True)
class CountReferral(Effect):
    """Someone arrived with a card's code: count a view, and a share the first time this person does."""

    code: str


# ---------------------------------------------------------------- follow-up events


@dataclass(frozen=True)
class CardQueued:
    card_id: str
    template_id: str


@dataclass(frozen=True)
class CardRefused:
    template_id: str


@dataclass(frozen=True)
class CardReady:
    """From the cards role: the card is rendered and stored; ``values`` are its texts (for the caption)."""

    card_id: str
    template_id: str
    values: Mapping[str, str] = field(default_factory=dict)
    caption: Mapping[str, str] = field(default_factory=dict)
    share: Mapping[str, str] = field(default_factory=dict)
    photo_failed: bool = False


@dataclass(frozen=True)
class CardFailed:
    card_id: str
    reason: str = ""


@dataclass(frozen=True)
class ReferralCounted:
    owner_name: str | None  # None: no card has this code
    template_id: str | None


# ---------------------------------------------------------------- offers


def _lang(texts: Mapping[str, str] | None, lang: str) -> str:
    return (texts or {}).get(lang) or (texts or {}).get("en") or ""


def _offer_button(card: Mapping[str, Any], lang: str, body: str) -> Reply:
    return Buttons(body=body, buttons=(Button(f"card:{card['id']}", t("hypecard.button_get", lang)),))


def with_offer(before: State, event: object, result: Step, ctx: Context) -> Step:
    """After a ticket purchase for a template's event or a vote in its poll: offer the card."""
    key: tuple[str, str] | None = None
    if isinstance(event, TicketsIssued) and event.codes:
        key = ("event_id", str(before.data.get("event_id")))
    elif isinstance(event, VoteRecorded):
        key = ("poll_id", event.poll_id)
    card = next((c for c in offers_of(ctx, "card") if key and str(c.get(key[0])) == key[1]), None)
    if card is None or result.state.module is not None:
        return result
    offer = _offer_button(card, ctx.language, t("hypecard.offer", ctx.language))
    return Step(result.state, (*result.replies, offer), result.effects)


def referral_code(text: str) -> str | None:
    found = CODE.search(text.upper())
    return found.group(0) if found else None


def referred(code: str, ctx: Context) -> Step:
    return Step(State(), (), (CountReferral(code),))


# ---------------------------------------------------------------- the flow


def _asked(card: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(card.get("asked") or [])


def _card(state: State, ctx: Context) -> Mapping[str, Any] | None:
    return find_offer(ctx, "card", str(state.data.get("template_id")))


def start(template_id: str, state: State, ctx: Context) -> Step:
    card = find_offer(ctx, "card", template_id)
    if card is None:
        return Step(State(), (Text(t("hypecard.unavailable", ctx.language)),))
    return _next(State(MODULE, ASK, {"template_id": template_id, "index": 0, "values": {}}), card, ctx)


def _next(state: State, card: Mapping[str, Any], ctx: Context) -> Step:
    """Ask the next question, or, all answered, have the card made."""
    d = state.data
    asked = _asked(card)
    if d["index"] < len(asked):
        return Step(state, (_prompt(asked[d["index"]], ctx),))
    request = RequestCard(str(card["id"]), dict(d["values"]), d.get("photo"))
    making = State(MODULE, MAKING, {"template_id": str(card["id"])})
    return Step(making, (Text(t("hypecard.making", ctx.language)),), (request,))


def _prompt(variable: Mapping[str, Any], ctx: Context, error: str = "") -> Reply:
    lang = ctx.language
    question = _lang(variable.get("ask"), lang)
    if variable.get("type") == "image":
        optional = not variable.get("required", True)
        question = question or t("hypecard.ask_image" if optional else "hypecard.ask_image_required", lang)
        body = f"{error}\n\n{question}" if error else question
        if optional:
            return Buttons(body=body, buttons=(Button(ID_SKIP, t("hypecard.button_skip", lang)),))
        return Text(body)
    question = question or t("hypecard.ask_text", lang, name=variable.get("name"))
    body = f"{error}\n\n{question}" if error else question
    if variable.get("name") == "name" and ctx.contact_name:
        return Buttons(body=body, buttons=(Button(ID_ME, t("hypecard.button_me", lang)),))
    return Text(body)


def step(state: State, event: Any, ctx: Context) -> Step:
    match event:
        case CardQueued():
            return _queued(state, event, ctx)
        case CardRefused():
            return _end_if_current(state, event.template_id, t("hypecard.unavailable", ctx.language))
        case CardReady():
            return _ready(state, event, ctx)
        case CardFailed():
            done = state.module == MODULE and state.data.get("card_id") == event.card_id
            effects = (CancelTimers(SLOW_TIMER),) if done else ()
            return Step(State() if done else state, (Text(t("hypecard.failed", ctx.language)),), effects)
        case ReferralCounted():
            return _welcome_referred(event, ctx)
        case TimerFired(kind=kind) if kind == SLOW_TIMER:
            return _slow(state, event, ctx)
        case Inbound() if state.module == MODULE and state.step == ASK:
            card = _card(state, ctx)
            if card is None:
                return Step(State(), (Text(t("hypecard.unavailable", ctx.language)),))
            return _answer(state, card, event, ctx)
        case Inbound() if state.module == MODULE and state.step == MAKING:
            return Step(state, (Text(t("hypecard.busy", ctx.language)),))
    return Step(state)


def reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    card = _card(state, ctx)
    if state.module != MODULE or card is None:
        return ()
    if state.step == MAKING:
        return (Text(t("hypecard.busy", ctx.language)),)
    return (_prompt(_asked(card)[state.data["index"]], ctx),)


def cancel(state: State, ctx: Context) -> Step:
    """CANCEL while asking: no card. A card being made still arrives (it was asked for)."""
    return Step(State(), (Text(t("hypecard.cancelled", ctx.language)),))


def _fail(state: State, variable: Mapping[str, Any], ctx: Context, key: str, **values: Any) -> Step:
    failed = State(MODULE, ASK, {**state.data, "failures": int(state.data.get("failures", 0)) + 1})
    return Step(failed, (_prompt(variable, ctx, t(key, ctx.language, **values)),))


def _answered(state: State, card: Mapping[str, Any], ctx: Context, **changes: Any) -> Step:
    data = {k: v for k, v in state.data.items() if k != "failures"}
    data.update(changes)
    return _next(State(MODULE, ASK, {**data, "index": data["index"] + 1}), card, ctx)


def _answer(state: State, card: Mapping[str, Any], event: Inbound, ctx: Context) -> Step:
    variable = _asked(card)[state.data["index"]]
    said = normalise(event.text)
    if variable.get("type") == "image":
        if event.kind == "image" and event.media_id:
            return _answered(state, card, ctx, photo=event.media_id)
        if not variable.get("required", True) and (event.choice_id == ID_SKIP or said in _SKIP_WORDS):
            return _answered(state, card, ctx)
        return _fail(state, variable, ctx, "hypecard.not_a_photo")
    if event.choice_id == ID_ME or (variable.get("name") == "name" and said in _ME_WORDS):
        if not ctx.contact_name:
            return _fail(state, variable, ctx, "hypecard.no_contact_name")
        text = ctx.contact_name
    else:
        text = event.text
    text = " ".join(text.split())
    limit = int(variable.get("max_length") or 60)
    if event.kind not in ("text", "interactive", "button") or not 1 <= len(text) <= limit:
        return _fail(state, variable, ctx, "hypecard.invalid_text", max=limit)
    if not any(c.isalnum() for c in text):
        return _fail(state, variable, ctx, "hypecard.invalid_text", max=limit)
    if variable.get("type") == "number" and not is_number(text):
        return _fail(state, variable, ctx, "hypecard.invalid_number")
    return _answered(state, card, ctx, values={**state.data["values"], str(variable["name"]): text})


def is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def _timing(ctx: Context) -> tuple[int, int]:
    slow = int(ctx.data.get("hypecard_slow_seconds") or DEFAULT_SLOW_SECONDS)
    give_up = int(ctx.data.get("hypecard_give_up_seconds") or DEFAULT_GIVE_UP_SECONDS)
    return slow, max(1, math.ceil(give_up / slow))


def _queued(state: State, event: CardQueued, ctx: Context) -> Step:
    slow, _ = _timing(ctx)
    timer = StartTimer(SLOW_TIMER, slow, {"card_id": event.card_id, "round": 1})
    if state.module == MODULE and state.step == MAKING and state.data.get("template_id") == event.template_id:
        return Step(State(MODULE, MAKING, {**state.data, "card_id": event.card_id}), (), (timer,))
    return Step(state, (), (timer,))


def _slow(state: State, event: TimerFired, ctx: Context) -> Step:
    """The card is not there yet. The first time: say so, and queue its job again (a job lost between the
    commit and its publish is made up for; only once, since a long queue of cards is no lost job and copies
    would lengthen it). Past the give-up time: give up. The timer names its card, so it stays current whatever
    the conversation did meanwhile (a pending card is still served)."""
    card_id = str(event.data.get("card_id"))
    round_ = int(event.data.get("round", 1))
    slow, rounds = _timing(ctx)
    if round_ >= rounds:
        return Step(state, (), (GiveUpCard(card_id),))
    again = StartTimer(SLOW_TIMER, slow, {"card_id": card_id, "round": round_ + 1})
    if round_ > 1:
        return Step(state, (), (again,))
    waiting = state.module == MODULE and state.step == MAKING and state.data.get("card_id") == card_id
    replies = (Text(t("hypecard.still_making", ctx.language)),) if waiting else ()
    return Step(state, replies, (RequeueCard(card_id), again))


def _end_if_current(state: State, template_id: str, text: str) -> Step:
    current = state.module == MODULE and state.data.get("template_id") == template_id
    return Step(State() if current else state, (Text(text),))


def _fill(template: str, values: Mapping[str, str]) -> str:
    try:
        return template.format_map({k: values.get(k, "") for k in re.findall(r"{(\w+)}", template)})
    except (ValueError, KeyError, IndexError):  # checked at import; a stored text edited by hand stays safe
        return template


def _ready(state: State, event: CardReady, ctx: Context) -> Step:
    lang = ctx.language
    caption = _fill(_lang(event.caption, lang), event.values) or t("hypecard.caption", lang)
    if event.photo_failed:
        caption += "\n" + t("hypecard.photo_failed", lang)
    share = _fill(_lang(event.share, lang), event.values) or t("hypecard.share", lang)
    current = state.module == MODULE and state.data.get("card_id") == event.card_id
    effects: tuple[Effect, ...] = (
        MarkCardSent(event.card_id),
        Charge("hypecard_generated", MODULE, reference_id=event.card_id),
        CancelTimers(SLOW_TIMER),
    )
    replies = (Image(ref=f"card:{event.card_id}", caption=caption[:1024]), Text(share))
    return Step(State() if current else state, replies, effects)


def _welcome_referred(event: ReferralCounted, ctx: Context) -> Step:
    lang = ctx.language
    hello = (
        t("hypecard.referred", lang, owner=event.owner_name)
        if event.owner_name
        else t("hypecard.referred_anonymous", lang)
    )
    replies: list[Reply] = [Text(hello)]
    card = find_offer(ctx, "card", event.template_id or "")
    if card is not None:
        replies.append(_offer_button(card, lang, t("hypecard.offer_own", lang)))
    return Step(State(), (*replies, *menu_replies(ctx)))
