"""HypeCards end to end: signed webhooks -> gateway -> inbound -> cards role (photo downloaded through the Cloud
API's media endpoints, rendered, stored) -> inbound -> outbox -> sender (uploaded with POST /media, sent as an
image by media id) -> the WhatsApp simulator; the generated_cards row, the wallet's ledger, the render cache, the
offer after a ticket purchase, and the people a card's code brings."""

from __future__ import annotations

import hashlib
import io
from typing import Any

import pytest
from PIL import Image, ImageDraw

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver, choices
from state_machines.i18n import t
from tests.helpers import phone, rgb, wait_until

DISPLAY = "254711000111"
CONTENT: dict[str, Any] = {
    "organization": {"prices": {"hypecard_generated": 7, "ticket_issued": 0}},
    "events": [
        {
            "name": "Jazz Night",
            "starts_at": "+10d",
            "ends_at": "+11d",
            "venue_name": "Carnivore",
            "ticket_types": [{"name": "Community", "price": 0, "quantity_total": 50, "max_per_order": 1}],
        }
    ],
    "hypecards": [
        {
            "name": "Attendee",
            "title": {"en": "My Jazz card", "sw": "Kadi yangu"},
            "event": "Jazz Night",
            "menu": True,
            "canvas": {"width": 1080, "height": 1350, "background": {"color": "#1b1f4a"}},
            "variables": [
                {"name": "name", "type": "text", "max_length": 40, "ask": {"en": "Which name?"}},
                {"name": "photo", "type": "image", "required": False, "ask": {"en": "A photo, or Skip."}},
            ],
            "layers": [
                {"type": "image", "source": "photo", "box": [340, 100, 400, 400], "mask": "circle"},
                {
                    "type": "text",
                    "text": "{name} 🎷",
                    "box": [80, 600, 920, 200],
                    "color": "#ffffff",
                    "font": {"weight": "bold", "size": 96, "min_size": 40},
                    "align": "center",
                },
                {"type": "qr", "text": "Hi! {name} sent me ({code})", "box": [780, 1050, 240, 240]},
            ],
            "caption": {"en": "🎷 {name} is going to {event_name}!"},
            "share": {"en": "Share it on your status!"},
        }
    ],
}


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings.model_copy(update={"hypecard_slow_seconds": 60})).start()
    yield st
    await st.stop()


async def setup(make_org, app_pool):  # type: ignore[no-untyped-def]
    org_id, new = await make_org("Cards", display_phone=DISPLAY)
    summary = await import_content(app_pool, org_id, parse_content(CONTENT))
    return org_id, new.phone_number_id, summary.ids["hypecards"]["Attendee"]


def selfie() -> bytes:
    im = Image.new("RGB", (900, 1200), (40, 160, 90))
    ImageDraw.Draw(im).ellipse((250, 300, 650, 800), fill=(230, 180, 140))
    buffer = io.BytesIO()
    im.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def rows(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_a_card_from_the_menu_with_a_photo(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid, template_id = await setup(make_org, app_pool)
    wa_id = phone()
    user = ChatDriver(stack.whatsapp, stack.user(pnid, wa_id, "Wanjiku"), quiet=0.3, timeout=40)
    await user.say("hi")
    asked = await user.tap("My Jazz card")
    assert user.texts(asked)[0].startswith("Which name?")
    assert user.texts(await user.say("Wanjiku Kamau"))[0].startswith("A photo, or Skip.")
    photo = selfie()
    uploads_before = len(stack.whatsapp.media)
    got = await user.send_photo(photo, expect=3)  # "making", then the card and the share line
    assert user.texts(got)[0] == t("hypecard.making", "en")
    card_message, share = got[1]["payload"], got[2]["payload"]
    assert card_message["type"] == "image" and share["text"]["body"] == "Share it on your status!"
    assert card_message["image"]["caption"] == "🎷 Wanjiku Kamau is going to Jazz Night!"
    # the photo was fetched with the organisation's token: info, then the signed URL
    assert [d["id"] for d in stack.whatsapp.downloads][-1:] == [
        next(i for i, m in stack.whatsapp.media.items() if m["data"] == photo)
    ]
    uploaded = stack.whatsapp.media[card_message["image"]["id"]]  # sent by the id POST /media gave
    assert len(stack.whatsapp.media) == uploads_before + 2  # the user's photo, then our card
    assert uploaded["phone_number_id"] == pnid and uploaded["mime_type"] == "image/jpeg"
    image = Image.open(io.BytesIO(uploaded["data"]))
    assert image.size == (1080, 1350)
    assert rgb(image.convert("RGB"), (540, 300))[1] > 120  # the green of the photo, in its circle
    [card] = await rows(app_pool, org, "SELECT * FROM generated_cards")
    assert card["status"] == "sent" and card["tokens_consumed"] == 7 and card["cache_hit"] is False
    assert card["input_data"]["answers"] == {"name": "Wanjiku Kamau"} and card["input_data"]["photo_media_id"]
    assert card["image_url"] == f"card:{card['id']}" and card["code"].startswith("HC-")
    [stored] = await rows(app_pool, org, "SELECT * FROM hypecard_images")
    assert hashlib.sha256(stored["data"]).digest() == hashlib.sha256(uploaded["data"]).digest()
    assert stored["input_hash"] == card["input_hash"] and stored["media_id"] == card_message["image"]["id"]
    [ledger] = await rows(
        app_pool,
        org,
        "SELECT * FROM token_transactions WHERE module = 'hypecard' AND action = 'hypecard_generated'",
    )
    assert ledger["amount"] == -7 and ledger["reference_id"] == card["id"]

    # The same name and the same photo again: the same card from the cache, and no second upload.
    await user.say("menu")
    await user.tap("My Jazz card")
    await user.say("Wanjiku Kamau")
    again = await user.send_photo(photo, expect=3)
    assert again[1]["payload"]["image"]["id"] == card_message["image"]["id"]
    cards = await rows(app_pool, org, "SELECT * FROM generated_cards ORDER BY created_at")
    assert [c["cache_hit"] for c in cards] == [False, True] and cards[1]["code"] == card["code"]
    assert (await rows(app_pool, org, "SELECT hits FROM hypecard_images"))[0]["hits"] == 1
    assert len(stack.whatsapp.media) == uploads_before + 3  # only the second photo came in

    # Someone scans the card's QR code: the prefilled text brings them to the chat with the code.
    friend = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Achieng"), quiet=0.3)
    welcome = await friend.say(f"Hi! Wanjiku Kamau sent me ({card['code']})", expect=3)
    assert friend.texts(welcome)[0] == t("hypecard.referred", "en", owner="Wanjiku Kamau")
    assert f"card:{template_id}" in [choice_id for choice_id, _ in choices(welcome[1]["payload"])]
    await friend.say(f"({card['code']})", expect=3)
    await user.say(f"my own code {card['code']}", expect=3)  # the owner: a view, not a share
    latest = (await rows(app_pool, org, "SELECT * FROM generated_cards ORDER BY created_at DESC LIMIT 1"))[0]
    assert (latest["view_count"], latest["share_count"]) == (3, 1)


async def test_offered_after_a_free_ticket_and_made_without_a_photo(
    stack: LocalStack, make_org, app_pool
) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await setup(make_org, app_pool)
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Otieno"), quiet=0.3, timeout=40)
    await user.say("hi")
    await user.tap("Jazz Night")
    await user.tap("Community")
    await user.tap("Use my name")
    await user.tap("Skip")
    issued = await user.tap("Confirm", expect=3)  # the ticket's QR code, the summary, the offer
    offer = issued[-1]["payload"]
    assert offer["interactive"]["body"]["text"] == t("hypecard.offer", "en")
    await user.tap(t("hypecard.button_get", "en"))
    await user.tap("Use my name")
    made = await user.tap("Skip", expect=3)
    assert made[1]["payload"]["type"] == "image"
    [card] = await rows(app_pool, org, "SELECT * FROM generated_cards")
    assert card["status"] == "sent" and "photo_media_id" not in card["input_data"]
    assert card["input_data"]["builtins"]["event_name"] == "Jazz Night"


async def test_a_photo_that_cannot_be_fetched_still_gives_a_card(
    stack: LocalStack, make_org, app_pool
) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await setup(make_org, app_pool)
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Kamau"), quiet=0.3, timeout=40)
    await user.say("hi")
    await user.tap("My Jazz card")
    await user.say("Kamau")
    await user.user.send_media("image", "404404404", "image/jpeg")  # WhatsApp no longer has it
    got = await user.settle(3)
    assert got[1]["payload"]["type"] == "image"
    assert t("hypecard.photo_failed", "en") in got[1]["payload"]["image"]["caption"]
    await wait_until(lambda: rows(app_pool, org, "SELECT 1 FROM generated_cards WHERE status = 'sent'"))
