"""A contact's own tickets: the upcoming events they hold tickets for, and the QR codes sent again.

Asked for by the "My tickets" button, by typing MY TICKETS / TIKETI ZANGU, or by sending a ticket code on its
own at the menu (a contact who forwards their own ticket wants to see it; staff codes go to check-in first).
Stateless, like check-in: ``FindMyTickets`` is answered by ``MyTickets`` in the same transaction and the
conversation stays where it was (idle).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from state_machines import menu
from state_machines.base import Context, Effect, Image, Inbound, Reply, State, Step, Text
from state_machines.checkin import TICKET_CODE, bare_code
from state_machines.choices import normalise
from state_machines.formatting import DEFAULT_TIMEZONE, local_time
from state_machines.i18n import t, tn

CHOICE_ID = "mytickets"
WORDS = frozenset({"my tickets", "my ticket", "tiketi zangu", "tikiti zangu", "tickets zangu"})
MAX_IMAGES = 10  # QR codes sent again in one answer


@dataclass(frozen=True)
class FindMyTickets(Effect):
    """The contact's tickets for events that have not ended; answered by ``MyTickets``. ``code``: the code
    they sent, if any."""

    code: str | None = None


@dataclass(frozen=True)
class OwnedTicket:
    code: str
    event_name: str
    starts_at: datetime
    type_name: str
    holder_name: str
    status: str  # valid | used
    timezone: str = DEFAULT_TIMEZONE


@dataclass(frozen=True)
class MyTickets:
    code: str | None
    tickets: tuple[OwnedTicket, ...]


def wants(event: Inbound) -> str | None:
    """ "" for a request without a code (tap or words), the code for a ticket code, None otherwise."""
    if event.choice_id == CHOICE_ID or (event.choice_id is None and normalise(event.text) in WORDS):
        return ""
    code = bare_code(event.text) if event.choice_id is None else None
    return code if code is not None and TICKET_CODE.fullmatch(code) else None


def ask(code: str, state: State) -> Step:
    return Step(state, (), (FindMyTickets(code or None),))


def step(state: State, event: object, ctx: Context) -> Step:
    if not isinstance(event, MyTickets):
        return Step(state)
    return Step(state, answer(event, ctx))


def answer(found: MyTickets, ctx: Context) -> tuple[Reply, ...]:
    lang = ctx.language
    lead = ""
    if found.code and found.code not in {x.code for x in found.tickets}:
        lead = t("my_tickets.not_yours", lang, code=found.code)
    if not found.tickets:
        return menu.menu_replies(ctx, "\n\n".join(x for x in (lead, t("my_tickets.none", lang)) if x))
    lines = [lead, ""] if lead else []
    lines.append(tn("my_tickets.summary", lang, len(found.tickets)))
    by_event: dict[tuple[str, datetime, str], list[OwnedTicket]] = {}
    for ticket in found.tickets:
        by_event.setdefault((ticket.event_name, ticket.starts_at, ticket.timezone), []).append(ticket)
    for (name, starts_at, zone), held in by_event.items():
        used = sum(1 for x in held if x.status == "used")
        line = f"• {name}, {local_time(starts_at, zone)}: {len(held)} × {held[0].type_name}"
        lines.append(line + (f" ({t('my_tickets.used', lang, count=used)})" if used else ""))
    valid = [x for x in found.tickets if x.status == "valid"]
    if valid:
        lines += ["", t("my_tickets.qr_again", lang)]
    images = tuple(
        Image(
            f"qr:{x.code}",
            t("my_tickets.caption", lang, event=x.event_name, holder=x.holder_name, code=x.code),
        )
        for x in valid[:MAX_IMAGES]
    )
    lines += ["", t("my_tickets.menu_hint", lang)]
    return (Text("\n".join(lines)), *images)
