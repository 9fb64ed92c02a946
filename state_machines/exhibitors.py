"""Exhibitors and their leads: a visitor scans a booth's QR code (a wa.me link with "BOOTH K12" prefilled), is
greeted with the exhibitor's short profile, browses its catalogue (a list, each product with its image), gets
its brochure (a document) and asks to be contacted: after agreeing explicitly to share their name and number,
an interest level 1–5 and a note make a lead. The exhibitor's staff get it on WhatsApp at once and mark it
followed up by tapping the button under it.

Browsing is stateless (rows and buttons name the exhibitor or product: ``ex:<what>:<id>``); asking to be
contacted is a short flow (consent → interest → note). Screens are loaded first: ``LoadExhibitor`` is
answered by ``ExhibitorLoaded`` with ``exhibitor`` {id, name, booth, hall, position, category, description,
brochure, event_name, products: [{id, name, description, price, currency, image}]} (None: no such booth), or
``exhibitors`` (an event's list). The staff's notice is a ``lead_notice`` timer in each staffer's conversation
whose data carries the lead (handlers/exhibitor_effects.py); the staffer's tap ``ld:done:<lead id>`` is
``MarkFollowedUp``, answered by ``FollowUpMarked``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from state_machines import agenda
from state_machines.base import (
    LIST_ROW_DESCRIPTION_MAX,
    LIST_ROW_TITLE_MAX,
    MAX_LIST_ROWS,
    Button,
    Buttons,
    Context,
    Document,
    Effect,
    Image,
    Inbound,
    ListMenu,
    Reply,
    Row,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.choices import Option, normalise, offer
from state_machines.formatting import kes
from state_machines.i18n import t

MODULE = "exhibitors"
PREFIX = "ex:"
STAFF_PREFIX = "ld:"
LEAD_TIMER = "lead_notice"
CONSENT, INTEREST, NOTE = "consent", "interest", "note"
MAX_FAILURES = 3
NOTE_MAX = 500
_SCAN = re.compile(r"\s*(?:booth|banda|stand)\s*#?\s*([A-Za-z0-9][A-Za-z0-9-]{0,49})\s*", re.IGNORECASE)
_YES = {"yes", "y", "ndio", "ndiyo", "sawa", "ok", "agree", "nakubali"}
_NO = {"no", "n", "hapana", "la"}
_SKIP = {"skip", "ruka", "no", "hapana", "none", "hakuna", "-"}


@dataclass(frozen=True)
class LoadExhibitor(Effect):
    """``then`` says what to show: greet | cat | bro | p:<product id> | lead[:<product id>] | list; ``ref`` is a
    booth code (``booth`` True), an exhibitor's id, a product's id (``then`` p:...) or an event's id (list)."""

    ref: str
    then: str
    booth: bool = False


@dataclass(frozen=True)
class ExhibitorLoaded:
    then: str
    exhibitor: Mapping[str, Any] | None
    exhibitors: tuple[Mapping[str, Any], ...] = ()
    ref: str = ""


@dataclass(frozen=True)
class SaveLead(Effect):
    """A lead with the consent the visitor gave (the words they agreed to); staff are told at once."""

    exhibitor_id: str
    product_id: str | None
    interest: int
    note: str | None
    consent_text: str


@dataclass(frozen=True)
class LeadSaved:
    exhibitor_name: str
    staff_told: int


@dataclass(frozen=True)
class MarkFollowedUp(Effect):
    lead_id: str


@dataclass(frozen=True)
class FollowUpMarked:
    outcome: str  # done | already | not_staff | unknown
    visitor: str = ""
    exhibitor_name: str = ""


# ---------------------------------------------------------------- entry


def booth_code(event: Inbound) -> str | None:
    """The booth a scanned QR code's prefilled text names ("BOOTH K12"), upper case; None otherwise."""
    found = _SCAN.fullmatch(event.text) if event.choice_id is None else None
    return found[1].upper() if found else None


def wants(event: Inbound, ctx: Context) -> bool:
    """A booth scan (at any step: it is what the QR code sends) when an event on offer has exhibitors, or a tap
    on an exhibitor's or a lead's button."""
    if event.choice_id is not None:
        return event.choice_id.startswith((PREFIX, STAFF_PREFIX))
    return booth_code(event) is not None and agenda.offered(ctx, "exhibitors")


def step(state: State, event: Any, ctx: Context) -> Step:
    if isinstance(event, TimerFired):
        return Step(state, _lead_notice(event.data, ctx) if event.kind == LEAD_TIMER else ())
    if isinstance(event, ExhibitorLoaded):
        return _loaded(state, event, ctx)
    if isinstance(event, LeadSaved):
        key = "exhibitors.lead_saved" if event.staff_told else "exhibitors.lead_saved_later"
        return Step(State(), (Text(t(key, ctx.language, exhibitor=event.exhibitor_name)),))
    if isinstance(event, FollowUpMarked):
        return Step(state, (Text(_follow_up_text(event, ctx)),))
    if not isinstance(event, Inbound):
        return Step(state)
    if (code := booth_code(event)) is not None:
        return Step(_left(state), (), (LoadExhibitor(code, "greet", booth=True),))
    tap = event.choice_id or ""
    if tap.startswith(STAFF_PREFIX):
        return Step(state, (), (MarkFollowedUp(tap.removeprefix(f"{STAFF_PREFIX}done:")),))
    if tap.startswith(PREFIX) and not _flow_answer(state, tap):
        what, _, ref = tap.removeprefix(PREFIX).partition(":")
        then = what if what != "p" else f"p:{ref}"
        return Step(
            _left(state), (), (LoadExhibitor(ref.split(":")[0], then if what != "lead" else tap[3:]),)
        )
    if state.module == MODULE and state.step in _FLOW:
        return _FLOW[state.step](state, event, ctx)
    return Step(state)


def _left(state: State) -> State:
    """Browsing leaves an unfinished lead (nothing was shared); other modules keep their place."""
    return State() if state.module == MODULE else state


def _flow_answer(state: State, tap: str) -> bool:
    return state.module == MODULE and tap.startswith((f"{PREFIX}yes", f"{PREFIX}no", f"{PREFIX}i:"))


def cancel(state: State, ctx: Context) -> Step:
    return Step(State(), (Text(t("exhibitors.lead_dropped", ctx.language)),))


def reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    prompt = _PROMPTS.get(state.step) if state.module == MODULE else None
    return (prompt(state, ctx),) if prompt else ()


# ---------------------------------------------------------------- browsing


def _loaded(state: State, event: ExhibitorLoaded, ctx: Context) -> Step:
    lang, x = ctx.language, event.exhibitor
    if event.then == "list":
        return Step(state, (_list(event.exhibitors, ctx),))
    if x is None:
        key = "exhibitors.no_booth" if event.ref else "exhibitors.gone"
        return Step(state, (Text(t(key, lang, booth=event.ref)),))
    if event.then == "cat":
        return Step(state, (_catalogue(x, ctx),))
    if event.then == "bro":
        return Step(state, _brochure(x, ctx))
    if event.then.startswith("p:"):
        return Step(state, _product(x, event.then[2:], ctx))
    if event.then.startswith("lead"):
        product = _find_product(x, event.then.partition(":")[2].partition(":")[2])
        return _ask_consent(x, product, ctx)
    return Step(state, _greeting(x, ctx))


def _where(x: Mapping[str, Any]) -> str:
    return ", ".join(str(v) for v in (f"{x['booth']}", x.get("hall")) if v)


def _actions(x: Mapping[str, Any], ctx: Context, *, product_id: str = "") -> tuple[Button, ...]:
    lang, xid = ctx.language, x["id"]
    buttons = [Button(f"{PREFIX}lead:{xid}:{product_id}", t("exhibitors.button_contact", lang))]
    if x.get("products"):
        buttons.append(Button(f"{PREFIX}cat:{xid}", t("exhibitors.button_catalogue", lang)))
    if x.get("brochure"):
        buttons.append(Button(f"{PREFIX}bro:{xid}", t("exhibitors.button_brochure", lang)))
    return tuple(buttons)


def _greeting(x: Mapping[str, Any], ctx: Context) -> tuple[Reply, ...]:
    lines = [t("exhibitors.welcome", ctx.language, exhibitor=x["name"], booth=_where(x))]
    if x.get("description"):
        lines += ["", str(x["description"])]
    return (Buttons("\n".join(lines), _actions(x, ctx)),)


def _price(p: Mapping[str, Any]) -> str:
    if p.get("price") is None:
        return ""
    currency = str(p.get("currency") or "KES")
    amount = Decimal(str(p["price"]))
    return kes(amount) if currency == "KES" else f"{currency} {amount:,}"


def _catalogue(x: Mapping[str, Any], ctx: Context) -> Reply:
    products = list(x.get("products") or [])[:MAX_LIST_ROWS]
    if not products:
        return Buttons(t("exhibitors.no_products", ctx.language, exhibitor=x["name"]), _actions(x, ctx))
    options = [
        Option(
            f"{PREFIX}p:{p['id']}",
            str(p["name"]),
            " · ".join(v for v in (_price(p), p.get("description") or "") if v),
        )
        for p in products
    ]
    body = t("exhibitors.catalogue", ctx.language, exhibitor=x["name"])
    rows = tuple(
        Row(o.id, _clip(o.title, LIST_ROW_TITLE_MAX), _clip(o.description, LIST_ROW_DESCRIPTION_MAX))
        for o in options
    )  # a list even for two products: the prices show under the names
    return ListMenu(body, t("exhibitors.button_products", ctx.language), rows)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _find_product(x: Mapping[str, Any], product_id: str) -> Mapping[str, Any] | None:
    return next((p for p in x.get("products") or [] if str(p["id"]) == product_id), None)


def _product(x: Mapping[str, Any], product_id: str, ctx: Context) -> tuple[Reply, ...]:
    p = _find_product(x, product_id)
    if p is None:
        return (Text(t("exhibitors.product_gone", ctx.language, exhibitor=x["name"])),)
    lines = [f"*{p['name']}*" + (f" – {_price(p)}" if _price(p) else "")]
    if p.get("description"):
        lines.append(str(p["description"]))
    card = Buttons("\n".join(lines), _actions(x, ctx, product_id=str(p["id"])))
    if p.get("image"):
        return (Image(ref=f"link:{p['image']}", caption=str(p["name"])), card)
    return (card,)


def _brochure(x: Mapping[str, Any], ctx: Context) -> tuple[Reply, ...]:
    if not x.get("brochure"):
        return (Text(t("exhibitors.no_brochure", ctx.language, exhibitor=x["name"])),)
    name = re.sub(r"[^A-Za-z0-9]+", "-", str(x["name"])).strip("-") or "brochure"
    return (
        Document(
            str(x["brochure"]), f"{name}.pdf", t("exhibitors.brochure", ctx.language, exhibitor=x["name"])
        ),
    )


def _list(exhibitors: tuple[Mapping[str, Any], ...], ctx: Context) -> Reply:
    if not exhibitors:
        return Text(t("exhibitors.none", ctx.language))
    options = [
        Option(
            f"{PREFIX}greet:{x['id']}",
            str(x["name"]),
            " · ".join(v for v in (x["booth"], x.get("category") or "") if v),
        )
        for x in exhibitors[:MAX_LIST_ROWS]
    ]
    return offer(
        t("exhibitors.list", ctx.language), options, list_button=t("exhibitors.button_open", ctx.language)
    )


# ---------------------------------------------------------------- asking to be contacted


def consent_text(exhibitor: str, ctx: Context) -> str:
    number = f"+{ctx.contact_phone}" if ctx.contact_phone.isdigit() else ctx.contact_phone
    name = ctx.contact_name or t("exhibitors.your_name", ctx.language)
    return t("exhibitors.consent", ctx.language, exhibitor=exhibitor, name=name, phone=number)


def _consent_prompt(state: State, ctx: Context) -> Reply:
    lang = ctx.language
    buttons = (
        Button(f"{PREFIX}yes", t("exhibitors.button_yes", lang)),
        Button(f"{PREFIX}no", t("exhibitors.button_no", lang)),
    )
    return Buttons(consent_text(str(state.data["exhibitor_name"]), ctx), buttons)


def _ask_consent(x: Mapping[str, Any], product: Mapping[str, Any] | None, ctx: Context) -> Step:
    data = {"exhibitor_id": str(x["id"]), "exhibitor_name": x["name"], "failures": 0}
    if product is not None:
        data |= {"product_id": str(product["id"]), "product_name": product["name"]}
    fresh = State(MODULE, CONSENT, data)
    return Step(fresh, (_consent_prompt(fresh, ctx),))


def _interest_prompt(state: State, ctx: Context) -> Reply:
    options = [
        Option(f"{PREFIX}i:{n}", t(f"exhibitors.interest_{n}", ctx.language)) for n in range(1, 6)
    ]  # row n is level n
    return offer(
        t("exhibitors.ask_interest", ctx.language), options, list_button=t("common.choose", ctx.language)
    )


def _note_prompt(state: State, ctx: Context) -> Reply:
    return Text(t("exhibitors.ask_note", ctx.language))


def _failed(state: State, ctx: Context) -> Step:
    failures = int(state.data.get("failures", 0)) + 1
    again = replace(state, data={**state.data, "failures": failures})
    return Step(again, (Text(t("common.not_understood", ctx.language)), _PROMPTS[state.step](again, ctx)))


def _on_consent(state: State, event: Inbound, ctx: Context) -> Step:
    said = event.choice_id or normalise(event.text)
    if said in (f"{PREFIX}no", *_NO):
        return Step(State(), (Text(t("exhibitors.not_shared", ctx.language)),))
    if said not in (f"{PREFIX}yes", *_YES):
        return _failed(state, ctx)
    agreed = consent_text(str(state.data["exhibitor_name"]), ctx)
    asked = State(MODULE, INTEREST, {**state.data, "consent_text": agreed, "failures": 0})
    return Step(asked, (_interest_prompt(asked, ctx),))


def _on_interest(state: State, event: Inbound, ctx: Context) -> Step:
    said = (event.choice_id or "").removeprefix(f"{PREFIX}i:") or normalise(event.text).removesuffix("/5")
    if not (said.isdigit() and 1 <= int(said) <= 5):
        return _failed(state, ctx)
    noted = State(MODULE, NOTE, {**state.data, "interest": int(said), "failures": 0})
    return Step(noted, (_note_prompt(noted, ctx),))


def _on_note(state: State, event: Inbound, ctx: Context) -> Step:
    text = event.text.strip()
    if not text:
        return _failed(state, ctx)
    note = None if normalise(text) in _SKIP else text[:NOTE_MAX]
    d = state.data
    save = SaveLead(
        str(d["exhibitor_id"]), d.get("product_id"), int(d["interest"]), note, str(d["consent_text"])
    )
    return Step(State(MODULE, "saving", dict(d)), (), (save,))


_FLOW = {CONSENT: _on_consent, INTEREST: _on_interest, NOTE: _on_note}
_PROMPTS = {CONSENT: _consent_prompt, INTEREST: _interest_prompt, NOTE: _note_prompt}


# ---------------------------------------------------------------- the staff's side


def _lead_notice(data: Mapping[str, Any], ctx: Context) -> tuple[Reply, ...]:
    lang = ctx.language
    product = f", {t('exhibitors.product', lang)} {data['product']}" if data.get("product") else ""
    lines = [
        t(
            "exhibitors.new_lead",
            lang,
            visitor=data.get("visitor") or "-",
            interest=data.get("interest") or "-",
            product=product,
        ),
        f"📞 +{data.get('phone', '')}",
    ]
    if data.get("note"):
        lines.append(f"📝 {data['note']}")
    lines.append(t("exhibitors.new_lead_for", lang, exhibitor=data.get("exhibitor") or ""))
    button = Button(f"{STAFF_PREFIX}done:{data['lead_id']}", t("exhibitors.button_followed_up", lang))
    return (Buttons("\n".join(lines), (button,)),)


def _follow_up_text(event: FollowUpMarked, ctx: Context) -> str:
    key = {
        "done": "exhibitors.followed_up",
        "already": "exhibitors.followed_up_already",
        "not_staff": "exhibitors.followed_up_not_staff",
    }.get(event.outcome, "exhibitors.followed_up_unknown")
    return t(key, ctx.language, visitor=event.visitor, exhibitor=event.exhibitor_name)
