"""Issue 20, pure tables: every dead end offers a next step, counted words agree with their number, progress
that branching cannot contradict, buttons offered again instead of "a number from 1 to 2", a contact's own
ticket code, and old menus' taps."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from handlers.ticket_effects import new_ticket_code
from state_machines import conversation, menu, my_tickets
from state_machines.base import Buttons, Image, Inbound, ListMenu, State, Text
from state_machines.checkin import CODE_ALPHABET
from state_machines.my_tickets import FindMyTickets, MyTickets, OwnedTicket
from state_machines.survey import BeginSurveyResponse, SurveyRefused, SurveyResponseReady
from state_machines.survey_format import remaining_range, validate_questions
from tests.helpers import body_of, context

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
POLL = {
    "id": "p1",
    "question": "Best snack?",
    "allow_multiple": False,
    "show_results": True,
    "ends_at": None,
    "status": "active",
    "voters": 3,
    "options": [{"id": "o1", "text": "Samosa", "votes": 2}, {"id": "o2", "text": "Mandazi", "votes": 1}],
}
SURVEY = {
    "id": "s1",
    "title": "Feedback",
    "questions": [{"id": "q1", "type": "yes_no", "text": "Good?"}],
    "max_responses": None,
    "response_count": 0,
}
OTHER = {**SURVEY, "id": "s2", "title": "Second"}


def ctx(offers: dict[str, Any] | None = None, **data: Any) -> Any:
    offers = {"surveys": [SURVEY, OTHER], "polls": [POLL]} if offers is None else offers
    return context(NOW, org_name="Org", data={"offers": offers, **data})


def ids(reply: Any) -> list[str]:
    if isinstance(reply, Buttons):
        return [b.id for b in reply.buttons]
    assert isinstance(reply, ListMenu), reply
    return [r.id for r in reply.rows]


# ---------------------------------------------------------------- dead ends get a next step


@pytest.mark.parametrize(
    ("event", "lead"),
    [
        (SurveyRefused("s1", "already_responded"), "You have already completed *Feedback*. Thank you!"),
        (SurveyRefused("s1", "full"), "Sorry, *Feedback* has received all the responses it needs."),
        (SurveyRefused("s1", "closed"), "Sorry, *Feedback* is closed."),
    ],
)
def test_a_refused_survey_says_why_on_top_of_the_menu_without_it(event: Any, lead: str) -> None:
    starting = State("survey", "starting", {"survey_id": "s1"})
    (reply,) = conversation.step(starting, event, ctx(survey=SURVEY)).replies
    assert body_of(reply).startswith(lead + "\n\nWelcome to Org!") and ids(reply) == ["survey:s2", "poll:p1"]


def test_a_completed_survey_thanks_on_top_of_the_menu_without_it() -> None:
    asking = State("survey", "question", {"survey_id": "s1", "response_id": "r1", "question_id": "q1"})
    result = conversation.step(asking, Inbound("yes"), ctx(survey=SURVEY))
    (reply,) = result.replies
    assert body_of(reply).startswith("Thank you for completing *Feedback*!\n\n") and "survey:s1" not in ids(
        reply
    )


def test_a_full_survey_leaves_the_menu() -> None:
    full = {**SURVEY, "max_responses": 5, "response_count": 5}
    almost = {**OTHER, "max_responses": 5, "response_count": 4}
    (reply,) = menu.menu_replies(ctx({"surveys": [full, almost], "polls": [POLL]}))
    assert ids(reply) == ["survey:s2", "poll:p1"]
    assert menu.is_full(full) and not menu.is_full(almost) and not menu.is_full(SURVEY)


def test_a_full_survey_tapped_from_an_old_menu_is_started_and_the_engine_says_it_is_full() -> None:
    full = {**SURVEY, "max_responses": 5, "response_count": 5}
    c = ctx({"surveys": [full, OTHER]})
    result = conversation.step(State(), Inbound("Feedback", "survey:s1"), c)
    assert result.effects == (BeginSurveyResponse("s1"),)


def test_a_closed_poll_tapped_from_an_old_menu_says_so_with_its_results() -> None:
    closed = {**POLL, "status": "closed", "kind": "poll"}
    c = ctx({"surveys": [SURVEY]}, tapped=closed)  # the engine loads an old menu's item for its module
    result = conversation.step(State(), Inbound("Best snack?", "poll:p1"), c)
    (reply,) = result.replies
    assert body_of(reply).startswith(
        "Sorry, this poll has closed.\n\nFinal results (3 votes):\nSamosa: 2 (67%)\nMandazi: 1 (33%)\n\n"
    )
    assert ids(reply) == ["survey:s1"] and result.state.module is None


def test_a_closed_poll_with_private_results_only_says_it_closed() -> None:
    closed = {**POLL, "status": "closed", "show_results": False, "kind": "poll"}
    (reply,) = conversation.step(State(), Inbound("Best snack?", "poll:p1"), ctx({}, tapped=closed)).replies
    assert body_of(reply).startswith("Sorry, this poll has closed.\n\nThere is nothing on offer")


@pytest.mark.parametrize("item", ["poll:p9", "survey:s9", "event:e9"])
def test_an_old_menus_item_that_is_gone_says_so_instead_of_not_understood(item: str) -> None:
    inside = State("survey", "question", {"survey_id": "s1", "response_id": "r1", "question_id": "q1"})
    for state in (State(), inside):
        result = conversation.step(state, Inbound("Old", item), ctx(survey=SURVEY))
        (reply,) = result.replies
        assert (
            body_of(reply).startswith("Sorry, that is no longer available.\n\n")
            and result.state.module is None
        )


@pytest.mark.parametrize(
    ("state", "word", "lead"),
    [
        (
            State("tickets", "quantity", {"event_id": "e1", "event_name": "X"}),
            "menu",
            "Your ticket purchase is cancelled.",
        ),
        (
            State("tickets", "quantity", {"event_id": "e1", "event_name": "X"}),
            "cancel",
            "Your ticket purchase is cancelled.",
        ),
        (State("poll", "vote", {"poll_id": "p1"}), "cancel", "OK, cancelled."),
    ],
)
def test_leaving_says_so_once_with_the_menu_and_no_send_menu_before_it(
    state: State, word: str, lead: str
) -> None:
    (reply,) = conversation.step(state, Inbound(word), ctx(poll=POLL)).replies
    assert body_of(reply).startswith(lead + "\n\nWelcome to Org!") and "Send MENU" not in body_of(reply)


def test_a_long_lead_goes_before_the_menu_in_its_own_message() -> None:
    lead = "x" * 1100
    first, second = menu.menu_replies(ctx(), lead)
    assert first == Text(lead) and isinstance(second, Buttons)


# ---------------------------------------------------------------- progress branching cannot contradict

BRANCHING = validate_questions(
    [
        {"id": "visited", "type": "yes_no", "text": "Been before?", "branches": {"no": "end"}},
        {"id": "rating", "type": "rating", "text": "How was it?"},
        {
            "id": "again",
            "type": "yes_no",
            "text": "Again?",
            "required": False,
            "branches": {"yes": "end", "no": "end"},
        },
        {"id": "why", "type": "text", "text": "Why not?"},
    ]
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("visited", (1, 4)),  # "no" ends at once; "yes" then a skipped "again" asks "why"
        ("rating", (2, 3)),
        ("again", (1, 2)),  # answered: the end; skipped: "why"
        ("why", (1, 1)),
    ],
)
def test_remaining_questions_over_every_path(question: str, expected: tuple[int, int]) -> None:
    assert remaining_range(BRANCHING, question) == expected


def test_progress_says_at_most_while_branching_can_still_shorten_the_way() -> None:
    s = {"id": "b", "title": "B", "questions": [q.model_dump() for q in BRANCHING]}
    c = ctx({"surveys": [s]}, survey=s)
    ready = conversation.step(
        State("survey", "starting", {"survey_id": "b"}), SurveyResponseReady("b", "r1"), c
    )
    intro, first = ready.replies
    assert "Up to 4 questions" in body_of(intro) and body_of(first).startswith(
        "(1 of at most 4) Been before?"
    )
    second = conversation.step(ready.state, Inbound("yes"), c)
    assert body_of(second.replies[0]).startswith("(2 of at most 4) How was it?")
    third = conversation.step(second.state, Inbound("5"), c)
    assert body_of(third.replies[0]).startswith("(3 of at most 4) Again?")
    last = conversation.step(third.state, Inbound("skip"), c)
    assert body_of(last.replies[0]) == "(4/4) Why not?"  # no branch ahead: the exact total


def test_straight_surveys_keep_the_plain_count() -> None:
    straight = validate_questions([{"id": f"q{i}", "type": "text", "text": "?"} for i in range(3)])
    assert [remaining_range(straight, q.id) for q in straight] == [(3, 3), (2, 2), (1, 1)]


# ---------------------------------------------------------------- buttons offered again


def test_a_two_button_question_asks_for_a_tap_and_offers_the_buttons_again() -> None:
    two = {
        **SURVEY,
        "questions": [
            {
                "id": "q1",
                "type": "single_choice",
                "text": "Tea or coffee?",
                "options": [{"id": "t", "text": "Tea"}, {"id": "c", "text": "Coffee"}],
            }
        ],
    }
    asking = State(
        "survey", "question", {"survey_id": "s1", "response_id": "r1", "question_id": "q1", "position": 1}
    )
    (reply,) = conversation.step(asking, Inbound("juice"), ctx(survey=two)).replies
    assert (
        isinstance(reply, Buttons) and reply.body == "Please tap one of the buttons.\n\n(1/1) Tea or coffee?"
    )
    assert "number from 1 to 2" not in reply.body and ids(reply) == ["t", "c"]


def test_a_swahili_two_button_poll_asks_for_a_tap() -> None:
    c = replace(ctx(poll=POLL), language="sw")
    (reply,) = conversation.step(State("poll", "vote", {"poll_id": "p1"}), Inbound("chai"), c).replies
    assert body_of(reply) == "Tafadhali gusa mojawapo ya vitufe.\n\nBest snack?" and ids(reply) == [
        "o1",
        "o2",
    ]


# ---------------------------------------------------------------- a contact's own tickets


JAZZ = datetime(2025, 3, 14, 15, 0, tzinfo=UTC)


def owned(code: str, status: str = "valid", event: str = "Jazz Night") -> OwnedTicket:
    return OwnedTicket(code, event, JAZZ, "Regular", "Amina", status)


@pytest.mark.parametrize(
    ("text", "choice_id", "wanted"),
    [
        ("TKT-7Q2M9X", None, "TKT-7Q2M9X"),
        ("tkt-7q2m9x", None, "TKT-7Q2M9X"),
        ("tkt-pkrbcn", None, "TKT-PKRBCN"),  # a code of letters only (about one in six is)
        ("TKT-234567", None, "TKT-234567"),
        ("#TKT7Q2M9X", None, "TKT7Q2M9X"),
        ("My tickets", None, ""),
        ("tiketi zangu", None, ""),
        ("My tickets", "mytickets", ""),
        ("ABC123", None, None),  # not the engine's format: free text
        ("TKT-7Q2M9X", "event:e1", None),  # a tap is never a code
        ("tickets", None, None),  # buying, not mine
    ],
)
def test_what_asks_for_my_tickets(text: str, choice_id: str | None, wanted: str | None) -> None:
    assert my_tickets.wants(Inbound(text, choice_id)) == wanted


def test_every_code_the_engine_issues_is_taken_for_an_own_ticket() -> None:
    rng = random.Random(20261202)
    codes = {"TKT-" + "".join(rng.choice(CODE_ALPHABET) for _ in range(6)) for _ in range(5000)}
    codes |= {"TKT-" + c * 6 for c in CODE_ALPHABET} | {new_ticket_code() for _ in range(100)}
    for code in codes:
        for typed in (code, code.lower(), f" {code}. ", "#" + code):
            assert my_tickets.wants(Inbound(typed)) == code, typed


def test_an_own_ticket_code_at_the_menu_looks_the_tickets_up_and_the_state_stays() -> None:
    result = conversation.step(State(version=4), Inbound("TKT-7Q2M9X"), ctx())
    assert result.effects == (FindMyTickets("TKT-7Q2M9X"),) and result.state == State(version=4)
    inside = State("survey", "question", {"survey_id": "s1", "response_id": "r1", "question_id": "q1"})
    assert conversation.step(inside, Inbound("TKT-7Q2M9X"), ctx(survey=SURVEY)).effects[0] != FindMyTickets(
        "TKT-7Q2M9X"
    )


def test_my_tickets_lists_upcoming_events_and_sends_the_qr_codes_again() -> None:
    found = MyTickets("TKT-AAAAAA", (owned("TKT-AAAAAA"), owned("TKT-BBBBBB"), owned("TKT-CCCCCC", "used")))
    result = conversation.step(State(), found, ctx())
    summary, *images = result.replies
    assert body_of(summary).splitlines()[:2] == [
        "🎟 Your 3 tickets for upcoming events:",
        "• Jazz Night, 14/03/2025 18:00: 3 × Regular (1 used)",
    ]
    assert [i.ref for i in images if isinstance(i, Image)] == ["qr:TKT-AAAAAA", "qr:TKT-BBBBBB"]
    assert result.state == State() and result.effects == ()


def test_someone_elses_code_is_not_shown_and_their_own_tickets_are() -> None:
    (summary, image) = conversation.step(
        State(), MyTickets("TKT-ZZZZZZ", (owned("TKT-AAAAAA"),)), ctx()
    ).replies
    assert body_of(summary).startswith(
        "I couldn't find a ticket TKT-ZZZZZZ among your tickets.\n\n🎟 Your ticket"
    )
    assert image == Image("qr:TKT-AAAAAA", "🎟 Jazz Night\nAmina\nTKT-AAAAAA")


def test_no_tickets_at_all_offers_the_menu() -> None:
    (reply,) = conversation.step(State(), MyTickets(None, ()), ctx()).replies
    assert body_of(reply).startswith("You have no tickets for upcoming events.\n\nWelcome to Org!")


def test_my_tickets_in_swahili() -> None:
    c = replace(ctx(), language="sw")
    summary, _ = conversation.step(State(), MyTickets(None, (owned("TKT-AAAAAA"),)), c).replies
    assert body_of(summary).startswith("🎟 Tiketi yako ya tukio lijalo:")
