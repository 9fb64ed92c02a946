"""The knowledge module (pure): free text -> intent -> answer, keyword intents, charging, and the router's use."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from state_machines import conversation, knowledge
from state_machines.base import Buttons, Context, Inbound, State, Text
from state_machines.knowledge import (
    AnswerQuestion,
    ChargeAnswer,
    ClassifyIntent,
    IntentChoice,
    IntentClassified,
    KnowledgeAnswer,
    ModelUsage,
    clip,
    keyword_item,
)
from tests.helpers import body_of, context

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
OFFERS = {
    "surveys": [{"id": "s1", "title": "Visitor feedback"}],
    "events": [{"id": "e1", "name": "Jazz Night", "venue_name": "Carnivore"}],
    "polls": [{"id": "p1", "question": "Best snack?", "options": []}],
}
CHOICES = (
    IntentChoice("survey:s1", "Visitor feedback"),
    IntentChoice("event:e1", "Jazz Night"),
    IntentChoice("poll:p1", "Best snack?"),
)
USAGE = ModelUsage("gpt-4o-mini", 420, 35)


def ctx(language: str = "en", offers: dict | None = None, first: bool = False) -> Context:
    return context(
        NOW,
        language=language,
        is_first_message=first,
        org_name="Jazz Fest",
        data={"offers": OFFERS if offers is None else offers},
    )


ASKING = State("knowledge", "answering", {"question": "what time do gates open?"})


def test_idle_free_text_is_classified_with_the_offers_and_a_keyword_guess() -> None:
    result = conversation.step(State(), Inbound("I want tickets please"), ctx())
    assert result.state == State("knowledge", "classifying", {"question": "I want tickets please"}, version=1)
    assert result.effects == (ClassifyIntent("I want tickets please", "en", CHOICES, "event:e1"),)
    assert result.replies == ()


def test_with_nothing_on_offer_the_question_goes_straight_to_the_knowledge_base() -> None:
    result = conversation.step(State(), Inbound("what time do gates open?"), ctx(offers={}))
    assert result.effects == (AnswerQuestion("what time do gates open?", "en"),)
    assert result.state.step == "answering"


@pytest.mark.parametrize("text", ["hi", "Niaje", "Hello there", "Habari yako", "Good morning", "🙂", "ok"])
def test_a_first_message_that_is_no_question_gets_the_menu(text: str) -> None:
    result = conversation.step(State(), Inbound(text), ctx(first=True))
    assert result.effects == () and result.state == State()
    (reply,) = result.replies
    assert isinstance(reply, Buttons) and reply.body.startswith("Welcome to Jazz Fest!")


@pytest.mark.parametrize(
    "text",
    [
        "What time do gates open?",
        "Niaje, what is this?",
        "gates open when?",
        "how much is parking at the grounds",
        "Milango inafunguliwa saa ngapi?",
        "je watoto wanalipa",
    ],
)
def test_a_first_message_that_asks_is_answered_first(text: str) -> None:
    result = conversation.step(State(), Inbound(text), ctx(first=True))
    (classify,) = result.effects
    assert isinstance(classify, ClassifyIntent) and classify.question == text
    assert result.state.data == {"question": text, "first": True} and result.replies == ()


@pytest.mark.parametrize(
    ("answer", "lead"),
    [
        (KnowledgeAnswer("Gates open at 4 pm.", True, usage=USAGE), "Gates open at 4 pm."),
        (
            KnowledgeAnswer("*Gates*\nGates open at 4 pm.", True, from_passage=True),
            "Here is what I found:\n\n*Gates*\nGates open at 4 pm.",
        ),
        (KnowledgeAnswer("", False), "Sorry, I don't know the answer to that."),
    ],
)
def test_the_answer_to_a_first_question_comes_with_the_menu(answer: KnowledgeAnswer, lead: str) -> None:
    asked = conversation.step(State(), Inbound("What time do gates open?"), ctx(first=True))
    routed = conversation.step(asked.state, IntentClassified("knowledge"), ctx())
    assert routed.state.data["first"] is True and routed.effects == (
        AnswerQuestion("What time do gates open?", "en"),
    )
    result = conversation.step(routed.state, answer, ctx())
    (reply,) = result.replies  # one message: the answer, then the menu they have not seen yet
    assert (
        isinstance(reply, Buttons)
        and reply.body == f"{lead}\n\nWelcome to Jazz Fest! What would you like to do? Choose an option."
    )
    assert "Send MENU" not in reply.body and result.state.module is None


def test_menu_numbers_and_titles_still_choose_before_free_text() -> None:
    assert conversation.step(State(), Inbound("3"), ctx()).state.module == "poll"
    by_title = conversation.step(
        State(), Inbound("jazz night"), ctx()
    )  # the ticket flow answers (none on sale)
    assert by_title.effects == () and "Jazz Night" in body_of(by_title.replies[0])


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("I want tickets please", "event:e1"),
        ("nataka tiketi", "event:e1"),
        ("how much is a ticket?", "event:e1"),  # a kind word routes even a question
        ("I'd like to vote", "poll:p1"),
        ("nataka kupiga kura", "poll:p1"),
        ("fill the survey", "survey:s1"),
        ("utafiti", "survey:s1"),
        ("jazz please", "event:e1"),  # title words in a request
        ("what time does jazz start?", None),  # title words in a question: the knowledge base answers
        ("where can I park?", None),
        ("", None),
    ],
)
def test_keyword_intents(said: str, expected: str | None) -> None:
    assert keyword_item(said, CHOICES) == expected


def test_keyword_ties_route_nowhere() -> None:
    two_events = (IntentChoice("event:e1", "Jazz Night"), IntentChoice("event:e2", "Rock Night"))
    assert keyword_item("tickets", two_events) is None
    assert keyword_item("tickets for rock", two_events) == "event:e2"


def test_knowledge_intent_asks_the_knowledge_base() -> None:
    classifying = State("knowledge", "classifying", {"question": "what time do gates open?"})
    result = knowledge.step(classifying, IntentClassified("knowledge"), ctx("sw"))
    assert result.state == ASKING and result.effects == (AnswerQuestion("what time do gates open?", "sw"),)


def test_unknown_intent_says_sorry_with_the_menu() -> None:
    result = knowledge.step(
        State("knowledge", "classifying", {"question": "asdf"}), IntentClassified("unknown"), ctx()
    )
    assert result.state == State() and result.effects == ()
    assert body_of(result.replies[0]).startswith("Sorry, I didn't understand that.")


def test_a_model_answer_is_sent_and_charged() -> None:
    result = knowledge.step(
        ASKING, KnowledgeAnswer("Gates open at 4 pm.", True, ("Gates open at 4 pm.",), USAGE), ctx()
    )
    assert result == knowledge.Step(State(), (Text("Gates open at 4 pm."),), (ChargeAnswer(USAGE),))


@pytest.mark.parametrize(
    ("language", "lead"), [("en", "Here is what I found:"), ("sw", "Hiki ndicho nilichopata:")]
)
def test_a_passage_answer_without_a_model_is_free_and_says_where_it_comes_from(
    language: str, lead: str
) -> None:
    answer = KnowledgeAnswer(
        "*Gates*\nGates open at 4 pm.", True, ("Gates\nGates open at 4 pm.",), None, True
    )
    result = knowledge.step(ASKING, answer, ctx(language))
    (reply,) = result.replies
    assert body_of(reply).startswith(f"{lead}\n\n*Gates*\nGates open at 4 pm.") and result.effects == ()


def test_not_found_says_so_with_the_menu_and_charges_only_a_model_call() -> None:
    nothing = knowledge.step(ASKING, KnowledgeAnswer("", False), ctx("sw"))
    assert (
        body_of(nothing.replies[0]).startswith("Samahani, sijui jibu la swali hilo.")
        and nothing.effects == ()
    )
    said_not_in_kb = knowledge.step(ASKING, KnowledgeAnswer("", False, ("x",), USAGE), ctx())
    # idle again, the miss counted: a second one in a row hands the contact to people (state_machines/handover.py)
    assert said_not_in_kb.effects == (ChargeAnswer(USAGE),) and said_not_in_kb.state == State(
        data={"kb_misses": 1}
    )


def test_answers_are_whatsapp_sized() -> None:
    long = "Gates open at 4 pm. " * 60
    (reply,) = knowledge.step(ASKING, KnowledgeAnswer(long, True, (), USAGE), ctx()).replies
    assert len(body_of(reply)) <= knowledge.ANSWER_MAX and body_of(reply).endswith("4 pm.")
    assert clip("word " * 200, 50).endswith("…") and len(clip("word " * 200, 50)) <= 50


def test_the_router_sends_follow_ups_to_the_module_and_bumps_the_version() -> None:
    result = conversation.step(ASKING, KnowledgeAnswer("Gates open at 4 pm.", True), ctx())
    assert result.state == State(version=1) and result.replies == (Text("Gates open at 4 pm."),)


def test_a_message_left_in_the_module_is_a_new_question() -> None:
    result = knowledge.step(ASKING, Inbound("and parking?"), ctx())
    assert result.state == State("knowledge", "classifying", {"question": "and parking?"})
