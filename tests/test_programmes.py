"""Programmes and event reminders: schedules at a local time (daylight saving included), the content YAML's
checks, a programme item firing once at its local time with several schedulers (an injected clock), and
reminders that move with their event and give way to one "event cancelled" message."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from engine import programmes, scheduler
from engine.content_import import ContentError, import_content, parse_content
from engine.db import tenant_tx
from engine.programme_schedule import parse_schedule
from state_machines import conversation, menu
from state_machines.base import Context, Inbound, State, Text
from state_machines.programme import SetSubscription
from tests.helpers import context
from tests.test_broadcasts import Rt, add_contact, approved_template, rt  # noqa: F401 - the fixture

NY = "America/New_York"


@pytest.mark.parametrize(
    ("kind", "config", "zone", "after", "expected"),
    [
        # daily 06:00 in Nairobi (no DST): 03:00 UTC
        ("daily", {"time": "06:00"}, "Africa/Nairobi", datetime(2026, 12, 2, 2, 0, tzinfo=UTC), "2026-12-02T03:00"),
        ("daily", {"time": "06:00"}, "Africa/Nairobi", datetime(2026, 12, 2, 3, 0, tzinfo=UTC), "2026-12-03T03:00"),
        # New York across spring forward: 06:00 EST (11:00 UTC), then 06:00 EDT (10:00 UTC)
        ("daily", {"time": "06:00"}, NY, datetime(2026, 3, 7, 12, 0, tzinfo=UTC), "2026-03-08T10:00"),
        ("daily", {"time": "06:00"}, NY, datetime(2026, 3, 6, 12, 0, tzinfo=UTC), "2026-03-07T11:00"),
        # a time the spring-forward day does not have: the first moment after the gap (03:00 EDT)
        ("daily", {"time": "02:30"}, NY, datetime(2026, 3, 7, 12, 0, tzinfo=UTC), "2026-03-08T07:00"),
        # a time the autumn day has twice: the first one only, then the next day
        ("daily", {"time": "01:30"}, NY, datetime(2026, 11, 1, 0, 0, tzinfo=UTC), "2026-11-01T05:30"),
        ("daily", {"time": "01:30"}, NY, datetime(2026, 11, 1, 5, 30, tzinfo=UTC), "2026-11-02T06:30"),
        # weekly: Wednesday 2 December 2026 -> Friday
        ("weekly", {"time": 360, "days": ["mon", "fri"]}, "Africa/Nairobi", datetime(2026, 12, 2, tzinfo=UTC), "2026-12-04T03:00"),
        ("dates", {"time": "18:00", "dates": ["2026-12-24", "2026-12-31"]}, "Africa/Nairobi", datetime(2026, 12, 24, 16, tzinfo=UTC), "2026-12-31T15:00"),
        ("dates", {"time": "18:00", "dates": ["2026-12-24"]}, "Africa/Nairobi", datetime(2026, 12, 25, tzinfo=UTC), None),
    ],
)  # fmt: skip
def test_next_occurrence(
    kind: str, config: dict[str, Any], zone: str, after: datetime, expected: str | None
) -> None:
    found = parse_schedule(kind, config, zone).next_after(after)
    assert (found.strftime("%Y-%m-%dT%H:%M") if found else None) == expected


def test_the_content_file_checks_programmes_and_reminders_and_names_every_problem() -> None:
    raw: dict[str, Any] = {
        "programmes": [
            {"key": "devotional", "name": "Devotional", "schedule": "weekly", "time": "25:00", "items": []},
            {
                "key": "news",
                "name": "News",
                "schedule": "daily",
                "time": "07:00",
                "keywords": {"subscribe": ["STOP", "news"]},
                "items": [
                    {"title": "a", "text": "Hi {{nmae}}"},
                    {"title": "b"},
                    {"title": "c", "text": "Poster", "media_url": "http://cdn.example.org/poster.jpg"},
                    {"title": "d", "text": "Page", "media_url": "https://cdn.example.org/page"},
                    {"title": "e", "text": "Notes", "media_url": "https://cdn.example.org/notes.pdf"},
                ],
            },
            {
                "key": "news",
                "name": "Again",
                "schedule": "dates",
                "time": "07:00",
                "keywords": {"subscribe": ["news"]},
            },
        ],
        "events": [
            {
                "name": "Gala",
                "starts_at": "2026-12-24T18:00",
                "ends_at": "2026-12-24T23:00",
                "reminders": [
                    {"name": "soon", "text": "Soon"},
                    {"name": "x", "before": "1 week", "text": "x"},
                ],
            }
        ],
    }
    with pytest.raises(ContentError) as caught:
        parse_content(raw)
    errors = "\n".join(caught.value.errors)
    assert "programmes[0].time: Value error, time '25:00' is not HH:MM" in errors
    assert "programmes[1].items[0].text: Value error, unknown variable {{nmae}}" in errors
    assert "programmes[1].items[1]: Value error, needs a text, a template, or both" in errors
    assert (
        "programmes[1].items[2].media_url: Value error, the link 'http://cdn.example.org/poster.jpg' is neither"
        in errors
    )
    assert "programmes[1].items[3].media_url: Value error, an https link whose file ends in .jpg" in errors
    assert "items[4]" not in errors
    assert "programmes[2]: Value error, a dates schedule needs dates" in errors
    assert "events[0].reminders[0]: Value error, say when" in errors
    assert "events[0].reminders[1].before: Value error, '1 week' is not a span" in errors
    # (the file-wide checks run once each item is valid)
    raw["programmes"] = [
        raw["programmes"][1] | {"items": [{"title": "a", "text": "Hi"}]},
        raw["programmes"][2],
    ]
    raw["programmes"][1] |= {"schedule": "daily"}
    raw["events"] = []
    with pytest.raises(ContentError) as caught:
        parse_content(raw)
    assert caught.value.errors == [
        "programmes[0].keywords.subscribe[0]: 'stop' is one of the engine's own keywords",
        "programmes[1].key: duplicate key 'news' (the key is how re-imports find it)",
    ]


DEVOTIONAL = {
    "key": "devotional",
    "name": "Daily devotional",
    "schedule": "daily",
    "time": "06:00",
    "timezone": NY,
    "keywords": {"subscribe": ["devotional", "ibada"], "unsubscribe": ["devotional stop", "acha ibada"]},
    "items": [
        {"title": "Day 1", "text": "Good morning {{name}}: Psalm 23", "template": {"name": "devotional", "language": "en"}},
        {"title": "Day 2", "text": "Good morning {{name}}: Psalm 91", "template": {"name": "devotional", "language": "en"}},
    ],
}  # fmt: skip


async def test_a_programme_item_fires_once_at_its_local_time_across_daylight_saving(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Church", tokens=100)
    await approved_template(app_pool, org, "devotional", params=0)
    content = parse_content({"programmes": [DEVOTIONAL]})
    saturday = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)  # the day before New York springs forward
    async with tenant_tx(app_pool, org) as conn:
        program_id, _ = await programmes.save_programme(conn, org, content.spec.programmes[0], None, saturday)
        assert await conn.fetchval("SELECT next_fire_at FROM programs") == datetime(
            2026, 3, 8, 10, tzinfo=UTC
        )
    subscribers = [await add_contact(app_pool, org) for _ in range(2)]
    await add_contact(app_pool, org)  # not subscribed
    async with tenant_tx(app_pool, org) as conn:
        for contact, _ in subscribers:
            assert await programmes.subscribe(conn, org, program_id, contact, source="operator")
        assert not await programmes.subscribe(conn, org, program_id, subscribers[0][0], source="operator")

    clock = {"now": datetime(2026, 3, 8, 9, 59, tzinfo=UTC)}  # 05:59 EDT: not yet

    async def schedulers() -> None:
        await asyncio.gather(*(scheduler.tick(rt, lambda: clock["now"]) for _ in range(3)))  # type: ignore[arg-type]

    await schedulers()
    assert await _broadcasts(app_pool, org) == []
    clock["now"] = datetime(2026, 3, 8, 10, 0, 1, tzinfo=UTC)  # 06:00 EDT, a day after 06:00 EST
    for _ in range(3):
        await schedulers()
    fired = await _broadcasts(app_pool, org)
    assert [(b["name"], b["source"], b["scheduled_at"]) for b in fired] == [
        ("Daily devotional: Day 1", "programme", datetime(2026, 3, 8, 10, tzinfo=UTC))
    ]
    assert (fired[0]["recipient_count"], fired[0]["queued_count"]) == (2, 2)
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT next_fire_at FROM programs") == datetime(
            2026, 3, 9, 10, tzinfo=UTC
        )
        items = await conn.fetch("SELECT title, status FROM content_items ORDER BY sort_order")
    assert [(i["title"], i["status"]) for i in items] == [("Day 1", "published"), ("Day 2", "scheduled")]
    clock["now"] = datetime(2026, 3, 9, 10, 0, 30, tzinfo=UTC)
    await schedulers()
    assert [b["name"] for b in await _broadcasts(app_pool, org)] == [
        "Daily devotional: Day 1",
        "Daily devotional: Day 2",
    ]
    clock["now"] = datetime(
        2026, 3, 10, 10, 0, 30, tzinfo=UTC
    )  # no item left: nothing sent, the schedule goes on
    await schedulers()
    assert len(await _broadcasts(app_pool, org)) == 2


async def test_a_missed_occurrence_is_skipped_not_sent_late(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Late", tokens=100)
    content = parse_content({"programmes": [DEVOTIONAL]})
    async with tenant_tx(app_pool, org) as conn:
        await programmes.save_programme(
            conn, org, content.spec.programmes[0], None, datetime(2026, 3, 7, tzinfo=UTC)
        )
    await scheduler.tick(rt, lambda: datetime(2026, 3, 8, 18, tzinfo=UTC))  # type: ignore[arg-type]
    assert await _broadcasts(app_pool, org) == []
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT next_fire_at FROM programs") == datetime(
            2026, 3, 9, 10, tzinfo=UTC
        )


async def _broadcasts(pool: asyncpg.Pool, org: uuid.UUID) -> list[asyncpg.Record]:
    async with tenant_tx(pool, org) as conn:
        return await conn.fetch("SELECT * FROM broadcasts ORDER BY created_at")


async def _holders(pool: asyncpg.Pool, org: uuid.UUID, event_id: uuid.UUID, n: int) -> None:
    contacts = [await add_contact(pool, org) for _ in range(n)]
    async with tenant_tx(pool, org) as conn:
        type_id = await conn.fetchval("SELECT id FROM ticket_types WHERE event_id = $1", event_id)
        for contact, _ in contacts:
            await conn.execute(
                """INSERT INTO tickets (organization_id, ticket_type_id, contact_id, ticket_code, status)
                   VALUES ($1, $2, $3, $4, 'valid')""",
                org,
                type_id,
                contact,
                uuid.uuid4().hex[:12].upper(),
            )


async def test_reminders_move_with_their_event_and_a_cancellation_replaces_them(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Events", tokens=100)
    # near now: the holders' 24-hour windows (their last message an hour ago) are still open when it fires
    starts = (datetime.now(UTC) + timedelta(days=1, minutes=10)).replace(microsecond=0)
    event = {
        "name": "Jazz Night",
        "starts_at": starts.isoformat(),
        "ends_at": (starts + timedelta(hours=4)).isoformat(),
        "venue_name": "Carnivore",
        "ticket_types": [{"name": "Regular", "price": 0}],
        "reminders": [
            {
                "name": "one day to go",
                "before": "1d",
                "text": "{{event}} is tomorrow at {{event_time}}, {{name}}",
            },
            {"name": "doors open", "before": "30m", "text": "Doors are open at {{event_venue}}"},
        ],
    }
    summary = await import_content(app_pool, org, parse_content({"events": [event]}))
    event_id = uuid.UUID(summary.ids["events"]["Jazz Night"])
    await _holders(app_pool, org, event_id, 2)

    async def reminders() -> dict[str, tuple[datetime, str]]:
        async with tenant_tx(app_pool, org) as conn:
            rows = await conn.fetch("SELECT name, fire_at, status FROM event_reminders")
        return {r["name"]: (r["fire_at"], r["status"]) for r in rows}

    assert (await reminders())["one day to go"] == (starts - timedelta(days=1), "pending")
    later = starts + timedelta(hours=2)
    async with tenant_tx(app_pool, org) as conn:  # postponed by two hours: the reminders move with it
        await conn.execute(
            "UPDATE events SET starts_at = $2, ends_at = $3 WHERE id = $1",
            event_id,
            later,
            later + timedelta(hours=4),
        )
    moved = await reminders()
    assert moved == {
        "one day to go": (later - timedelta(days=1), "pending"),
        "doors open": (later - timedelta(minutes=30), "pending"),
    }
    await scheduler.tick(rt, lambda: starts - timedelta(days=1, seconds=-5))  # type: ignore[arg-type]  # the old time
    assert await _broadcasts(app_pool, org) == []
    at = later - timedelta(days=1) + timedelta(seconds=5)
    for _ in range(3):
        await scheduler.tick(rt, lambda: at)  # type: ignore[arg-type]
    [fired] = await _broadcasts(app_pool, org)
    assert (fired["source"], fired["recipient_count"], fired["queued_count"]) == ("reminder", 2, 2)
    async with tenant_tx(app_pool, org) as conn:
        texts = {
            r["content"]
            for r in await conn.fetch("SELECT content FROM messages WHERE broadcast_id = $1", fired["id"])
        }
    local = later.astimezone(ZoneInfo("Africa/Nairobi")).strftime("%d/%m/%Y %H:%M")
    assert texts == {f"Jazz Night is tomorrow at {local}, Wanjiku"}

    async with tenant_tx(app_pool, org) as conn:  # cancelled: the pending reminder gives way to one notice
        await conn.execute("UPDATE events SET status = 'cancelled' WHERE id = $1", event_id)
    assert (await reminders())["doors open"][1] == "cancelled"
    for _ in range(3):
        await scheduler.tick(rt, lambda: at + timedelta(minutes=1))  # type: ignore[arg-type]
    after = await _broadcasts(app_pool, org)
    assert [b["name"] for b in after] == ["Jazz Night: one day to go", "Jazz Night: cancelled"]
    assert after[1]["message_content"] == "We are sorry: {{event}} on {{event_time}} is cancelled."
    assert after[1]["queued_count"] == 2


# ---------------------------------------------------------------- in the conversation

PROGRAMME_OFFER = {
    "id": "p1",
    "name": "Daily devotional",
    "menu_title": "Devotional",
    "subscribe": ["devotional", "ibada"],
    "unsubscribe": ["devotional stop", "acha ibada"],
}


def _ctx(subscriptions: tuple[str, ...] = (), language: str = "en") -> Context:
    return context(
        datetime(2026, 12, 2, tzinfo=UTC),
        language=language,
        data={"offers": {"programmes": [PROGRAMME_OFFER]}, "subscriptions": list(subscriptions)},
    )


def test_programme_keywords_subscribe_and_leave_at_the_menu_in_english_and_swahili() -> None:
    idle = State(version=3)
    joined = conversation.step(idle, Inbound(text="  Devotional "), _ctx())
    assert joined.effects == (SetSubscription("p1", True, "keyword"),)
    assert joined.replies == (Text("You are subscribed to Daily devotional. Send DEVOTIONAL STOP to stop."),)
    assert joined.state == idle  # the conversation stays where it was
    left = conversation.step(idle, Inbound(text="acha ibada"), _ctx(language="sw"))
    assert left.effects == (SetSubscription("p1", False, "keyword"),)
    assert left.replies == (Text("Hutapokea tena Daily devotional. Tuma DEVOTIONAL kujiunga tena."),)
    in_survey = State("survey", "question", {"survey_id": "s1", "response_id": "r1", "question_id": "q"}, 4)
    answer = conversation.step(in_survey, Inbound(text="devotional"), _ctx())
    assert not any(isinstance(e, SetSubscription) for e in answer.effects)  # an answer, not a keyword


def test_the_menu_offers_a_programme_to_join_or_to_leave() -> None:
    [offered] = [o for o in menu.items(_ctx()) if o.id == "program:p1"]
    assert (offered.title, offered.description) == ("Devotional", "Subscribe")
    tapped = conversation.step(State(version=1), Inbound(text="Devotional", choice_id="program:p1"), _ctx())
    assert tapped.effects == (SetSubscription("p1", True, "menu"),)
    [again] = [o for o in menu.items(_ctx(("p1",))) if o.id == "program:p1"]
    assert again.description == "Subscribed: choose to leave"
    leave = conversation.step(State(version=1), Inbound(text="x", choice_id="program:p1"), _ctx(("p1",)))
    assert leave.effects == (SetSubscription("p1", False, "menu"),)


async def test_a_keyword_through_the_engine_subscribes_the_contact(  # type: ignore[no-untyped-def]
    make_org, app_pool: asyncpg.Pool
) -> None:
    from engine.inbound import arrive
    from engine.turn import Org, Turn
    from handlers import route

    org, new = await make_org("Keyword", tokens=100)
    summary = await import_content(app_pool, org, parse_content({"programmes": [DEVOTIONAL]}))
    program_id = summary.ids["programmes"]["devotional"]
    for text in ("ibada", "devotional stop", "devotional"):
        async with tenant_tx(app_pool, org) as conn:
            body = {
                "external_id": f"wamid.{uuid.uuid4()}",
                "wa_id": "254711222333",
                "payload": {"type": "text", "text": {"body": text}},
            }
            arrival = await arrive(conn, org, "wa_message", "message", body)
            assert arrival is not None and arrival.contact is not None and arrival.conversation is not None
            turn = Turn(
                conn,
                Org(org, "Keyword", new.phone_number_id, {}),
                arrival.contact,
                arrival.conversation,
                arrival.now,
                "message",
            )
            from engine.inbound import store_inbound

            await store_inbound(turn, body)
            await route("message", turn, body)
            await turn.finish()
        async with tenant_tx(app_pool, org) as conn:
            status = await conn.fetchval(
                "SELECT status FROM program_subscriptions WHERE program_id = $1", uuid.UUID(program_id)
            )
        assert status == ("unsubscribed" if text == "devotional stop" else "subscribed")


async def test_content_that_cannot_be_sent_is_refused_and_the_round_goes_on(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    """Rows the content import would refuse (written some other way) are marked refused with the reason; they do
    not stop the scheduler's round for the next reminder, the programme's next item, or another organisation."""
    bad_org, _ = await make_org("Bad rows", tokens=100)
    good_org, _ = await make_org("Good rows", tokens=100)
    starts = (datetime.now(UTC) + timedelta(days=1, minutes=10)).replace(microsecond=0)
    due = starts - timedelta(days=1)  # the reminders' "one day to go"

    def event(name: str, minutes_later: int) -> dict[str, Any]:
        at = starts + timedelta(minutes=minutes_later)
        return {
            "name": name,
            "starts_at": at.isoformat(),
            "ends_at": (at + timedelta(hours=4)).isoformat(),
            "ticket_types": [{"name": "Regular", "price": 0}],
            "reminders": [{"name": "one day to go", "before": "1d", "text": "{{event}} is tomorrow"}],
        }

    await import_content(app_pool, bad_org, parse_content({"events": [event("Broken", 0)]}))
    await import_content(app_pool, good_org, parse_content({"events": [event("Fine", 1)]}))
    async with tenant_tx(
        app_pool, bad_org
    ) as conn:  # neither a text nor a template: refused first in the round
        await conn.execute("UPDATE event_reminders SET text = NULL")
        await approved_template(app_pool, bad_org, "devotional", params=0)
        program_id, _ = await programmes.save_programme(
            conn,
            bad_org,
            parse_content({"programmes": [DEVOTIONAL]}).spec.programmes[0],
            None,
            datetime.now(UTC),
        )
        await conn.execute("UPDATE content_items SET body = $1 WHERE title = 'Day 1'", "x" * 5000)
        await conn.execute("UPDATE programs SET next_fire_at = $2 WHERE id = $1", program_id, due)

    at = due + timedelta(minutes=2)
    await scheduler.tick(rt, lambda: at)  # type: ignore[arg-type]
    async with tenant_tx(app_pool, bad_org) as conn:
        reminder = await conn.fetchrow("SELECT status, refused_reason FROM event_reminders")
        items = await conn.fetch(
            "SELECT title, status, refused_reason FROM content_items ORDER BY sort_order"
        )
    assert (reminder["status"], reminder["refused_reason"]) == (
        "refused",
        "a broadcast needs --text or --template (or --image, --video, --document)",
    )
    assert [(i["title"], i["status"], i["refused_reason"]) for i in items] == [
        ("Day 1", "refused", "a text is at most 4096 characters"),
        ("Day 2", "published", None),
    ]
    assert [b["name"] for b in await _broadcasts(app_pool, bad_org)] == ["Daily devotional: Day 2"]
    assert [b["name"] for b in await _broadcasts(app_pool, good_org)] == ["Fine: one day to go"]

    # the content fixed and imported again: the reminder is pending again, and fires
    await import_content(app_pool, bad_org, parse_content({"events": [event("Broken", 0)]}))
    async with tenant_tx(app_pool, bad_org) as conn:
        assert await conn.fetchval("SELECT status FROM event_reminders") == "pending"
    await scheduler.tick(rt, lambda: at)  # type: ignore[arg-type]
    assert "Broken: one day to go" in [b["name"] for b in await _broadcasts(app_pool, bad_org)]
