"""The exhibitors, venue and RSVP machines (state_machines/exhibitors.py, venue.py, rsvp.py), table-driven: what a
message asks for, what each screen says, the lead's consent flow, the staff's notice. Pure: no database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from state_machines import conversation, exhibitors, rsvp, venue
from state_machines.base import Buttons, Document, Image, Inbound, ListMenu, State, Text, TimerFired
from state_machines.exhibitors import (
    ExhibitorLoaded,
    FollowUpMarked,
    LeadSaved,
    LoadExhibitor,
    MarkFollowedUp,
    SaveLead,
)
from state_machines.rsvp import CancelRegistration, Register, Registered, RegistrationCancelled
from state_machines.venue import FindPlace, PlacesFound
from tests.helpers import body_of, context

NOW = datetime(2026, 12, 3, 7, 30, tzinfo=UTC)
X = {
    "id": "x1",
    "name": "SunGrid Solar",
    "booth": "K12",
    "hall": "Hall A",
    "description": "Solar kits.",
    "brochure": "https://x.org/b.pdf",
    "products": [
        {"id": "p1", "name": "Home kit", "price": 12500, "currency": "KES", "image": "https://x.org/k.jpg"},
        {"id": "p2", "name": "Shop kit", "price": None},
    ],
}


def ctx(lang: str = "en", **kw: Any) -> Any:
    return context(NOW, language=lang, contact_name="Wanjiku", contact_phone="254712345678", **kw)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("BOOTH K12", "K12"),
        ("booth k12", "K12"),
        (" Booth #K-12 ", "K-12"),
        ("banda A3", "A3"),
        ("booth", None),
        ("the booth K12 is nice", None),
    ],
)
def test_booth_scan_text(text: str, code: str | None) -> None:
    assert exhibitors.booth_code(Inbound(text=text)) == code


def test_a_scan_loads_the_booth_at_any_step() -> None:
    in_survey = State("survey", "question", {"survey_id": "s1"}, 3)
    expo = ctx(data={"offers": {"events": [{"id": "e1", "exhibitors": 2}]}})
    result = conversation.step(in_survey, Inbound(text="BOOTH K12"), expo)
    assert result.effects == (LoadExhibitor("K12", "greet", booth=True),) and result.state == in_survey
    assert (
        conversation.step(in_survey, Inbound(text="BOOTH K12"), ctx()).effects == ()
    )  # no exhibitors: an answer


@pytest.mark.parametrize(
    ("then", "check"),
    [
        (
            "greet",
            lambda r: (
                isinstance(r[0], Buttons) and "Welcome to *SunGrid Solar* (booth K12, Hall A)" in r[0].body
            ),
        ),
        (
            "cat",
            lambda r: isinstance(r[0], ListMenu) and [x.description for x in r[0].rows] == ["KES 12,500", ""],
        ),
        (
            "p:p1",
            lambda r: (
                r[0] == Image("link:https://x.org/k.jpg", "Home kit")
                and r[1].buttons[0].id == "ex:lead:x1:p1"
            ),
        ),
        ("p:zz", lambda r: "no longer in SunGrid Solar's catalogue" in body_of(r[0])),
        (
            "bro",
            lambda r: (
                r[0] == Document("https://x.org/b.pdf", "SunGrid-Solar.pdf", "SunGrid Solar – brochure")
            ),
        ),
    ],
)
def test_browsing(then: str, check: Any) -> None:
    result = exhibitors.step(State(), ExhibitorLoaded(then, X), ctx())
    assert result.state == State() and check(result.replies)


def test_an_unknown_booth() -> None:
    result = exhibitors.step(State(), ExhibitorLoaded("greet", None, ref="Z9"), ctx("sw"))
    assert body_of(result.replies[0]).startswith("Sikupata banda Z9")


def test_the_lead_flow_asks_consent_first_and_saves_with_its_words() -> None:
    asked = exhibitors.step(State(), ExhibitorLoaded("lead:x1:p1", X), ctx())
    assert asked.state.step == exhibitors.CONSENT and asked.effects == ()
    consent = body_of(asked.replies[0])
    assert "Wanjiku" in consent and "+254712345678" in consent and "SunGrid Solar" in consent
    agreed = exhibitors.step(asked.state, Inbound(text="Yes, share", choice_id="ex:yes"), ctx())
    assert agreed.state.step == exhibitors.INTEREST and agreed.state.data["consent_text"] == consent
    bad = exhibitors.step(agreed.state, Inbound(text="7"), ctx())
    assert bad.state.data["failures"] == 1 and body_of(bad.replies[0]) == "Sorry, I didn't understand that."
    rated = exhibitors.step(agreed.state, Inbound(text="4"), ctx())
    assert rated.state.step == exhibitors.NOTE
    saved = exhibitors.step(rated.state, Inbound(text="Call me"), ctx())
    assert saved.effects == (SaveLead("x1", "p1", 4, "Call me", consent),)
    skipped = exhibitors.step(rated.state, Inbound(text="skip"), ctx())
    assert skipped.effects == (SaveLead("x1", "p1", 4, None, consent),)
    done = exhibitors.step(saved.state, LeadSaved("SunGrid Solar", 1), ctx())
    assert done.state == State() and "has your details" in body_of(done.replies[0])


@pytest.mark.parametrize(
    ("said", "lang"), [(Inbound(text="No thanks", choice_id="ex:no"), "en"), (Inbound(text="hapana"), "sw")]
)
def test_no_consent_no_lead(said: Inbound, lang: str) -> None:
    asked = exhibitors.step(State(), ExhibitorLoaded("lead:x1:", X), ctx(lang))
    result = exhibitors.step(asked.state, said, ctx(lang))
    assert result.state == State() and result.effects == ()


def test_the_staffs_notice_and_follow_up() -> None:
    data = {
        "lead_id": "l1",
        "exhibitor": "SunGrid Solar",
        "visitor": "Wanjiku",
        "phone": "254712345678",
        "interest": 4,
        "product": "Home kit",
        "note": "After 5",
    }
    [notice] = exhibitors.step(State(), TimerFired(exhibitors.LEAD_TIMER, 0, data), ctx()).replies
    assert isinstance(notice, Buttons)
    assert notice.body.startswith(
        "🆕 New lead: Wanjiku, interest 4/5, product Home kit\n📞 +254712345678\n📝 After 5"
    )
    assert notice.buttons[0].id == "ld:done:l1"
    tap = conversation.step(State(), Inbound(text="Followed up", choice_id="ld:done:l1"), ctx())
    assert tap.effects == (MarkFollowedUp("l1"),)
    for outcome, said in [
        ("done", "Marked followed up"),
        ("already", "already marked"),
        ("not_staff", "Only SunGrid"),
        ("unknown", "could not find"),
    ]:
        reply = exhibitors.step(State(), FollowUpMarked(outcome, "Wanjiku", "SunGrid Solar"), ctx()).replies[
            0
        ]
        assert said in body_of(reply)


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("Where is booth K12?", FindPlace(booth="K12")),
        ("where's stand k12", FindPlace(booth="K12")),
        ("banda K12 iko wapi", FindPlace(booth="K12")),
        ("K12 iko wapi?", FindPlace(booth="K12")),
        ("where is K12", FindPlace(booth="K12")),
        ("find solar", FindPlace(words="solar")),
        ("tafuta SunGrid", FindPlace(words="SunGrid")),
        ("where is the toilet?", None),  # the knowledge base's question, not a booth's
        ("hello", None),
    ],
)
def test_venue_questions(text: str, asked: FindPlace | None) -> None:
    assert venue.question(Inbound(text=text)) == asked


PLACE = {
    "exhibitor_id": "x1",
    "exhibitor": "SunGrid Solar",
    "booth": "K12",
    "hall": "Hall A",
    "position": "Left",
    "venue": "KICC",
    "map": "https://x.org/m.png",
}


@pytest.mark.parametrize(
    ("places", "lang", "first", "count"),
    [
        ((PLACE,), "en", "📍 Booth K12: SunGrid Solar\nHall: Hall A\nLeft", 2),
        ((PLACE,), "sw", "📍 Banda K12: SunGrid Solar\nUkumbi: Hall A\nLeft", 2),
        (
            ({**PLACE, "map": None, "hall": None, "position": None},),
            "en",
            "📍 Booth K12: SunGrid Solar\nAt KICC",
            1,
        ),
        ((), "en", "No booth or exhibitor matches “K99”.", 1),
        (
            (PLACE, {**PLACE, "exhibitor_id": "x2", "exhibitor": "Pesa"}),
            "en",
            "Several exhibitors match “K99”",
            1,
        ),
    ],
)
def test_venue_answers(places: tuple[dict[str, Any], ...], lang: str, first: str, count: int) -> None:
    replies = venue.step(State(), PlacesFound("K99", places), ctx(lang)).replies
    assert len(replies) == count and body_of(replies[0]).startswith(first)
    if count == 2:
        assert isinstance(replies[1], Image) and replies[1].ref == "link:https://x.org/m.png"


def test_venue_asks_then_searches() -> None:
    asked = venue.step(State(), Inbound(text="Find a booth", choice_id="vn:ask:e1"), ctx())
    assert asked.state == State("venue", "ask", {"event_id": "e1", "failures": 0})
    assert venue.step(asked.state, Inbound(text="k12"), ctx()).effects == (
        FindPlace(booth="K12", event_id="e1"),
    )
    assert venue.step(asked.state, Inbound(text="solar"), ctx()).effects == (
        FindPlace(words="solar", event_id="e1"),
    )
    assert venue.step(asked.state, PlacesFound("solar", (PLACE,)), ctx()).state == State()


@pytest.mark.parametrize(
    ("tap", "effect"),
    [
        ("rv:go:e1", Register(event_id="e1")),
        ("rv:s:s1", Register(session_id="s1")),
        ("rv:cancel:r1", CancelRegistration("r1")),
    ],
)
def test_rsvp_taps(tap: str, effect: Any) -> None:
    assert conversation.step(State(), Inbound(text="x", choice_id=tap), ctx()).effects == (effect,)


@pytest.mark.parametrize(
    ("event", "lang", "said", "button"),
    [
        (
            Registered("confirmed", "Breakfast", "r1"),
            "en",
            "✅ You have a place at Breakfast.",
            "rv:cancel:r1",
        ),
        (
            Registered("waiting", "Breakfast", "r2", 3),
            "en",
            "Breakfast is full. You are number 3 on the waiting list",
            "rv:cancel:r2",
        ),
        (
            Registered("already_waiting", "Breakfast", "r2", 2),
            "sw",
            "Wewe ni nambari 2 kwenye orodha ya kusubiri ya Breakfast",
            "rv:cancel:r2",
        ),
        (Registered("closed", "Breakfast"), "en", "Breakfast does not take RSVPs.", None),
        (
            RegistrationCancelled("cancelled", "Breakfast"),
            "en",
            "Your place at Breakfast is cancelled.",
            None,
        ),
        (
            RegistrationCancelled("left_queue", "Breakfast"),
            "en",
            "You have left the waiting list for Breakfast.",
            None,
        ),
        (
            TimerFired(rsvp.PROMOTED_TIMER, 0, {"title": "Breakfast", "registration_id": "r2"}),
            "en",
            "🎉 A place freed up",
            "rv:cancel:r2",
        ),
    ],
)
def test_rsvp_answers(event: Any, lang: str, said: str, button: str | None) -> None:
    [reply] = rsvp.step(State(), event, ctx(lang)).replies
    assert said in body_of(reply)
    assert (reply.buttons[0].id if isinstance(reply, Buttons) else None) == button
    assert not isinstance(reply, Text) or button is None
