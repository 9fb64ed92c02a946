"""Exhibitors, leads, the venue and RSVPs end to end (issue 18): signed webhooks -> gateway -> RabbitMQ -> workers ->
PostgreSQL -> outbox -> sender -> the WhatsApp simulator, and the CLI as a person runs it. A booth scan ->
catalogue -> brochure -> consent -> lead -> the exhibitor's staffer notified at once -> followed up by a tap ->
the CSV export with the consent; the booth's QR code; "where is booth K12?" with the map; an RSVP whose
waiting list moves up when a place frees."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.leads import qr_png
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from tests.helpers import phone, run_cli

DISPLAY = "254711000222"
MAP = "https://media.example.org/kicc-map.png"
KIT = "https://media.example.org/kit.jpg"
BROCHURE = "https://media.example.org/sungrid.pdf"


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


def expo(staff_phone: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "venues": [
            {
                "name": "KICC",
                "map": MAP,
                "booths": [
                    {"number": "K12", "hall": "Hall A", "position": "Left of the main entrance, second row"},
                    {"number": "K14", "hall": "Hall B"},
                    {"number": "K20"},
                ],
            }
        ],
        "events": [
            {
                "name": "Tech Expo",
                "starts_at": (now - timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(days=1)).isoformat(),
                "venue": "KICC",
                "exhibitors": [
                    {
                        "name": "SunGrid Solar",
                        "booth": "k12",
                        "category": "Energy",
                        "description": "Solar kits for homes and shops, paid by M-Pesa.",
                        "brochure": BROCHURE,
                        "products": [
                            {
                                "name": "Home kit 50W",
                                "description": "Four lights",
                                "price": 12500,
                                "image": KIT,
                            },
                            {"name": "Shop kit 200W", "price": 45000},
                        ],
                        "staff": [{"name": "Achieng", "phone": staff_phone}],
                    },
                    {"name": "Pesa Bora", "booth": "K14", "category": "Fintech"},
                ],
            }
        ],
    }


def chat(stack: LocalStack, pnid: str, wa_id: str | None = None, name: str = "Wanjiku") -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, wa_id or phone(), name), quiet=0.3, timeout=40)


async def rows(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_booth_scan_consent_lead_staff_notified_followed_up_and_exported(
    stack, make_org, app_pool, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    staff_phone = phone()
    org, new = await make_org("Expo", display_phone=DISPLAY)
    summary = await import_content(app_pool, org, parse_content(expo(staff_phone)))
    event_id = summary.ids["events"]["Tech Expo"]
    staffer = chat(stack, new.phone_number_id, staff_phone, "Achieng")
    await staffer.say("hi")  # staff open their 24-hour window at the start of the day
    visitor = chat(stack, new.phone_number_id)

    greeting = visitor.texts(await visitor.say("BOOTH K12"))[0]  # the QR code's prefilled text
    assert "Welcome to *SunGrid Solar* (booth K12, Hall A)" in greeting and "paid by M-Pesa" in greeting
    assert "[ Contact me ]" in greeting and "[ Catalogue ]" in greeting and "[ Brochure ]" in greeting
    catalogue = visitor.texts(await visitor.tap("Catalogue"))[0]
    assert "Home kit 50W" in catalogue and "KES 12,500" in catalogue and "Shop kit 200W" in catalogue
    product = await visitor.tap("Home kit 50W", expect=2)
    assert product[0]["payload"]["image"] == {"link": KIT, "caption": "Home kit 50W"}
    [brochure] = await visitor.tap("Brochure")
    assert brochure["payload"]["document"] == {
        "link": BROCHURE,
        "filename": "SunGrid-Solar.pdf",
        "caption": "SunGrid Solar – brochure",
    }

    consent = visitor.texts(await visitor.tap("Contact me"))[0]  # from the product's card: the lead names it
    assert f"WhatsApp number (+{visitor.user.wa_id})" in consent and "[ Yes, share ]" in consent
    assert await rows(app_pool, org, "SELECT id FROM leads") == []  # nothing before the visitor agrees
    await visitor.tap("Yes, share")
    assert "Anything they should know?" in visitor.texts(await visitor.tap("4 – Very interested"))[0]
    thanks = visitor.texts(await visitor.say("Call me after 5pm"))[0]
    assert thanks == "✅ Thank you! SunGrid Solar has your details and will contact you."

    notice = await staffer.settle(expect=1, timeout=40)  # at once, on WhatsApp
    text = staffer.texts(notice)[0]
    assert "New lead: Wanjiku, interest 4/5, product Home kit 50W" in text
    assert f"+{visitor.user.wa_id}" in text and "Call me after 5pm" in text and "[ Followed up ]" in text
    assert "Marked followed up: Wanjiku (SunGrid Solar)" in staffer.texts(await staffer.tap("Followed up"))[0]
    # a visitor cannot mark a lead (the button's id is not theirs to use)
    [lead] = await rows(
        app_pool,
        org,
        "SELECT id, interest_level, notes, consent_at, consent_text, follow_up_status FROM leads",
    )
    assert lead["interest_level"] == 4 and lead["notes"] == "Call me after 5pm"
    assert lead["consent_at"] is not None and f"+{visitor.user.wa_id}" in lead["consent_text"]
    assert lead["follow_up_status"] == "followed_up"

    refusing = chat(stack, new.phone_number_id, name="Baraka")
    await refusing.say("booth k12")
    await refusing.tap("Contact me")
    assert refusing.texts(await refusing.tap("No thanks"))[0] == "OK, nothing was shared."
    assert len(await rows(app_pool, org, "SELECT id FROM leads")) == 1

    exported = run_cli("leads", "export", "--event", event_id, "--booth", "K12")
    assert exported.returncode == 0, exported.stderr
    [row] = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert row["exhibitor"] == "SunGrid Solar" and row["visitor_phone"] == visitor.user.wa_id
    assert row["interest"] == "4" and row["product"] == "Home kit 50W" and row["followed_up_by"] == "Achieng"
    assert row["consent_at"] and row["consent_text"] == lead["consent_text"]
    other = run_cli("leads", "export", "--event", event_id, "--booth", "K14")
    assert other.returncode == 0 and other.stdout.count("\n") == 1  # the header only

    out = tmp_path / "k12.png"
    made = run_cli("event", "qr", "--event", event_id, "--booth", "k12", "--out", str(out))
    assert made.returncode == 0, made.stderr
    link = f"https://wa.me/{DISPLAY}?text=BOOTH%20K12"
    assert link in made.stdout and out.read_bytes() == qr_png(link)
    missing = run_cli("event", "qr", "--event", event_id, "--booth", "Z99", "--out", str(out))
    assert missing.returncode == 1 and "no exhibitor at booth Z99" in missing.stderr + missing.stdout


async def test_where_is_a_booth_and_find_an_exhibitor(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Venue", display_phone=DISPLAY)
    await import_content(app_pool, org, parse_content(expo(phone())))
    user = chat(stack, new.phone_number_id)
    answer = await user.say("Where is booth K12?", expect=2)
    assert user.texts(answer)[0] == (
        "📍 Booth K12: SunGrid Solar\nHall: Hall A\nLeft of the main entrance, second row"
    )
    assert answer[1]["payload"]["image"] == {"link": MAP, "caption": "Map of KICC"}
    found = user.texts(await user.say("find fintech", expect=2))[0]
    assert found.startswith("📍 Booth K14: Pesa Bora\nHall: Hall B")
    sw = user.texts(await user.say("K20 iko wapi", expect=2))[0]
    assert sw.startswith("📍 Booth K20")  # a booth no exhibitor has taken
    assert "No booth or exhibitor matches “K99”" in user.texts(await user.say("where is booth K99"))[0]
    await user.say("menu")
    await user.tap("About Tech Expo")  # the event's guide in the menu
    asked = user.texts(await user.tap("Find a booth"))[0]
    assert asked.startswith("Send a booth number")
    several = user.texts(await user.say("a"))[0]  # both names have an "a": which one?
    assert "Several exhibitors" in several and "Pesa Bora" in several and "SunGrid Solar" in several
    one = user.texts(await user.tap("Pesa Bora", expect=2))[0]
    assert one.startswith("📍 Booth K14: Pesa Bora")


async def test_rsvp_waiting_list_promoted_when_a_place_frees(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    content = {
        "events": [
            {
                "name": "Founders Breakfast",
                "starts_at": (now + timedelta(days=2)).isoformat(),
                "ends_at": (now + timedelta(days=2, hours=2)).isoformat(),
                "rsvp": {"capacity": 1},
                "sessions": [
                    {
                        "title": "Pitch clinic",
                        "starts_at": (now + timedelta(days=2)).isoformat(),
                        "ends_at": (now + timedelta(days=2, hours=1)).isoformat(),
                        "room": "Boardroom",
                        "capacity": 1,
                    }
                ],
            }
        ]
    }
    org, new = await make_org("Rsvp")
    summary = await import_content(app_pool, org, parse_content(content))
    event_id = UUID(summary.ids["events"]["Founders Breakfast"])
    first, second = chat(stack, new.phone_number_id), chat(stack, new.phone_number_id, name="Baraka")
    for person in (first, second):
        await person.say("hi")
        await person.tap("Agenda: Founders Breakfast")
    placed = first.texts(await first.tap("RSVP: get a place"))[0]
    assert "You have a place at Founders Breakfast" in placed and "[ Cancel my place ]" in placed
    waiting = second.texts(await second.tap("RSVP: get a place"))[0]
    assert "You are number 1 on the waiting list" in waiting
    again = second.texts(await second.tap("RSVP: get a place"))[0]
    assert "You are number 1 on the waiting list for Founders Breakfast" in again  # one place in the queue

    assert (
        "Your place at Founders Breakfast is cancelled" in first.texts(await first.tap("Cancel my place"))[0]
    )
    promoted = second.texts(await second.settle(expect=1, timeout=40))[0]
    assert "A place freed up: you now have a place at Founders Breakfast" in promoted
    regs = await rows(
        app_pool,
        org,
        "SELECT status, promoted_at FROM registrations WHERE event_id = $1 ORDER BY created_at",
        event_id,
    )
    assert [r["status"] for r in regs] == ["cancelled", "confirmed"] and regs[1]["promoted_at"] is not None
    attendees = await rows(app_pool, org, "SELECT phone FROM participants WHERE role = 'attendee'")
    assert attendees == [{"phone": second.user.wa_id}]

    # a session with a capacity: a seat, then the waiting list, the same way
    for person, said in ((first, "You have a place at Pitch clinic"), (second, "Pitch clinic is full")):
        await person.say("agenda")
        await person.tap("Today's sessions")
        await person.tap(f"{now + timedelta(days=2, hours=3):%H:%M} Pitch clinic")  # shown in Nairobi time
        assert said in person.texts(await person.tap("Reserve a seat"))[0]

    # the organiser adds places: the next in the queue moves up at the import
    third = chat(stack, new.phone_number_id, name="Chebet")
    await third.say("hi")
    await third.tap("Agenda: Founders Breakfast")
    assert "number 1 on the waiting list" in third.texts(await third.tap("RSVP: get a place"))[0]
    content["events"][0]["rsvp"] = {"capacity": 2}
    await import_content(app_pool, org, parse_content(content))
    assert "A place freed up" in third.texts(await third.settle(expect=1, timeout=40))[0]


async def test_rsvp_registration_questions_are_a_survey(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC)
    content = {
        "surveys": [
            {
                "title": "Breakfast questions",
                "questions": [
                    {
                        "id": "diet",
                        "type": "single_choice",
                        "text": "Any dietary needs?",
                        "options": [{"id": "none", "text": "None"}, {"id": "veg", "text": "Vegetarian"}],
                    }
                ],
            }
        ],
        "events": [
            {
                "name": "Founders Breakfast",
                "starts_at": (now + timedelta(days=2)).isoformat(),
                "ends_at": (now + timedelta(days=2, hours=2)).isoformat(),
                "rsvp": {"capacity": 10, "survey": "Breakfast questions"},
            }
        ],
    }
    org, new = await make_org("RsvpQ")
    await import_content(app_pool, org, parse_content(content))
    user = chat(stack, new.phone_number_id)
    await user.say("hi")
    await user.tap("About Founders Breakfast")
    # the place, the survey's intro, its first question
    said = user.texts(await user.tap("RSVP: get a place", expect=3))
    assert "You have a place at Founders Breakfast" in said[0] and "Any dietary needs?" in said[2]
    await user.tap("Vegetarian")
    [response] = await rows(app_pool, org, "SELECT status, answers FROM survey_responses")
    assert response == {"status": "completed", "answers": {"diet": "veg"}}
    bad = dict(content, surveys=[])
    from engine.content_import import ContentError

    with pytest.raises(ContentError) as err:
        parse_content(bad)
    assert "events[0].rsvp.survey: no survey titled 'Breakfast questions' in this file" in err.value.errors
