"""Issue 20 end to end (gateway, RabbitMQ, workers, PostgreSQL, WhatsApp simulator): a first message that is a
question answered from the knowledge base then the menu, a closed poll tapped from an old menu, and a contact's
own ticket code bringing back their tickets and QR codes."""

from __future__ import annotations

from typing import Any

import pytest

from engine.content_import import import_content, parse_content
from engine.knowledge.ingest import ingest
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from tests.helpers import phone

GUIDE = """# Festival guide

## Gates
Gates open at 4 pm and the first act starts at 5 pm.

## Parking
Parking costs KES 300 per car at the Carnivore grounds.
"""


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()  # no OpenAI key: full-text search and keyword intents
    yield st
    await st.stop()


async def org_with(make_org, app_pool, content: dict[str, Any]):  # type: ignore[no-untyped-def]
    org_id, new = await make_org("Polish", tokens=1000)
    summary = await import_content(app_pool, org_id, parse_content(content))
    return org_id, new.phone_number_id, summary


def chat(stack: LocalStack, pnid: str) -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Amina"), quiet=0.3)


async def test_a_first_message_that_asks_is_answered_then_the_menu(
    stack, make_org, app_pool, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await org_with(
        make_org,
        app_pool,
        {
            "polls": [
                {
                    "question": "Best act?",
                    "options": [{"id": "a", "text": "Sauti Sol"}, {"id": "b", "text": "Nviiri"}],
                }
            ]
        },
    )
    (tmp_path / "guide.md").write_text(GUIDE)
    await ingest(app_pool, org, "festival", [str(tmp_path / "guide.md")], None)
    user = chat(stack, pnid)
    (reply,) = user.texts(await user.say("What time do gates open?"))
    answer, menu = reply.split("\n\nWelcome to ", 1)
    assert (
        answer
        == "Here is what I found:\n\n*Festival guide > Gates*\nGates open at 4 pm and the first act starts at 5 pm."
    )
    assert "[ Best act? ]" in menu
    greeted = chat(stack, pnid)  # a greeting as a first message still gets the menu alone
    (hello,) = greeted.texts(await greeted.say("Niaje"))
    assert hello.startswith("Welcome to ") and "Here is what I found" not in hello


async def test_a_closed_poll_tapped_from_an_old_menu_says_it_closed_with_the_results(
    stack, make_org, app_pool
) -> None:  # type: ignore[no-untyped-def]
    options = [{"id": "a", "text": "Sauti Sol"}, {"id": "b", "text": "Nviiri"}]
    org, pnid, summary = await org_with(
        make_org,
        app_pool,
        {
            "polls": [{"question": "Best act?", "options": options, "ends_at": "-1d"}],
            "surveys": [{"title": "Quick", "questions": [{"id": "q1", "type": "text", "text": "Anything?"}]}],
        },
    )
    user = chat(stack, pnid)
    await user.user.pick_row(f"poll:{summary.ids['polls']['Best act?']}", "Best act?")  # an old menu's row
    (reply,) = user.texts(await user.settle())
    assert reply.startswith(
        "Sorry, this poll has closed.\n\nFinal results (0 votes):\nSauti Sol: 0 (0%)\nNviiri: 0 (0%)"
    )
    assert "[ Quick ]" in reply and "didn't understand" not in reply


async def test_an_own_ticket_code_brings_back_the_tickets_and_their_qr_codes(
    stack, make_org, app_pool
) -> None:  # type: ignore[no-untyped-def]
    event = {
        "name": "Gospel Sunday",
        "starts_at": "+10d",
        "ends_at": "+11d",
        "venue_name": "KICC",
        "ticket_types": [{"name": "Community", "price": 0, "max_per_order": 1}],
    }
    org, pnid, _ = await org_with(make_org, app_pool, {"events": [event]})
    user = chat(stack, pnid)
    await user.say("hi")
    await user.tap("Gospel Sunday")
    await user.tap("Community")
    await user.say("Amina Wanjiru")
    await user.tap("Skip")
    issued = await user.tap("Confirm", expect=2)
    (image,) = [m for m in issued if m["type"] == "image"]
    code = image["payload"]["image"]["caption"].rsplit(" ", 1)[-1]
    assert code.startswith("TKT-")
    again = await user.say(code.lower(), expect=2)
    summary, qr = again
    assert user.texts([summary])[0].startswith("🎟 Your ticket for an upcoming event:\n• Gospel Sunday, ")
    assert qr["type"] == "image" and code in qr["payload"]["image"]["caption"]
    assert qr["payload"]["image"]["id"] in stack.whatsapp.media  # the stored QR, uploaded again
    stranger = chat(stack, pnid)
    (not_theirs,) = stranger.texts(await stranger.say(code))
    assert not_theirs.startswith(
        f"I couldn't find a ticket {code} among your tickets.\n\nYou have no tickets"
    )
