"""The event's agenda on WhatsApp: what is on now and next, the day's sessions by time, by stage, a session's
details with its speakers, a speaker's profile with their photo, and "Remind me" on a session.

Stateless like check-in: every list row and button names what it opens (``ag:<what>:<id>``), so a contact can
browse between other conversations; the conversation stays where it was. Opened from the menu (``agenda:<event
id>``, one item per event with sessions), by typing AGENDA / RATIBA / PROGRAMME at the menu, or by tapping a
row of an earlier agenda message.

Every screen is loaded first: ``LoadAgenda`` names what was tapped, its applier (handlers/agenda_effects.py)
answers with ``AgendaLoaded`` and the screen is drawn from what it carries: ``event`` {id, name, timezone, reminder_minutes},
``sessions`` (the event's, by start: id, title, description, starts_at, ends_at, room, track, status,
speakers: [keys]), ``speakers`` {key: {name, title, company, bio, photo}}, ``reminded`` (ids of sessions this
contact asked to be reminded of), ``session`` (the one a row, button or timer names). Times are shown in the
event's time zone; "today" is the event's local date.

Reminders: ``RemindSession`` records the wish and its timer (``session_reminder``, N minutes before the start);
a session moved or cancelled by a re-import (engine/event_content.py) moves or cancels the timer and starts a
``session_changed`` timer that tells the contact. Both timers are this module's whatever the conversation does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from state_machines.base import (
    MAX_LIST_ROWS,
    Button,
    Buttons,
    Context,
    Effect,
    Image,
    Inbound,
    Reply,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.choices import Option, normalise, offer
from state_machines.formatting import DEFAULT_TIMEZONE, zone
from state_machines.i18n import t

MODULE = "agenda"
PREFIX = "ag:"
REMINDER_TIMER = "session_reminder"
CHANGED_TIMER = "session_changed"
DEFAULT_REMINDER_MINUTES = 10
WORDS = frozenset({"agenda", "ratiba", "programme", "program", "schedule", "sessions", "vipindi"})
NEXT_COUNT = 3  # sessions shown as "next"
PAGE = MAX_LIST_ROWS - 1  # rows of sessions per list message; the last row says "more"
LATE_SECONDS = 120  # a reminder fired this long after its moment is still said (the scanner may lag)


@dataclass(frozen=True)
class LoadAgenda(Effect):
    """Load the agenda of the event (or session) ``tap`` names (``ag:<what>:<id>``; no id: the organisation's
    current event); answered by ``AgendaLoaded``."""

    tap: str
    timer: TimerFired | None = None


@dataclass(frozen=True)
class AgendaLoaded:
    tap: str
    agenda: Mapping[str, Any]  # event, sessions, speakers, reminded, session (see above); {} without an event
    timer: TimerFired | None = None


@dataclass(frozen=True)
class RemindSession(Effect):
    """Remind this contact of the session ``minutes_before`` its start, at ``due_at`` (a timer)."""

    session_id: str
    minutes_before: int
    due_at: datetime


@dataclass(frozen=True)
class CancelReminder(Effect):
    session_id: str


@dataclass(frozen=True)
class ReminderSent(Effect):
    """The reminder was said: recorded so that a moved session sets it again."""

    session_id: str


# ---------------------------------------------------------------- entry


def offered(ctx: Context, what: str) -> bool:
    """Whether an event on offer has ``what`` (sessions, exhibitors, venue: handlers/context.py): the words of
    the event's guide mean nothing to an organisation without one."""
    return any(e.get(what) for e in (ctx.data.get("offers") or {}).get("events") or [])


def wants(event: Inbound, ctx: Context) -> bool:
    """A tapped agenda row or button, or AGENDA typed when there is one (at the menu: the router checks that)."""
    if event.choice_id is not None:
        return event.choice_id.startswith(PREFIX)
    return normalise(event.text) in WORDS and offered(ctx, "sessions")


def start(event_id: str, state: State, ctx: Context) -> Step:
    """Chosen from the menu: the agenda's home."""
    return Step(state, (), (LoadAgenda(f"{PREFIX}home:{event_id}"),))


def step(state: State, event: Any, ctx: Context) -> Step:
    if isinstance(event, TimerFired):
        return Step(state, (), (LoadAgenda(f"{PREFIX}timer:{event.data.get('session_id', '')}", event),))
    if isinstance(event, Inbound):
        tap = event.choice_id if event.choice_id and event.choice_id.startswith(PREFIX) else f"{PREFIX}home:"
        return Step(state, (), (LoadAgenda(tap),))
    if not isinstance(event, AgendaLoaded):
        return Step(state)
    ctx = replace(ctx, data={**ctx.data, "agenda": event.agenda})
    if event.timer is not None:
        return Step(state, *_timer(event.timer, ctx))
    if _data(ctx).get("event") is None:
        return Step(state, (Text(t("agenda.none", ctx.language)),))
    what, _, arg = event.tap.removeprefix(PREFIX).partition(":")
    action = _TAPS.get(what)
    if action is None:
        return Step(state, _home(ctx))
    replies, effects = action(arg, ctx)
    return Step(state, replies, effects)


# ---------------------------------------------------------------- helpers


def _data(ctx: Context) -> Mapping[str, Any]:
    return ctx.data.get("agenda") or {}


def _event(ctx: Context) -> Mapping[str, Any]:
    return _data(ctx).get("event") or {}


def _zone_name(ctx: Context) -> str:
    return str(_event(ctx).get("timezone") or ctx.data.get("timezone") or DEFAULT_TIMEZONE)


def _local(moment: datetime, ctx: Context) -> datetime:
    return moment.astimezone(zone(_zone_name(ctx))) if moment.tzinfo else moment


def hm(moment: datetime, ctx: Context) -> str:
    return f"{_local(moment, ctx):%H:%M}"


def _day(moment: datetime, ctx: Context) -> str:
    local = _local(moment, ctx)
    return f"{t(f'agenda.weekday_{local.weekday()}', ctx.language)} {local:%d/%m}"


def _sessions(ctx: Context) -> list[Mapping[str, Any]]:
    return [s for s in _data(ctx).get("sessions") or [] if s.get("status", "scheduled") == "scheduled"]


def _speaker_names(session: Mapping[str, Any], ctx: Context) -> str:
    people = _data(ctx).get("speakers") or {}
    return ", ".join(str(people[k]["name"]) for k in session.get("speakers") or [] if k in people)


def _row(session: Mapping[str, Any], ctx: Context) -> Option:
    where = " · ".join(x for x in (str(session.get("room") or ""), _speaker_names(session, ctx)) if x)
    title = f"{hm(session['starts_at'], ctx)} {session['title']}"
    return Option(f"{PREFIX}s:{session['id']}", title, where or str(session["title"]))


def _session_list(
    body: str, sessions: Sequence[Mapping[str, Any]], ctx: Context, more_id: str | None, offset: int
) -> Reply:
    page = list(sessions[offset : offset + PAGE])
    options = [_row(s, ctx) for s in page]
    if more_id is not None and offset + PAGE < len(sessions):
        options.append(Option(f"{more_id}:{offset + PAGE}", t("agenda.more", ctx.language)))
    if not options:
        return Text(body + "\n\n" + t("agenda.no_sessions", ctx.language))
    return offer(body, options, list_button=t("agenda.button", ctx.language))


def _eid(ctx: Context) -> str:
    return str(_event(ctx).get("id"))


Result = tuple[tuple[Reply, ...], tuple[Effect, ...]]


# ---------------------------------------------------------------- screens


def _home(ctx: Context) -> tuple[Reply, ...]:
    lang, eid = ctx.language, _eid(ctx)
    if not _event(ctx):
        return (Text(t("agenda.none", lang)),)
    event = _event(ctx)
    options = []
    if _data(ctx).get("sessions"):
        options += [
            Option(f"{PREFIX}now:{eid}", t("agenda.row_now", lang)),
            Option(f"{PREFIX}day:{eid}", t("agenda.row_today", lang)),
            Option(f"{PREFIX}stages:{eid}", t("agenda.row_stages", lang)),
        ]
    if _data(ctx).get("speakers"):
        options.append(Option(f"{PREFIX}speakers:{eid}", t("agenda.row_speakers", lang)))
    if event.get("rsvp"):  # state_machines/rsvp.py
        options.append(Option(f"rv:go:{eid}", t("agenda.row_rsvp", lang)))
    if event.get("exhibitors"):  # state_machines/exhibitors.py
        options.append(Option(f"ex:list:{eid}", t("agenda.row_exhibitors", lang)))
    if event.get("venue") or event.get("exhibitors"):  # state_machines/venue.py
        options.append(Option(f"vn:ask:{eid}", t("agenda.row_find", lang)))
    if not options:
        return (Text(t("agenda.none", lang)),)
    body = t("agenda.home", lang, event=_event(ctx).get("name", ""))
    return (offer(body, options, list_button=t("agenda.button", lang)),)


def _now(arg: str, ctx: Context) -> Result:
    lang, sessions = ctx.language, _sessions(ctx)
    on = [s for s in sessions if s["starts_at"] <= ctx.now < s["ends_at"]]
    upcoming = [s for s in sessions if s["starts_at"] > ctx.now][:NEXT_COUNT]
    if not on and not upcoming:
        return (Text(t("agenda.nothing_left", lang, event=_event(ctx).get("name", ""))),), ()
    lines = [t("agenda.now_title", lang)]
    lines += [f"▶ {_line(s, ctx)}" for s in on] or [t("agenda.now_nothing", lang)]
    if upcoming:
        lines += ["", t("agenda.next_title", lang)] + [f"• {_line(s, ctx)}" for s in upcoming]
    shown = (on + upcoming)[:PAGE]
    return (_session_list("\n".join(lines), shown, ctx, None, 0),), ()


def _line(session: Mapping[str, Any], ctx: Context) -> str:
    room = f" ({session['room']})" if session.get("room") else ""
    return f"{hm(session['starts_at'], ctx)}–{hm(session['ends_at'], ctx)} {session['title']}{room}"


def _the_day(ctx: Context) -> date | None:
    """Today in the event's zone if it has sessions, else the next day that has (else the last)."""
    days = sorted({_local(s["starts_at"], ctx).date() for s in _sessions(ctx)})
    today = _local(ctx.now, ctx).date()
    return next((d for d in days if d >= today), days[-1] if days else None)


def _today(arg: str, ctx: Context) -> Result:
    lang = ctx.language
    offset = int(arg.rpartition(":")[2]) if arg.count(":") else 0
    day = _the_day(ctx)
    sessions = [s for s in _sessions(ctx) if _local(s["starts_at"], ctx).date() == day]
    today = day == _local(ctx.now, ctx).date()
    when = t("agenda.today", lang) if today else _day(sessions[0]["starts_at"], ctx) if sessions else ""
    body = t("agenda.day_title", lang, event=_event(ctx).get("name", ""), day=when)
    return (_session_list(body, sessions, ctx, f"{PREFIX}day:{_eid(ctx)}", offset),), ()


def _rooms(ctx: Context) -> list[str]:
    return sorted({str(s["room"]) for s in _sessions(ctx) if s.get("room")})


def _stages(arg: str, ctx: Context) -> Result:
    lang, rooms = ctx.language, _rooms(ctx)
    if not rooms:
        return _today("", ctx)
    options = [Option(f"{PREFIX}room:{_eid(ctx)}:{i}", room) for i, room in enumerate(rooms[:MAX_LIST_ROWS])]
    body = t("agenda.stages_title", lang, event=_event(ctx).get("name", ""))
    return (offer(body, options, list_button=t("agenda.button", lang)),), ()


def _room(arg: str, ctx: Context) -> Result:
    parts = arg.split(":")  # event id, room index[, offset]
    rooms = _rooms(ctx)
    index = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else -1
    if not 0 <= index < len(rooms):
        return _stages("", ctx)
    offset = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
    day = _the_day(ctx)
    sessions = [
        s
        for s in _sessions(ctx)
        if s.get("room") == rooms[index] and _local(s["starts_at"], ctx).date() == day
    ]
    body = t("agenda.room_title", ctx.language, room=rooms[index])
    return (_session_list(body, sessions, ctx, f"{PREFIX}room:{parts[0]}:{index}", offset),), ()


def _session(arg: str, ctx: Context) -> Result:
    lang, session = ctx.language, _data(ctx).get("session")
    if not session or str(session.get("id")) != arg:
        return (Text(t("agenda.session_gone", lang)),), ()
    people = _data(ctx).get("speakers") or {}
    lines = [f"*{session['title']}*", f"{_day(session['starts_at'], ctx)} · {_line(session, ctx)}"]
    if session.get("status") == "cancelled":
        lines.append(t("agenda.is_cancelled", lang))
    if session.get("description"):
        lines += ["", str(session["description"])]
    speakers = [people[k] for k in session.get("speakers") or [] if k in people]
    if speakers:
        lines += ["", t("agenda.speakers_title", lang)]
        lines += [f"• {_who(p)}" for p in speakers]
    remind = _remind_button(session, ctx) if session.get("status") == "scheduled" else None
    buttons = [remind] if remind is not None else []
    if session.get("capacity") and session.get("status") == "scheduled" and session["ends_at"] > ctx.now:
        buttons.append(
            Button(f"rv:s:{session['id']}", t("agenda.button_reserve", lang))
        )  # state_machines/rsvp.py
    buttons += [Button(f"{PREFIX}sp:{_eid(ctx)}:{p['key']}", _clip(p["name"])) for p in speakers]
    body = "\n".join(lines)
    if not buttons:
        return (Text(body),), ()
    return (Buttons(body, tuple(buttons[:3])),), ()


def _clip(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _who(person: Mapping[str, Any]) -> str:
    role = ", ".join(str(x) for x in (person.get("title"), person.get("company")) if x)
    return f"{person['name']}" + (f" — {role}" if role else "")


def _minutes(ctx: Context) -> int:
    return int(_event(ctx).get("reminder_minutes") or DEFAULT_REMINDER_MINUTES)


def _remind_button(session: Mapping[str, Any], ctx: Context) -> Button | None:
    if session["starts_at"] <= ctx.now:
        return None
    if str(session["id"]) in (_data(ctx).get("reminded") or []):
        return Button(f"{PREFIX}unrm:{session['id']}", t("agenda.button_unremind", ctx.language))
    return Button(f"{PREFIX}rm:{session['id']}", t("agenda.button_remind", ctx.language))


def _remind(arg: str, ctx: Context) -> Result:
    lang, session = ctx.language, _data(ctx).get("session")
    if not session or str(session.get("id")) != arg or session.get("status") != "scheduled":
        return (Text(t("agenda.session_gone", lang)),), ()
    minutes = _minutes(ctx)
    due = session["starts_at"] - timedelta(minutes=minutes)
    if session["starts_at"] <= ctx.now:
        return (Text(t("agenda.already_started", lang, title=session["title"])),), ()
    if due <= ctx.now:  # it starts sooner than the reminder would come: say when it starts instead
        left = max(1, int((session["starts_at"] - ctx.now).total_seconds() // 60))
        text = t(
            "agenda.starts_soon", lang, title=session["title"], minutes=left, room=session.get("room") or "-"
        )
        return (Text(text),), ()
    if arg in (_data(ctx).get("reminded") or []):
        return (Text(t("agenda.already_reminded", lang, title=session["title"], time=hm(due, ctx))),), ()
    said = t("agenda.reminder_set", lang, title=session["title"], time=hm(due, ctx), minutes=minutes)
    return (Text(said),), (RemindSession(arg, minutes, due),)


def _unremind(arg: str, ctx: Context) -> Result:
    session = _data(ctx).get("session") or {}
    title = session.get("title", "")
    return (Text(t("agenda.reminder_cancelled", ctx.language, title=title)),), (CancelReminder(arg),)


def _speakers(arg: str, ctx: Context) -> Result:
    people = list((_data(ctx).get("speakers") or {}).values())
    options = [
        Option(f"{PREFIX}sp:{_eid(ctx)}:{p['key']}", str(p["name"]), _who(p).partition(" — ")[2])
        for p in people[:MAX_LIST_ROWS]
    ]
    if not options:
        return (Text(t("agenda.no_speakers", ctx.language)),), ()
    body = t("agenda.speakers_list", ctx.language, event=_event(ctx).get("name", ""))
    return (offer(body, options, list_button=t("agenda.button", ctx.language)),), ()


def _speaker(arg: str, ctx: Context) -> Result:
    key = arg.partition(":")[2]
    person = (_data(ctx).get("speakers") or {}).get(key)
    if person is None:
        return (Text(t("agenda.speaker_gone", ctx.language)),), ()
    lines = [f"*{_who(person)}*"]
    if person.get("bio"):
        lines += ["", str(person["bio"])]
    theirs = [s for s in _sessions(ctx) if key in (s.get("speakers") or [])]
    replies: list[Reply] = []
    if person.get("photo"):
        replies.append(Image(ref=f"link:{person['photo']}", caption=str(person["name"])))
    if theirs:
        body = "\n".join([*lines, "", t("agenda.speaker_sessions", ctx.language)])
        replies.append(_session_list(body, theirs, ctx, None, 0))
    else:
        replies.append(Text("\n".join(lines)))
    return tuple(replies), ()


_TAPS = {
    "home": lambda arg, ctx: (_home(ctx), ()),
    "now": _now,
    "day": _today,
    "stages": _stages,
    "room": _room,
    "s": _session,
    "rm": _remind,
    "unrm": _unremind,
    "speakers": _speakers,
    "sp": _speaker,
}


# ---------------------------------------------------------------- timers


def _timer(event: TimerFired, ctx: Context) -> Result:
    session = _data(ctx).get("session")
    if not session or str(session.get("id")) != str(event.data.get("session_id")):
        return (), ()
    if event.kind == REMINDER_TIMER:
        return _reminder(session, ctx)
    if event.kind == CHANGED_TIMER:
        return _changed(session, event.data, ctx), ()
    return (), ()


def _reminder(session: Mapping[str, Any], ctx: Context) -> Result:
    """Said when it is time; a reminder of a cancelled session, or one whose session moved later (its new
    timer comes), or one far too late, stays silent."""
    if session.get("status") != "scheduled" or str(session["id"]) not in (_data(ctx).get("reminded") or []):
        return (), ()
    due = session["starts_at"] - timedelta(minutes=_minutes(ctx))
    if ctx.now < due - timedelta(seconds=60) or ctx.now > session["starts_at"] + timedelta(
        seconds=LATE_SECONDS
    ):
        return (), ()
    left = max(0, round((session["starts_at"] - ctx.now).total_seconds() / 60))
    text = t(
        "agenda.reminder",
        ctx.language,
        title=session["title"],
        minutes=left,
        time=hm(session["starts_at"], ctx),
        room=session.get("room") or "-",
    )
    return (Text(text),), (ReminderSent(str(session["id"])),)


def _changed(session: Mapping[str, Any], data: Mapping[str, Any], ctx: Context) -> tuple[Reply, ...]:
    lang = ctx.language
    if data.get("change") == "cancelled" or session.get("status") == "cancelled":
        return (Text(t("agenda.changed_cancelled", lang, title=session["title"])),)
    future = session["starts_at"] - timedelta(minutes=_minutes(ctx)) > ctx.now
    key = "agenda.changed_moved" if future else "agenda.changed_moved_soon"
    text = t(
        key,
        lang,
        title=session["title"],
        day=_day(session["starts_at"], ctx),
        time=hm(session["starts_at"], ctx),
        room=session.get("room") or "-",
    )
    return (Text(text),)
