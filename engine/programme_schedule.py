"""When a programme's items go out: daily, weekly on given days, or on given dates, at a local time in the
programme's time zone. Pure. Daylight-saving-safe with zoneinfo: the occurrence is the local wall-clock time
of that day; a time that does not exist that day (the hour skipped in spring) is the first moment after the
gap, and a time that happens twice (the hour repeated in autumn) is its first occurrence, so each day's item
fires exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
KINDS = ("daily", "weekly", "dates")
HORIZON_DAYS = 400  # a weekly schedule finds its next day within a week; dates may be far ahead


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Schedule:
    kind: str
    at: time
    zone: str
    days: frozenset[int] = frozenset()  # weekly: 0 = Monday
    dates: tuple[date, ...] = ()

    def config(self) -> dict[str, Any]:
        """As stored in programs.schedule_config."""
        out: dict[str, Any] = {"time": self.at.strftime("%H:%M")}
        if self.kind == "weekly":
            out["days"] = [DAYS[d] for d in sorted(self.days)]
        if self.kind == "dates":
            out["dates"] = [d.isoformat() for d in self.dates]
        return out

    def occurs_on(self, day: date) -> bool:
        if self.kind == "daily":
            return True
        if self.kind == "weekly":
            return day.weekday() in self.days
        return day in self.dates

    def moment(self, day: date) -> datetime:
        """The day's occurrence in UTC (fold=0: the first of a repeated hour; a skipped hour moves forward)."""
        zone = ZoneInfo(self.zone)
        local = datetime.combine(day, self.at, tzinfo=zone)
        as_utc = local.astimezone(UTC)
        if as_utc.astimezone(zone).replace(tzinfo=None) != local.replace(tzinfo=None):
            return _after_gap(local)  # the wall-clock time does not exist that day
        return as_utc

    def next_after(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after``; None when none is left (dates all past)."""
        zone = ZoneInfo(self.zone)
        day = after.astimezone(zone).date() - timedelta(days=1)
        last = max(self.dates) if self.kind == "dates" and self.dates else None
        for _ in range(HORIZON_DAYS):
            if last is not None and day > last:
                return None
            if self.occurs_on(day) and (moment := self.moment(day)) > after:
                return moment
            day += timedelta(days=1)
        return None


def _after_gap(local: datetime) -> datetime:
    """A non-existent local time (spring forward): the transition instant itself, in UTC."""
    zone = local.tzinfo
    assert zone is not None
    before = local.replace(fold=0).astimezone(UTC)
    after = local.replace(fold=1).astimezone(UTC)
    low, high = min(before, after), max(before, after)
    # the transition lies between the two readings; find it to the minute
    while high - low > timedelta(minutes=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
            low = mid
        else:
            high = mid
    return high.replace(second=0, microsecond=0)


def parse_time(value: Any) -> time:
    """``"06:00"``; also what YAML 1.1 makes of an unquoted 06:00 (sexagesimal 360)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, time):
        return value
    try:
        hours, minutes = str(value).strip().split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ScheduleError(f"time {value!r} is not HH:MM (e.g. 06:00)") from None


def parse_schedule(kind: str, config: dict[str, Any], zone: str) -> Schedule:
    if kind not in KINDS:
        raise ScheduleError(f"schedule must be one of {', '.join(KINDS)}, not {kind!r}")
    try:
        ZoneInfo(zone)
    except (ValueError, KeyError):
        raise ScheduleError(f"unknown time zone {zone!r}") from None
    at = parse_time(config.get("time"))
    days: frozenset[int] = frozenset()
    dates: tuple[date, ...] = ()
    if kind == "weekly":
        names = [str(d).strip().lower()[:3] for d in config.get("days") or []]
        if not names:
            raise ScheduleError("a weekly schedule needs days (e.g. [mon, wed, fri])")
        unknown = [n for n in names if n not in DAYS]
        if unknown:
            raise ScheduleError(f"unknown day {unknown[0]!r}: use {', '.join(DAYS)}")
        days = frozenset(DAYS.index(n) for n in names)
    if kind == "dates":
        raw = config.get("dates") or []
        if not raw:
            raise ScheduleError("a dates schedule needs dates (e.g. [2026-12-24])")
        try:
            dates = tuple(sorted({d if isinstance(d, date) else date.fromisoformat(str(d)) for d in raw}))
        except ValueError as err:
            raise ScheduleError(f"a date is not YYYY-MM-DD: {err}") from None
    return Schedule(kind, at, zone, days, dates)
