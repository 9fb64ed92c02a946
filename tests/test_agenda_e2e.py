"""The agenda end to end (issue 18): signed webhooks -> gateway -> RabbitMQ -> workers -> PostgreSQL -> outbox ->
sender -> the WhatsApp simulator. Browsing now/next, a session's details, a speaker's profile with a photo; a
reminder that fires through the timer scanner; a reminder that moves with its session and one cancelled with
it when the content file is imported again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from tests.helpers import phone

SOON = 105  # seconds to the start of the session a reminder is set for
PHOTO = "https://media.example.org/wanjiku.jpg"


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def content(now: datetime, *, later_at: timedelta, with_later: bool = True) -> dict[str, Any]:
    sessions: list[dict[str, Any]] = [
        {
            "key": "opening",
            "title": "Opening keynote",
            "starts_at": _iso(now - timedelta(minutes=10)),
            "ends_at": _iso(now + timedelta(minutes=20)),
            "room": "Main Stage",
            "speakers": ["wanjiku"],
            "description": "Where African tech goes next.",
        },
        {
            "key": "soon",
            "title": "Solar panel",
            "starts_at": _iso(now + timedelta(seconds=SOON)),
            "ends_at": _iso(now + timedelta(minutes=40)),
            "room": "Hall B",
            "speakers": ["otieno", "wanjiku"],
        },
    ]
    if with_later:
        sessions.append(
            {
                "key": "later",
                "title": "Fintech fireside",
                "starts_at": _iso(now + later_at),
                "ends_at": _iso(now + later_at + timedelta(hours=1)),
                "room": "Main Stage",
            }
        )
    return {
        "events": [
            {
                "name": "Tech Expo",
                "starts_at": _iso(now - timedelta(hours=1)),
                "ends_at": _iso(now + timedelta(days=1)),
                "timezone": "Africa/Nairobi",
                "reminder_minutes": 1,
                "speakers": [
                    {
                        "key": "wanjiku",
                        "name": "Dr Wanjiku Mwangi",
                        "title": "CTO",
                        "company": "Savanna Labs",
                        "bio": "Builds payment rails for East Africa.",
                        "photo": PHOTO,
                    },
                    {"key": "otieno", "name": "Otieno Ouma", "company": "SunGrid"},
                ],
                "sessions": sessions,
            }
        ]
    }


def chat(stack: LocalStack, pnid: str) -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Wanjiku"), quiet=0.3, timeout=40)


async def rows(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


def nairobi(moment: datetime) -> str:
    return f"{moment.astimezone(UTC) + timedelta(hours=3):%H:%M}"


async def test_agenda_browsing_reminders_that_fire_move_and_cancel(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    now = datetime.now(UTC).replace(microsecond=0)
    org, new = await make_org("Agenda")
    summary = await import_content(app_pool, org, parse_content(content(now, later_at=timedelta(hours=3))))
    assert summary.created["sessions"] == 3
    user = chat(stack, new.phone_number_id)

    menu = user.texts(await user.say("hi"))[0]
    assert "Agenda: Tech Expo" in menu  # the menu offers the agenda beside the event

    home = user.texts(await user.say("agenda"))[0]
    assert "Tech Expo" in home and "On now & next" in home
    now_next = user.texts(await user.tap("On now & next"))[0]
    assert "▶ " in now_next and "Opening keynote (Main Stage)" in now_next
    assert "Solar panel (Hall B)" in now_next.split("*Next*")[1]

    details = user.texts(await user.tap(f"{nairobi(now + timedelta(seconds=SOON))} Solar panel"))[0]
    assert "Otieno Ouma — SunGrid" in details and "[ Remind me ]" in details

    profile = await user.tap("Dr Wanjiku Mwangi", expect=2)
    assert profile[0]["payload"]["type"] == "image"
    assert profile[0]["payload"]["image"] == {"link": PHOTO, "caption": "Dr Wanjiku Mwangi"}
    assert "Builds payment rails" in user.texts(profile)[1] and "Opening keynote" in user.texts(profile)[1]

    # "Remind me" on the session that starts in SOON s (reminders 1 minute before, time enough for the taps on a loaded machine): it fires through the timer scanner
    await user.say("agenda")
    await user.tap("Today's sessions")
    await user.tap(f"{nairobi(now + timedelta(seconds=SOON))} Solar panel")
    set_ = user.texts(await user.tap("Remind me"))[0]
    assert "I will remind you of Solar panel at" in set_
    fired = await user.settle(expect=1, timeout=SOON)
    assert "Starting in 1 min: *Solar panel*" in user.texts(fired)[0], user.texts(fired)
    [reminder] = await rows(app_pool, org, "SELECT status FROM session_reminders")
    assert reminder["status"] == "sent"

    # a reminder for the later session, then the session moves: the reminder moves and the contact is told
    await user.say("agenda")
    await user.tap("By stage or room")
    await user.tap("Main Stage")
    await user.tap(f"{nairobi(now + timedelta(hours=3))} Fintech fireside")
    assert "I will remind you" in user.texts(await user.tap("Remind me"))[0]
    later = summary.ids["sessions"]["Tech Expo/later"]
    await import_content(app_pool, org, parse_content(content(now, later_at=timedelta(hours=5))))
    moved = user.texts(await user.settle(expect=1, timeout=40))[0]
    assert "Fintech fireside has moved to" in moved and nairobi(now + timedelta(hours=5)) in moved
    [timer] = await rows(
        app_pool,
        org,
        """SELECT due_at FROM conversation_timers WHERE kind = 'session_reminder' AND status = 'pending'
           AND data->>'session_id' = $1""",
        later,
    )
    assert timer["due_at"] == now + timedelta(hours=5) - timedelta(minutes=1)

    # the session leaves the file: cancelled, the reminder and its timer too, and the contact is told
    await import_content(
        app_pool, org, parse_content(content(now, later_at=timedelta(hours=5), with_later=False))
    )
    cancelled = user.texts(await user.settle(expect=1, timeout=40))[0]
    assert "Fintech fireside has been cancelled" in cancelled
    status = await rows(app_pool, org, "SELECT status FROM sessions WHERE id = $1", UUID(later))
    assert status == [{"status": "cancelled"}]
    pending = await rows(
        app_pool,
        org,
        "SELECT id FROM conversation_timers WHERE kind = 'session_reminder' AND status = 'pending'",
    )
    assert pending == []
    again = user.texts(await user.say("agenda"))[0]
    assert "Tech Expo" in again


async def test_content_errors_name_the_path() -> None:
    now = datetime.now(UTC)
    bad = content(now, later_at=timedelta(hours=3))
    event = bad["events"][0]
    event["sessions"][1]["speakers"] = ["nobody"]
    event["sessions"][2]["ends_at"] = _iso(now)
    event["venue"] = "Nowhere"
    from engine.content_import import ContentError

    with pytest.raises(ContentError) as err:
        parse_content(bad)
    assert (
        "events[0].sessions[1].speakers[0]: no speaker with key 'nobody' in events[0].speakers"
        in err.value.errors
    )
    assert "events[0].venue: no venue named 'Nowhere' in this file" in err.value.errors
    event["sessions"][1]["speakers"], event["venue"] = ["otieno"], None
    with pytest.raises(ContentError) as err:  # times are checked once the references hold
        parse_content(bad)
    assert err.value.errors[0].startswith("events[0].sessions[2]: ends before it starts")
    event["sessions"][0]["starts_at"] = "tomorrow"
    with pytest.raises(ContentError) as err:
        parse_content(bad)
    assert err.value.errors[0].startswith("events[0].sessions[0].starts_at:")
