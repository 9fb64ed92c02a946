"""Polls: offering the question, understanding votes, the engine's answers, closing time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from state_machines import poll
from state_machines.base import Buttons, Context, Inbound, ListMenu, State, Step, Text
from state_machines.poll import CastVote, VoteRecorded, VoteRejected
from tests.helpers import context

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)

SINGLE = {
    "id": "p1",
    "question": "Best snack?",
    "allow_multiple": False,
    "show_results": True,
    "ends_at": NOW + timedelta(days=1),
    "options": [
        {"id": "o1", "text": "Samosa", "votes": 3},
        {"id": "o2", "text": "Mandazi", "votes": 1},
        {"id": "o3", "text": "Chapati", "votes": 0},
    ],
}
MULTI = {
    "id": "p2",
    "question": "Which days suit you?",
    "allow_multiple": True,
    "show_results": False,
    "ends_at": None,
    "options": [
        {"id": d.lower(), "text": d, "votes": 0} for d in ("Monday", "Tuesday", "Wednesday", "Thursday")
    ],
}


def make_ctx(current: dict | None = None, language: str = "en", now: datetime = NOW) -> Context:
    data: dict[str, Any] = {"offers": {"polls": [SINGLE, MULTI]}}
    if current is not None:
        data["poll"] = current
    return context(now, language=language, data=data)


def voting(poll_id: str = "p1", **extra: Any) -> State:
    return State("poll", "vote", {"poll_id": poll_id, **extra}, version=3)


def say(text: str, choice_id: str | None = None) -> Inbound:
    return Inbound(text=text, choice_id=choice_id)


def test_start_offers_the_options_as_buttons() -> None:
    result = poll.start("p1", State(), make_ctx())
    assert result.state == State("poll", "vote", {"poll_id": "p1"})
    (reply,) = result.replies
    assert isinstance(reply, Buttons) and reply.body == "Best snack?"
    assert [(b.id, b.title) for b in reply.buttons] == [
        ("o1", "Samosa"),
        ("o2", "Mandazi"),
        ("o3", "Chapati"),
    ]
    assert result.effects == ()


def test_start_of_a_multiple_choice_poll_lists_options_and_explains() -> None:
    (reply,) = poll.start("p2", State(), make_ctx()).replies
    assert isinstance(reply, ListMenu) and len(reply.rows) == 4
    assert reply.body == "Which days suit you?\nYou can choose several: reply with their numbers, e.g. 1, 3"


@pytest.mark.parametrize(
    ("ends_at", "text"),
    [(NOW, "Sorry, this poll is closed."), (NOW - timedelta(minutes=1), "Sorry, this poll is closed.")],
)
def test_a_poll_past_its_end_is_closed(ends_at: datetime, text: str) -> None:
    ctx = replace(make_ctx(), data={"offers": {"polls": [{**SINGLE, "ends_at": ends_at}]}})
    assert poll.start("p1", State(), ctx) == Step(State(), (Text(text),))


def test_start_of_an_unknown_poll() -> None:
    assert poll.start("p9", State(), make_ctx()) == Step(
        State(), (Text("Sorry, this poll is no longer available."),)
    )


@pytest.mark.parametrize(
    ("event", "chosen"),
    [
        (say("Mandazi", "o2"), ("o2",)),  # tap
        (say("2"), ("o2",)),  # typed number
        (say("2."), ("o2",)),
        (say("  mANDazi  "), ("o2",)),  # typed title, stray spaces and case
        (say("chap"), ("o3",)),  # a clear prefix
    ],
)
def test_a_single_vote(event: Inbound, chosen: tuple[str, ...]) -> None:
    result = poll.step(voting(), event, make_ctx(SINGLE))
    assert result == Step(State("poll", "casting", {"poll_id": "p1"}), (), (CastVote("p1", chosen),))


def test_a_single_choice_poll_refuses_several_choices() -> None:
    result = poll.step(voting(), say("1, 2"), make_ctx(SINGLE))
    assert result.effects == () and result.state.data["failures"] == 1


@pytest.mark.parametrize(
    ("event", "chosen"),
    [
        (say("1, 3"), ("monday", "wednesday")),
        (say("3 1"), ("monday", "wednesday")),  # kept in the poll's order
        (say("thursday and Monday"), ("monday", "thursday")),
        (
            say(
                "2",
            ),
            ("tuesday",),
        ),
        (say("2. Tuesday", "tuesday"), ("tuesday",)),  # a tap is one option
        (say("1,1"), ("monday",)),
    ],
)
def test_a_multiple_vote(event: Inbound, chosen: tuple[str, ...]) -> None:
    result = poll.step(voting("p2"), event, make_ctx(MULTI))
    assert result.effects == (CastVote("p2", chosen),)


@pytest.mark.parametrize(
    ("poll_def", "event", "error"),
    [
        (SINGLE, say("7"), "Please reply with a number from 1 to 3."),
        (SINGLE, say("0"), "Please reply with a number from 1 to 3."),
        (SINGLE, say("pizza"), "Please reply with a number from 1 to 3."),
        (SINGLE, Inbound(text="", kind="image"), "Please reply with a number from 1 to 3."),
        (MULTI, say("1, 9"), "Please reply with one or more numbers from 1 to 4, e.g. 1, 3."),
        (MULTI, say("someday"), "Please reply with one or more numbers from 1 to 4, e.g. 1, 3."),
    ],
)
def test_an_unusable_vote_reprompts_with_the_options(poll_def: dict, event: Inbound, error: str) -> None:
    result = poll.step(voting(poll_def["id"], failures=1), event, make_ctx(poll_def))
    assert result.state == State("poll", "vote", {"poll_id": poll_def["id"], "failures": 2})
    (reply,) = result.replies
    assert reply.body == error and result.effects == ()


def test_a_vote_after_the_end_is_not_cast() -> None:
    result = poll.step(voting(), say("1"), make_ctx(SINGLE, now=NOW + timedelta(days=2)))
    assert result == Step(State(), (Text("Sorry, this poll is closed."),))


def test_results_with_percentages() -> None:
    recorded = VoteRecorded("p1", {"o1": 5, "o2": 2, "o3": 1}, total=8)
    result = poll.step(State("poll", "casting", {"poll_id": "p1"}), recorded, make_ctx(SINGLE))
    assert result == Step(
        State(),
        (
            Text(
                "Thank you for voting!\n\nResults so far (8 votes):\nSamosa: 5 (63%)\nMandazi: 2 (25%)\nChapati: 1 (13%)"
            ),
        ),
    )


def test_a_changed_vote_says_so() -> None:
    recorded = VoteRecorded("p1", {"o2": 1}, total=1, changed=True)
    (reply,) = poll.step(State("poll", "casting", {"poll_id": "p1"}), recorded, make_ctx(SINGLE)).replies
    assert reply.body.startswith("Your vote has been changed.\n\n")
    assert "Samosa: 0 (0%)" in reply.body and "Mandazi: 1 (100%)" in reply.body


def test_without_show_results_only_thanks() -> None:
    recorded = VoteRecorded("p2", {"monday": 9}, total=9)
    result = poll.step(State("poll", "casting", {"poll_id": "p2"}), recorded, make_ctx(MULTI))
    assert result == Step(State(), (Text("Thank you for voting!"),))
    changed = poll.step(
        State("poll", "casting", {"poll_id": "p2"}), replace(recorded, changed=True), make_ctx(MULTI, "sw")
    )
    assert changed.replies == (Text("Kura yako imebadilishwa."),)


@pytest.mark.parametrize(
    ("reason", "text"),
    [("closed", "Sorry, this poll is closed."), ("already_voted", "You have already voted in this poll.")],
)
def test_rejected_votes(reason: str, text: str) -> None:
    result = poll.step(
        State("poll", "casting", {"poll_id": "p1"}), VoteRejected("p1", reason), make_ctx(SINGLE)
    )
    assert result == Step(State(), (Text(text),))


def test_swahili_results() -> None:
    recorded = VoteRecorded("p1", {}, total=0)
    (reply,) = poll.step(
        State("poll", "casting", {"poll_id": "p1"}), recorded, make_ctx(SINGLE, "sw")
    ).replies
    assert reply.body.splitlines()[:3] == ["Asante kwa kupiga kura!", "", "Matokeo hadi sasa (kura 0):"]


def test_reprompt_and_cancel() -> None:
    assert poll.reprompt(voting(), make_ctx(SINGLE))[0].body == "Best snack?"
    assert poll.reprompt(State("poll", "casting", {"poll_id": "p1"}), make_ctx(SINGLE)) == ()
    assert poll.cancel(voting(), make_ctx(SINGLE)) == Step(State())


def test_messages_while_casting_and_vanished_polls() -> None:
    casting = State("poll", "casting", {"poll_id": "p1"})
    assert poll.step(casting, say("1"), make_ctx(SINGLE)) == Step(casting)
    gone = replace(make_ctx(), data={})
    assert poll.step(voting(), say("1"), gone) == Step(
        State(), (Text("Sorry, this poll is no longer available."),)
    )
    assert poll.step(casting, VoteRecorded("p1", {}, 0), gone) == Step(State())
