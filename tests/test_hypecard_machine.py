"""The HypeCard conversation, input by input, through the router (state_machines.conversation.step): offers,
questions, the photo, the card's arrival, slow and failed cards, referral codes, both languages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from state_machines import conversation, hypecard
from state_machines.base import (
    Buttons,
    CancelTimers,
    Charge,
    Context,
    Image,
    Inbound,
    ListMenu,
    StartTimer,
    State,
    Text,
    TimerFired,
)
from state_machines.hypecard import (
    CardFailed,
    CardQueued,
    CardReady,
    CardRefused,
    CountReferral,
    GiveUpCard,
    MarkCardSent,
    ReferralCounted,
    RequestCard,
    RequeueCard,
)
from state_machines.i18n import t
from state_machines.poll import VoteRecorded
from state_machines.tickets import TicketsIssued
from tests.helpers import body_of, context

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
NAME = {"name": "name", "type": "text", "max_length": 20, "ask": {"en": "Your name?", "sw": "Jina lako?"}}
PHOTO = {"name": "photo", "type": "image", "required": False, "ask": {"en": "A photo?", "sw": "Picha?"}}
CARD = {
    "id": "t1",
    "name": "Jazz card",
    "title": {"en": "My Jazz card", "sw": "Kadi yangu"},
    "event_id": "e1",
    "poll_id": None,
    "in_menu": True,
    "asked": [NAME, PHOTO],
}
VOTER = {**CARD, "id": "t2", "event_id": None, "poll_id": "p1", "in_menu": False, "asked": [NAME]}


def ctx(language: str = "en", name: str | None = "Wanjiku", **data: Any) -> Context:
    base = {"offers": {"cards": [CARD, VOTER]}, "hypecard_slow_seconds": 20, "hypecard_give_up_seconds": 60}
    return context(NOW, language=language, contact_name=name, data={**base, **data})


def say(text: str, choice_id: str | None = None, kind: str = "text", media_id: str | None = None) -> Inbound:
    return Inbound(text=text, choice_id=choice_id, kind=kind, media_id=media_id)


def asking(index: int = 0, **values: Any) -> State:
    return State("hypecard", "ask", {"template_id": "t1", "index": index, "values": values}, version=4)


def test_the_menu_lists_cards_in_the_menu_only() -> None:
    result = conversation.step(State(), say("menu"), ctx())
    (menu,) = result.replies
    ids = [b.id for b in menu.buttons] if isinstance(menu, Buttons) else [r.id for r in menu.rows]  # type: ignore[union-attr]
    assert "card:t1" in ids and "card:t2" not in ids


def test_from_the_menu_the_name_then_the_photo_then_the_card_is_requested() -> None:
    started = conversation.step(State(), say("My Jazz card", "card:t1"), ctx())
    assert started.state.module == "hypecard" and started.state.data["index"] == 0
    (ask,) = started.replies
    assert isinstance(ask, Buttons) and ask.body == "Your name?" and ask.buttons[0].id == hypecard.ID_ME
    named = conversation.step(started.state, say("  Wanjiku   Kamau "), ctx())
    (photo_ask,) = named.replies
    assert (
        isinstance(photo_ask, Buttons)
        and photo_ask.body == "A photo?"
        and photo_ask.buttons[0].id == hypecard.ID_SKIP
    )
    sent = conversation.step(named.state, say("", kind="image", media_id="m-42"), ctx())
    assert sent.state.step == "making" and sent.replies == (Text(t("hypecard.making", "en")),)
    assert sent.effects == (RequestCard("t1", {"name": "Wanjiku Kamau"}, "m-42"),)


def test_use_my_name_and_skip_the_photo() -> None:
    named = conversation.step(asking(), say("Use my name", hypecard.ID_ME), ctx())
    assert named.state.data["values"] == {"name": "Wanjiku"}
    skipped = conversation.step(named.state, say("ruka"), ctx())
    assert skipped.effects == (RequestCard("t1", {"name": "Wanjiku"}, None),)


@pytest.mark.parametrize(
    "event, key",
    [
        (say("x" * 21), "hypecard.invalid_text"),
        (say("!!!"), "hypecard.invalid_text"),
        (say("", kind="sticker"), "hypecard.invalid_text"),
    ],
)
def test_bad_names_are_asked_again(event: Inbound, key: str) -> None:
    result = conversation.step(asking(), event, ctx())
    assert result.state.data["failures"] == 1 and result.state.data["index"] == 0
    (reply,) = result.replies
    assert isinstance(reply, Buttons) and reply.body.startswith(t(key, "en", max=20))


def test_my_name_unknown_and_a_text_instead_of_a_photo() -> None:
    result = conversation.step(asking(), say("use my name", hypecard.ID_ME), ctx(name=None))
    assert isinstance(result.replies[0], Text) and result.replies[0].body.startswith(
        t("hypecard.no_contact_name", "en")
    )
    not_photo = conversation.step(asking(1, name="W"), say("here it is"), ctx())
    assert not_photo.state.data["failures"] == 1
    assert not_photo.replies[0].body.startswith(t("hypecard.not_a_photo", "en"))  # type: ignore[union-attr]


def test_three_bad_answers_lead_back_to_the_menu() -> None:
    state = asking()
    for _ in range(3):
        result = conversation.step(state, say("!!!"), ctx())
        state = result.state
    assert state.module is None
    assert t("common.too_many_failures", "en") in result.replies[0].body  # type: ignore[union-attr]


def test_queued_then_ready_sends_the_image_caption_share_and_charges() -> None:
    making = State("hypecard", "making", {"template_id": "t1"}, version=7)
    queued = conversation.step(making, CardQueued("c1", "t1"), ctx())
    assert queued.state.data["card_id"] == "c1"
    assert queued.effects == (StartTimer(hypecard.SLOW_TIMER, 20, {"card_id": "c1", "round": 1}),)
    ready = CardReady(
        "c1",
        "t1",
        {"name": "Wanjiku", "event_name": "Jazz"},
        {"en": "🎷 {name} at {event_name}"},
        {"en": "Share!"},
    )
    result = conversation.step(queued.state, ready, ctx())
    assert result.state.module is None
    assert result.replies == (Image("card:c1", "🎷 Wanjiku at Jazz"), Text("Share!"))
    assert result.effects == (
        MarkCardSent("c1"),
        Charge("hypecard_generated", "hypecard", reference_id="c1"),
        CancelTimers(hypecard.SLOW_TIMER),
    )


def test_a_card_is_delivered_even_after_the_user_moved_on_in_swahili() -> None:
    elsewhere = State("survey", "question", {"survey_id": "s1"}, version=9)
    result = conversation.step(elsewhere, CardReady("c1", "t1", {}, {}, {}, photo_failed=True), ctx("sw"))
    assert result.state == elsewhere  # the survey goes on
    image, share = result.replies
    assert isinstance(image, Image) and image.caption.startswith(t("hypecard.caption", "sw"))
    assert t("hypecard.photo_failed", "sw") in image.caption and share == Text(t("hypecard.share", "sw"))


def test_a_slow_card_is_announced_once_requeued_then_given_up() -> None:
    making = State("hypecard", "making", {"template_id": "t1", "card_id": "c1"}, version=8)
    first = conversation.step(
        making, TimerFired(hypecard.SLOW_TIMER, 3, {"card_id": "c1", "round": 1}), ctx()
    )
    assert first.replies == (Text(t("hypecard.still_making", "en")),)
    assert first.effects == (
        RequeueCard("c1"),
        StartTimer(hypecard.SLOW_TIMER, 20, {"card_id": "c1", "round": 2}),
    )
    second = conversation.step(
        making, TimerFired(hypecard.SLOW_TIMER, 3, {"card_id": "c1", "round": 2}), ctx()
    )
    assert second.replies == ()  # queued again once only: a long queue of cards is no lost job
    assert second.effects == (StartTimer(hypecard.SLOW_TIMER, 20, {"card_id": "c1", "round": 3}),)
    last = conversation.step(making, TimerFired(hypecard.SLOW_TIMER, 3, {"card_id": "c1", "round": 3}), ctx())
    assert last.effects == (GiveUpCard("c1"),)
    failed = conversation.step(making, CardFailed("c1", "timeout"), ctx())
    assert failed.state.module is None and failed.replies == (Text(t("hypecard.failed", "en")),)


def test_the_slow_timer_reaches_the_card_whatever_the_state_but_not_an_opted_out_contact() -> None:
    idle = State(version=12)
    fired = TimerFired(hypecard.SLOW_TIMER, 3, {"card_id": "c1", "round": 1})
    result = conversation.step(idle, fired, ctx())
    assert result.replies == () and result.effects[0] == RequeueCard("c1")
    quiet = conversation.step(
        State("hypecard", "making", {"template_id": "t1", "card_id": "c1"}),
        fired,
        context(NOW, opted_in=False, data=ctx().data),
    )
    assert quiet.replies == () and quiet.effects[0] == RequeueCard("c1")


def test_waiting_for_the_card_and_cancelling_a_question() -> None:
    making = State("hypecard", "making", {"template_id": "t1", "card_id": "c1"}, version=8)
    busy = conversation.step(making, say("is it ready"), ctx())
    assert busy.state == making and busy.replies == (Text(t("hypecard.busy", "en")),)
    cancelled = conversation.step(asking(), say("cancel"), ctx())
    # said on top of the menu (issue 20: one message, the next step)
    assert cancelled.state.module is None and body_of(cancelled.replies[0]).startswith(
        t("hypecard.cancelled", "en")
    )


def test_a_template_gone_meanwhile() -> None:
    gone = conversation.step(asking(), say("Wanjiku"), ctx(offers={"cards": []}))
    assert gone.state.module is None and gone.replies == (Text(t("hypecard.unavailable", "en")),)
    refused = conversation.step(State("hypecard", "making", {"template_id": "t1"}), CardRefused("t1"), ctx())
    assert refused.state.module is None


def test_offered_after_a_ticket_purchase_for_its_event() -> None:
    buying = State(
        "tickets", "issuing", {"event_id": "e1", "hold_id": "h1", "type_name": "Regular", "holder_name": "W"}
    )
    result = conversation.step(buying, TicketsIssued("h1", ("TKT-AAAAAA",), "Jazz"), ctx())
    offer = result.replies[-1]
    assert isinstance(offer, Buttons) and offer.buttons[0].id == "card:t1"
    assert offer.buttons[0].title == t("hypecard.button_get", "en")
    tapped = conversation.step(result.state, say(offer.buttons[0].title, "card:t1"), ctx())
    assert tapped.state.module == "hypecard"
    other = State(
        "tickets", "issuing", {"event_id": "e9", "hold_id": "h1", "type_name": "R", "holder_name": "W"}
    )
    plain = conversation.step(other, TicketsIssued("h1", ("TKT-AAAAAA",), "Other"), ctx())
    assert not any(isinstance(r, Buttons) for r in plain.replies)


def test_offered_after_a_vote_even_when_not_in_the_menu() -> None:
    voting = State("poll", "casting", {"poll_id": "p1"})
    poll = {"id": "p1", "question": "Best?", "options": [{"id": "a", "text": "A"}], "show_results": False}
    result = conversation.step(voting, VoteRecorded("p1", {"a": 1}, 1), ctx(poll=poll))
    offer = result.replies[-1]
    assert isinstance(offer, Buttons) and offer.buttons[0].id == "card:t2"
    started = conversation.step(result.state, say("Get my HypeCard", "card:t2"), ctx())
    assert started.state.data["template_id"] == "t2"


@pytest.mark.parametrize("text", ["Hi Kilele FM! Wanjiku sent me a Jazz Night card (HC-7Q2M9X)", "hc-7q2m9x"])
def test_a_referral_code_is_counted_then_welcomed_with_an_offer(text: str) -> None:
    counted = conversation.step(State(), say(text), ctx())
    assert counted.effects == (CountReferral("HC-7Q2M9X"),) and counted.replies == ()
    welcomed = conversation.step(counted.state, ReferralCounted("Wanjiku", "t1"), ctx("sw"))
    hello, offer, menu = welcomed.replies
    assert hello == Text(t("hypecard.referred", "sw", owner="Wanjiku"))
    assert isinstance(offer, Buttons) and offer.buttons[0].id == "card:t1"
    assert isinstance(menu, Buttons | ListMenu)
    unknown = conversation.step(State(), ReferralCounted(None, None), ctx())
    assert unknown.replies[0] == Text(t("hypecard.referred_anonymous", "en"))


def test_codes_inside_a_flow_are_answers_not_referrals() -> None:
    result = conversation.step(asking(), say("HC-7Q2M9X"), ctx())
    assert result.state.data["values"] == {"name": "HC-7Q2M9X"}
    assert hypecard.referral_code("TKT-7Q2M9X") is None and hypecard.referral_code("HC-0O1I00") is None
