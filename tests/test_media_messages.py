"""Issue 20, item 3: reactions, stickers, photos, voice notes and locations, as a table through the router
(pure), then end to end: a reaction costs nothing, a sticker gets one line, a photo answers a photo question,
a voice note is transcribed by the OpenAI-compatible server (or, without one, gets the polite line)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from simulators.openai_server import OpenAISimulator
from state_machines import conversation
from state_machines.base import Inbound, State, Step, Text
from state_machines.media import VOICE_TEXT, TranscribeVoiceNote, VoiceNoteNotTranscribed
from state_machines.survey import SaveSurveyAnswer
from tests.helpers import body_of, buttons_of, context, phone

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
SURVEY = {
    "id": "s1",
    "title": "Venue check",
    "questions": [
        {"id": "name", "type": "text", "text": "Your name?"},
        {"id": "photo", "type": "image", "text": "A photo of the stage?"},
        {"id": "where", "type": "location", "text": "Where are you?"},
        {"id": "ok", "type": "yes_no", "text": "All good?"},
    ],
}
POLL = {
    "id": "p1",
    "question": "Best snack?",
    "options": [{"id": "a", "text": "Samosa"}, {"id": "b", "text": "Chapati"}],
}


def ctx() -> Any:
    return context(
        NOW,
        org_name="Org",
        data={"offers": {"surveys": [SURVEY], "polls": [POLL]}, "survey": SURVEY, "poll": POLL},
    )


def at(question: str, position: int, failures: int = 0) -> State:
    data = {"survey_id": "s1", "response_id": "r1", "question_id": question, "position": position}
    return State("survey", "question", {**data, **({"failures": failures} if failures else {})}, version=3)


REACTION = Inbound(kind="reaction")
STICKER = Inbound(kind="sticker", media_id="m-st")
PHOTO = Inbound(kind="image", media_id="m-ph", mime_type="image/jpeg")
PLACE = Inbound(kind="location", place={"latitude": -1.2864, "longitude": 36.8172, "name": "KICC"})
VOICE = Inbound(kind="voice", media_id="m-vo", mime_type="audio/ogg")


@pytest.mark.parametrize(
    "state", [State(version=3), at("name", 1, failures=2), State("poll", "vote", {"poll_id": "p1"}, 3)]
)
@pytest.mark.parametrize("event", [REACTION, Inbound(kind="revoke"), Inbound(kind="edit")])
def test_reactions_and_edits_are_taken_silently(state: State, event: Inbound) -> None:
    assert conversation.step(state, event, ctx()) == Step(state)  # no reply (no charge), no failure counted


@pytest.mark.parametrize(
    "event", [STICKER, PHOTO, PLACE, Inbound(kind="document", media_id="d"), Inbound(kind="contacts")]
)
def test_media_outside_a_flow_gets_one_short_line_without_the_menu(event: Inbound) -> None:
    result = conversation.step(State(version=3), event, ctx())
    assert result == Step(State(version=3), (Text("I can read text: reply with a number or tap a button."),))


@pytest.mark.parametrize("event", [STICKER, PHOTO, PLACE])
def test_media_in_a_text_question_asks_to_type_and_is_no_failed_answer(event: Inbound) -> None:
    state = at("name", 1, failures=2)
    result = conversation.step(state, event, ctx())
    assert result.state == state and result.effects == ()
    assert result.replies == (Text("Please type your answer.\n\n(1/4) Your name?"),)


def test_media_in_a_poll_offers_the_options_again() -> None:
    state = State("poll", "vote", {"poll_id": "p1"}, 3)
    result = conversation.step(state, STICKER, ctx())
    (reply,) = result.replies
    assert body_of(reply) == "Please tap a button or reply with a number.\n\nBest snack?"
    assert [b.id for b in buttons_of(reply)] == ["a", "b"] and result.state == state


def test_a_photo_question_takes_the_photo_and_a_location_question_the_location() -> None:
    photo = conversation.step(at("photo", 2), PHOTO, ctx())
    assert photo.effects[0] == SaveSurveyAnswer(
        "r1", "photo", {"media_id": "m-ph", "mime_type": "image/jpeg", "caption": ""}, "where"
    )
    assert body_of(photo.replies[0]).startswith("(3/4) Where are you?\n(share a location")
    place = conversation.step(at("where", 3), PLACE, ctx())
    assert place.effects[0] == SaveSurveyAnswer(
        "r1", "where", {"latitude": -1.2864, "longitude": 36.8172, "name": "KICC"}, "ok"
    )
    words = conversation.step(at("photo", 2), Inbound("here it is"), ctx())
    assert body_of(words.replies[0]).startswith("Please send a photo.") and words.state.data["failures"] == 1
    wrong = conversation.step(at("where", 3), PHOTO, ctx())  # a photo where a location is asked
    assert body_of(wrong.replies[0]).startswith("Please share a location: tap 📎, then Location.")


def test_a_voice_note_asks_the_engine_for_its_words_and_they_are_handled_as_typed() -> None:
    state = at("name", 1)
    asked = conversation.step(state, VOICE, ctx())
    assert asked == Step(state, (), (TranscribeVoiceNote("m-vo", "en"),))
    heard = conversation.step(state, Inbound("Amina Wanjiru", kind=VOICE_TEXT), ctx())
    assert heard.effects[0] == SaveSurveyAnswer("r1", "name", "Amina Wanjiru", "photo")


def test_a_voice_note_that_cannot_be_transcribed_gets_the_polite_line() -> None:
    idle = conversation.step(State(version=3), VoiceNoteNotTranscribed("not_configured"), ctx())
    assert idle == Step(
        State(version=3), (Text("Sorry, I can't listen to voice notes. Please type your message."),)
    )
    asking = conversation.step(at("name", 1), VoiceNoteNotTranscribed("failed"), ctx())
    assert [body_of(r) for r in asking.replies] == [
        "Sorry, I can't listen to voice notes. Please type your message.",
        "(1/4) Your name?",
    ]


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
async def model():  # type: ignore[no-untyped-def]
    server = OpenAISimulator(api_key="sk-test")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls, model):  # type: ignore[no-untyped-def]
    with_model = settings.model_copy(update={"openai_api_key": "sk-test", "openai_base_url": model.base_url})
    st = await LocalStack(with_model).start()
    yield st
    await st.stop()


async def test_media_end_to_end(stack: LocalStack, model, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Media", tokens=100)
    content = {"surveys": [{"title": "Venue check", "questions": [q for q in SURVEY["questions"]]}]}
    await import_content(app_pool, org, parse_content(content))
    user = ChatDriver(stack.whatsapp, stack.user(new.phone_number_id, phone(), "Amina"), quiet=0.4)
    await user.say("hi")
    async with tenant_tx(app_pool, org) as conn:
        before = await conn.fetchval("SELECT balance FROM wallets")
    await user.user.react(user.whatsapp.messages(to=user.user.wa_id)[-1]["wamid"], "👍")
    assert await user.settle(expect=0) == []  # a reaction: no reply
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == before  # and no charge
    sticker = stack.whatsapp.add_media(b"RIFF-sticker", "image/webp")
    await user.user.send_media("sticker", sticker, "image/webp")
    assert user.texts(await user.settle()) == ["I can read text: reply with a number or tap a button."]

    await user.tap("Venue check", expect=2)
    voice = stack.whatsapp.add_media(b"OggS...TRANSCRIPT: Amina Wanjiru", "audio/ogg; codecs=opus")
    await user.user.send_media("audio", voice, "audio/ogg; codecs=opus")
    asked = user.texts(await user.settle())
    assert asked[-1].startswith("(2/4) A photo of the stage?")  # the voice note answered the name question
    assert model.calls("transcriptions")[-1]["model"] == "gpt-4o-mini-transcribe"
    await user.user.send_media("image", stack.whatsapp.add_media(b"\xff\xd8jpeg", "image/jpeg"), "image/jpeg")
    assert user.texts(await user.settle())[-1].startswith("(3/4) Where are you?")
    await user.user.share_location(-1.2864, 36.8172, "KICC")
    assert user.texts(await user.settle())[-1].startswith("(4/4) All good?")
    async with tenant_tx(app_pool, org) as conn:
        answers = await conn.fetchval("SELECT answers FROM survey_responses")
        transcribed = await conn.fetchval(
            "SELECT count(*) FROM token_transactions WHERE action = 'ai_transcription'"
        )
    assert answers["name"] == "Amina Wanjiru" and answers["photo"]["mime_type"] == "image/jpeg"
    assert answers["where"] == {"latitude": -1.2864, "longitude": 36.8172, "name": "KICC"}
    assert transcribed == 1

    quiet = stack.whatsapp.add_media(b"OggS... nothing said", "audio/ogg")
    await user.user.send_media("audio", quiet, "audio/ogg")
    said = user.texts(await user.settle())
    assert said[0] == "Sorry, I can't listen to voice notes. Please type your message." and said[
        1
    ].startswith("(4/4)")
    await asyncio.sleep(0)
