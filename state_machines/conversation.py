"""The top-level router: ``step(state, event, ctx) -> Step`` for every event of a conversation.

Order for a message: opted-out contacts only get "send START"; a pending notice (e.g. a survey closed for
inactivity) is said first; keywords work at any step; staff ticket codes go to check-in; an idle conversation
(or a tapped menu item) goes through the menu, and idle free text the menu cannot use (but not a first
message) to the knowledge module (intent, then the knowledge base); anything else goes to the module the
conversation is in, and after ``MAX_FAILURES`` unusable messages in a row the menu is offered instead. Other
events (timers, the engine's follow-up events) go to the current module; stale timers are ignored. The router
alone sets ``State.version``: +1 whenever a step changed the state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from state_machines import (
    agenda,
    checkin,
    exhibitors,
    handover,
    hypecard,
    knowledge,
    media,
    menu,
    my_tickets,
    poll,
    programme,
    rsvp,
    survey,
    tickets,
    venue,
)
from state_machines.base import (
    Context,
    Inbound,
    OptIn,
    OptOut,
    PaymentResult,
    Reply,
    SetLanguage,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.choices import normalise
from state_machines.i18n import t

MAX_FAILURES = 3


def _leave(state: State, ctx: Context) -> Step:
    return Step(State())


def _nothing(state: State, ctx: Context) -> tuple[Reply, ...]:
    return ()


@dataclass(frozen=True)
class ModuleSteps:
    """What the router calls on a module. Steps return the new state (``State()`` = back at the menu)."""

    step: Callable[[State, Any, Context], Step]  # a message, timer or follow-up event inside the module
    start: Callable[[str, State, Context], Step] | None = None  # a menu item was chosen (id without prefix)
    cancel: Callable[[State, Context], Step] = _leave  # CANCEL: give up the flow, with clean-up effects
    leave: Callable[[State, Context], Step] = _leave  # MENU, a tapped menu item, START, too many failures:
    # leave the flow; progress the module saved (e.g. a survey response) stays resumable. Both may refuse
    # by returning a non-idle state (e.g. a paid order being issued); the module's replies say why.
    reprompt: Callable[[State, Context], tuple[Reply, ...]] = _nothing  # HELP / language: ask again
    # Whether the current step takes a message without words as its answer (a survey's photo question).
    takes_media: Callable[[State, Inbound, Context], bool] = lambda state, event, ctx: False
    # Timer kinds the module checks for staleness itself (e.g. by the hold they name) instead of by version.
    own_timers: frozenset[str] = frozenset()


MODULES: dict[str, ModuleSteps] = {
    "survey": ModuleSteps(
        step=survey.step,
        start=survey.start,
        cancel=survey.cancel,
        reprompt=survey.reprompt,
        takes_media=survey.takes_media,
    ),
    # Leaving a ticket purchase releases its hold: tickets held for someone browsing the menu are lost sales.
    "tickets": ModuleSteps(
        step=tickets.step,
        start=tickets.start,
        cancel=tickets.cancel,
        leave=tickets.cancel,
        reprompt=tickets.reprompt,
        own_timers=frozenset({tickets.PAYMENT_TIMER, tickets.GRACE_TIMER}),
    ),
    "poll": ModuleSteps(step=poll.step, start=poll.start, cancel=poll.cancel, reprompt=poll.reprompt),
    "checkin": ModuleSteps(step=checkin.step),  # stateless: staff codes at any step, see _inbound
    "knowledge": ModuleSteps(step=knowledge.step),  # idle free text; settles within the message's turn
    "my_tickets": ModuleSteps(step=my_tickets.step),  # stateless: a contact's own tickets, see _inbound
    "programme": ModuleSteps(step=programme.step, start=programme.start),  # stateless: subscribe / leave
    "hypecard": ModuleSteps(
        step=hypecard.step,
        start=hypecard.start,
        cancel=hypecard.cancel,
        reprompt=hypecard.reprompt,
        own_timers=frozenset({hypecard.SLOW_TIMER}),
        takes_media=lambda state, event, ctx: state.step == hypecard.ASK,  # the photo, or what it wants
    ),
    "agenda": ModuleSteps(step=agenda.step, start=agenda.start),  # stateless: rows name what they open
    "exhibitors": ModuleSteps(step=exhibitors.step, cancel=exhibitors.cancel, reprompt=exhibitors.reprompt),
    "rsvp": ModuleSteps(step=rsvp.step),  # stateless: the database keeps places and the queue
    "venue": ModuleSteps(step=venue.step, reprompt=venue.reprompt),
    # People have the conversation: the bot is silent (see _route); only the agents' API closes it.
    "handover": ModuleSteps(step=handover.step, cancel=handover.leave, leave=handover.leave),
}
# Follow-up events go to the module that owns them whatever the state (check-in is stateless; a payment
# callback must reach the ticket flow); timers and other events go to the module the conversation is in.
EVENT_OWNERS: dict[type, str] = {
    survey.SurveyResponseReady: "survey",
    survey.SurveyRefused: "survey",
    poll.VoteRecorded: "poll",
    poll.VoteRejected: "poll",
    tickets.TicketsHeld: "tickets",
    tickets.SoldOut: "tickets",
    tickets.PaymentRequested: "tickets",
    tickets.PaymentRequestFailed: "tickets",
    tickets.TicketsIssued: "tickets",
    tickets.PaymentUnconfirmed: "tickets",
    tickets.LatePaymentSettled: "tickets",
    tickets.SalesClosed: "tickets",
    tickets.LimitReached: "tickets",
    PaymentResult: "tickets",
    checkin.CheckInOutcome: "checkin",
    knowledge.IntentClassified: "knowledge",
    knowledge.KnowledgeAnswer: "knowledge",
    my_tickets.MyTickets: "my_tickets",
    hypecard.CardQueued: "hypecard",
    hypecard.CardRefused: "hypecard",
    hypecard.CardReady: "hypecard",
    hypecard.CardFailed: "hypecard",
    hypecard.ReferralCounted: "hypecard",
    agenda.AgendaLoaded: "agenda",
    exhibitors.ExhibitorLoaded: "exhibitors",
    exhibitors.LeadSaved: "exhibitors",
    exhibitors.FollowUpMarked: "exhibitors",
    rsvp.Registered: "rsvp",
    rsvp.RegistrationCancelled: "rsvp",
    venue.PlacesFound: "venue",
}
# Timers that name what they are about (a card) go to their module whatever the conversation does meanwhile.
TIMER_OWNERS: dict[str, str] = {
    hypecard.SLOW_TIMER: "hypecard",
    agenda.REMINDER_TIMER: "agenda",  # a session's reminder and its moves, whatever the conversation does
    agenda.CHANGED_TIMER: "agenda",
    exhibitors.LEAD_TIMER: "exhibitors",  # a new lead, told to the exhibitor's staff
    rsvp.PROMOTED_TIMER: "rsvp",  # a place freed up for someone on the waiting list
}
ITEM_MODULES = {
    "survey": "survey",
    "event": "tickets",
    "poll": "poll",
    "card": "hypecard",
    "agenda": "agenda",
    "program": "programme",
}  # item kind -> module
NOTICES: dict[str, Callable[[Mapping[str, Any], str], str]] = {
    survey.NOTICE_ABANDONED: survey.abandoned_notice,
}


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"
    MENU = "menu"
    CANCEL = "cancel"
    SWAHILI = "sw"
    ENGLISH = "en"


_WORDS = {
    Keyword.STOP: ("stop", "unsubscribe", "acha"),
    Keyword.START: ("start", "subscribe", "anza"),
    Keyword.HELP: ("help", "msaada"),
    Keyword.MENU: ("menu", "hi", "hello", "0", "mwanzo", "menyu"),
    Keyword.CANCEL: ("cancel", "sitisha", "ghairi"),
    Keyword.SWAHILI: ("sw", "swahili", "kiswahili"),
    Keyword.ENGLISH: ("en", "english", "kiingereza"),
}
KEYWORDS: dict[str, Keyword] = {word: kw for kw, words in _WORDS.items() for word in words}
SOFT_KEYWORDS = frozenset({"0"})  # a module that can use "0" as an answer (a number question) gets it
LANGUAGES = {Keyword.SWAHILI: "sw", Keyword.ENGLISH: "en"}


def keyword(event: Inbound) -> Keyword | None:
    """The keyword a typed message is (any case, stray spaces); a tapped choice is never a keyword."""
    return None if event.choice_id is not None else KEYWORDS.get(normalise(event.text))


def step(state: State, event: object, ctx: Context) -> Step:
    result = _route(state, event, ctx)
    new = result.state
    changed = (new.module, new.step, dict(new.data)) != (state.module, state.step, dict(state.data))
    return replace(result, state=replace(new, version=state.version + 1 if changed else state.version))


def _route(state: State, event: object, ctx: Context) -> Step:
    if not isinstance(event, Inbound):
        return _background(state, event, ctx)
    if media.silent(event):  # a reaction, an edit, a deletion: nothing to say, nothing charged
        return Step(state)
    kw = keyword(event)
    if not ctx.opted_in:
        if kw is Keyword.START:
            return _welcome(state, ctx)
        return Step(state, (Text(t("common.unsubscribed", ctx.language)),))
    if state.module == handover.MODULE and kw is not Keyword.STOP:
        return MODULES[handover.MODULE].step(state, event, ctx)  # stored for the agents, not answered
    notice = NOTICES.get(str(state.data.get("notice"))) if state.module is None else None
    if notice is None:
        return _inbound(state, event, kw, ctx)
    result = _inbound(State(), event, kw, ctx)
    return replace(result, replies=(Text(notice(state.data, ctx.language)), *result.replies))


def _background(state: State, event: object, ctx: Context) -> Step:
    """Follow-up events go to their owner; timers to the current module, if current, and silent when the
    contact opted out (a timer must never start a conversation; its effects, e.g. releasing a hold, stay)."""
    owner = EVENT_OWNERS.get(type(event))
    if owner is not None:  # a ticket purchase or a vote may be followed by the offer of a HypeCard
        return hypecard.with_offer(state, event, MODULES[owner].step(state, event, ctx), ctx)
    if isinstance(event, media.VoiceNoteNotTranscribed):
        return media.not_transcribed(state, ctx, _reprompt(state, ctx) if state.module else ())
    if isinstance(event, TimerFired) and event.kind in TIMER_OWNERS:
        result = MODULES[TIMER_OWNERS[event.kind]].step(state, event, ctx)
        return result if ctx.opted_in else replace(result, replies=())
    if state.module is None:
        return Step(state)
    module = MODULES[state.module]
    if (
        isinstance(event, TimerFired)
        and event.version != state.version
        and event.kind not in module.own_timers
    ):
        return Step(state)
    result = module.step(state, event, ctx)
    return result if ctx.opted_in or not isinstance(event, TimerFired) else replace(result, replies=())


def _inbound(state: State, event: Inbound, kw: Keyword | None, ctx: Context) -> Step:
    if kw is not None:
        if normalise(event.text) in SOFT_KEYWORDS and state.module is not None:
            trial = MODULES[state.module].step(state, event, ctx)
            if _failures(trial.state) == 0:  # the module used it (modules reset failures on success)
                return trial
        return _keyword(kw, state, ctx)
    if handover.wants(event):  # AGENT, "talk to a person", "nataka kuongea na mtu"
        return _leave_then(state, ctx, lambda: handover.request(ctx, "keyword", event.text))
    if ctx.is_staff and checkin.looks_like_checkin(event.text):  # staff only: never hijack answers
        return MODULES["checkin"].step(state, event, ctx)
    if agenda.wants(event, ctx) and (event.choice_id is not None or state.module is None):
        return MODULES["agenda"].step(state, event, ctx)  # an agenda row at any step; AGENDA at the menu
    if exhibitors.wants(event, ctx):  # a booth's QR code or an exhibitor's button at any step
        if state.module in (None, exhibitors.MODULE) or not (event.choice_id or "").startswith("ex:lead"):
            return MODULES["exhibitors"].step(state, event, ctx)
        return _leave_then(state, ctx, lambda: MODULES["exhibitors"].step(State(), event, ctx))
    if rsvp.wants(event):
        return MODULES["rsvp"].step(state, event, ctx)
    if venue.wants(event, ctx) and (event.choice_id is not None or state.module in (None, venue.MODULE)):
        return MODULES["venue"].step(state, event, ctx)  # "where is booth K12?", "find solar"
    tapped = menu.parse_item_id(event.choice_id or "")
    # A menu item tapped at any step; one from an old menu too, whose module says why it is not on offer.
    if tapped and menu.find_offer(ctx, *tapped) is not None:
        return _leave_then(state, ctx, lambda: _start_item(*tapped, ctx))
    if tapped:  # an old menu's item that no longer exists
        return _leave_then(state, ctx, lambda: menu.back_to_menu(ctx, t("menu.gone", ctx.language)))
    if (words := media.transcribe(event, state, ctx)) is not None:  # a voice note: its words, if we can
        return words
    if media.needs_words(event) and not (
        state.module and MODULES[state.module].takes_media(state, event, ctx)
    ):
        # a sticker, a photo without a caption: one short line outside a flow, not a failed answer inside one
        if state.module is None:
            return Step(state, media.outside_flow(ctx))
        return Step(state, media.inside_flow(ctx, _reprompt(state, ctx)))
    if state.module is None and (code := hypecard.referral_code(event.text)) is not None:
        return hypecard.referred(code, ctx)  # someone came through a card's QR code or link
    if state.module is None and (code := my_tickets.wants(event)) is not None:
        return my_tickets.ask(code, state)
    if state.module is None and (found := programme.keyword(event, ctx)) is not None:
        return programme.by_keyword(*found, state, ctx)  # a programme's own keyword, typed at the menu
    if state.module is None:
        return _from_menu(state, event, ctx)
    return _in_module(state, event, ctx)


def _from_menu(state: State, event: Inbound, ctx: Context) -> Step:
    first = ctx.is_first_message
    picked = None if first else menu.choose(event, ctx)
    if picked is None and knowledge.can_answer(event) and (not first or knowledge.is_question(event.text)):
        # free text the menu cannot use: a question, or an offer in words; a first message that asks a
        # question is answered too, and the menu offered after the answer
        return knowledge.ask(event, ctx, first=first, misses=handover.knowledge_missed(state))
    if picked is None:
        lead = "" if ctx.is_first_message else t("common.not_understood", ctx.language)
        return Step(State(), menu.menu_replies(ctx, lead))
    return _start_item(*picked, ctx)


def _start_item(kind: str, item_id: str, ctx: Context) -> Step:
    start = MODULES[ITEM_MODULES[kind]].start
    assert start is not None, f"module {ITEM_MODULES[kind]} cannot be started from the menu"
    return start(item_id, State(), ctx)


def _in_module(state: State, event: Inbound, ctx: Context) -> Step:
    assert state.module is not None
    result = MODULES[state.module].step(state, event, ctx)
    if result.state.module is None or _failures(result.state) < MAX_FAILURES:
        return result
    # Progress stays saved by the module (e.g. the survey response); choosing the item again resumes.
    left = _leave_then(
        result.state,
        ctx,
        lambda: Step(State(), menu.menu_replies(ctx, t("common.too_many_failures", ctx.language))),
    )
    return replace(left, effects=(*result.effects, *left.effects)) if left.state.module is None else result


def _leave_then(state: State, ctx: Context, following: Callable[[], Step]) -> Step:
    """Leave the current module (if any), then do ``following``; a module that refuses to leave answers."""
    left = MODULES[state.module].leave(state, ctx) if state.module else Step(State())
    if left.state.module is not None:
        return left
    then = following()
    return Step(then.state, (*left.replies, *then.replies), (*left.effects, *then.effects))


def _failures(state: State) -> int:
    return int(state.data.get("failures", 0))


def _keyword(kw: Keyword, state: State, ctx: Context) -> Step:
    lang = ctx.language
    if kw is Keyword.STOP:
        return Step(state, (Text(t("common.opted_out", lang)),), (OptOut(),))
    if kw is Keyword.START:
        return _welcome(state, ctx)
    if kw is Keyword.HELP:
        return Step(state, (Text(t("common.help", lang)), *_reprompt(state, ctx)))
    if kw is Keyword.MENU or kw is Keyword.CANCEL:
        # MENU leaves the flow, CANCEL gives it up; what the module says goes on top of the menu
        hook = "leave" if kw is Keyword.MENU else "cancel"
        left = getattr(MODULES[state.module], hook)(state, ctx) if state.module else Step(State())
        if left.state.module is not None:  # the module cannot be left now; it said why
            return left
        said = left.replies or ((Text(t("common.cancelled", lang)),) if kw is Keyword.CANCEL else ())
        return Step(left.state, menu.then_menu(said, ctx), left.effects)
    return _switch_language(LANGUAGES[kw], state, ctx)


def _switch_language(language: str, state: State, ctx: Context) -> Step:
    again = _reprompt(state, replace(ctx, language=language))  # the re-prompt speaks the new language
    return Step(state, (Text(t("common.language_set", language)), *again), (SetLanguage(language),))


def _reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    if state.module is None:
        return menu.menu_replies(ctx)
    return MODULES[state.module].reprompt(state, ctx)


def _welcome(state: State, ctx: Context) -> Step:
    hello = Text(t("common.welcome_back", ctx.language))
    result = _leave_then(state, ctx, lambda: Step(State(), menu.menu_replies(ctx)))
    return Step(result.state, (hello, *result.replies), (OptIn(), *result.effects))
