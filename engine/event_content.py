"""The parts of an event the content file describes beside its tickets: the venue with its booths, the agenda
(sessions and their speakers), exhibitors with their products and staff. ``engine/content_import.py`` reads
them as fields of an event (``EventParts``) and of the file (``venues:``) and calls the writers here.

```yaml
venues:
  - name: KICC
    map: https://example.org/kicc-map.png        # the floor plan, sent as an image
    booths:
      - {number: K12, hall: Hall A, position: Left of the main entrance, second row}
events:
  - name: Nairobi Tech Expo
    venue: KICC
    reminder_minutes: 10                           # "Remind me" fires this long before a session
    speakers:
      - {key: wanjiku, name: Dr Wanjiku Mwangi, title: CTO, company: Savanna Labs, bio: ..., photo: https://...}
    sessions:
      - {key: opening, title: Opening keynote, starts_at: "2026-12-03 09:00", ends_at: "2026-12-03 09:45",
         room: Main Stage, speakers: [wanjiku]}
```

Re-importing finds a session by (event, key) (the key defaults to the title), a venue by name and a booth by
(venue, number). A session no longer in the file is cancelled; a session whose start moved or that was
cancelled tells everyone who asked to be reminded (a ``session_changed`` timer in their conversation, due at
once) and its reminders move with it. Session times are ISO timestamps, naive ones in the event's time zone,
or relative (``+2h``) counted from the event's first import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from engine import registrations

if TYPE_CHECKING:  # engine.content_import imports this module
    from engine.content_import import ImportSummary

REMINDER_TIMER = "session_reminder"  # state_machines/agenda.py owns both kinds
CHANGED_TIMER = "session_changed"
_RELATIVE = re.compile(r"^([+-])(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
Key = Annotated[str, Field(min_length=1, max_length=100)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Url = Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2000)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _relative(value: object) -> timedelta | None:
    if isinstance(value, str) and (found := _RELATIVE.match(value.strip())):
        sign, amount, unit = found.groups()
        delta = timedelta(**{_UNITS[unit]: int(amount)})
        return delta if sign == "+" else -delta
    return None


class SpeakerSpec(_Part):
    key: Key
    name: Name
    title: str | None = None
    company: str | None = None
    bio: str | None = None
    photo: Url | None = None  # sent as an image message with the profile


class SessionSpec(_Part):
    key: Key | None = None  # how a re-import finds the session; the title when not given
    title: Name
    description: str | None = None
    starts_at: datetime | str
    ends_at: datetime | str
    room: Annotated[str, Field(max_length=100)] | None = None  # the stage or room
    track: Annotated[str, Field(max_length=100)] | None = None
    capacity: Annotated[int, Field(gt=0)] | None = None
    status: Literal["scheduled", "cancelled"] = "scheduled"
    speakers: list[Key] = Field(default_factory=list)  # keys of the event's speakers

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _time(cls, v: datetime | str) -> datetime | str:
        if isinstance(v, str) and _relative(v) is None:
            try:
                return datetime.fromisoformat(v)
            except ValueError:
                raise ValueError("a time: ISO (2026-12-03 09:00) or relative (+2h)") from None
        return v

    @property
    def natural_key(self) -> str:
        return self.key or self.title

    def times(self, anchor: datetime, zone: str) -> tuple[datetime, datetime]:
        """Start and end, aware: relative ones from ``anchor``, naive ones in ``zone``."""
        return _when(self.starts_at, anchor, zone), _when(self.ends_at, anchor, zone)


def _when(value: datetime | str, anchor: datetime, zone: str) -> datetime:
    if isinstance(value, str):
        delta = _relative(value)
        assert delta is not None  # checked by the validator
        return anchor.astimezone(UTC).replace(second=0, microsecond=0) + delta
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(zone))


class BoothSpec(_Part):
    number: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,49}$")]
    hall: Annotated[str, Field(max_length=100)] | None = None
    position: str | None = None  # how to find it: "left of the main entrance, second row"
    x: float | None = None
    y: float | None = None


class VenueSpec(_Part):
    name: Name
    address: str | None = None
    city: Annotated[str, Field(max_length=100)] | None = None
    map: Url | None = None  # the floor plan image
    booths: list[BoothSpec] = Field(default_factory=list)


def _phone(value: object) -> object:
    """Kenyan numbers in any usual spelling -> 2547XXXXXXXX (the form WhatsApp gives as wa_id)."""
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return value
    found = re.fullmatch(r"(?:\+?254|0)([17]\d{8})", re.sub(r"[\s().-]", "", value))
    if not found:
        raise ValueError("not a Kenyan phone number (07XXXXXXXX or 2547XXXXXXXX)")
    return f"254{found[1]}"


Phone = Annotated[str, BeforeValidator(_phone)]


class ProductSpec(_Part):
    name: Name
    description: str | None = None
    price: Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "KES"
    image: Url | None = None


class ExhibitorStaffSpec(_Part):
    name: Name
    phone: Phone  # gets the exhibitor's leads on WhatsApp
    email: str | None = None


class ExhibitorSpec(_Part):
    name: Name
    booth: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,49}$")]  # the code on the booth's QR
    category: Annotated[str, Field(max_length=100)] | None = None
    description: str | None = None  # the short profile a visitor is greeted with
    logo: Url | None = None
    brochure: Url | None = None  # a PDF, sent as a document
    contact_name: str | None = None
    contact_email: str | None = None
    contact_phone: Phone | None = None
    products: list[ProductSpec] = Field(default_factory=list)
    staff: list[ExhibitorStaffSpec] = Field(default_factory=list)


class RsvpSpec(_Part):
    """Places without a ticket (state_machines/rsvp.py): ``capacity`` of them (none: no limit), then a waiting list."""

    capacity: Annotated[int, Field(ge=0)] | None = None
    survey: Name | None = None  # the title of a survey of this file: its questions follow the RSVP


class EventParts(_Part):
    """Fields of ``events[]`` beside its tickets (mixed into content_import.EventSpec)."""

    rsvp: RsvpSpec | None = None
    venue: Name | None = None  # a venues[].name of this file
    reminder_minutes: Annotated[int, Field(ge=1, le=1440)] | None = None
    speakers: list[SpeakerSpec] = Field(default_factory=list)
    sessions: list[SessionSpec] = Field(default_factory=list)

    exhibitors: list[ExhibitorSpec] = Field(default_factory=list)


# ---------------------------------------------------------------- checks (paths as the file has them)


def _duplicates(values: Sequence[str], where: str, what: str) -> list[str]:
    seen: set[str] = set()
    found = []
    for i, v in enumerate(values):
        if v in seen:
            found.append(f"{where}[{i}].{what}: duplicate {what} {v!r}")
        seen.add(v)
    return found


def cross_checks(
    events: Sequence[Any], venues: Sequence[VenueSpec], surveys: Sequence[str] = ()
) -> list[str]:
    """What pydantic cannot see: references between items, duplicates of natural keys."""
    errors = _duplicates([v.name for v in venues], "venues", "name")
    errors += [
        f"events[{i}].rsvp.survey: no survey titled {e.rsvp.survey!r} in this file"
        for i, e in enumerate(events)
        if e.rsvp is not None and e.rsvp.survey is not None and e.rsvp.survey not in surveys
    ]
    for i, v in enumerate(venues):
        errors += _duplicates([b.number.upper() for b in v.booths], f"venues[{i}].booths", "number")
    names = {v.name for v in venues}
    for i, e in enumerate(events):
        where = f"events[{i}]"
        if e.venue is not None and e.venue not in names:
            errors.append(f"{where}.venue: no venue named {e.venue!r} in this file")
        errors += _duplicates([s.key for s in e.speakers], f"{where}.speakers", "key")
        errors += _duplicates([s.natural_key for s in e.sessions], f"{where}.sessions", "key")
        errors += _duplicates([x.name for x in e.exhibitors], f"{where}.exhibitors", "name")
        errors += _duplicates([x.booth.upper() for x in e.exhibitors], f"{where}.exhibitors", "booth")
        booths = {b.number.upper() for v in venues if v.name == e.venue for b in v.booths}
        for j, x in enumerate(e.exhibitors):
            if booths and x.booth.upper() not in booths:
                errors.append(f"{where}.exhibitors[{j}].booth: no booth {x.booth!r} at the venue {e.venue!r}")
            errors += _duplicates([p.name for p in x.products], f"{where}.exhibitors[{j}].products", "name")
            errors += _duplicates([p.phone for p in x.staff], f"{where}.exhibitors[{j}].staff", "phone")
        keys = {s.key for s in e.speakers}
        for j, s in enumerate(e.sessions):
            errors += [
                f"{where}.sessions[{j}].speakers[{k}]: no speaker with key {key!r} in {where}.speakers"
                for k, key in enumerate(s.speakers)
                if key not in keys
            ]
    return errors


def time_order(events: Sequence[Any], zone_of: Any) -> list[str]:
    """Sessions that end before they start (relative times counted from now while checking)."""
    now = datetime.now(UTC)
    errors = []
    for i, e in enumerate(events):
        for j, s in enumerate(e.sessions):
            start, end = s.times(now, zone_of(e))
            if end < start:
                errors.append(
                    f"events[{i}].sessions[{j}]: ends before it starts ({start.isoformat()} .. {end.isoformat()})"
                )
    return errors


# ---------------------------------------------------------------- writing


async def write_venues(
    conn: asyncpg.Connection, org_id: UUID, venues: Sequence[VenueSpec], summary: ImportSummary
) -> dict[str, UUID]:
    ids: dict[str, UUID] = {}
    for v in venues:
        vid = await conn.fetchval("SELECT id FROM venues WHERE name = $1 ORDER BY created_at LIMIT 1", v.name)
        created = vid is None
        if created:
            vid = await conn.fetchval(
                """INSERT INTO venues (organization_id, name, address, city, floor_plan_url)
                   VALUES ($1, $2, $3, $4, $5) RETURNING id""",
                org_id,
                v.name,
                v.address,
                v.city,
                v.map,
            )
        else:
            await conn.execute(
                "UPDATE venues SET address = $2, city = $3, floor_plan_url = $4 WHERE id = $1",
                vid,
                v.address,
                v.city,
                v.map,
            )
        summary.count("venues", created, v.name, vid)
        for b in v.booths:
            await conn.execute(
                """INSERT INTO booth_locations (organization_id, venue_id, booth_number, zone, x, y, position)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (venue_id, booth_number) DO UPDATE SET zone = EXCLUDED.zone, x = EXCLUDED.x,
                       y = EXCLUDED.y, position = EXCLUDED.position""",
                org_id,
                vid,
                b.number.upper(),
                b.hall,
                b.x,
                b.y,
                b.position,
            )
        ids[v.name] = vid
    return ids


async def write_event_parts(
    conn: asyncpg.Connection,
    org_id: UUID,
    event_id: UUID,
    e: Any,
    venue_ids: dict[str, UUID],
    summary: ImportSummary,
) -> None:
    """The event's venue, reminder lead time and agenda (after the event row is written)."""
    zone = await conn.fetchval(
        """UPDATE events SET venue_id = $2, reminder_minutes = $3, rsvp = $4, rsvp_capacity = $5,
                  settings = COALESCE(settings, '{}') || jsonb_build_object('rsvp_survey_id',
                      (SELECT id::text FROM surveys WHERE title = $6 ORDER BY created_at LIMIT 1))
           WHERE id = $1 RETURNING timezone""",
        event_id,
        venue_ids.get(e.venue) if e.venue else None,
        e.reminder_minutes,
        e.rsvp is not None,
        e.rsvp.capacity if e.rsvp else None,
        e.rsvp.survey if e.rsvp else None,
    )
    await _promote(conn, org_id, event_id, None)  # more places than before: the waiting list moves up
    speakers = {s.key: s for s in e.speakers}
    kept: list[str] = []
    for order, s in enumerate(e.sessions):
        start, end = s.times(e.first_imported, zone or "Africa/Nairobi")
        await _session(conn, org_id, event_id, order, s, start, end, speakers, summary, e.name)
        kept.append(s.natural_key)
    for x in e.exhibitors:
        await _exhibitor(
            conn, org_id, event_id, x, venue_ids.get(e.venue) if e.venue else None, summary, e.name
        )
    gone = await conn.fetch(
        """SELECT id, starts_at FROM sessions
           WHERE event_id = $1 AND NOT (key = ANY($2)) AND status = 'scheduled' FOR UPDATE""",
        event_id,
        kept,
    )
    for row in gone:  # no longer in the file: cancelled, and whoever asked is told
        await conn.execute("UPDATE sessions SET status = 'cancelled' WHERE id = $1", row["id"])
        await session_changed(conn, org_id, row["id"], "cancelled", row["starts_at"])


async def _exhibitor(
    conn: asyncpg.Connection,
    org_id: UUID,
    event_id: UUID,
    x: ExhibitorSpec,
    venue_id: UUID | None,
    summary: ImportSummary,
    event_name: str,
) -> None:
    """An exhibitor by (event, name); its products by name (one no longer in the file is deactivated, leads
    keep naming it), its staff by phone (one no longer in the file is removed), its booth linked at the venue."""
    values = (
        x.booth.upper(),
        x.category,
        x.description,
        x.logo,
        x.brochure,
        x.contact_name,
        x.contact_email,
        x.contact_phone,
    )
    xid = await conn.fetchval("SELECT id FROM exhibitors WHERE event_id = $1 AND name = $2", event_id, x.name)
    created = xid is None
    if created:
        xid = await conn.fetchval(
            """INSERT INTO exhibitors (organization_id, event_id, name, booth_number, category, description, logo_url,
                                       brochure_url, contact_name, contact_email, contact_phone, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'approved') RETURNING id""",
            org_id,
            event_id,
            x.name,
            *values,
        )
    else:
        await conn.execute(
            """UPDATE exhibitors SET booth_number = $2, category = $3, description = $4, logo_url = $5,
                      brochure_url = $6, contact_name = $7, contact_email = $8, contact_phone = $9 WHERE id = $1""",
            xid,
            *values,
        )
    summary.count("exhibitors", created, f"{event_name}/{x.name}", xid)
    await conn.executemany(
        """INSERT INTO exhibitor_products (organization_id, exhibitor_id, name, description, price, currency,
                                           image_url, sort_order, is_active)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)
           ON CONFLICT (exhibitor_id, name) DO UPDATE SET description = EXCLUDED.description, price = EXCLUDED.price,
               currency = EXCLUDED.currency, image_url = EXCLUDED.image_url, sort_order = EXCLUDED.sort_order,
               is_active = true""",
        [
            (org_id, xid, p.name, p.description, p.price, p.currency, p.image, n)
            for n, p in enumerate(x.products)
        ],
    )
    await conn.execute(
        "UPDATE exhibitor_products SET is_active = false WHERE exhibitor_id = $1 AND NOT (name = ANY($2))",
        xid,
        [p.name for p in x.products],
    )
    await conn.executemany(
        """INSERT INTO exhibitor_staff (organization_id, exhibitor_id, name, phone, email) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (exhibitor_id, phone) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email""",
        [(org_id, xid, m.name, m.phone, m.email) for m in x.staff],
    )
    await conn.execute(
        "DELETE FROM exhibitor_staff WHERE exhibitor_id = $1 AND NOT (phone = ANY($2))",
        xid,
        [m.phone for m in x.staff],
    )
    await conn.executemany(  # exhibitor staff take part in the event
        """INSERT INTO participants (organization_id, event_id, name, phone, role) VALUES ($1, $2, $3, $4, 'exhibitor')
           ON CONFLICT (event_id, phone, role) DO UPDATE SET name = EXCLUDED.name""",
        [(org_id, event_id, m.name, m.phone) for m in x.staff],
    )
    if venue_id is not None:
        await conn.execute("UPDATE booth_locations SET exhibitor_id = NULL WHERE exhibitor_id = $1", xid)
        await conn.execute(
            "UPDATE booth_locations SET exhibitor_id = $3 WHERE venue_id = $1 AND booth_number = $2",
            venue_id,
            x.booth.upper(),
            xid,
        )


async def _session(
    conn: asyncpg.Connection,
    org_id: UUID,
    event_id: UUID,
    order: int,
    s: SessionSpec,
    start: datetime,
    end: datetime,
    speakers: dict[str, SpeakerSpec],
    summary: ImportSummary,
    event_name: str,
) -> None:
    old = await conn.fetchrow(
        "SELECT id, starts_at, status FROM sessions WHERE event_id = $1 AND key = $2 FOR UPDATE",
        event_id,
        s.natural_key,
    )
    values = (s.title, s.description, start, end, s.room, s.track, s.capacity, order, s.status)
    if old is None:
        sid = await conn.fetchval(
            """INSERT INTO sessions (organization_id, event_id, key, title, description, starts_at, ends_at, room,
                                     track, capacity, sort_order, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id""",
            org_id,
            event_id,
            s.natural_key,
            *values,
        )
    else:
        sid = old["id"]
        await conn.execute(
            """UPDATE sessions SET title = $2, description = $3, starts_at = $4, ends_at = $5, room = $6, track = $7,
                      capacity = $8, sort_order = $9, status = $10 WHERE id = $1""",
            sid,
            *values,
        )
        if s.status == "cancelled" and old["status"] != "cancelled":
            await session_changed(conn, org_id, sid, "cancelled", old["starts_at"])
        elif s.status == "scheduled" and old["starts_at"] != start:
            await session_changed(conn, org_id, sid, "moved", old["starts_at"])
    summary.count("sessions", old is None, f"{event_name}/{s.natural_key}", sid)
    if s.capacity is not None:
        await _promote(conn, org_id, event_id, sid)
    await conn.execute("DELETE FROM speakers WHERE session_id = $1", sid)
    await conn.executemany(
        """INSERT INTO speakers (organization_id, session_id, key, name, title, company, bio, photo_url, sort_order)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [
            (org_id, sid, p.key, p.name, p.title, p.company, p.bio, p.photo, n)
            for n, p in enumerate(speakers[k] for k in s.speakers)
        ],
    )


async def _promote(conn: asyncpg.Connection, org_id: UUID, event_id: UUID, session_id: UUID | None) -> None:
    target = await registrations.lock_target(conn, event_id, session_id)
    if target is not None and target.open:
        await registrations.promote(conn, org_id, target)


async def session_changed(
    conn: asyncpg.Connection, org_id: UUID, session_id: UUID, change: str, was: datetime
) -> int:
    """Tell everyone with a reminder for the session that it moved or was cancelled, and move or cancel the
    reminders: one ``session_changed`` timer per contact, due now (the conversation's own path says it, in
    the contact's language, within the 24-hour window, paid like any reply). Returns how many were told."""
    rows = await conn.fetch(
        """SELECT r.id, r.session_id, r.contact_id, r.conversation_id, r.minutes_before, s.starts_at
           FROM session_reminders r JOIN sessions s ON s.id = r.session_id
           WHERE r.session_id = $1 AND r.status <> 'cancelled' FOR UPDATE OF r""",
        session_id,
    )
    for r in rows:
        args = (r["conversation_id"], REMINDER_TIMER, str(session_id))
        if change == "cancelled":
            await conn.execute(
                """UPDATE conversation_timers SET status = 'cancelled' WHERE conversation_id = $1 AND kind = $2
                   AND status = 'pending' AND data->>'session_id' = $3""",
                *args,
            )
            await conn.execute("UPDATE session_reminders SET status = 'cancelled' WHERE id = $1", r["id"])
        else:
            await _move_reminder(conn, org_id, r, args)
        await _timer(conn, org_id, r, CHANGED_TIMER, None, change=change, was=was.isoformat())
    return len(rows)


async def _move_reminder(
    conn: asyncpg.Connection, org_id: UUID, r: asyncpg.Record, args: tuple[Any, ...]
) -> None:
    due = r["starts_at"] - timedelta(minutes=r["minutes_before"])
    moved = await conn.fetchval(
        """UPDATE conversation_timers SET due_at = $4 WHERE conversation_id = $1 AND kind = $2
           AND status = 'pending' AND data->>'session_id' = $3 RETURNING id""",
        *args,
        due,
    )
    if moved is None and due > datetime.now(UTC):  # it had fired already: set again for the new time
        await _timer(conn, org_id, r, REMINDER_TIMER, due)
        await conn.execute("UPDATE session_reminders SET status = 'pending' WHERE id = $1", r["id"])


async def _timer(
    conn: asyncpg.Connection, org_id: UUID, r: asyncpg.Record, kind: str, due: datetime | None, **data: str
) -> None:
    """A timer in the reminder's conversation (its module checks it by the session it names, not by version)."""
    await conn.execute(
        """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                            data, due_at)
           VALUES ($1, $2, $3, $4, 0, $5, COALESCE($6, now()))""",
        org_id,
        r["conversation_id"],
        r["contact_id"],
        kind,
        {"session_id": str(r["session_id"]), **data},
        due,
    )
