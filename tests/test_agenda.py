"""The agenda machine (state_machines/agenda.py), table-driven: what each tap loads, each screen says, and what
reminders and their timers do. Pure: no database, the clock in the context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from state_machines import agenda, conversation
from state_machines.agenda import (
    AgendaLoaded,
    CancelReminder,
    LoadAgenda,
    ReminderSent,
    RemindSession,
)
from state_machines.base import Buttons, Image, Inbound, ListMenu, State, Text, TimerFired
from tests.helpers import body_of, context

NOW = datetime(2026, 12, 3, 7, 30, tzinfo=UTC)  # 10:30 in Nairobi


def session(sid: str, start: int, minutes: int = 30, **kw: Any) -> dict[str, Any]:
    """A session starting ``start`` minutes from NOW."""
    return {
        "id": sid,
        "title": kw.pop("title", f"Talk {sid}"),
        "starts_at": NOW + timedelta(minutes=start),
        "ends_at": NOW + timedelta(minutes=start + minutes),
        "room": kw.pop("room", "Main Stage"),
        "status": kw.pop("status", "scheduled"),
        "speakers": kw.pop("speakers", []),
        **kw,
    }


SESSIONS = [
    session("a", -20, speakers=["w"]),  # 10:10-10:40, on now
    session("b", 30, room="Hall B", speakers=["o", "w"]),  # 11:00
    session("c", 120),  # 12:30
    session("x", 60, status="cancelled"),
    session("t", 24 * 60),  # tomorrow
]
SPEAKERS = {
    "o": {"key": "o", "name": "Otieno", "company": "SunGrid"},
    "w": {"key": "w", "name": "Wanjiku", "title": "CTO", "bio": "Payments.", "photo": "https://x.org/w.jpg"},
}


def data(**kw: Any) -> dict[str, Any]:
    return {
        "event": {"id": "e1", "name": "Expo", "timezone": "Africa/Nairobi", "reminder_minutes": 10},
        "sessions": SESSIONS,
        "speakers": SPEAKERS,
        "reminded": [],
        **kw,
    }


def loaded(tap: str, lang: str = "en", now: datetime = NOW, **kw: Any) -> Any:
    result = agenda.step(State(), AgendaLoaded(tap, data(**kw)), context(now, language=lang))
    assert result.state == State()  # stateless
    return result


@pytest.mark.parametrize(
    ("event", "tap"),
    [
        (Inbound(text="Agenda"), "ag:home:"),
        (Inbound(text="ratiba"), "ag:home:"),
        (Inbound(text="x", choice_id="ag:s:b"), "ag:s:b"),
        (Inbound(text="x", choice_id="ag:sp:e1:w"), "ag:sp:e1:w"),
    ],
)
def test_what_a_message_loads(event: Inbound, tap: str) -> None:
    assert agenda.step(State(), event, context(NOW)).effects == (LoadAgenda(tap),)


def test_a_timer_loads_its_session() -> None:
    timer = TimerFired(agenda.REMINDER_TIMER, 0, {"session_id": "b"})
    assert agenda.step(State(), timer, context(NOW)).effects == (LoadAgenda("ag:timer:b", timer),)


def test_the_menu_item_opens_the_home() -> None:
    assert agenda.start("e1", State(), context(NOW)).effects == (LoadAgenda("ag:home:e1"),)


@pytest.mark.parametrize(
    ("tap", "lang", "present", "absent"),
    [
        ("ag:home:e1", "en", ["*Expo*", "On now & next", "By stage or room", "Speakers"], []),
        ("ag:home:e1", "sw", ["Sasa na kinachofuata", "Wazungumzaji"], ["Speakers"]),
        (
            "ag:now:e1",
            "en",
            ["▶ 10:10–10:40 Talk a (Main Stage)", "*Next*", "• 11:00–11:30 Talk b"],
            ["Talk x"],
        ),
        (
            "ag:day:e1",
            "en",
            ["sessions today", "10:10 Talk a", "11:00 Talk b", "12:30 Talk c"],
            ["Talk t", "Talk x"],
        ),
        ("ag:day:e1", "sw", ["vipindi leo"], []),
        ("ag:stages:e1", "en", ["Hall B", "Main Stage"], []),
        ("ag:room:e1:0", "en", ["*Hall B*", "11:00 Talk b"], ["Talk a"]),
        ("ag:speakers:e1", "en", ["Otieno", "Wanjiku"], []),
        ("ag:s:zzz", "en", ["no longer on the agenda"], []),
    ],
)
def test_screens(tap: str, lang: str, present: list[str], absent: list[str]) -> None:
    reply = loaded(tap, lang, session=None).replies[0]
    text = body_of(reply) + "".join(f"\n{r.title} {r.description}" for r in getattr(reply, "rows", ()))
    text += "".join(f"\n{b.title}" for b in getattr(reply, "buttons", ()))
    for part in present:
        assert part in text, (part, text)
    for part in absent:
        assert part not in text, (part, text)


def test_today_is_the_events_local_date() -> None:
    """At 22:30 UTC it is already tomorrow in Nairobi: tomorrow's sessions are today's."""
    late = NOW.replace(hour=22, minute=30)
    reply = loaded("ag:day:e1", now=late).replies[0]
    assert isinstance(reply, Buttons | ListMenu)
    titles = [b.title for b in reply.buttons] if isinstance(reply, Buttons) else [r.title for r in reply.rows]
    assert titles == ["10:30 Talk t"] or titles == ["1. 10:30 Talk t"]


def test_a_session_with_its_speakers_and_remind_button() -> None:
    b = SESSIONS[1]
    reply = loaded("ag:s:b", session=b).replies[0]
    assert isinstance(reply, Buttons)
    assert "*Talk b*" in reply.body and "• Otieno — SunGrid" in reply.body and "• Wanjiku — CTO" in reply.body
    assert [x.id for x in reply.buttons] == ["ag:rm:b", "ag:sp:e1:o", "ag:sp:e1:w"]
    reminded = loaded("ag:s:b", session=b, reminded=["b"]).replies[0]
    assert isinstance(reminded, Buttons) and reminded.buttons[0].id == "ag:unrm:b"
    started = loaded("ag:s:a", session=SESSIONS[0]).replies[0]  # no reminder for what has begun
    assert isinstance(started, Buttons) and [x.id for x in started.buttons] == ["ag:sp:e1:w"]


def test_a_speaker_profile_with_photo_and_sessions() -> None:
    replies = loaded("ag:sp:e1:w").replies
    assert replies[0] == Image(ref="link:https://x.org/w.jpg", caption="Wanjiku")
    assert "Payments." in body_of(replies[1]) and "Talk a" in str(replies[1]) and "Talk b" in str(replies[1])
    no_photo = loaded("ag:sp:e1:o").replies
    assert not isinstance(no_photo[0], Image)


@pytest.mark.parametrize(
    ("sid", "kw", "said", "effects"),
    [
        (
            "b",
            {},
            "remind you of Talk b at 10:50, 10 min",
            (RemindSession("b", 10, NOW + timedelta(minutes=20)),),
        ),
        ("b", {"reminded": ["b"]}, "already be reminded of Talk b at 10:50", ()),
        ("a", {}, "Talk a has already started", ()),
        ("x", {}, "no longer on the agenda", ()),
    ],
)
def test_remind_me(sid: str, kw: dict[str, Any], said: str, effects: tuple[Any, ...]) -> None:
    one = next(s for s in SESSIONS if s["id"] == sid)
    result = loaded(f"ag:rm:{sid}", session=one, **kw)
    assert said in body_of(result.replies[0])
    assert result.effects == effects


def test_remind_me_too_soon_says_when_it_starts() -> None:
    soon = session("s", 5, room="Hall C")
    result = loaded("ag:rm:s", session=soon, sessions=[soon])
    assert body_of(result.replies[0]) == "Talk s starts in 5 min at Hall C: too soon for a reminder."
    assert result.effects == ()


def test_cancel_a_reminder() -> None:
    result = loaded("ag:unrm:b", session=SESSIONS[1], reminded=["b"])
    assert result.effects == (CancelReminder("b"),)


def fire(kind: str, at: datetime, one: dict[str, Any], lang: str = "en", **kw: Any) -> Any:
    timer = TimerFired(kind, 0, {"session_id": one["id"], **kw.pop("timer_data", {})})
    event = AgendaLoaded(f"ag:timer:{one['id']}", data(session=one, **kw), timer)
    return agenda.step(State(), event, context(at, language=lang))


@pytest.mark.parametrize(
    ("at", "status", "reminded", "said"),
    [
        (20, "scheduled", ["b"], "⏰ Starting in 10 min: *Talk b* at 11:00, Hall B."),
        (21, "scheduled", ["b"], "⏰ Starting in 9 min: *Talk b* at 11:00, Hall B."),
        (20, "cancelled", ["b"], None),  # cancelled meanwhile
        (20, "scheduled", [], None),  # the contact cancelled it
        (10, "scheduled", ["b"], None),  # the session moved later: its new timer comes
        (40, "scheduled", ["b"], None),  # far too late (the session is long under way)
    ],
)
def test_reminder_timer(at: int, status: str, reminded: list[str], said: str | None) -> None:
    one = {**SESSIONS[1], "status": status}
    result = fire(agenda.REMINDER_TIMER, NOW + timedelta(minutes=at), one, reminded=reminded)
    if said is None:
        assert result.replies == () and result.effects == ()
    else:
        assert result.replies == (Text(said),)
        assert result.effects == (ReminderSent("b"),)


def test_reminder_in_swahili() -> None:
    result = fire(agenda.REMINDER_TIMER, NOW + timedelta(minutes=20), SESSIONS[1], "sw", reminded=["b"])
    assert body_of(result.replies[0]) == "⏰ Kinaanza baada ya dakika 10: *Talk b* saa 11:00, Hall B."


@pytest.mark.parametrize(
    ("change", "one", "lang", "said"),
    [
        (
            "moved",
            {**SESSIONS[2]},
            "en",
            "🔁 Talk c has moved to Thu 03/12 12:30 (Main Stage). Your reminder moved with it.",
        ),
        (
            "moved",
            {**SESSIONS[2]},
            "sw",
            "🔁 Talk c kimehamishwa hadi Alh 03/12 saa 12:30 (Main Stage). Ukumbusho wako umehamishwa pia.",
        ),
        ("moved", session("c", 5), "en", "🔁 Talk c has moved to Thu 03/12 10:35 (Main Stage)."),
        (
            "cancelled",
            {**SESSIONS[2], "status": "cancelled"},
            "en",
            "❌ Talk c has been cancelled. Your reminder is cancelled too.",
        ),
    ],
)
def test_session_changed_timer(change: str, one: dict[str, Any], lang: str, said: str) -> None:
    result = fire(agenda.CHANGED_TIMER, NOW, one, lang, timer_data={"change": change})
    assert result.replies == (Text(said),)


def test_a_timer_for_another_session_is_silent() -> None:
    timer = TimerFired(agenda.REMINDER_TIMER, 0, {"session_id": "b"})
    event = AgendaLoaded("ag:timer:b", data(session=None), timer)
    assert agenda.step(State(), event, context(NOW)).replies == ()


def test_the_router_gives_agenda_timers_and_taps_to_the_agenda_in_any_flow() -> None:
    in_survey = State("survey", "question", {"survey_id": "s1"}, version=4)
    timer = TimerFired(agenda.REMINDER_TIMER, 0, {"session_id": "b"})  # its version is not the state's
    result = conversation.step(in_survey, timer, context(NOW))
    assert result.effects == (LoadAgenda("ag:timer:b", timer),) and result.state == in_survey
    tap = conversation.step(in_survey, Inbound(text="Talk b", choice_id="ag:s:b"), context(NOW))
    assert tap.effects == (LoadAgenda("ag:s:b"),) and tap.state == in_survey
    with_agenda = context(NOW, data={"offers": {"events": [{"id": "e1", "name": "Expo", "sessions": 4}]}})
    typed = conversation.step(State(), Inbound(text="AGENDA"), with_agenda)
    assert typed.effects == (LoadAgenda("ag:home:"),)
    assert (
        LoadAgenda("ag:home:") not in conversation.step(State(), Inbound(text="AGENDA"), context(NOW)).effects
    )
