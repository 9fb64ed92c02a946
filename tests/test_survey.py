"""The survey module on its own: starting, answers of every kind, branching, skipping, resuming, timers."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from state_machines import survey
from state_machines.base import (
    Buttons,
    Charge,
    Context,
    Inbound,
    ListMenu,
    StartTimer,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.survey import (
    AbandonSurveyResponse,
    BeginSurveyResponse,
    CompleteSurvey,
    SaveSurveyAnswer,
    SurveyRefused,
    SurveyResponseReady,
    parse_answer,
)
from state_machines.survey_format import validate_questions
from tests.helpers import body_of, buttons_of, context

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def _options(*ids: str) -> list[dict[str, str]]:
    return [{"id": i, "text": i.capitalize()} for i in ids]


QUESTIONS: list[dict[str, Any]] = [
    {
        "id": "name",
        "type": "text",
        "text": {"en": "What is your name?", "sw": "Jina lako ni nani?"},
        "max_length": 20,
    },
    {"id": "age", "type": "number", "text": "How old are you?", "min": 18, "max": 120, "integer": True},
    {
        "id": "visited",
        "type": "yes_no",
        "text": {"en": "Have you visited before?", "sw": "Umewahi kutembelea?"},
        "branches": {"no": "heard"},
    },
    {"id": "rating", "type": "rating", "text": "Rate your last visit", "next": "topics"},
    {
        "id": "heard",
        "type": "single_choice",
        "text": "How did you hear about us?",
        "required": False,
        "options": _options("radio", "tv", "friend"),
    },
    {
        "id": "topics",
        "type": "multiple_choice",
        "text": "Which topics interest you?",
        "options": _options("music", "food", "art", "tech"),
    },
    {"id": "email", "type": "email", "text": "Your email?", "required": False},
    {"id": "phone", "type": "phone", "text": "Your phone number?"},
    {"id": "birthday", "type": "date", "text": "Your birthday?"},
    {"id": "spend", "type": "number", "text": "How much did you spend (KES)?", "min": 0, "required": False},
]
SURVEY = {
    "id": "s1",
    "title": "Visitor survey",
    "description": "Help us improve",
    "questions": QUESTIONS,
    "settings": {},
}
BY_ID = {q.id: q for q in validate_questions(QUESTIONS)}


def make_ctx(language: str = "en", **data: Any) -> Context:
    return context(
        NOW,
        language=language,
        org_name="Org",
        data={"survey": SURVEY, "offers": {"surveys": [SURVEY]}, **data},
    )


def at(question_id: str, position: int, **extra: Any) -> State:
    data = {"survey_id": "s1", "response_id": "r1", "question_id": question_id, "position": position, **extra}
    return State("survey", "question", data, version=7)


def body(reply: Any) -> str:
    return reply.body if hasattr(reply, "body") else reply.caption


def say(text: str, choice_id: str | None = None, kind: str = "text") -> Inbound:
    return Inbound(text=text, choice_id=choice_id, kind=kind)


TIMERS = (StartTimer("survey_reminder", 3600), StartTimer("survey_abandon", 86400))

# ---------------------------------------------------------------- starting


def test_start_asks_the_engine_for_a_response() -> None:
    result = survey.start("s1", State(), make_ctx())
    assert result == Step(State("survey", "starting", {"survey_id": "s1"}), (), (BeginSurveyResponse("s1"),))


@pytest.mark.parametrize(
    "offers",
    [{"surveys": []}, {"surveys": [{**SURVEY, "questions": [{"id": "q1", "type": "essay", "text": "?"}]}]}],
    ids=["not on offer", "invalid definition"],
)
def test_start_of_an_unavailable_survey_says_so(offers: dict) -> None:
    result = survey.start("s1", State(), replace(make_ctx(), data={"offers": offers}))
    assert result.state == State() and result.effects == ()
    (reply,) = result.replies  # the way on: the menu, without that survey
    assert body_of(reply).startswith("Sorry, this survey is not available.\n\n")


def test_ready_for_a_new_response_introduces_and_asks_the_first_question() -> None:
    result = survey.step(
        State("survey", "starting", {"survey_id": "s1"}), SurveyResponseReady("s1", "r1"), make_ctx()
    )
    intro, question = result.replies
    assert intro == Text(
        "*Visitor survey*\nHelp us improve\n9 questions. Send MENU to pause at any time; "
        "you can continue later."
    )
    assert question == Text("(1/9) What is your name?")  # every path through the branch asks 9
    assert result.state == State(
        "survey", "question", {"survey_id": "s1", "response_id": "r1", "question_id": "name", "position": 1}
    )
    assert result.effects == TIMERS


def test_timer_lengths_come_from_the_context() -> None:
    ctx = make_ctx(survey_reminder_seconds=60, survey_abandon_seconds=600)
    result = survey.step(
        State("survey", "starting", {"survey_id": "s1"}), SurveyResponseReady("s1", "r1"), ctx
    )
    assert result.effects == (StartTimer("survey_reminder", 60), StartTimer("survey_abandon", 600))


@pytest.mark.parametrize(
    ("answers", "current", "question", "position", "total"),
    [
        ({"name": "Amina", "age": 30}, "visited", "visited", 3, 9),
        ({"name": "Amina", "age": 30}, None, "visited", 3, 9),  # pointer missing: follow the answers
        ({"name": "Amina", "age": 30, "visited": False}, None, "heard", 4, 9),  # along the branch taken
        ({"name": "Amina", "age": 30, "visited": True}, "rating", "rating", 4, 9),
        ({"name": "Amina"}, "birthday", "birthday", 2, 3),  # an unexpected pointer wins; position by count
    ],
)
def test_ready_for_a_response_in_progress_resumes(
    answers: dict, current: str | None, question: str, position: int, total: int
) -> None:
    result = survey.step(
        State("survey", "starting", {"survey_id": "s1"}),
        SurveyResponseReady("s1", "r9", answers, current),
        make_ctx(),
    )
    assert result.replies[0] == Text("Welcome back to *Visitor survey*. Let's continue where you left off.")
    assert result.state.data == {
        "survey_id": "s1",
        "response_id": "r9",
        "question_id": question,
        "position": position,
    }
    assert body(result.replies[1]).split(" ", 1)[0] == f"({position}/{total})"
    assert body(result.replies[1]).split(" ", 1)[1].startswith(BY_ID[question].label("en"))


def test_ready_with_every_answer_given_completes_at_once() -> None:
    answers = {
        "name": "A",
        "age": 30,
        "visited": True,
        "rating": 5,
        "topics": ["art"],
        "email": None,
        "phone": "254712345678",
        "birthday": "1990-01-01",
        "spend": None,
    }
    result = survey.step(
        State("survey", "starting", {"survey_id": "s1"}), SurveyResponseReady("s1", "r1", answers), make_ctx()
    )
    assert result.state == State()
    assert result.effects == (CompleteSurvey("s1", "r1"), Charge("survey_completed", "surveys", "r1"))
    assert body_of(result.replies[-1]).startswith("Thank you for completing *Visitor survey*!\n\n")


@pytest.mark.parametrize(
    ("reason", "text"),
    [
        ("already_responded", "You have already completed *Visitor survey*. Thank you!"),
        ("full", "Sorry, *Visitor survey* has received all the responses it needs."),
        ("closed", "Sorry, *Visitor survey* is closed."),
        ("not_started", "*Visitor survey* has not started yet. Please try again later."),
        ("gremlins", "Sorry, this survey is not available."),
    ],
)
def test_refusals_explain_and_go_idle(reason: str, text: str) -> None:
    other = {**SURVEY, "id": "s2", "title": "Other"}
    ctx = make_ctx(offers={"surveys": [SURVEY, other]})
    result = survey.step(State("survey", "starting", {"survey_id": "s1"}), SurveyRefused("s1", reason), ctx)
    assert result.state == State() and result.effects == ()
    (reply,) = result.replies  # a next step: the menu, which leaves out the survey that was refused
    assert isinstance(reply, Buttons) and reply.body.startswith(f"{text}\n\nWelcome to Org!")
    assert [b.id for b in reply.buttons] == ["survey:s2"]


# ---------------------------------------------------------------- a whole survey, both branches


def _walk(answers: list[tuple[str, Inbound]], language: str = "en") -> tuple[list[Step], State]:
    ctx = make_ctx(language)
    state = at("name", 1)
    steps = []
    for expected_question, event in answers:
        assert state.data["question_id"] == expected_question
        result = survey.step(state, event, ctx)
        steps.append(result)
        state = result.state
    return steps, state


def test_full_survey_through_the_yes_branch() -> None:
    steps, final = _walk(
        [
            ("name", say("Amina")),
            ("age", say("34")),
            ("visited", say("Yes", "yes")),
            ("rating", say("4")),
            ("topics", say("1, 3")),
            ("email", say("SKIP")),
            ("phone", say("0712 345 678")),
            ("birthday", say("17/05/1990")),
            ("spend", say("1,500")),
        ]
    )
    saves = [e for s in steps for e in s.effects if isinstance(e, SaveSurveyAnswer)]
    assert saves == [
        SaveSurveyAnswer("r1", "name", "Amina", "age"),
        SaveSurveyAnswer("r1", "age", 34, "visited"),
        SaveSurveyAnswer("r1", "visited", True, "rating"),
        SaveSurveyAnswer("r1", "rating", 4, "topics"),
        SaveSurveyAnswer("r1", "topics", ["music", "art"], "email"),
        SaveSurveyAnswer("r1", "email", None, "phone"),
        SaveSurveyAnswer("r1", "phone", "254712345678", "birthday"),
        SaveSurveyAnswer("r1", "birthday", "1990-05-17", "spend"),
        SaveSurveyAnswer("r1", "spend", 1500, None),
    ]
    progress = [body(s.replies[0]).split(")")[0] for s in steps[:-1]]
    assert progress == ["(2/9", "(3/9", "(4/9", "(5/9", "(6/9", "(7/9", "(8/9", "(9/9"]  # then the end
    assert all(s.effects[-2:] == TIMERS for s in steps[:-1])
    assert final == State()
    assert steps[-1].effects[-2:] == (CompleteSurvey("s1", "r1"), Charge("survey_completed", "surveys", "r1"))
    assert body_of(steps[-1].replies[0]).startswith("Thank you for completing *Visitor survey*!")


def test_the_no_branch_asks_how_they_heard_and_skips_the_rating() -> None:
    steps, state = _walk(
        [
            ("name", say("Juma")),
            ("age", say("18")),
            ("visited", say("hapana")),
            ("heard", say(" FRIEND ")),
        ]
    )
    assert steps[2].effects[0] == SaveSurveyAnswer("r1", "visited", False, "heard")
    assert steps[3].effects[0] == SaveSurveyAnswer("r1", "heard", "friend", "topics")
    assert state.data["question_id"] == "topics" and state.data["position"] == 5


def test_the_question_reply_fits_the_kind() -> None:
    ctx = make_ctx()
    yes_no = survey.reprompt(at("visited", 3), ctx)[0]
    assert yes_no == Buttons("(3/9) Have you visited before?", buttons_of(yes_no))
    assert [(b.id, b.title) for b in yes_no.buttons] == [("yes", "Yes"), ("no", "No")]
    rating = survey.reprompt(at("rating", 4), ctx)[0]
    assert isinstance(rating, ListMenu) and [r.id for r in rating.rows] == ["1", "2", "3", "4", "5"]
    heard = survey.reprompt(at("heard", 4), ctx)[0]  # optional: a Skip choice is offered
    assert isinstance(heard, ListMenu) and [r.id for r in heard.rows] == ["radio", "tv", "friend", "_skip"]
    assert heard.body == "(4/9) How did you hear about us?\n(optional: send SKIP to skip)"
    topics = survey.reprompt(at("topics", 5), ctx)[0]
    assert "You can choose several: reply with their numbers, e.g. 1, 3" in body_of(topics)
    assert survey.reprompt(at("email", 6), ctx) == (Text("(6/9) Your email?\n(optional: send SKIP to skip)"),)


def test_swahili_questions_choices_and_errors() -> None:
    ctx = make_ctx("sw")
    question = survey.reprompt(at("visited", 3), ctx)[0]
    assert body_of(question) == "(3/9) Umewahi kutembelea?"
    assert [b.title for b in buttons_of(question)] == ["Ndiyo", "Hapana"]
    assert survey.reprompt(at("name", 1), ctx) == (Text("(1/9) Jina lako ni nani?"),)
    result = survey.step(at("age", 2), say("kumi"), ctx)
    assert result.replies == (
        Text("Tafadhali jibu kwa nambari kamili kati ya 18 na 120.\n\n(2/9) How old are you?"),
    )
    saved = survey.step(at("visited", 3), say("Ndiyo", "yes"), ctx).effects[0]
    assert isinstance(saved, survey.SaveSurveyAnswer) and saved.value is True


# ---------------------------------------------------------------- answers of every kind

VALID = [
    ("name", say("  Amina Wanjiru "), "Amina Wanjiru"),
    ("name", say("x" * 20), "x" * 20),
    ("age", say("18"), 18),
    ("age", say("120"), 120),
    ("age", say(" 45 "), 45),
    ("spend", say("0"), 0),
    ("spend", say("1,500"), 1500),
    ("spend", say("12,000.50"), 12000.5),
    ("spend", say("2,5"), 2.5),
    ("spend", say("12.75"), 12.75),
    ("visited", say("Yes", "yes"), True),
    ("visited", say("YES"), True),
    ("visited", say("ndiyo"), True),
    ("visited", say("y"), True),
    ("visited", say("1"), True),
    ("visited", say("n"), False),
    ("visited", say(" No "), False),
    ("visited", say("2"), False),
    ("rating", say("1"), 1),
    ("rating", say("5"), 5),
    ("rating", say("3. ⭐⭐⭐", "3"), 3),
    ("rating", say("⭐⭐⭐⭐"), 4),
    ("heard", say("1. Radio", "radio"), "radio"),
    ("heard", say("2"), "tv"),
    ("heard", say(" FRIEND "), "friend"),
    ("heard", say("fri"), "friend"),
    ("topics", say("1, 3"), ["music", "art"]),
    ("topics", say("3 1"), ["music", "art"]),
    ("topics", say("tech and food"), ["food", "tech"]),
    ("topics", say("3. Art", "art"), ["art"]),
    ("topics", say("2"), ["food"]),
    ("email", say(" Amina@Example.COM "), "Amina@example.com"),
    ("email", say("j.doe+news@mail.co.ke"), "j.doe+news@mail.co.ke"),
    ("phone", say("0712345678"), "254712345678"),
    ("phone", say("0112345678"), "254112345678"),
    ("phone", say("+254712345678"), "254712345678"),
    ("phone", say("254712345678"), "254712345678"),
    ("phone", say("0712 345-678"), "254712345678"),
    ("birthday", say("1990-05-17"), "1990-05-17"),
    ("birthday", say("17/05/1990"), "1990-05-17"),
    ("birthday", say("5/1/2000"), "2000-01-05"),
    ("birthday", say("29/02/2024"), "2024-02-29"),
]


@pytest.mark.parametrize(("qid", "event", "value"), VALID)
def test_valid_answers(qid: str, event: Inbound, value: Any) -> None:
    assert parse_answer(BY_ID[qid], event, "en") == (value, None)


INVALID = [
    ("name", say(""), "Please reply with a text message."),
    ("name", say("   "), "Please reply with a text message."),
    ("name", say("", kind="image"), "Please reply with a text message."),
    ("name", say("x" * 21), "Please keep your answer under 20 characters."),
    ("age", say("17"), "Please reply with a whole number from 18 to 120."),
    ("age", say("121"), "Please reply with a whole number from 18 to 120."),
    ("age", say("30.5"), "Please reply with a whole number from 18 to 120."),
    ("age", say("thirty"), "Please reply with a whole number from 18 to 120."),
    ("age", say("-20"), "Please reply with a whole number from 18 to 120."),
    ("spend", say("-1"), "Please reply with a number of at least 0."),
    ("spend", say("1.2.3"), "Please reply with a number of at least 0."),
    ("spend", say("KES 100"), "Please reply with a number of at least 0."),
    ("visited", say("maybe"), "Please reply YES or NO."),
    ("visited", say("3"), "Please reply YES or NO."),
    ("rating", say("0"), "Please reply with a number from 1 to 5."),
    ("rating", say("6"), "Please reply with a number from 1 to 5."),
    ("rating", say("great"), "Please reply with a number from 1 to 5."),
    ("heard", say("5"), "Please reply with a number from 1 to 4."),
    ("heard", say("newspaper"), "Please reply with a number from 1 to 4."),
    ("topics", say("1, 9"), "Please reply with one or more numbers from 1 to 4, e.g. 1, 3."),
    ("topics", say(""), "Please reply with one or more numbers from 1 to 4, e.g. 1, 3."),
    ("email", say("amina@"), "Please reply with an email address, e.g. name@example.com."),
    ("email", say("amina at example.com"), "Please reply with an email address, e.g. name@example.com."),
    ("email", say("a b@example.com"), "Please reply with an email address, e.g. name@example.com."),
    ("phone", say("0812345678"), "Please reply with a Kenyan phone number, e.g. 0712345678."),
    ("phone", say("071234567"), "Please reply with a Kenyan phone number, e.g. 0712345678."),
    ("phone", say("07123456789"), "Please reply with a Kenyan phone number, e.g. 0712345678."),
    ("phone", say("+255712345678"), "Please reply with a Kenyan phone number, e.g. 0712345678."),
    ("birthday", say("31/02/1990"), "Please reply with a date as DD/MM/YYYY, e.g. 25/12/2024."),
    ("birthday", say("1990/05/17"), "Please reply with a date as DD/MM/YYYY, e.g. 25/12/2024."),
    ("birthday", say("yesterday"), "Please reply with a date as DD/MM/YYYY, e.g. 25/12/2024."),
]


@pytest.mark.parametrize(("qid", "event", "error"), INVALID)
def test_invalid_answers_say_what_is_expected(qid: str, event: Inbound, error: str) -> None:
    assert parse_answer(BY_ID[qid], event, "en") == (None, error)


@pytest.mark.parametrize(
    ("qid", "event", "expected"),
    [
        ("email", say("SKIP"), (None, None)),
        ("email", say(" ruka "), (None, None)),
        ("heard", say("Skip", "_skip"), (None, None)),
        ("heard", say("4"), (None, None)),  # the number of the Skip choice
        ("spend", say("skip."), (None, None)),
        ("name", say("skip"), (None, "This question needs an answer.")),
        ("visited", say("RUKA"), (None, "This question needs an answer.")),
        ("topics", say("skip"), (None, "This question needs an answer.")),
    ],
)
def test_skip_only_optional_questions(qid: str, event: Inbound, expected: tuple) -> None:
    assert parse_answer(BY_ID[qid], event, "en") == expected


def test_a_skipped_optional_question_saves_none_and_goes_on() -> None:
    result = survey.step(at("email", 6), say("skip"), make_ctx())
    assert result.effects[0] == SaveSurveyAnswer("r1", "email", None, "phone")
    assert result.state.data["question_id"] == "phone"


def test_an_invalid_answer_counts_a_failure_and_rearms_the_timers() -> None:
    ctx = make_ctx()
    first = survey.step(at("age", 2), say("old"), ctx)
    assert first.state == State("survey", "question", {**at("age", 2).data, "failures": 1})
    assert first.replies == (
        Text("Please reply with a whole number from 18 to 120.\n\n(2/9) How old are you?"),
    )
    assert first.effects == TIMERS
    second = survey.step(first.state, say("200"), ctx)
    assert second.state.data["failures"] == 2
    accepted = survey.step(second.state, say("40"), ctx)
    assert "failures" not in accepted.state.data and accepted.state.data["question_id"] == "visited"


def test_a_bad_choice_offers_the_choices_again() -> None:
    result = survey.step(at("heard", 4), say("9"), make_ctx())
    (reply,) = result.replies
    assert isinstance(reply, ListMenu)
    assert reply.body == (
        "Please reply with a number from 1 to 4.\n\n(4/9) How did you hear about us?\n(optional: send SKIP to skip)"
    )
    assert [r.id for r in reply.rows] == ["radio", "tv", "friend", "_skip"]


# ---------------------------------------------------------------- timers, cancel, odd events


def test_a_reminder_repeats_the_question_without_changing_anything() -> None:
    state = at("age", 2)
    result = survey.step(state, TimerFired("survey_reminder", 7), make_ctx())
    assert result.state == state and result.effects == ()
    assert result.replies == (
        Text("A reminder: *Visitor survey* is waiting for your answer."),
        Text("(2/9) How old are you?"),
    )


def test_abandon_closes_the_response_and_leaves_a_notice() -> None:
    result = survey.step(at("age", 2), TimerFired("survey_abandon", 7), make_ctx())
    assert result == Step(
        State(data={"notice": "survey_abandoned", "survey_title": "Visitor survey"}),
        (),
        (AbandonSurveyResponse("r1"),),
    )
    assert survey.abandoned_notice(result.state.data, "en") == (
        "Your survey *Visitor survey* was closed because of inactivity."
    )


@pytest.mark.parametrize("event", [TimerFired("survey_reminder", 1), TimerFired("other", 1), say("hello")])
def test_nothing_happens_while_waiting_for_the_engine(event: Any) -> None:
    state = State("survey", "starting", {"survey_id": "s1"})
    assert survey.step(state, event, make_ctx()) == Step(state)


def test_cancel_abandons_the_response() -> None:
    assert survey.cancel(at("age", 2), make_ctx()) == Step(
        State(), (Text("You left *Visitor survey*."),), (AbandonSurveyResponse("r1"),)
    )
    assert survey.cancel(State("survey", "starting", {"survey_id": "s1"}), make_ctx()).effects == ()


def test_a_survey_that_disappeared_mid_way() -> None:
    ctx = replace(make_ctx(), data={"offers": {}})
    gone = survey.step(at("age", 2), say("30"), ctx)
    assert gone.state == State() and body_of(gone.replies[0]).startswith(
        "Sorry, this survey is not available."
    )
    assert survey.step(at("age", 2), TimerFired("survey_reminder", 7), ctx) == Step(State())
    assert survey.reprompt(at("age", 2), ctx) == ()
