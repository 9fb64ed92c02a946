"""Staff check-in at the door: a staff contact sends a ticket code, the database decides, the bot answers.

Stateless: ``step`` returns the state it was given, so a staff member can scan between other conversations.
The check itself (valid / already used / unknown / cancelled, and marking it used) is one applier of
``CheckInTicket``, answered by the follow-up event ``CheckInOutcome``, so two doors scanning the same code
at once are decided by the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from state_machines.base import Context, Effect, Inbound, State, Step, Text
from state_machines.formatting import DEFAULT_TIMEZONE, local_time
from state_machines.i18n import t

CODE_MAX = 20  # tickets.ticket_code VARCHAR(20)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a gate
# The engine's own codes (handlers/ticket_effects.py): TKT- and six characters of CODE_ALPHABET. About one in
# six holds no digit, so this shape is recognised on its own, before the letters-and-digits rule below.
TICKET_CODE = re.compile(r"TKT-?[A-Z0-9]{6}")

_KEYWORD = re.compile(r"\s*check[\s-]*in\b[\s:#-]*(?P<code>.*)", re.IGNORECASE | re.DOTALL)
# A bare code is one token of letters and digits (dashes between them) holding at least one of each,
# so that words like MENU or numbers like a phone number are not taken for codes.
_BARE = re.compile(r"#?(?=[A-Z0-9-]*\d)(?=[A-Z0-9-]*[A-Z])[A-Z0-9]+(?:-[A-Z0-9]+)*")

_OUTCOME_KEYS = {
    "valid": "checkin.valid",
    "already_used": "checkin.already_used",
    "unknown": "checkin.unknown",
    "cancelled": "checkin.cancelled",
    "wrong_event": "checkin.wrong_event",
    "event_cancelled": "checkin.event_cancelled",
    "event_ended": "checkin.event_ended",
    "not_open_yet": "checkin.not_open_yet",
    "event_not_published": "checkin.event_not_published",
}


@dataclass(frozen=True)
class CheckInTicket(Effect):
    """Check the ticket in if valid; answered by ``CheckInOutcome``."""

    code: str


@dataclass(frozen=True)
class CheckInOutcome:
    code: str
    # valid | already_used | unknown | cancelled (the ticket), or why this door refuses it: wrong_event (the
    # ticket's event is not the scanner's), event_cancelled, event_ended, not_open_yet, event_not_published
    outcome: str
    holder_name: str | None = None
    event_name: str | None = None  # the ticket's own event
    ticket_type: str | None = None
    checked_in_at: datetime | None = None  # when it was first checked in (for already_used)
    doors_open_at: datetime | None = None  # for not_open_yet


def bare_code(text: str) -> str | None:
    """A ticket code sent on its own ("TKT-7Q2M9X", "#tkt-7q2m9x"), normalised; None for anything else."""
    token = text.strip().strip(".!?").upper()
    code = token.lstrip("#")
    if TICKET_CODE.fullmatch(code) or (5 <= len(code) <= CODE_MAX and _BARE.fullmatch(token)):
        return code
    return None


def checkin_code(text: str) -> str | None:
    """The normalised code in "CHECKIN abc123", "check in TKT-7Q2M9X" or a bare code; None if there is none."""
    keyword = _KEYWORD.fullmatch(text)
    if keyword:
        code = re.sub(r"\s+", "", keyword["code"]).strip(".!?#").upper()
        return code[:CODE_MAX] or None
    return bare_code(text)


def looks_like_checkin(text: str, *, allow_bare: bool = True) -> bool:
    """CHECKIN / check in / check-in with or without a code, or (when ``allow_bare``) a bare ticket code.
    The router should pass ``allow_bare=False`` for non-staff so that their answers are never hijacked."""
    return bool(_KEYWORD.fullmatch(text)) or (allow_bare and bare_code(text) is not None)


def step(state: State, event: Any, ctx: Context) -> Step:
    if isinstance(event, CheckInOutcome):
        return Step(state, (Text(outcome_text(event, ctx)),))
    if not isinstance(event, Inbound):
        return Step(state)
    if not ctx.is_staff:
        return Step(state, (Text(t("checkin.staff_only", ctx.language)),))
    code = checkin_code(event.text)
    if code is None:
        return Step(state, (Text(t("checkin.usage", ctx.language)),))
    return Step(state, (), (CheckInTicket(code),))


def outcome_text(event: CheckInOutcome, ctx: Context) -> str:
    key = _OUTCOME_KEYS.get(event.outcome, "checkin.unknown")
    if event.outcome == "already_used" and event.checked_in_at is None:
        key = "checkin.already_used_no_time"
    when = ""
    moment = event.doors_open_at if event.outcome == "not_open_yet" else event.checked_in_at
    if moment is not None:
        when = local_time(moment, ctx.data.get("timezone") or DEFAULT_TIMEZONE)
    return t(
        key,
        ctx.language,
        code=event.code,
        holder=event.holder_name or "-",
        type=event.ticket_type or "-",
        event=event.event_name or "-",
        time=when,
    )
