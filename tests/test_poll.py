"""Polls: offering the question, understanding votes, the engine's answers, closing time."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from state_machines import poll
from state_machines.base import Buttons, Context, Inbound, ListMenu, State, Step, Text
from state_machines.i18n import t
from state_machines.poll import CastVote, VoteRecorded, VoteRejected
from tests.helpers import body_of, buttons_of, context

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


CLOSED_WITH_RESULTS = "Sorry, this poll has closed.\n\nFinal results (4 votes):\nSamosa: 3 (75%)\nMandazi: 1 (25%)\nChapati: 0 (0%)"


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"ends_at": NOW}, CLOSED_WITH_RESULTS),
        ({"ends_at": NOW - timedelta(minutes=1)}, CLOSED_WITH_RESULTS),
        ({"status": "closed", "ends_at": None}, CLOSED_WITH_RESULTS),
        (
            {
                "status": "closed",
                "allow_multiple": True,
                "voters": 2,  # polls.voter_count: a voter of a multiple-choice poll may choose several
                "options": [
                    {"id": "o1", "text": "Samosa", "votes": 2},
                    {"id": "o2", "text": "Mandazi", "votes": 1},
                ],
            },
            "Sorry, this poll has closed.\n\nFinal results (2 votes):\nSamosa: 2 (100%)\nMandazi: 1 (50%)",
        ),
        ({"ends_at": NOW, "show_results": False}, "Sorry, this poll has closed."),
    ],
)
def test_a_closed_poll_says_so_with_its_public_results_then_the_menu(changes: dict, text: str) -> None:
    closed = {**SINGLE, **changes}
    ctx = replace(make_ctx(), data={"offers": {"polls": [closed, MULTI]}})
    result = poll.start("p1", State(), ctx)
    (reply,) = result.replies
    expected = (
        text or "Sorry, this poll has closed.\n\nFinal results (1 vote):\nSamosa: 3 (300%)\nMandazi: 1 (100%)"
    )
    assert result.state == State() and body_of(reply).startswith(expected + "\n\nWhat would you like to do?")
    assert [b.id for b in buttons_of(reply)] == ["poll:p2"]  # the menu, without the closed poll


def test_a_closed_poll_tapped_from_an_old_menu_is_found_through_the_tap() -> None:
    ctx = replace(
        make_ctx(),
        data={"offers": {"polls": [MULTI]}, "tapped": {**SINGLE, "kind": "poll", "status": "closed"}},
    )
    (reply,) = poll.start("p1", State(), ctx).replies
    assert body_of(reply).startswith(CLOSED_WITH_RESULTS)


def test_start_of_an_unknown_poll() -> None:
    result = poll.start("p9", State(), make_ctx())
    assert result.state == State() and body_of(result.replies[0]).startswith(
        "Sorry, this poll is no longer available."
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
        # three buttons: ask for a tap, and offer them again with the question
        (SINGLE, say("7"), "Please tap one of the buttons.\n\nBest snack?"),
        (SINGLE, say("0"), "Please tap one of the buttons.\n\nBest snack?"),
        (SINGLE, say("pizza"), "Please tap one of the buttons.\n\nBest snack?"),
        (SINGLE, Inbound(text="", kind="image"), "Please tap one of the buttons.\n\nBest snack?"),
        (
            MULTI,
            say("1, 9"),
            "Please reply with one or more numbers from 1 to 4, e.g. 1, 3.\n\nWhich days suit you?\n"
            "You can choose several: reply with their numbers, e.g. 1, 3",
        ),
        (
            MULTI,
            say("someday"),
            "Please reply with one or more numbers from 1 to 4, e.g. 1, 3.\n\nWhich days suit you?\n"
            "You can choose several: reply with their numbers, e.g. 1, 3",
        ),
    ],
)
def test_an_unusable_vote_reprompts_with_the_options(poll_def: dict, event: Inbound, error: str) -> None:
    result = poll.step(voting(poll_def["id"], failures=1), event, make_ctx(poll_def))
    assert result.state == State("poll", "vote", {"poll_id": poll_def["id"], "failures": 2})
    (reply,) = result.replies
    assert body_of(reply) == error and result.effects == ()


def test_a_vote_after_the_end_is_not_cast() -> None:
    result = poll.step(voting(), say("1"), make_ctx(SINGLE, now=NOW + timedelta(days=2)))
    assert result.state == State() and result.effects == ()
    assert body_of(result.replies[0]).startswith(CLOSED_WITH_RESULTS)


def test_results_with_percentages() -> None:
    recorded = VoteRecorded("p1", {"o1": 5, "o2": 2, "o3": 1}, total=8)
    result = poll.step(State("poll", "casting", {"poll_id": "p1"}), recorded, make_ctx(SINGLE))
    assert result.state == State()
    (reply,) = result.replies  # the results on top of the menu: the next step
    assert body_of(reply).startswith(
        "Thank you for voting!\n\nResults so far (8 votes):\nSamosa: 5 (63%)\nMandazi: 2 (25%)\nChapati: 1 (13%)\n\n"
    )
    one = poll.step(
        State("poll", "casting", {"poll_id": "p1"}), VoteRecorded("p1", {"o1": 1}, 1), make_ctx(SINGLE)
    )
    assert "Results so far (1 vote):" in body_of(one.replies[0])


def test_a_changed_vote_says_so() -> None:
    recorded = VoteRecorded("p1", {"o2": 1}, total=1, changed=True)
    (reply,) = poll.step(State("poll", "casting", {"poll_id": "p1"}), recorded, make_ctx(SINGLE)).replies
    assert body_of(reply).startswith("Your vote has been changed.\n\n")
    assert "Samosa: 0 (0%)" in body_of(reply) and "Mandazi: 1 (100%)" in body_of(reply)


def test_without_show_results_only_thanks() -> None:
    recorded = VoteRecorded("p2", {"monday": 9}, total=9)
    result = poll.step(State("poll", "casting", {"poll_id": "p2"}), recorded, make_ctx(MULTI))
    assert body_of(result.replies[0]).startswith("Thank you for voting!\n\nWhat would you like to do?")
    changed = poll.step(
        State("poll", "casting", {"poll_id": "p2"}), replace(recorded, changed=True), make_ctx(MULTI, "sw")
    )
    assert body_of(changed.replies[0]).startswith("Kura yako imebadilishwa.\n\nUngependa kufanya nini?")


@pytest.mark.parametrize(
    ("reason", "text"),
    [("closed", CLOSED_WITH_RESULTS), ("already_voted", "You have already voted in this poll.")],
)
def test_rejected_votes(reason: str, text: str) -> None:
    result = poll.step(
        State("poll", "casting", {"poll_id": "p1"}), VoteRejected("p1", reason), make_ctx(SINGLE)
    )
    assert result.state == State() and body_of(result.replies[0]).startswith(text + "\n\n")


def test_swahili_results() -> None:
    recorded = VoteRecorded("p1", {}, total=0)
    (reply,) = poll.step(
        State("poll", "casting", {"poll_id": "p1"}), recorded, make_ctx(SINGLE, "sw")
    ).replies
    assert body_of(reply).splitlines()[:3] == ["Asante kwa kupiga kura!", "", "Matokeo hadi sasa (kura 0):"]


def test_reprompt_and_cancel() -> None:
    assert body_of(poll.reprompt(voting(), make_ctx(SINGLE))[0]) == "Best snack?"
    assert poll.reprompt(State("poll", "casting", {"poll_id": "p1"}), make_ctx(SINGLE)) == ()
    assert poll.cancel(voting(), make_ctx(SINGLE)) == Step(State())


def test_messages_while_casting_and_vanished_polls() -> None:
    casting = State("poll", "casting", {"poll_id": "p1"})
    assert poll.step(casting, say("1"), make_ctx(SINGLE)) == Step(casting)
    gone = replace(make_ctx(), data={})
    vanished = poll.step(voting(), say("1"), gone)
    assert vanished.state == State() and vanished.replies == (
        Text("Sorry, this poll is no longer available.\n\n" + t("menu.empty", "en")),
    )
    assert poll.step(casting, VoteRecorded("p1", {}, 0), gone) == Step(State())
