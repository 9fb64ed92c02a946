"""Programmes and event reminders in the content YAML (engine/content_import.py reads the file), validated
whole: every problem named by its path, nothing written when there is one.

```yaml
programmes:
  - key: devotional                    # how re-imports find it
    name: Daily devotional
    schedule: daily                    # daily | weekly (with days) | dates (with dates)
    time: "06:00"                      # local time in the programme's timezone (default: the organisation's)
    days: [mon, wed, fri]              # weekly
    dates: [2026-12-24, 2026-12-31]    # dates
    menu_title: Devotional             # offered in the menu (subscribe / leave); omit to keep it off the menu
    keywords:                          # typed in the conversation, any case; English and Swahili
      subscribe: [devotional, ibada]
      unsubscribe: [devotional stop, acha ibada]
    items:                             # one per occurrence, in order; sent as broadcasts to the subscribers
      - title: Day 1
        text: "Good morning {{name}}: Psalm 23"
        template: {name: devotional_day, language: en, params: ["{{name}}"]}   # outside the 24-hour window

events:
  - name: Nairobi Jazz Night
    reminders:                          # to the ticket holders, relative to the start; moved with the event
      - {name: one day to go, before: 1d, text: "{{event}} is tomorrow at {{event_time}}"}
      - {name: doors open, before: 30m, text: "Doors are open at {{event_venue}}"}
```
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.broadcast_content import VARIABLES, MediaInvalid, check_media, media_type_of, unknown_variables
from engine.programme_schedule import ScheduleError, parse_schedule, parse_time

KEYWORD = re.compile(r"^[\w][\w '-]{0,48}$")
_OFFSET = re.compile(r"^(\d+)\s*([dhm])$")
_MINUTES = {"d": 1440, "h": 60, "m": 1}


def normalise_keyword(word: str) -> str:
    return " ".join(word.lower().split())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _variables_known(text: str | None) -> str | None:
    if text and (bad := unknown_variables(text)):
        known = ", ".join("{{" + v + "}}" for v in VARIABLES)
        raise ValueError(f"unknown variable {', '.join('{{' + b + '}}' for b in bad)}: use {known}")
    return text


class TemplateRef(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    language: Annotated[str, Field(min_length=2, max_length=10)]
    params: list[str] = Field(default_factory=list)

    @field_validator("params")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for p in v:
            _variables_known(p)
        return v


class _Message(_Strict):
    text: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    template: TemplateRef | None = None

    @field_validator("text")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        return _variables_known(v)

    @model_validator(mode="after")
    def _something(self) -> _Message:
        if self.text is None and self.template is None:
            raise ValueError("needs a text, a template, or both")
        return self


class ItemSpec(_Message):
    title: Annotated[str, Field(min_length=1, max_length=255)]
    media_url: str | None = None  # an https link to an image, video or document; the text is its caption

    @field_validator("media_url")
    @classmethod
    def _media(cls, v: str | None) -> str | None:
        if v is None:
            return v
        kind = media_type_of(v)
        if kind is None:
            raise ValueError(
                "an https link whose file ends in .jpg, .png, .mp4, .3gp, .pdf, .docx or another type"
            )
        try:
            check_media(kind, v, label="the link")
        except MediaInvalid as err:
            raise ValueError(str(err)) from None
        return v


class KeywordsSpec(_Strict):
    subscribe: list[str] = Field(default_factory=list)
    unsubscribe: list[str] = Field(default_factory=list)

    @field_validator("subscribe", "unsubscribe")
    @classmethod
    def _words(cls, v: list[str]) -> list[str]:
        words = [normalise_keyword(w) for w in v]
        for w in words:
            if not KEYWORD.match(w):
                raise ValueError(f"keyword {w!r}: letters, digits, spaces, ' and -, at most 49 characters")
        return words


class ProgrammeSpec(_Strict):
    key: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")]
    name: Annotated[str, Field(min_length=1, max_length=255)]
    description: str | None = None
    schedule: str
    time: Any
    days: list[str] = Field(default_factory=list)
    dates: list[date | str] = Field(default_factory=list)
    timezone: str | None = None
    active: bool = True
    menu_title: Annotated[str, Field(min_length=1, max_length=24)] | None = None
    keywords: KeywordsSpec = Field(default_factory=KeywordsSpec)
    items: list[ItemSpec] = Field(default_factory=list)

    @field_validator("time")
    @classmethod
    def _time(cls, v: Any) -> str:
        try:
            return parse_time(v).strftime("%H:%M")
        except ScheduleError as err:
            raise ValueError(str(err)) from None

    @model_validator(mode="after")
    def _schedule(self) -> ProgrammeSpec:
        try:
            parse_schedule(self.schedule, self.config(), self.timezone or "Africa/Nairobi")
        except ScheduleError as err:
            raise ValueError(str(err)) from None
        titles = [i.title for i in self.items]
        if len(set(titles)) != len(titles):
            raise ValueError(
                "item titles must be unique within a programme (the title is how re-imports find it)"
            )
        return self

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"time": self.time}
        if self.schedule == "weekly":
            out["days"] = self.days
        if self.schedule == "dates":
            out["dates"] = [str(d) for d in self.dates]
        return out


class ReminderSpec(_Message):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    before: str | None = None  # 1d, 2h, 30m
    after: str | None = None
    at_start: bool = False

    @field_validator("before", "after")
    @classmethod
    def _span(cls, v: str | None) -> str | None:
        if v is not None and not _OFFSET.match(str(v).strip()):
            raise ValueError(f"{v!r} is not a span like 1d, 2h or 30m")
        return v

    @model_validator(mode="after")
    def _when(self) -> ReminderSpec:
        if sum([self.before is not None, self.after is not None, self.at_start]) != 1:
            raise ValueError("say when: exactly one of before (e.g. 1d), after (e.g. 2h) or at_start: true")
        return self

    def offset_minutes(self) -> int:
        span = self.before or self.after
        if span is None:
            return 0
        found = _OFFSET.match(span.strip())
        assert found is not None
        minutes = int(found.group(1)) * _MINUTES[found.group(2)]
        return -minutes if self.before else minutes


def cross_checks(programmes: list[ProgrammeSpec], reserved: frozenset[str]) -> list[str]:
    """Keys unique; keywords unique across programmes and never one of the engine's own (STOP, MENU...)."""
    errors: list[str] = []
    keys: set[str] = set()
    owner: dict[str, str] = {}
    for i, p in enumerate(programmes):
        if p.key in keys:
            errors.append(f"programmes[{i}].key: duplicate key {p.key!r} (the key is how re-imports find it)")
        keys.add(p.key)
        for kind in ("subscribe", "unsubscribe"):
            for j, word in enumerate(getattr(p.keywords, kind)):
                where = f"programmes[{i}].keywords.{kind}[{j}]"
                if word in reserved:
                    errors.append(f"{where}: {word!r} is one of the engine's own keywords")
                elif word in owner and owner[word] != f"{p.key}:{kind}":
                    errors.append(f"{where}: {word!r} is already a keyword of {owner[word].split(':')[0]!r}")
                owner.setdefault(word, f"{p.key}:{kind}")
    return errors
