"""The router: menu, keywords at every step, opt-out, failures, versions and timers, notices, check-in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from state_machines import conversation, tickets
from state_machines.base import (
    Buttons,
    Charge,
    Context,
    Inbound,
    ListMenu,
    OptIn,
    OptOut,
    PaymentResult,
    SetLanguage,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.checkin import CheckInOutcome, CheckInTicket
from state_machines.knowledge import ClassifyIntent, KnowledgeAnswer
from state_machines.my_tickets import FindMyTickets
from state_machines.poll import CastVote, VoteRecorded
from state_machines.survey import (
    AbandonSurveyResponse,
    BeginSurveyResponse,
    CompleteSurvey,
    SaveSurveyAnswer,
    SurveyResponseReady,
)
from tests.helpers import body_of, buttons_of, context

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

SURVEY = {
    "id": "s1",
    "title": "Feedback",
    "description": "Three quick questions",
    "settings": {},
    "questions": [
        {
            "id": "kids",
            "type": "number",
            "text": {"en": "How many children do you have?", "sw": "Una watoto wangapi?"},
            "min": 0,
            "max": 20,
            "integer": True,
        },
        {"id": "again", "type": "yes_no", "text": {"en": "Would you come again?", "sw": "Ungekuja tena?"}},
        {"id": "comment", "type": "text", "text": "Any comment?", "required": False},
    ],
}
EVENT = {
    "id": "e1",
    "name": "Jazz Night",
    "starts_at": datetime(2025, 3, 14, 15, 0, tzinfo=UTC),
    "venue_name": "Carnivore",
    "status": "published",
    "ticket_types": [
        {
            "id": "t1",
            "name": "Regular",
            "price": Decimal("1500"),
            "currency": "KES",
            "remaining": 50,
            "max_per_order": 5,
            "sales_start_at": None,
            "sales_end_at": None,
            "is_active": True,
        }
    ],
}
POLL = {
    "id": "p1",
    "question": "Best snack?",
    "allow_multiple": False,
    "show_results": True,
    "ends_at": None,
    "options": [{"id": "o1", "text": "Samosa", "votes": 0}, {"id": "o2", "text": "Mandazi", "votes": 0}],
}
OFFERS = {"surveys": [SURVEY], "events": [EVENT], "polls": [POLL]}
MENU_IDS = ["survey:s1", "event:e1", "poll:p1"]


def make_ctx(
    language: str = "en",
    *,
    opted_in: bool = True,
    first: bool = False,
    staff: bool = False,
    offers: dict | None = None,
    org: str = "Org",
) -> Context:
    # The engine loads what the current step reads; here every module's data is always there.
    data = {"offers": OFFERS if offers is None else offers, "survey": SURVEY, "poll": POLL, "event": EVENT}
    return context(
        NOW,
        language=language,
        contact_phone="254712345678",
        contact_name="Amina",
        opted_in=opted_in,
        is_first_message=first,
        is_staff=staff,
        org_name=org,
        data=data,
    )


def say(text: str, choice_id: str | None = None) -> Inbound:
    return Inbound(text=text, choice_id=choice_id)


def survey_at(question: str, position: int, **extra: Any) -> State:
    data = {"survey_id": "s1", "response_id": "r1", "question_id": question, "position": position, **extra}
    return State("survey", "question", data, version=5)


POLL_VOTE = State("poll", "vote", {"poll_id": "p1"}, version=5)
TICKETS_TYPE = State("tickets", "choose_type", {"event_id": "e1", "event_name": "Jazz Night"}, version=5)
IDLE = State(version=5)
STEPS = {
    "idle": IDLE,
    "survey number": survey_at("kids", 1),
    "survey yes/no": survey_at("again", 2, failures=2),
    "poll": POLL_VOTE,
    "tickets": TICKETS_TYPE,
}


def go(state: State, event: Any, ctx: Context | None = None) -> Step:
    return conversation.step(state, event, ctx or make_ctx())


def menu_of(reply: Any) -> list[str]:
    if isinstance(reply, Buttons):
        return [b.id for b in reply.buttons]
    assert isinstance(reply, ListMenu), reply
    return [r.id for r in reply.rows]


# ---------------------------------------------------------------- the menu


def test_a_first_message_gets_the_menu() -> None:
    result = go(State(), say("Niaje"), make_ctx(first=True))
    (reply,) = result.replies
    assert isinstance(reply, Buttons)
    assert reply.body == "Welcome to Org! What would you like to do? Choose an option."
    assert menu_of(reply) == MENU_IDS and [b.title for b in reply.buttons] == [
        "Feedback",
        "Jazz Night",
        "Best snack?",
    ]
    assert result.state == State() and result.effects == ()


@pytest.mark.parametrize("word", ["MENU", "menu", " Hi ", "hello!", "0", "Mwanzo", "MENYU"])
def test_menu_words_show_the_menu(word: str) -> None:
    (reply,) = go(IDLE, say(word)).replies
    assert menu_of(reply) == MENU_IDS


def test_more_than_three_offers_make_a_list_with_details() -> None:
    offers = {
        "surveys": [SURVEY, {**SURVEY, "id": "s2", "title": "Second"}],
        "events": [EVENT],
        "polls": [POLL],
    }
    (reply,) = go(IDLE, say("menu"), make_ctx("sw", offers=offers, org="")).replies
    assert isinstance(reply, ListMenu) and reply.button == "Menyu"
    assert reply.body == "Ungependa kufanya nini? Chagua moja."
    event_row = reply.rows[2]
    assert (event_row.id, event_row.title, event_row.description) == (
        "event:e1",
        "3. Jazz Night",
        "14/03/2025 18:00 · Carnivore",
    )  # shown in Nairobi time
    assert reply.rows[0].description == "Three quick questions"


def test_more_than_ten_offers_become_numbered_text_and_numbers_still_work() -> None:
    polls = [{**POLL, "id": f"p{i}", "question": f"Question {i}"} for i in range(1, 13)]
    ctx = make_ctx(offers={"polls": polls})
    (reply,) = go(IDLE, say("menu"), ctx).replies
    assert isinstance(reply, Text) and reply.body.endswith("11. Question 11\n12. Question 12")
    chosen = go(IDLE, say("12"), replace(ctx, data={**ctx.data, "poll": polls[11]}))
    assert chosen.state.data == {"poll_id": "p12"}


def test_nothing_on_offer() -> None:
    result = go(IDLE, say("hi"), make_ctx(offers={}))
    assert result.replies == (
        Text(
            "There is nothing on offer right now. Please check again later. Send HELP to see what you can do."
        ),
    )


def test_free_text_at_the_menu_goes_to_the_knowledge_module() -> None:
    result = go(IDLE, say("what is this"))
    assert result.replies == () and result.state == State(
        "knowledge", "classifying", {"question": "what is this"}, version=6
    )
    (classify,) = result.effects
    assert isinstance(classify, ClassifyIntent) and classify.question == "what is this"
    assert [c.item for c in classify.choices] == MENU_IDS


def test_an_unknown_message_at_the_menu_says_so_and_shows_the_menu() -> None:
    asked = go(IDLE, say("what is this"))
    (reply,) = go(asked.state, KnowledgeAnswer("", found=False)).replies
    assert body_of(reply).startswith("Sorry, I don't know the answer to that.\n\n")
    assert menu_of(reply) == MENU_IDS


def test_a_message_without_text_at_the_menu_gets_one_short_line_not_the_menu() -> None:
    result = go(IDLE, Inbound(text="", kind="location"))
    assert result.replies == (Text("I can read text: reply with a number or tap a button."),)
    assert result.state == IDLE and result.effects == ()


@pytest.mark.parametrize("event", [say("Feedback", "survey:s1"), say("1"), say("  feedBACK ")])
def test_choosing_a_survey_starts_it(event: Inbound) -> None:
    result = go(IDLE, event)
    assert result.effects == (BeginSurveyResponse("s1"),)
    assert result.state == State("survey", "starting", {"survey_id": "s1"}, version=6)


def test_choosing_an_event_starts_the_ticket_purchase() -> None:
    result = go(IDLE, say("2"))
    assert (result.state.module, result.state.step) == ("tickets", "choose_type")
    assert "Jazz Night" in body_of(result.replies[0])


def test_choosing_a_poll_asks_it() -> None:
    result = go(IDLE, say("Best snack?", "poll:p1"))
    assert result.state == replace(POLL_VOTE, version=6)
    assert body_of(result.replies[0]) == "Best snack?"


def test_a_menu_item_tapped_inside_a_flow_leaves_it_and_starts_the_item() -> None:
    result = go(survey_at("again", 2), say("Best snack?", "poll:p1"))
    assert result.state.module == "poll" and result.effects == ()  # the survey stays in progress


# ---------------------------------------------------------------- keywords at every step


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("word", ["STOP", "unsubscribe", "Acha"])
def test_stop_at_any_step_opts_out_and_keeps_the_state(name: str, word: str) -> None:
    state = STEPS[name]
    result = go(state, say(word))
    assert result == Step(
        state,
        (
            Text(
                "You have been unsubscribed and will get no more messages from us. "
                "Send START to subscribe again."
            ),
        ),
        (OptOut(),),
    )


@pytest.mark.parametrize(
    ("name", "prompt"),
    [
        ("idle", "Welcome to Org!"),
        ("survey number", "(1/3) How many children do you have?"),
        ("survey yes/no", "(2/3) Would you come again?"),
        ("poll", "Best snack?"),
        ("tickets", "🎟 *Jazz Night*"),
    ],
)
@pytest.mark.parametrize("word", ["HELP", "msaada"])
def test_help_at_any_step_explains_and_asks_again(name: str, prompt: str, word: str) -> None:
    state = STEPS[name]
    result = go(state, say(word))
    assert result.state == state and result.effects == ()
    assert body_of(result.replies[0]).startswith("You can send these words at any time:")
    assert body_of(result.replies[1]).startswith(prompt)


@pytest.mark.parametrize("name", STEPS)
def test_menu_at_any_step_goes_idle(name: str) -> None:
    state = STEPS[name]
    result = go(state, say("menu"))
    assert result.state == State(version=state.version + (0 if state == IDLE else 1))
    assert menu_of(result.replies[-1]) == MENU_IDS
    assert result.effects == ()  # a survey response stays in progress; nothing is held at choose_type


@pytest.mark.parametrize(
    ("name", "said", "effects"),
    [
        ("idle", "OK, cancelled.", ()),
        ("survey number", "You left *Feedback*.", (AbandonSurveyResponse("r1"),)),
        ("poll", "OK, cancelled.", ()),
        ("tickets", "Your ticket purchase is cancelled.", ()),
    ],
)
@pytest.mark.parametrize("word", ["CANCEL", "sitisha", "Ghairi"])
def test_cancel_at_any_step_leaves_the_flow(name: str, said: str, effects: tuple, word: str) -> None:
    result = go(STEPS[name], say(word))
    assert result.state.module is None and result.effects == effects
    (reply,) = result.replies  # what was left said on top of the menu: one message, no "send MENU" before it
    assert body_of(reply).startswith(f"{said}\n\nWelcome to Org!") and menu_of(reply) == MENU_IDS


@pytest.mark.parametrize(
    ("name", "prompt"),
    [
        ("idle", "Karibu Org!"),
        ("survey number", "(1/3) Una watoto wangapi?"),
        ("survey yes/no", "(2/3) Ungekuja tena?"),
        ("poll", "Best snack?"),
        ("tickets", "🎟 *Jazz Night*"),
    ],
)
@pytest.mark.parametrize("word", ["SW", "swahili", "Kiswahili"])
def test_switching_to_swahili_at_any_step_asks_again_in_swahili(name: str, prompt: str, word: str) -> None:
    state = STEPS[name]
    result = go(state, say(word))
    assert result.state == state and result.effects == (SetLanguage("sw"),)
    assert result.replies[0] == Text("Sawa, nitaandika kwa Kiswahili.")
    assert body_of(result.replies[1]).startswith(prompt)


def test_switching_to_english_mid_survey() -> None:
    result = go(survey_at("again", 2), say("english"), make_ctx("sw"))
    assert result.effects == (SetLanguage("en"),)
    assert result.replies[0] == Text("OK, I will write in English.")
    assert body_of(result.replies[1]) == "(2/3) Would you come again?"
    assert [b.title for b in buttons_of(result.replies[1])] == ["Yes", "No"]


def test_a_tapped_choice_is_never_a_keyword() -> None:
    poll = {
        **POLL,
        "options": [{"id": "o1", "text": "Stop", "votes": 0}, {"id": "o2", "text": "Go", "votes": 0}],
    }
    ctx = replace(make_ctx(), data={**make_ctx().data, "poll": poll})
    assert go(POLL_VOTE, say("Stop", "o1"), ctx).effects == (CastVote("p1", ("o1",)),)


# ---------------------------------------------------------------- the soft keyword "0"


def test_zero_answers_a_number_question_that_allows_it() -> None:
    result = go(survey_at("kids", 1), say("0"))
    assert result.effects[0] == SaveSurveyAnswer("r1", "kids", 0, "again")


@pytest.mark.parametrize("name", ["survey yes/no", "poll", "tickets"])
def test_zero_elsewhere_is_the_menu(name: str) -> None:
    result = go(STEPS[name], say("0"))
    assert result.state.module is None and menu_of(result.replies[-1]) == MENU_IDS


# ---------------------------------------------------------------- opted out


@pytest.mark.parametrize("name", STEPS)
@pytest.mark.parametrize("word", ["hello", "1", "MENU", "HELP", "STOP"])
def test_an_opted_out_contact_is_only_told_how_to_come_back(name: str, word: str) -> None:
    state = STEPS[name]
    result = go(state, say(word), make_ctx(opted_in=False))
    assert result == Step(state, (Text("You are unsubscribed. Send START to get messages from us again."),))


@pytest.mark.parametrize("word", ["START", "start", "Anza"])
def test_start_opts_in_and_welcomes(word: str) -> None:
    result = go(survey_at("kids", 1), say(word), make_ctx(opted_in=False))
    assert result.effects == (OptIn(),)
    assert result.replies[0] == Text("Welcome! You are subscribed and will get our messages.")
    assert menu_of(result.replies[1]) == MENU_IDS
    assert result.state == State(version=6)


def test_timers_never_speak_to_an_opted_out_contact() -> None:
    state = survey_at("kids", 1)
    reminder = go(state, TimerFired("survey_reminder", 5), make_ctx(opted_in=False))
    assert reminder == Step(state)
    abandon = go(state, TimerFired("survey_abandon", 5), make_ctx(opted_in=False))
    assert abandon.replies == () and abandon.effects == (AbandonSurveyResponse("r1"),)


# ---------------------------------------------------------------- versions, timers and the abandon notice


def test_the_version_moves_only_when_the_state_changes() -> None:
    assert go(survey_at("kids", 1), say("3")).state.version == 6
    assert go(survey_at("kids", 1), say("help")).state.version == 5
    assert go(IDLE, say("menu")).state.version == 5


@pytest.mark.parametrize("version", [4, 6])
def test_stale_timers_are_ignored(version: int) -> None:
    state = survey_at("kids", 1)
    for kind in ("survey_reminder", "survey_abandon"):
        assert go(state, TimerFired(kind, version)) == Step(state)


def test_timers_at_the_menu_are_ignored() -> None:
    assert go(IDLE, TimerFired("survey_reminder", 5)) == Step(IDLE)


def test_a_current_reminder_asks_again() -> None:
    state = survey_at("kids", 1)
    result = go(state, TimerFired("survey_reminder", 5))
    assert result.state == state
    assert result.replies == (
        Text("A reminder: *Feedback* is waiting for your answer."),
        Text("(1/3) How many children do you have?"),
    )


def test_after_abandon_the_next_message_first_hears_why() -> None:
    abandoned = go(survey_at("again", 2), TimerFired("survey_abandon", 5))
    assert abandoned.effects == (AbandonSurveyResponse("r1"),) and abandoned.replies == ()
    assert abandoned.state == State(
        data={"notice": "survey_abandoned", "survey_title": "Feedback"}, version=6
    )
    later = go(abandoned.state, say("hi"))
    assert later.replies[0] == Text("Your survey *Feedback* was closed because of inactivity.")
    assert menu_of(later.replies[1]) == MENU_IDS
    assert later.state == State(version=7)
    chosen = go(abandoned.state, say("1"), make_ctx("sw"))
    assert chosen.replies[0] == Text("Utafiti wako *Feedback* ulifungwa kwa sababu ya kutokuwa na shughuli.")
    assert chosen.effects == (BeginSurveyResponse("s1"),)


# ---------------------------------------------------------------- failures


def test_three_unusable_answers_offer_the_menu_and_keep_the_response() -> None:
    state = survey_at("again", 2)
    first = go(state, say("perhaps"))
    assert body_of(first.replies[0]) == "Please reply YES or NO.\n\n(2/3) Would you come again?"
    assert first.state.data["failures"] == 1
    second = go(first.state, say("hmm"))
    assert second.state.data["failures"] == 2
    third = go(second.state, say("what"))
    assert third.state == State(version=8)
    (reply,) = third.replies
    assert body_of(reply).startswith("Let's go back to the menu. Your progress is saved")
    assert menu_of(reply) == MENU_IDS
    assert not any(isinstance(e, AbandonSurveyResponse) for e in third.effects)


def test_a_good_answer_resets_the_failures() -> None:
    result = go(survey_at("again", 2, failures=2), say("yes"))
    assert result.state.data == {
        "survey_id": "s1",
        "response_id": "r1",
        "question_id": "comment",
        "position": 3,
    }


def test_three_unusable_votes_offer_the_menu() -> None:
    state = POLL_VOTE
    for _ in range(3):
        result = go(state, say("pizza"))
        state = result.state
    assert state.module is None and menu_of(result.replies[0]) == MENU_IDS


# ---------------------------------------------------------------- whole flows through the router


def test_a_survey_from_the_menu_to_the_end_with_a_pause() -> None:
    ctx = make_ctx()
    started = go(IDLE, say("1"), ctx)
    ready = go(started.state, SurveyResponseReady("s1", "r1"), ctx)
    assert ready.replies[1] == Text("(1/3) How many children do you have?")
    answered = go(ready.state, say("2"), ctx)
    paused = go(answered.state, say("menu"), ctx)
    assert paused.state.module is None
    again = go(paused.state, say("Feedback", "survey:s1"), ctx)
    resumed = go(again.state, SurveyResponseReady("s1", "r1", {"kids": 2}, "again"), ctx)
    assert resumed.replies[0] == Text("Welcome back to *Feedback*. Let's continue where you left off.")
    assert body_of(resumed.replies[1]) == "(2/3) Would you come again?"
    yes = go(resumed.state, say("Yes", "yes"), ctx)
    done = go(yes.state, say("skip"), ctx)
    assert done.state.module is None
    assert done.effects == (
        SaveSurveyAnswer("r1", "comment", None, None),
        CompleteSurvey("s1", "r1"),
        Charge("survey_completed", "surveys", "r1"),
    )


def test_a_poll_vote_with_its_follow_up() -> None:
    cast = go(POLL_VOTE, say(" samosa "))
    assert cast.effects == (CastVote("p1", ("o1",)),)
    recorded = go(cast.state, VoteRecorded("p1", {"o1": 3, "o2": 1}, 4))
    assert "Samosa: 3 (75%)\nMandazi: 1 (25%)\n\nWelcome to Org!" in body_of(recorded.replies[0])
    assert recorded.state == State(version=cast.state.version + 1)


def _awaiting_payment() -> State:
    ctx = make_ctx()
    state = go(IDLE, say("2"), ctx).state
    for text in ("Regular", "1", "Amina Wanjiru", "skip", "yes"):
        state = go(state, say(text), ctx).state
    held = tickets.TicketsHeld("h1", "t1", 1, Decimal("1500"), Decimal("1500"), NOW + timedelta(minutes=10))
    state = go(state, held, ctx).state
    assert (state.module, state.step) == ("tickets", "awaiting_payment")
    return state


def test_menu_while_paying_releases_the_hold() -> None:
    result = go(_awaiting_payment(), say("menu"))
    assert tickets.ReleaseHold("h1", "cancelled") in result.effects
    assert result.state.module is None and menu_of(result.replies[-1]) == MENU_IDS


def test_the_payment_timer_is_checked_by_its_hold_not_the_version() -> None:
    state = _awaiting_payment()
    fired = go(state, TimerFired(tickets.PAYMENT_TIMER, state.version - 1, {"hold_id": "h1"}))
    assert tickets.QueryPayment("h1", 1) in fired.effects  # M-Pesa is asked before anything is released
    grace = go(fired.state, TimerFired(tickets.GRACE_TIMER, 0, {"hold_id": "h1", "attempt": 2}))
    assert tickets.QueryPayment("h1", 2) in grace.effects


def test_follow_ups_reach_their_module_whatever_the_state() -> None:
    assert go(IDLE, PaymentResult("ws_CO_1", 0)) == Step(IDLE)
    outcome = CheckInOutcome("TKT-7Q2M9X", "valid", "Amina", "Jazz Night", "Regular")
    result = go(survey_at("kids", 1), outcome, make_ctx(staff=True))
    assert result.state == survey_at("kids", 1) and len(result.replies) == 1


# ---------------------------------------------------------------- staff check-in


@pytest.mark.parametrize("name", ["idle", "survey yes/no", "poll"])
@pytest.mark.parametrize("text", ["TKT-7Q2M9X", "checkin tkt-7q2m9x", "CHECK IN TKT-7Q2M9X"])
def test_staff_codes_check_in_at_any_step(name: str, text: str) -> None:
    state = STEPS[name]
    assert go(state, say(text), make_ctx(staff=True)) == Step(state, (), (CheckInTicket("TKT-7Q2M9X"),))


def test_codes_from_other_contacts_are_ordinary_messages() -> None:
    result = go(IDLE, say("TKT-7Q2M9X"))
    assert result.effects == (FindMyTickets("TKT-7Q2M9X"),)  # their own tickets, never a check-in
    assert [type(e) for e in go(IDLE, say("ABC-123")).effects] == [ClassifyIntent]  # not our code format
    text_answer = go(survey_at("comment", 3), say("checkin was slow"))
    assert text_answer.effects[0] == SaveSurveyAnswer("r1", "comment", "checkin was slow", None)


def test_every_module_has_a_route() -> None:
    assert set(conversation.MODULES) == {
        "survey",
        "tickets",
        "poll",
        "checkin",
        "knowledge",
        "hypecard",
        "my_tickets",
        "agenda",
        "exhibitors",
        "rsvp",
        "venue",
        "programme",
        "handover",
    }
    assert set(conversation.ITEM_MODULES.values()) <= set(conversation.MODULES)
    assert all(conversation.MODULES[m].start for m in conversation.ITEM_MODULES.values())
