"""Staff check-in: recognising a check-in, who may do it, and what the door is told for each outcome."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from state_machines import checkin as ci
from state_machines.base import Context, Inbound, PaymentResult, State, Step, Text
from state_machines.i18n import t
from tests.helpers import context

NOW = datetime(2026, 3, 14, 16, 0, tzinfo=UTC)
SOME_STATE = State(module="survey", step="q2", data={"answers": [1]}, version=4)


def ctx(staff=True, lang="en", **data) -> Context:
    return context(NOW, language=lang, contact_id="c-9", is_staff=staff, data=data)


@pytest.mark.parametrize(
    "text, looks, code",
    [
        ("CHECKIN ABC123", True, "ABC123"),
        ("checkin abc123", True, "ABC123"),
        ("check in TKT-7Q2M9X", True, "TKT-7Q2M9X"),
        ("Check-in: tkt-7q2m9x.", True, "TKT-7Q2M9X"),
        ("CHECKIN TKT 7Q2 M9X", True, "TKT7Q2M9X"),
        ("  CHECKIN   #abc123 ", True, "ABC123"),
        ("CHECKIN", True, None),
        ("check in", True, None),
        ("TKT-7Q2M9X", True, "TKT-7Q2M9X"),
        (" tkt-7q2m9x ", True, "TKT-7Q2M9X"),
        ("TKT-PKRBCN", True, "TKT-PKRBCN"),  # the engine's codes need no digit
        ("tkt-zzzzzz", True, "TKT-ZZZZZZ"),
        ("TKT-234567", True, "TKT-234567"),
        ("ABCDEF", False, None),  # a word: not a code without the engine's prefix
        ("abc123", True, "ABC123"),
        ("#ABC123", True, "ABC123"),
        ("MENU", False, None),
        ("hello", False, None),
        ("0712345678", False, None),
        ("A1", False, None),
        ("hi 2 you", False, None),
        ("checking my ticket", False, None),
        ("I want to check in ABC123", False, None),
        ("ABC123456789012345678", False, None),  # longer than any code
        ("", False, None),
    ],
)
def test_recognising_a_checkin(text, looks, code):
    assert ci.looks_like_checkin(text) is looks
    assert ci.checkin_code(text) == code


@pytest.mark.parametrize(
    "text, looks", [("TKT-7Q2M9X", False), ("CHECKIN TKT-7Q2M9X", True), ("check in", True)]
)
def test_without_bare_codes_only_the_keyword_counts(text, looks):
    assert ci.looks_like_checkin(text, allow_bare=False) is looks


@pytest.mark.parametrize("text, code", [("CHECKIN tkt-7q2m9x", "TKT-7Q2M9X"), ("abc123", "ABC123")])
def test_staff_code_checks_in_and_keeps_the_state(text, code):
    step = ci.step(SOME_STATE, Inbound(text), ctx())
    assert step == Step(SOME_STATE, (), (ci.CheckInTicket(code),))


def test_staff_keyword_without_code_explains():
    assert ci.step(SOME_STATE, Inbound("CHECKIN"), ctx()) == Step(
        SOME_STATE, (Text(t("checkin.usage", "en")),)
    )


@pytest.mark.parametrize("lang", ["en", "sw"])
@pytest.mark.parametrize("text", ["CHECKIN ABC123", "TKT-7Q2M9X", "check in"])
def test_non_staff_is_told_politely(text, lang):
    step = ci.step(SOME_STATE, Inbound(text), ctx(staff=False, lang=lang))
    assert step == Step(SOME_STATE, (Text(t("checkin.staff_only", lang)),))


def outcome(result, **fields):
    base = {"holder_name": "Jane Wanjiku", "event_name": "Nairobi Jazz Night", "ticket_type": "VIP"}
    return ci.CheckInOutcome("TKT-7Q2M9X", result, **{**base, **fields})


@pytest.mark.parametrize(
    "event, expected",
    [
        (outcome("valid"), "✅ VALID: admit\nJane Wanjiku\nVIP · Nairobi Jazz Night\nCode: TKT-7Q2M9X"),
        (
            outcome("already_used", checked_in_at=datetime(2026, 3, 14, 15, 5, tzinfo=UTC)),
            "⛔ ALREADY USED at 14/03/2026 18:05: do not admit\nJane Wanjiku\nVIP · Nairobi Jazz Night\nCode: TKT-7Q2M9X",
        ),
        (
            outcome("already_used"),
            "⛔ ALREADY USED: do not admit\nJane Wanjiku\nVIP · Nairobi Jazz Night\nCode: TKT-7Q2M9X",
        ),
        (
            ci.CheckInOutcome("TKT-0000XX", "unknown"),
            "❓ UNKNOWN CODE TKT-0000XX: no ticket has this code. Check it and send it again.",
        ),
        (
            outcome("cancelled", holder_name=None),
            "🚫 CANCELLED ticket: do not admit\n-\nVIP · Nairobi Jazz Night\nCode: TKT-7Q2M9X",
        ),
        (
            outcome("wrong_event"),
            "⛔ NOT FOR THIS EVENT: do not admit\nTicket for Nairobi Jazz Night\nJane Wanjiku · VIP\nCode: TKT-7Q2M9X",
        ),
        (
            outcome("event_cancelled"),
            "🚫 EVENT CANCELLED: do not admit\nNairobi Jazz Night was cancelled\nJane Wanjiku · VIP\nCode: TKT-7Q2M9X",
        ),
        (
            outcome("event_ended"),
            "⛔ EVENT ENDED: do not admit\nNairobi Jazz Night is over\nJane Wanjiku · VIP\nCode: TKT-7Q2M9X",
        ),
        (
            outcome("not_open_yet", doors_open_at=datetime(2026, 3, 14, 15, 0, tzinfo=UTC)),
            "⏳ DOORS NOT OPEN YET: do not admit\nNairobi Jazz Night opens at 14/03/2026 18:00\nJane Wanjiku · VIP\n"
            "Code: TKT-7Q2M9X",
        ),
        (
            outcome("event_not_published"),
            "⛔ EVENT NOT OPEN: do not admit\nNairobi Jazz Night is not published\nJane Wanjiku · VIP\nCode: TKT-7Q2M9X",
        ),
    ],
)
def test_outcomes(event, expected):
    assert ci.step(SOME_STATE, event, ctx()) == Step(SOME_STATE, (Text(expected),))


def test_outcome_in_swahili_and_the_organisations_time_zone():
    event = outcome("already_used", checked_in_at=datetime(2026, 3, 14, 15, 5, tzinfo=UTC))
    step = ci.step(SOME_STATE, event, ctx(lang="sw", timezone="Africa/Lagos"))
    assert step.replies[0].body.startswith("⛔ IMESHATUMIKA saa 14/03/2026 16:05: usiruhusu")


def test_other_events_are_ignored():
    assert ci.step(SOME_STATE, PaymentResult("ws", 0), ctx()) == Step(SOME_STATE)
