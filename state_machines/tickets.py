"""Buying event tickets over WhatsApp, paid with an M-Pesa STK push. Flow and data keys: docs/tickets.md.

choose_type -> quantity -> holder_name -> holder_email -> confirm -> holding -> awaiting_payment -> issuing
-> idle. Stock is decided by the database: ``HoldTickets`` is answered by the follow-up event ``TicketsHeld``
or ``SoldOut``, ``IssueTickets`` by ``TicketsIssued``; the M-Pesa callback arrives as ``PaymentResult``.
Only decimals as strings, ids and names go into ``State.data`` so that it stays JSON-serialisable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from state_machines.base import (
    CancelTimers,
    Charge,
    Context,
    Effect,
    Image,
    Inbound,
    PaymentResult,
    Reply,
    StartTimer,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.choices import Option, match, normalise, offer
from state_machines.formatting import DEFAULT_TIMEZONE, kes, local_time
from state_machines.i18n import LANGUAGES, t, tn
from state_machines.menu import find_offer, menu_replies, then_menu

MODULE = "tickets"
MAX_FAILURES = 3
PAYMENT_TIMER = "payment_expiry"
GRACE_TIMER = "payment_grace"  # M-Pesa could not say at expiry: the hold is kept this much longer
STOP_PAYMENT_TIMERS = (CancelTimers(PAYMENT_TIMER), CancelTimers(GRACE_TIMER))
ACCOUNT_REFERENCE_MAX = 12  # Daraja STK push limits
DESCRIPTION_MAX = 13
KEPT_OLD_CHECKOUTS = 5

CHOOSE_TYPE, QUANTITY, HOLDER_NAME, HOLDER_EMAIL, CONFIRM = (
    "choose_type",
    "quantity",
    "holder_name",
    "holder_email",
    "confirm",
)
HOLDING, AWAITING_PAYMENT, ISSUING, RETRY, FEWER = "holding", "awaiting_payment", "issuing", "retry", "fewer"

ID_CONFIRM, ID_CANCEL, ID_RETRY = "tickets:confirm", "tickets:cancel", "tickets:retry"
ID_SKIP, ID_ME, ID_TAKE = "tickets:skip", "tickets:me", "tickets:take"
TYPE_PREFIX, QTY_PREFIX = "tickets:type:", "tickets:qty:"

_ME_WORDS = {"me", "same", "mimi", "my name", "jina langu", "use my name", "tumia jina langu"}
_SKIP_WORDS = {"skip", "ruka", "none", "hakuna"}
_YES_NO = {
    "yes": ID_CONFIRM,
    "ndiyo": ID_CONFIRM,
    "ok": ID_CONFIRM,
    "sawa": ID_CONFIRM,
    "no": ID_CANCEL,
    "hapana": ID_CANCEL,
}
_EMAIL = re.compile(r"[^@\s]+@(?:[^@\s.]+\.)+[A-Za-z]{2,}")
_NUMBER = re.compile(r"\d{1,6}")

# result_code -> (ReleaseHold reason, text key); codes from the Daraja STK push callback.
_PAYMENT_FAILURES = {
    1: ("insufficient_funds", "tickets.pay_failed_insufficient"),
    1032: ("cancelled_by_user", "tickets.pay_failed_cancelled"),
    1037: ("phone_unreachable", "tickets.pay_failed_unreachable"),
    2001: ("wrong_pin", "tickets.pay_failed_wrong_pin"),
}
_OTHER_FAILURE = ("payment_failed", "tickets.pay_failed_other")

# ---------------------------------------------------------------- effects


@dataclass(frozen=True)
class HoldTickets(Effect):
    """Reserve ``quantity`` tickets for ``hold_seconds``; answered by ``TicketsHeld`` or ``SoldOut``. The
    holder is kept on the hold, for tickets issued after the conversation moved on (a late payment)."""

    ticket_type_id: str
    quantity: int
    hold_seconds: int
    # kept on the hold (not what the hold is: equality leaves them out)
    holder_name: str | None = field(default=None, compare=False)
    holder_email: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ReleaseHold(Effect):
    hold_id: str
    reason: str  # cancelled, expired, insufficient_funds, cancelled_by_user, ..., abandoned


@dataclass(frozen=True)
class RequestPayment(Effect):
    """Send the M-Pesa STK push (after commit); answered by ``PaymentRequested`` / ``PaymentRequestFailed``."""

    hold_id: str
    amount: Decimal
    phone: str
    account_reference: str  # at most 12 characters (Daraja)
    description: str  # at most 13 characters (Daraja)


@dataclass(frozen=True)
class IssueTickets(Effect):
    """Turn the hold into tickets with generated codes; answered by ``TicketsIssued``."""

    hold_id: str
    holder_name: str
    holder_email: str | None
    payment_reference: str | None
    amount: Decimal
    late: bool = False  # paid after the conversation let the hold go: answered by ``LatePaymentSettled``


@dataclass(frozen=True)
class QueryPayment(Effect):
    """Ask M-Pesa (STK Push Query, after commit) about the hold's payment; answered later by a verified
    ``PaymentResult`` or by ``PaymentUnconfirmed``. ``attempt`` 1 at the payment timer, 2 after the grace."""

    hold_id: str
    attempt: int


# ---------------------------------------------------------------- follow-up events from the appliers


@dataclass(frozen=True)
class TicketsHeld:
    hold_id: str
    ticket_type_id: str
    quantity: int
    unit_price: Decimal
    total: Decimal
    expires_at: datetime


@dataclass(frozen=True)
class SoldOut:
    ticket_type_id: str
    remaining: int
    reserved: int = 0  # held for buyers who are paying now: may free up


@dataclass(frozen=True)
class SalesClosed:
    """The hold was refused because the event no longer sells (``reason``: event_cancelled, closed)."""

    ticket_type_id: str
    reason: str


@dataclass(frozen=True)
class LimitReached:
    """A free type's per-contact limit: the contact has (or holds) ``have`` of ``limit``."""

    ticket_type_id: str
    have: int
    limit: int


@dataclass(frozen=True)
class PaymentRequested:
    hold_id: str
    checkout_request_id: str


@dataclass(frozen=True)
class PaymentRequestFailed:
    """Daraja refused the STK push (bad phone number, service down ...)."""

    hold_id: str
    reason: str = ""


@dataclass(frozen=True)
class TicketsIssued:
    hold_id: str
    codes: tuple[str, ...]
    event_name: str


@dataclass(frozen=True)
class PaymentUnconfirmed:
    """M-Pesa had no final answer for the hold's payment (``state`` pending or unreachable)."""

    hold_id: str
    state: str
    attempt: int


@dataclass(frozen=True)
class LatePaymentSettled:
    """A payment confirmed after its hold lapsed: ``issued`` (seats remained; ``codes``), ``refund_due`` (none
    left, or the event closed), or ``already`` (settled before: nothing to say)."""

    hold_id: str
    outcome: str
    codes: tuple[str, ...] = ()
    event_name: str = ""
    type_name: str = ""
    amount: Decimal = Decimal(0)
    receipt: str | None = None
    reason: str = ""  # event_cancelled, closed: the event stopped while the buyer paid


# ---------------------------------------------------------------- formatting


def _price(amount: Decimal, lang: str) -> str:
    return t("tickets.free", lang) if Decimal(amount) == 0 else kes(amount)


def _zone_name(ctx: Context) -> str:
    event = ctx.data.get("event") or {}
    return event.get("timezone") or ctx.data.get("timezone") or DEFAULT_TIMEZONE


def _with_error(error: str, body: str) -> str:
    return f"{error}\n\n{body}" if error else body


# ---------------------------------------------------------------- what is on sale


def _in_window(tt: Mapping[str, Any], now: datetime) -> bool:
    start, end = tt.get("sales_start_at"), tt.get("sales_end_at")
    return tt.get("is_active", True) and (start is None or start <= now) and (end is None or now < end)


def _sold_out(tt: Mapping[str, Any], excluded: Sequence[str]) -> bool:
    remaining = tt.get("remaining")
    return str(tt["id"]) in excluded or (remaining is not None and remaining <= 0)


def _reserved(tt: Mapping[str, Any]) -> bool:
    """Nothing left to take, but some of it only held by buyers paying now: it may free up."""
    remaining = tt.get("remaining")
    return remaining is not None and remaining <= 0 and int(tt.get("held") or 0) > 0


def _sellable(event: Mapping[str, Any], now: datetime, excluded: Sequence[str] = ()) -> list[Mapping]:
    return [tt for tt in event.get("ticket_types", ()) if _in_window(tt, now) and not _sold_out(tt, excluded)]


def _closed_text(event: Mapping[str, Any], ctx: Context, excluded: Sequence[str] = ()) -> str:
    """Why nothing can be bought: sales open later, sold out, or simply not on sale."""
    lang, types = ctx.language, event.get("ticket_types", ())
    upcoming = sorted(
        tt["sales_start_at"]
        for tt in types
        if tt.get("is_active", True)
        and tt.get("sales_start_at") is not None
        and tt["sales_start_at"] > ctx.now
    )
    if upcoming:
        return t(
            "tickets.sales_open_on", lang, event=event["name"], when=local_time(upcoming[0], _zone_name(ctx))
        )
    if any(_in_window(tt, ctx.now) and _reserved(tt) for tt in types):
        return t("tickets.reserved_all", lang, event=event["name"])
    if any(_in_window(tt, ctx.now) and _sold_out(tt, excluded) for tt in types):
        return t("tickets.sold_out_all", lang, event=event["name"])
    return t("tickets.not_on_sale", lang, event=event["name"])


# ---------------------------------------------------------------- state helpers


def _idle(state: State) -> State:
    return State(version=state.version)


def _at(state: State, step_name: str, *, drop: Sequence[str] = (), **changes: Any) -> State:
    """The module at ``step_name``; a new step starts with no failed inputs."""
    data = {k: v for k, v in state.data.items() if k not in drop and k != "failures"}
    data.update(changes)
    return State(MODULE, step_name, data, state.version)


def _buttons(specs: Sequence[tuple[str, str]], lang: str, **values: Any) -> list[Option]:
    return [Option(id_, t(key, lang, **values)) for id_, key in specs]


def _choose(
    event: Inbound, specs: Sequence[tuple[str, str]], aliases: Mapping[str, str] | None = None, **values: Any
) -> str | None:
    """The id of the button meant: tapped, or typed in any language, or a typed alias (yes / no)."""
    for lang in LANGUAGES:
        chosen = match(event, _buttons(specs, lang, **values))
        if chosen is not None:
            return chosen.id
    return (aliases or {}).get(normalise(event.text))


def _typed_number(event: Inbound) -> int | None:
    said = normalise(event.text)
    return int(said) if event.choice_id is None and _NUMBER.fullmatch(said) else None


def _fail(state: State, ctx: Context, key: str, count: int | None = None, **values: Any) -> Step:
    """Re-ask with what was wrong (``count``: a text with plural forms); after MAX_FAILURES failed inputs give
    up and offer the menu."""
    failures = int(state.data.get("failures", 0)) + 1
    if failures >= MAX_FAILURES:
        return _to_menu(state, ctx, t("tickets.too_many_failures", ctx.language))
    retried = State(state.module, state.step, {**state.data, "failures": failures}, state.version)
    error = t(key, ctx.language, **values) if count is None else tn(key, ctx.language, count, **values)
    return Step(retried, (_PROMPTS[state.step](retried, ctx, error),))


def _to_menu(state: State, ctx: Context, lead: str, exclude: Collection[str] = ()) -> Step:
    """The purchase ends here: ``lead`` on top of the menu, the next step."""
    return Step(_idle(state), menu_replies(ctx, lead, exclude))


def _event_item(state: State) -> set[str]:
    return {f"event:{state.data.get('event_id')}"}


# ---------------------------------------------------------------- prompts: (state, ctx, error) -> Reply


def _type_options(types: Sequence[Mapping], lang: str) -> list[Option]:
    return [Option(f"{TYPE_PREFIX}{tt['id']}", tt["name"], _price(tt["price"], lang)) for tt in types]


def _type_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    lang, event = ctx.language, ctx.data.get("event") or {}
    excluded = state.data.get("excluded_types", ())
    types = _sellable(event, ctx.now, excluded)
    lines = [f"• {tt['name']}: {_price(tt['price'], lang)}" for tt in types]
    unavailable = [
        tt for tt in event.get("ticket_types", ()) if _in_window(tt, ctx.now) and _sold_out(tt, excluded)
    ]
    sold = [tt["name"] for tt in unavailable if not _reserved(tt)]
    reserved = [tt["name"] for tt in unavailable if _reserved(tt)]
    if sold:
        lines += ["", t("tickets.sold_out_note", lang, names=", ".join(sold))]
    if reserved:
        lines += ["", t("tickets.reserved_note", lang, names=", ".join(reserved))]
    starts_at = event.get("starts_at")
    body = t(
        "tickets.event_intro",
        lang,
        event=event.get("name", state.data.get("event_name", "")),
        when=local_time(starts_at, _zone_name(ctx)) if starts_at else "-",
        venue=event.get("venue_name") or "-",
        prices="\n".join(lines),
    )
    return offer(_with_error(error, body), _type_options(types, lang), t("tickets.list_button", lang))


def _quantity_options(limit: int) -> list[Option]:
    return [Option(f"{QTY_PREFIX}{n}", str(n)) for n in range(1, min(3, limit) + 1)]


def _quantity_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    d = state.data
    free = Decimal(d["unit_price"]) == 0  # "Regular: free", not "Regular: Free each"
    body = t(
        "tickets.quantity_prompt_free" if free else "tickets.quantity_prompt",
        ctx.language,
        type=d["type_name"],
        price=_price(Decimal(d["unit_price"]), ctx.language),
        max=d["limit"],
    )
    return offer(_with_error(error, body), _quantity_options(d["limit"]))


def _name_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    lang = ctx.language
    if not ctx.contact_name:
        return Text(_with_error(error, t("tickets.name_prompt", lang)))
    body = t("tickets.name_prompt_me", lang, name=ctx.contact_name)
    return offer(_with_error(error, body), _buttons([(ID_ME, "tickets.button_me")], lang))


def _email_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    lang = ctx.language
    body = _with_error(error, t("tickets.email_prompt", lang))
    return offer(body, _buttons([(ID_SKIP, "tickets.button_skip")], lang))


_CONFIRM_BUTTONS = [(ID_CONFIRM, "tickets.button_confirm"), (ID_CANCEL, "tickets.button_cancel")]
_RETRY_BUTTONS = [(ID_RETRY, "tickets.button_retry"), (ID_CANCEL, "tickets.button_cancel")]
_FEWER_BUTTONS = [(ID_TAKE, "tickets.button_buy"), (ID_CANCEL, "tickets.button_cancel")]
_CANCEL_BUTTON = [(ID_CANCEL, "tickets.button_cancel")]


def _confirm_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    d, lang = state.data, ctx.language
    body = t(
        "tickets.confirm_prompt_no_email"
        if ctx.data.get("email_tickets") is False
        else "tickets.confirm_prompt",
        lang,
        event=d["event_name"],
        quantity=d["quantity"],
        type=d["type_name"],
        name=d["holder_name"],
        email=d.get("holder_email") or t("tickets.no_email", lang),
        total=_price(Decimal(d["unit_price"]) * d["quantity"], lang),
    )
    return offer(_with_error(error, body), _buttons(_CONFIRM_BUTTONS, lang))


def _wait_prompt(key: str) -> Callable[[State, Context, str], Reply]:
    def prompt(state: State, ctx: Context, error: str = "") -> Reply:
        return Text(t(key, ctx.language))

    return prompt


def _waiting_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    body = t("tickets.still_waiting", ctx.language, amount=kes(Decimal(state.data["total"])))
    return offer(body, _buttons(_CANCEL_BUTTON, ctx.language))


def _retry_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    d, lang = state.data, ctx.language
    why = t(d["payment_error"], lang, amount=kes(Decimal(d["total"])))
    body = _with_error(error, f"{why} {t('tickets.retry_question', lang)}")
    return offer(body, _buttons(_RETRY_BUTTONS, lang))


def _fewer_prompt(state: State, ctx: Context, error: str = "") -> Reply:
    d, lang = state.data, ctx.language
    n = d["available"]
    body = tn(
        "tickets.sold_out_partial",
        lang,
        n,
        type=d["type_name"],
        total=_price(Decimal(d["unit_price"]) * n, lang),
    )
    return offer(_with_error(error, body), _buttons(_FEWER_BUTTONS, lang, n=n))


_PROMPTS: dict[str, Callable[..., Reply]] = {
    CHOOSE_TYPE: _type_prompt,
    QUANTITY: _quantity_prompt,
    HOLDER_NAME: _name_prompt,
    HOLDER_EMAIL: _email_prompt,
    CONFIRM: _confirm_prompt,
    HOLDING: _wait_prompt("tickets.holding_wait"),
    AWAITING_PAYMENT: _waiting_prompt,
    ISSUING: _wait_prompt("tickets.issuing_wait"),
    RETRY: _retry_prompt,
    FEWER: _fewer_prompt,
}

# ---------------------------------------------------------------- the router's entry points


def start(event_id: str, state: State, ctx: Context) -> Step:
    """Show the event and its ticket types on sale; needs ``ctx.data["event"]`` loaded for ``event_id``."""
    lang, event = ctx.language, ctx.data.get("event")
    if not event or str(event.get("id")) != str(event_id):
        event = find_offer(ctx, "event", event_id)  # chosen from the menu: the offer carries its ticket types
    gone = {f"event:{event_id}"}  # said on top of the menu, which leaves this event out
    if not event or str(event.get("id")) != str(event_id):
        return _to_menu(state, ctx, t("tickets.event_unavailable", lang), exclude=gone)
    if event.get("status", "published") != "published" or not _sellable(event, ctx.now):
        closed = (
            t("tickets.not_on_sale", lang, event=event["name"])
            if event.get("status", "published") != "published"
            else _closed_text(event, ctx)
        )
        return _to_menu(state, ctx, closed, exclude=gone)
    fresh = State(
        MODULE, CHOOSE_TYPE, {"event_id": str(event_id), "event_name": event["name"]}, state.version
    )
    # Chosen from the menu the engine loaded only the offer: the prompt shows that event.
    return Step(fresh, (_type_prompt(fresh, replace(ctx, data={**ctx.data, "event": event})),))


def step(state: State, event: Any, ctx: Context) -> Step:
    follow_up = _EVENTS.get(type(event))
    if follow_up is not None:
        return follow_up(state, event, ctx)
    if isinstance(event, Inbound) and state.module == MODULE and state.step in _INBOUND:
        return _INBOUND[state.step](state, event, ctx)
    return Step(state)


def cancel(state: State, ctx: Context) -> Step:
    """Leave the flow, releasing a hold that waits for payment. A paid order is never abandoned."""
    lang, d = ctx.language, state.data
    if state.module == MODULE and state.step == ISSUING:
        return Step(state, (Text(t("tickets.issuing_wait", lang)),))
    effects: tuple[Effect, ...] = ()
    if state.module == MODULE and state.step == AWAITING_PAYMENT and d.get("hold_id"):
        effects = (ReleaseHold(d["hold_id"], "cancelled"), *STOP_PAYMENT_TIMERS)
    return Step(_idle(state), (Text(t("tickets.cancelled", lang)),), effects)


def _give_up(state: State, ctx: Context) -> Step:
    """The contact cancelled inside the flow (the Cancel button): cancelled, and the menu as the next step."""
    left = cancel(state, ctx)
    return Step(left.state, then_menu(left.replies, ctx), left.effects) if left.state.module is None else left


def reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    prompt = _PROMPTS.get(state.step) if state.module == MODULE else None
    return (prompt(state, ctx),) if prompt else ()


# ---------------------------------------------------------------- user input, by step


def _on_type(state: State, event: Inbound, ctx: Context) -> Step:
    catalogue = ctx.data.get("event") or {}
    types = _sellable(catalogue, ctx.now, state.data.get("excluded_types", ()))
    if not types:
        closed = _closed_text(catalogue, ctx, state.data.get("excluded_types", ()))
        return _to_menu(state, ctx, closed, exclude=_event_item(state))
    chosen = match(event, _type_options(types, ctx.language))
    if chosen is None:
        return _fail(state, ctx, "tickets.invalid_type")
    tt = next(tt for tt in types if f"{TYPE_PREFIX}{tt['id']}" == chosen.id)
    per_order, remaining = int(tt.get("max_per_order") or 10), tt.get("remaining")
    limit = per_order if remaining is None else min(per_order, remaining)
    chosen_state = _at(
        state,
        QUANTITY,
        type_id=str(tt["id"]),
        type_name=tt["name"],
        unit_price=str(tt["price"]),
        max_per_order=per_order,
        remaining=remaining,
        limit=limit,
    )
    if limit == 1:  # nothing to ask
        return _to_name(chosen_state, 1, ctx)
    return Step(chosen_state, (_quantity_prompt(chosen_state, ctx),))


def _on_quantity(state: State, event: Inbound, ctx: Context) -> Step:
    d = state.data
    chosen = match(event, _quantity_options(d["limit"])) if event.choice_id else None
    n = int(chosen.id.removeprefix(QTY_PREFIX)) if chosen else _typed_number(event)
    if n is None or n < 1:
        return _fail(state, ctx, "tickets.quantity_not_number", max=d["limit"])
    if n > d["limit"]:
        by_stock = d["remaining"] is not None and d["remaining"] < d["max_per_order"]
        key = "tickets.quantity_over_remaining" if by_stock else "tickets.quantity_over_max"
        return _fail(state, ctx, key, count=d["limit"])
    return _to_name(state, n, ctx)


def _to_name(state: State, quantity: int, ctx: Context) -> Step:
    named = _at(state, HOLDER_NAME, quantity=quantity)
    return Step(named, (_name_prompt(named, ctx),))


def _on_name(state: State, event: Inbound, ctx: Context) -> Step:
    if event.choice_id == ID_ME or normalise(event.text) in _ME_WORDS:
        if not ctx.contact_name:
            return _fail(state, ctx, "tickets.no_contact_name")
        name = " ".join(ctx.contact_name.split())
    else:
        name = " ".join(event.text.split())
    if not 2 <= len(name) <= 100 or not any(c.isalpha() for c in name):
        return _fail(state, ctx, "tickets.invalid_name")
    if ctx.data.get("email_tickets") is False:  # nothing would send it: do not ask (ctx key: docs/tickets.md)
        confirming = _at(state, CONFIRM, holder_name=name, holder_email=None)
        return Step(confirming, (_confirm_prompt(confirming, ctx),))
    emailing = _at(state, HOLDER_EMAIL, holder_name=name)
    return Step(emailing, (_email_prompt(emailing, ctx),))


def _on_email(state: State, event: Inbound, ctx: Context) -> Step:
    typed = event.text.strip()
    email: str | None = typed
    if event.choice_id == ID_SKIP or normalise(event.text) in _SKIP_WORDS:
        email = None
    elif not (_EMAIL.fullmatch(typed) and len(typed) <= 254):
        return _fail(state, ctx, "tickets.invalid_email")
    confirming = _at(state, CONFIRM, holder_email=email)
    return Step(confirming, (_confirm_prompt(confirming, ctx),))


def _on_confirm(state: State, event: Inbound, ctx: Context) -> Step:
    chosen = _choose(event, _CONFIRM_BUTTONS, _YES_NO)
    if chosen == ID_CONFIRM:
        return _hold(state, ctx, state.data["quantity"])
    if chosen == ID_CANCEL:
        return _give_up(state, ctx)
    return _fail(state, ctx, "tickets.invalid_confirm")


def _hold(state: State, ctx: Context, quantity: int) -> Step:
    holding = _at(state, HOLDING, quantity=quantity, drop=("available", "payment_error"))
    d = state.data
    hold = HoldTickets(
        d["type_id"],
        quantity,
        int(ctx.data.get("hold_seconds", 600)),
        d.get("holder_name"),
        d.get("holder_email"),
    )
    return Step(holding, (), (hold,))


def _on_awaiting(state: State, event: Inbound, ctx: Context) -> Step:
    # Only a tap or the exact word cancels here: a stray "1" must not drop a payment in progress.
    titles = {normalise(t("tickets.button_cancel", lang)) for lang in LANGUAGES}
    if event.choice_id == ID_CANCEL or normalise(event.text) in titles:
        return _give_up(state, ctx)
    return Step(state, (_waiting_prompt(state, ctx),))


def _on_busy(state: State, event: Inbound, ctx: Context) -> Step:
    return Step(state, (_PROMPTS[state.step](state, ctx),))


def _on_retry(state: State, event: Inbound, ctx: Context) -> Step:
    chosen = _choose(
        event, _RETRY_BUTTONS, {"yes": ID_RETRY, "ndiyo": ID_RETRY, "no": ID_CANCEL, "hapana": ID_CANCEL}
    )
    if chosen == ID_RETRY:
        return _hold(state, ctx, state.data["quantity"])
    if chosen == ID_CANCEL:
        return _give_up(state, ctx)
    return _fail(state, ctx, "tickets.invalid_retry")


def _on_fewer(state: State, event: Inbound, ctx: Context) -> Step:
    available = state.data["available"]
    typed = _typed_number(event)  # a typed "1" means one ticket here, not the first button
    if typed is not None:
        if 1 <= typed <= available:
            return _hold(state, ctx, typed)
        return _fail(state, ctx, "tickets.invalid_partial", available=available)
    chosen = _choose(event, _FEWER_BUTTONS, {"yes": ID_TAKE, "ndiyo": ID_TAKE}, n=available)
    if chosen == ID_TAKE:
        return _hold(state, ctx, available)
    if chosen == ID_CANCEL:
        return _give_up(state, ctx)
    return _fail(state, ctx, "tickets.invalid_partial", available=available)


_INBOUND: dict[str, Callable[[State, Inbound, Context], Step]] = {
    CHOOSE_TYPE: _on_type,
    QUANTITY: _on_quantity,
    HOLDER_NAME: _on_name,
    HOLDER_EMAIL: _on_email,
    CONFIRM: _on_confirm,
    AWAITING_PAYMENT: _on_awaiting,
    HOLDING: _on_busy,
    ISSUING: _on_busy,
    RETRY: _on_retry,
    FEWER: _on_fewer,
}

# ---------------------------------------------------------------- follow-up events, payment and timer


def _on_held(state: State, event: TicketsHeld, ctx: Context) -> Step:
    if state.module != MODULE or state.step != HOLDING:  # the user left meanwhile: give the stock back
        return Step(state, (), (ReleaseHold(event.hold_id, "abandoned"),))
    d = state.data
    if event.total == 0:
        issuing = _at(state, ISSUING, hold_id=event.hold_id, quantity=event.quantity, total=str(event.total))
        return Step(
            issuing,
            (),
            (IssueTickets(event.hold_id, d["holder_name"], d.get("holder_email"), None, event.total),),
        )
    paying = _at(
        state,
        AWAITING_PAYMENT,
        hold_id=event.hold_id,
        quantity=event.quantity,
        total=str(event.total),
        drop=("checkout_request_id",),
    )
    pay = RequestPayment(
        event.hold_id,
        event.total,
        ctx.contact_phone,
        _account_reference(d["event_name"]),
        f"Tickets x{event.quantity}"[:DESCRIPTION_MAX],
    )
    # The timer names its hold: that, not the state version, tells whether it is still current (see docs).
    timer = StartTimer(
        PAYMENT_TIMER, int(ctx.data.get("payment_timeout_seconds", 180)), {"hold_id": event.hold_id}
    )
    body = t("tickets.pay_prompt", ctx.language, amount=kes(event.total))
    return Step(paying, (offer(body, _buttons(_CANCEL_BUTTON, ctx.language)),), (pay, timer))


def _account_reference(event_name: str) -> str:
    letters = re.sub(r"[^A-Za-z0-9]", "", event_name).upper()
    return letters[:ACCOUNT_REFERENCE_MAX] or "TICKETS"


def _on_sold_out(state: State, event: SoldOut, ctx: Context) -> Step:
    if state.module != MODULE or state.step != HOLDING:
        return Step(state)
    d, lang = state.data, ctx.language
    if event.remaining > 0:
        fewer = _at(state, FEWER, available=event.remaining)
        return Step(fewer, (_fewer_prompt(fewer, ctx),))
    excluded = [*d.get("excluded_types", ()), event.ticket_type_id]
    why = "tickets.reserved_type" if event.reserved > 0 else "tickets.sold_out_type"
    if not _sellable(ctx.data.get("event") or {}, ctx.now, excluded):
        final = "tickets.reserved_type_final" if event.reserved > 0 else "tickets.sold_out_type_final"
        return _to_menu(state, ctx, t(final, lang, type=d["type_name"]), _event_item(state))
    choosing = _at(state, CHOOSE_TYPE, excluded_types=excluded)
    return Step(choosing, (_type_prompt(choosing, ctx, t(why, lang, type=d["type_name"])),))


def _on_sales_closed(state: State, event: SalesClosed, ctx: Context) -> Step:
    if state.module != MODULE or state.step != HOLDING:
        return Step(state)
    key = "tickets.event_cancelled" if event.reason == "event_cancelled" else "tickets.not_on_sale"
    return _to_menu(state, ctx, t(key, ctx.language, event=state.data["event_name"]), _event_item(state))


def _on_limit(state: State, event: LimitReached, ctx: Context) -> Step:
    if state.module != MODULE or state.step != HOLDING:
        return Step(state)
    d, lang = state.data, ctx.language
    text = tn(
        "tickets.limit_reached", lang, event.limit, type=d["type_name"], have=event.have, limit=event.limit
    )
    return _to_menu(state, ctx, text, _event_item(state))


def _is_current_hold(state: State, hold_id: str) -> bool:
    return state.module == MODULE and state.step == AWAITING_PAYMENT and state.data.get("hold_id") == hold_id


def _on_payment_requested(state: State, event: PaymentRequested, ctx: Context) -> Step:
    if _is_current_hold(state, event.hold_id):
        return Step(_at(state, AWAITING_PAYMENT, checkout_request_id=event.checkout_request_id))
    return Step(state)


def _on_payment_request_failed(state: State, event: PaymentRequestFailed, ctx: Context) -> Step:
    if _is_current_hold(state, event.hold_id):
        return _payment_failed(state, ctx, "payment_request_failed", "tickets.pay_request_failed", True)
    return Step(state)


def _is_current_checkout(state: State, event: PaymentResult) -> bool:
    d = state.data
    if state.module != MODULE or state.step != AWAITING_PAYMENT or not d.get("hold_id"):
        return False
    if event.hold_id is not None:  # a verified result names its hold
        return bool(event.hold_id == d["hold_id"])
    if d.get("checkout_request_id") is not None:
        return event.checkout_request_id == d["checkout_request_id"]
    # The callback beat PaymentRequested: take it unless it belongs to an earlier attempt or another amount.
    return event.checkout_request_id not in d.get("old_checkouts", ()) and (
        event.amount is None or event.amount == Decimal(d["total"])
    )


def _on_payment_result(state: State, event: PaymentResult, ctx: Context) -> Step:
    if not _is_current_checkout(state, event):
        if event.result_code == 0 and event.hold_id is not None and event.amount is not None:
            # confirmed by M-Pesa after the hold was let go: seats if any remain, else a refund due
            late = IssueTickets(event.hold_id, "", None, event.receipt, event.amount, late=True)
            return Step(state, (), (late,))
        return Step(state)
    if event.result_code != 0:
        reason, key = _PAYMENT_FAILURES.get(event.result_code, _OTHER_FAILURE)
        return _payment_failed(state, ctx, reason, key, True)
    d = state.data
    paid = event.amount if event.amount is not None else Decimal(d["total"])
    issue = IssueTickets(d["hold_id"], d["holder_name"], d.get("holder_email"), event.receipt, paid)
    return Step(_at(state, ISSUING, receipt=event.receipt, paid=True), (), (issue, *STOP_PAYMENT_TIMERS))


def _payment_failed(state: State, ctx: Context, reason: str, key: str, cancel_timer: bool) -> Step:
    """Release the hold and offer to try again with the same selection."""
    d = state.data
    old = [*d.get("old_checkouts", ()), *([d["checkout_request_id"]] if d.get("checkout_request_id") else [])]
    retrying = _at(
        state,
        RETRY,
        payment_error=key,
        old_checkouts=old[-KEPT_OLD_CHECKOUTS:],
        drop=("hold_id", "checkout_request_id"),
    )
    effects: tuple[Effect, ...] = (ReleaseHold(d["hold_id"], reason),)
    if cancel_timer:
        effects += STOP_PAYMENT_TIMERS
    return Step(retrying, (_retry_prompt(retrying, ctx),), effects)


def _on_timer(state: State, event: TimerFired, ctx: Context) -> Step:
    """The payment timer asks M-Pesa before anything is released (``QueryPayment``); so does the grace."""
    if event.kind not in (PAYMENT_TIMER, GRACE_TIMER):
        return Step(state)
    if state.module != MODULE or state.step != AWAITING_PAYMENT:
        return Step(state)
    hold_id = event.data.get("hold_id")
    current = hold_id == state.data.get("hold_id") if hold_id is not None else event.version == state.version
    if not current:
        return Step(state)
    hold = state.data["hold_id"]
    attempt = 1 if event.kind == PAYMENT_TIMER else int(event.data.get("attempt") or 2)
    if attempt > 2:  # the last answer never came (a worker lost it): let go, the reconciler goes on asking
        return _unconfirmed(state, ctx, hold)
    # the grace timer is started with the question, so that a question lost in a crash still ends the wait
    grace = StartTimer(
        GRACE_TIMER,
        int(ctx.data.get("payment_grace_seconds", 120)),
        {"hold_id": hold, "attempt": attempt + 1},
    )
    return Step(_at(state, AWAITING_PAYMENT, checking=attempt), (), (QueryPayment(hold, attempt), grace))


def _on_unconfirmed(state: State, event: PaymentUnconfirmed, ctx: Context) -> Step:
    """M-Pesa could not say: first the hold is kept a little longer; then released, and the reconciler goes
    on asking (a late success issues tickets if seats remain, else a refund is recorded)."""
    if not _is_current_hold(state, event.hold_id):
        return Step(state)
    if event.attempt < 2:
        return Step(state, (Text(t("tickets.pay_checking", ctx.language)),))
    return _unconfirmed(state, ctx, event.hold_id)


def _unconfirmed(state: State, ctx: Context, hold_id: str) -> Step:
    lead = t("tickets.pay_unconfirmed", ctx.language, amount=kes(Decimal(state.data["total"])))
    left = _to_menu(state, ctx, lead, _event_item(state))
    return Step(left.state, left.replies, (ReleaseHold(hold_id, "unconfirmed"), CancelTimers(GRACE_TIMER)))


def _on_late(state: State, event: LatePaymentSettled, ctx: Context) -> Step:
    """What became of a payment confirmed after its hold lapsed, told to the buyer."""
    lang = ctx.language
    mine = state.module == MODULE and (state.data.get("hold_id") == event.hold_id or state.step == RETRY)
    after = _idle(state) if mine else state
    if event.outcome == "issued":
        images = tuple(
            Image(
                ref=f"qr:{code}",
                caption=t(
                    "tickets.ticket_caption",
                    lang,
                    event=event.event_name,
                    type=event.type_name,
                    holder=ctx.contact_name or "-",
                    n=n,
                    count=len(event.codes),
                    code=code,
                ),
            )
            for n, code in enumerate(event.codes, 1)
        )
        summary = t(
            "tickets.late_issued", lang, event=event.event_name, count=len(event.codes), type=event.type_name
        )
        charge = Charge("ticket_issued", "events", reference_id=event.hold_id, quantity=len(event.codes))
        return Step(after, (*images, Text(summary)), (charge,))
    if event.outcome == "refund_due":
        key = "tickets.cancelled_refund" if event.reason == "event_cancelled" else "tickets.late_refund"
        return Step(after, (Text(t(key, lang, event=event.event_name, amount=kes(event.amount))),))
    if event.outcome == "closed":  # a free ticket for an event that stopped meanwhile
        key = "tickets.event_cancelled" if event.reason == "event_cancelled" else "tickets.not_on_sale"
        return Step(after, (Text(t(key, lang, event=event.event_name)),))
    return Step(state)


def _on_issued(state: State, event: TicketsIssued, ctx: Context) -> Step:
    d, lang = state.data, ctx.language
    if state.module != MODULE or d.get("hold_id") != event.hold_id:
        return Step(state)
    count = len(event.codes)
    images = tuple(
        Image(
            ref=f"qr:{code}",
            caption=t(
                "tickets.ticket_caption",
                lang,
                event=event.event_name,
                type=d["type_name"],
                holder=d["holder_name"],
                n=n,
                count=count,
                code=code,
            ),
        )
        for n, code in enumerate(event.codes, 1)
    )
    values = {"event": event.event_name, "count": count, "type": d["type_name"], "receipt": d.get("receipt")}
    key = "tickets.issued_free"
    if d.get("receipt"):
        key = "tickets.issued_paid"
    elif d.get("paid"):  # confirmed by M-Pesa's query, whose answer has no receipt number
        key = "tickets.issued_paid_no_receipt"
    summary = t(key, lang, **values)
    charge = Charge("ticket_issued", "events", reference_id=event.hold_id, quantity=count)
    return Step(_idle(state), (*images, Text(summary)), (charge,))


_EVENTS: dict[type, Callable[[State, Any, Context], Step]] = {
    TicketsHeld: _on_held,
    SoldOut: _on_sold_out,
    PaymentRequested: _on_payment_requested,
    PaymentRequestFailed: _on_payment_request_failed,
    PaymentResult: _on_payment_result,
    TimerFired: _on_timer,
    TicketsIssued: _on_issued,
    PaymentUnconfirmed: _on_unconfirmed,
    SalesClosed: _on_sales_closed,
    LimitReached: _on_limit,
    LatePaymentSettled: _on_late,
}
