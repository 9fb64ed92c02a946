"""state_machines/handover.py through the router: who asks for people, the bot's silence, STOP, the unanswered
notice and its staleness, the close, and the knowledge base failing twice."""

from __future__ import annotations

import pytest

from state_machines import handover
from state_machines.base import OptOut, StartTimer, State, Step, Text, TimerFired
from state_machines.i18n import t
from state_machines.knowledge import AnswerQuestion, KnowledgeAnswer
from tests.helpers import body_of
from tests.test_conversation import IDLE, STEPS, go, make_ctx, say

WAITING = State("handover", "waiting", version=7)


@pytest.mark.parametrize(
    "text", ["AGENT", "agent", "Talk to a person", "talk to a person!", "nataka kuongea na mtu", "Wakala"]
)
@pytest.mark.parametrize("name", ["idle", "survey number", "poll", "tickets"])
def test_asking_for_a_person_hands_over_from_any_step(name: str, text: str) -> None:
    result = go(STEPS[name], say(text))
    assert (result.state.module, result.state.step) == ("handover", "waiting")
    assert any(isinstance(e, handover.RequestHandover) and e.reason == "keyword" for e in result.effects)
    assert StartTimer(handover.UNANSWERED_TIMER, handover.DEFAULT_WAIT_SECONDS) in result.effects
    assert body_of(result.replies[-1]) == t("handover.requested", "en")


def test_swahili_contacts_hear_swahili() -> None:
    result = go(IDLE, say("nataka kuongea na mtu"), make_ctx("sw"))
    assert body_of(result.replies[-1]) == t("handover.requested", "sw")


def test_a_tapped_button_is_never_a_request() -> None:
    result = go(IDLE, say("Agent", choice_id="agent"))
    assert result.state.module != "handover"


@pytest.mark.parametrize("text", ["hello", "MENU", "help", "0", "START", "CANCEL", "what time?", "agent"])
def test_the_bot_is_silent_while_people_have_it(text: str) -> None:
    assert go(WAITING, say(text)) == Step(WAITING)


def test_stop_still_works_while_handed_over() -> None:
    result = go(WAITING, say("STOP"))
    assert result.effects == (OptOut(),) and body_of(result.replies[0]) == t("common.opted_out", "en")


def test_unanswered_notice_with_hours_and_stale_after_an_agent() -> None:
    ctx = make_ctx()
    ctx = type(ctx)(**{**ctx.__dict__, "data": {**ctx.data, "handover_hours": "Mon-Fri 8am-5pm"}})
    notice = go(WAITING, TimerFired(handover.UNANSWERED_TIMER, 7), ctx)
    assert notice.state == WAITING and "Mon-Fri 8am-5pm" in body_of(notice.replies[0])
    # an agent answered: the API moved the version on, so the timer set at version 7 says nothing
    answered = State("handover", "waiting", {"answered": True}, version=8)
    assert go(answered, TimerFired(handover.UNANSWERED_TIMER, 7)) == Step(answered)


def test_closing_brings_the_menu_back() -> None:
    result = go(WAITING, TimerFired(handover.CLOSED_TIMER, 7))
    assert result.state.module is None and result.state.version == 8
    assert body_of(result.replies[0]).startswith(t("handover.closed", "en"))


def test_two_knowledge_misses_in_a_row_hand_over() -> None:
    first = go(IDLE, say("Where do I park my boat?"))
    asking = first.state
    assert any(isinstance(e, AnswerQuestion) for e in first.effects) or asking.step == "classifying"
    missed = go(State("knowledge", "answering", {"question": "boats?"}, 6), KnowledgeAnswer("", False))
    assert missed.state.module is None and missed.state.data == {"kb_misses": 1}
    again = go(missed.state, say("Can I bring my dog?"))
    assert again.state.data.get("kb_misses") == 1  # carried into the next question
    to_people = go(
        State("knowledge", "answering", {"question": "dog?", "kb_misses": 1}, 9), KnowledgeAnswer("", False)
    )
    assert (to_people.state.module, to_people.state.step) == ("handover", "waiting")
    assert handover.RequestHandover("knowledge", "dog?") in to_people.effects
    found = go(
        State("knowledge", "answering", {"question": "gates?", "kb_misses": 1}, 9),
        KnowledgeAnswer("4 pm", True),
    )
    assert found.state == State(version=10)  # an answer found: the count starts again
    assert isinstance(found.replies[0], Text)


def test_agents_numbers_and_template_from_the_content_file() -> None:
    from engine.content_import import parse_content
    from engine.handovers import agent_numbers

    spec = parse_content(
        {
            "organization": {
                "handover_agents": ["0712 345 678", "+254 700 000 001"],
                "handover_agent_template": {
                    "name": "agent_handover",
                    "language": "en",
                    "params": ["{{name}}"],
                },
                "handover_wait_seconds": 300,
                "handover_hours": "Mon-Fri 8am-5pm",
            }
        }
    )
    settings = spec.spec.organization.settings()
    assert settings["handover_agents"] == ["254712345678", "254700000001"]
    assert settings["handover_agent_template"] == {
        "name": "agent_handover",
        "language": "en",
        "params": ["{{name}}"],
    }
    assert agent_numbers(settings) == ["254712345678", "254700000001"]
    assert agent_numbers({"handover_agents": "+254 712 345 678"}) == ["254712345678"]
    assert agent_numbers({"handover_agents": ["x", "254712345678", "254712345678"]}) == ["254712345678"]
    assert agent_numbers({}) == []
