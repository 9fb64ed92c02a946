"""An organisation's conversation content from one YAML file: surveys, events with ticket types, polls and
event staff. ``chatnation import FILE.yaml --org ORG`` runs it.

The file is validated whole first (pydantic, plus the survey format's own checks); every error names the path
of the bad field, e.g. ``surveys[0].questions[2].options: single_choice needs at least 2 options``, and nothing
is written. Then everything is written in one tenant transaction as the application role.

Re-importing updates by natural key instead of duplicating:

| item | natural key | on re-import |
|---|---|---|
| survey | title | fields and questions replaced; responses and response_count kept |
| event | name | fields replaced |
| ticket type | (event, name) | fields replaced, sold and held kept; a type no longer in the file is deactivated |
| poll | question | fields replaced; option texts updated, votes kept; an option no longer in the file is deleted, refused if it has votes |
| staff | (event, phone) | name updated |
| hypecard | name | canvas, texts and offers replaced, layers rewritten; cards made from it kept |
| venue, booth, session, exhibitor | name; (venue, number); (event, key); (event, name) | engine/event_content.py, docs/events.md |
| programme | key | fields and schedule replaced, next occurrence counted from now; items by title, sent ones kept, unsent ones no longer in the file withdrawn (engine/programme_spec.py) |
| event reminder | (event, name) | offset and message replaced; pending ones no longer in the file deleted |

HypeCard templates (``hypecards:``, format in engine/hypecards/spec.py) and ``organization.logo`` name pictures
by paths relative to the YAML file; they are stored with the template (``hypecard_assets``).

Times: ISO timestamps (YAML's own), naive ones in ``organization.timezone`` (default Africa/Nairobi), or
relative: ``+30d``, ``+2h``, ``+15m``, ``-1d``, counted from the item's first import (its ``created_at``), so that
importing the same file again does not move an event.

YAML 1.1 reads unquoted yes/no/on/off as booleans; the file is read with only true/false as booleans (YAML
1.2), so ``text: Yes`` is the text "Yes" and ``allow_multiple: yes`` still means true. A text that is exactly
true or false must be quoted, and the error says so. Every error of the file is reported at once, those
inside survey questions too. ``organization.language`` does not replace the organisation's language unless
asked (``import --set-language``): the import says it kept it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine import event_content
from engine.db import tenant_tx
from engine.hypecards.spec import TemplateError, TemplateSpec, parse_template, read_picture
from engine.hypecards.store import save_logo, save_template
from engine.programme_spec import ProgrammeSpec, ReminderSpec
from engine.programme_spec import cross_checks as programme_checks
from engine.programmes import save_programme, save_reminders
from state_machines.formatting import DEFAULT_TIMEZONE
from state_machines.survey_format import Question, SurveyFormatError, validate_questions

_RELATIVE = re.compile(r"^([+-])(\d+)([dhm])$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


class ContentError(ValueError):
    """The content file cannot be imported; ``errors`` has one message per problem, each naming its path."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


def _relative(value: object) -> timedelta | None:
    """``+30d`` / ``-2h`` / ``+15m`` as a time span; None for anything else."""
    if isinstance(value, str) and (found := _RELATIVE.match(value.strip())):
        sign, amount, unit = found.groups()
        delta = timedelta(**{_UNITS[unit]: int(amount)})
        return delta if sign == "+" else -delta
    return None


def _anchor(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def _moment(value: object) -> object:
    """A relative time counted from now while the file is checked; ``_Timed.anchor_at`` moves it to the item's
    first import when it is written. Anything else is left to pydantic."""
    delta = _relative(value)
    return _anchor(datetime.now(UTC)) + delta if delta is not None else value


Moment = Annotated[datetime, BeforeValidator(_moment)]
Name = Annotated[str, Field(min_length=1, max_length=255)]


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Timed(_Strict):
    """An item with times that may be relative (``+30d``): which ones, kept to count them from an anchor."""

    _relative: dict[str, timedelta] = PrivateAttr(default_factory=dict)
    _first_imported: datetime | None = PrivateAttr(default=None)

    @property
    def first_imported(self) -> datetime:
        """When the item was first imported (now, for a new one); set when it is written."""
        return self._first_imported or datetime.now(UTC)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_relative(cls, data: Any, handler: Any) -> Any:
        model = handler(data)
        if isinstance(data, dict):
            model._relative = {k: d for k, v in data.items() if (d := _relative(v)) is not None}
        return model

    def anchor_at(self, anchor: datetime) -> None:
        """Relative times counted from ``anchor`` (the item's first import) instead of from now."""
        for name, delta in self._relative.items():
            setattr(self, name, _anchor(anchor) + delta)


class AgentTemplateSpec(_Strict):
    """The template of the agents' handover notice outside their 24-hour window (engine/handovers.py)."""

    name: Annotated[str, Field(min_length=1, max_length=512)]
    language: Annotated[str, Field(min_length=2, max_length=10)]
    params: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list
    )  # {{name}} {{phone}} {{text}}


class OrganizationSpec(_Strict):
    language: Literal["en", "sw"] | None = None
    timezone: str | None = None
    prices: dict[str, Annotated[int, Field(ge=0)]] | None = None
    hold_seconds: Annotated[int, Field(ge=30)] | None = None
    payment_timeout_seconds: Annotated[int, Field(ge=10)] | None = None
    survey_reminder_seconds: Annotated[int, Field(ge=1)] | None = None
    survey_abandon_seconds: Annotated[int, Field(ge=1)] | None = None
    # Told on WhatsApp when the wallet cannot pay replies (engine/wallet_pause.py).
    admin_phones: list[Annotated[str, BeforeValidator(_phone)]] | None = None
    # The "we cannot answer right now" notice of a paused organisation: free (default) or charged.
    wallet_empty_notice: Literal["free", "charged"] | None = None
    # Human handover (docs/handover.md): the wait before the "not available" line, the hours it names, and the
    # agents' WhatsApp numbers told when a handover opens (a text inside their 24-hour window, else the template).
    handover_wait_seconds: Annotated[int, Field(ge=1)] | None = None
    handover_hours: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    handover_agents: list[Annotated[str, BeforeValidator(_phone)]] | None = None
    handover_agent_template: AgentTemplateSpec | None = None
    logo: str | None = None  # a picture file, relative to the YAML file: `source: logo` in HypeCards

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}") from None
        return v

    def settings(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, exclude={"logo"})


class SurveySpec(_Timed):
    title: Name
    description: str | None = None
    status: Literal["draft", "active", "closed", "archived"] = "active"
    max_responses: Annotated[int, Field(gt=0)] | None = None
    starts_at: Moment | None = None
    ends_at: Moment | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    questions: list[Any]  # checked by state_machines.survey_format (errors re-pathed under the survey)


class TicketTypeSpec(_Timed):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str | None = None
    price: Annotated[Decimal, Field(ge=0, max_digits=10, decimal_places=2)] = Decimal(0)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "KES"
    quantity_total: Annotated[int, Field(ge=0)] | None = None
    max_per_order: Annotated[int, Field(gt=0)] = 10
    # tickets one contact may have of this type; unset: max_per_order in total for a free type, no limit if paid
    max_per_contact: Annotated[int, Field(gt=0)] | None = None
    sales_start_at: Moment | None = None
    sales_end_at: Moment | None = None
    is_active: bool = True


class EventSpec(_Timed, event_content.EventParts):  # venue, agenda, exhibitors: engine/event_content.py
    name: Name
    description: str | None = None
    starts_at: Moment
    ends_at: Moment
    timezone: str | None = None
    venue_name: str | None = None
    venue_address: str | None = None
    status: Literal["draft", "published", "cancelled", "completed"] = "published"
    ticket_types: list[TicketTypeSpec] = Field(default_factory=list)
    reminders: list[ReminderSpec] = Field(default_factory=list)  # engine/programme_spec.py

    @field_validator("ticket_types")
    @classmethod
    def _unique_names(cls, v: list[TicketTypeSpec]) -> list[TicketTypeSpec]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError("ticket type names must be unique within an event")
        return v

    @field_validator("reminders")
    @classmethod
    def _unique_reminders(cls, v: list[ReminderSpec]) -> list[ReminderSpec]:
        names = [r.name for r in v]
        if len(set(names)) != len(names):
            raise ValueError("reminder names must be unique within an event")
        return v


class PollOptionSpec(_Strict):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")]
    text: Annotated[str, Field(min_length=1, max_length=255)]


class PollSpec(_Timed):
    question: Annotated[str, Field(min_length=1)]
    options: Annotated[list[PollOptionSpec], Field(min_length=2)]
    allow_multiple: bool = False
    show_results: bool = True
    ends_at: Moment | None = None
    status: Literal["draft", "active", "closed"] = "active"

    @field_validator("options")
    @classmethod
    def _unique_ids(cls, v: list[PollOptionSpec]) -> list[PollOptionSpec]:
        ids = [o.id for o in v]
        if len(set(ids)) != len(ids):
            raise ValueError("option ids must be unique")
        return v


class StaffSpec(_Strict):
    event: Name
    phone: Annotated[str, BeforeValidator(_phone)]
    name: str | None = None


class ContentFile(_Strict):
    organization: OrganizationSpec = Field(default_factory=OrganizationSpec)
    surveys: list[SurveySpec] = Field(default_factory=list)
    events: list[EventSpec] = Field(default_factory=list)
    polls: list[PollSpec] = Field(default_factory=list)
    staff: list[StaffSpec] = Field(default_factory=list)
    hypecards: list[dict[str, Any]] = Field(default_factory=list)  # checked by engine.hypecards.spec
    venues: list[event_content.VenueSpec] = Field(default_factory=list)
    programmes: list[ProgrammeSpec] = Field(default_factory=list)  # engine/programme_spec.py


@dataclass
class Content:
    """A validated file, times made aware, survey questions parsed, HypeCard templates and pictures read."""

    spec: ContentFile
    questions: list[list[Question]] = field(default_factory=list)  # per survey, in file order
    hypecards: list[tuple[TemplateSpec, dict[str, bytes]]] = field(default_factory=list)
    logo: tuple[str, bytes] | None = None  # (SHA-256, bytes)


@dataclass
class ImportSummary:
    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    ids: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> natural key -> id
    notes: list[str] = field(default_factory=list)  # what the import did not do, and why

    def count(self, kind: str, created: bool, key: str, row_id: UUID) -> None:
        bucket = self.created if created else self.updated
        bucket[kind] = bucket.get(kind, 0) + 1
        self.ids.setdefault(kind, {})[key] = str(row_id)


# ---------------------------------------------------------------- validation


def _path(loc: Sequence[int | str]) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    return text or "(file)"


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with YAML 1.2's booleans: true/false only; yes, no, on, off stay text ("Yes" as an option)."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader with fewer booleans


def load_content(path: str | Path) -> Content:
    """Read and validate a content file; ``ContentError`` lists every problem."""
    try:
        raw = read_yaml(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ContentError([f"cannot read {path}: {err.strerror or err}"]) from None
    except yaml.YAMLError as err:
        raise ContentError([f"not valid YAML: {err}"]) from None
    return parse_content(raw if raw is not None else {}, Path(path).resolve().parent)


def _message(error: Mapping[str, Any]) -> str:
    """pydantic's message, or what to do when YAML read a text as a yes/no value."""
    if error["type"] == "string_type" and isinstance(error.get("input"), bool):
        word = "true" if error["input"] else "false"
        return f'YAML read {word} as a yes/no value where text is expected: put it in quotes ("{word}")'
    return str(error["msg"])


def parse_content(raw: Any, base_dir: Path | None = None) -> Content:
    """Validate the whole file: the file's fields and every survey's questions, all errors at once.
    ``base_dir``: where pictures named in the file are read from (the file's folder; default: here)."""
    errors: list[str] = []
    spec: ContentFile | None = None
    try:
        spec = ContentFile.model_validate(raw)
    except ValidationError as err:
        errors += [f"{_path(e['loc'])}: {_message(e)}" for e in err.errors()]
    hypecards: list[tuple[TemplateSpec, dict[str, bytes]]] = []
    logo = None
    if spec is not None:
        errors += _cross_checks(spec)
        hypecards, logo = _hypecards(spec, base_dir or Path.cwd(), errors)
    raw_surveys = raw.get("surveys") if isinstance(raw, dict) else None
    questions = []
    for i, survey in enumerate(raw_surveys if isinstance(raw_surveys, list) else []):
        if not isinstance(survey, dict) or "questions" not in survey:
            continue  # reported above (not a mapping, or no questions)
        try:
            questions.append(validate_questions(survey["questions"]))
        except (
            SurveyFormatError
        ) as err:  # its messages start with "questions[...]": put them under the survey
            errors += [f"surveys[{i}].{part}" for part in re.split(r"; (?=questions)", str(err))]
    if errors or spec is None:
        raise ContentError(errors)
    _localise(spec)
    if errors := _time_order(spec):
        raise ContentError(errors)
    return Content(spec, questions, hypecards, logo)


def _hypecards(
    spec: ContentFile, base_dir: Path, errors: list[str]
) -> tuple[list[tuple[TemplateSpec, dict[str, bytes]]], tuple[str, bytes] | None]:
    parsed: dict[int, tuple[TemplateSpec, dict[str, bytes]]] = {}
    for i, raw in enumerate(spec.hypecards):
        try:
            parsed[i] = parse_template(raw, f"hypecards[{i}]", base_dir)
        except TemplateError as err:
            errors += err.errors
    errors += _duplicates([t.name for t, _ in parsed.values()], "hypecards", "name")
    events, polls = {e.name for e in spec.events}, {p.question for p in spec.polls}
    for i, (t, _) in parsed.items():
        if t.event is not None and t.event not in events:
            errors.append(f"hypecards[{i}].event: no event named {t.event!r} in this file")
        if t.poll is not None and t.poll not in polls:
            errors.append(f"hypecards[{i}].poll: no poll asking {t.poll!r} in this file")
    templates = list(parsed.values())
    logo = None
    if spec.organization.logo is not None:
        path = base_dir / spec.organization.logo
        try:
            data = path.read_bytes()
            read_picture(data, f"organization.logo ({spec.organization.logo})")
            logo = (hashlib.sha256(data).hexdigest(), data)
        except OSError as err:
            errors.append(f"organization.logo: cannot read {spec.organization.logo}: {err.strerror or err}")
        except TemplateError as err:
            errors += err.errors
    return templates, logo


def _duplicates(values: Sequence[str], where: str, what: str) -> list[str]:
    seen: set[str] = set()
    found = []
    for i, v in enumerate(values):
        if v in seen:
            found.append(
                f"{where}[{i}].{what}: duplicate {what} {v!r} (the {what} is how re-imports find it)"
            )
        seen.add(v)
    return found


def _cross_checks(spec: ContentFile) -> list[str]:
    errors = _duplicates([s.title for s in spec.surveys], "surveys", "title")
    errors += _duplicates([e.name for e in spec.events], "events", "name")
    errors += _duplicates([p.question for p in spec.polls], "polls", "question")
    names = {e.name for e in spec.events}
    errors += [
        f"staff[{i}].event: no event named {s.event!r} in this file"
        for i, s in enumerate(spec.staff)
        if s.event not in names
    ]
    errors += event_content.cross_checks(spec.events, spec.venues, [s.title for s in spec.surveys])
    from state_machines.conversation import KEYWORDS

    errors += programme_checks(spec.programmes, frozenset(KEYWORDS))
    return errors


def _localise(spec: ContentFile) -> None:
    """Naive times are the organisation's local time."""
    zone = ZoneInfo(spec.organization.timezone or DEFAULT_TIMEZONE)
    items: list[BaseModel] = [*spec.surveys, *spec.events, *spec.polls]
    items += [t for e in spec.events for t in e.ticket_types]
    for item in items:
        for name in ("starts_at", "ends_at", "sales_start_at", "sales_end_at"):
            value = getattr(item, name, None)
            if isinstance(value, datetime) and value.tzinfo is None:
                setattr(item, name, value.replace(tzinfo=zone))


def _time_order(spec: ContentFile) -> list[str]:
    pairs = [(f"surveys[{i}]", s.starts_at, s.ends_at) for i, s in enumerate(spec.surveys)]
    pairs += [(f"events[{i}]", e.starts_at, e.ends_at) for i, e in enumerate(spec.events)]
    pairs += [
        (f"events[{i}].ticket_types[{j}]", t.sales_start_at, t.sales_end_at)
        for i, e in enumerate(spec.events)
        for j, t in enumerate(e.ticket_types)
    ]
    zone = spec.organization.timezone or DEFAULT_TIMEZONE
    return [
        f"{where}: ends before it starts ({start.isoformat()} .. {end.isoformat()})"
        for where, start, end in pairs
        if start is not None and end is not None and end < start
    ] + event_content.time_order(spec.events, lambda e: e.timezone or zone)


# ---------------------------------------------------------------- writing


async def import_content(
    pool: asyncpg.Pool, org_id: UUID, content: Content, *, set_language: bool = False
) -> ImportSummary:
    """Write everything in one tenant transaction; a database refusal rolls all of it back. The file's
    ``organization.language`` replaces the organisation's only with ``set_language`` (else a note says so)."""
    summary = ImportSummary()
    spec = content.spec
    try:
        async with tenant_tx(pool, org_id) as conn:
            current = await conn.fetchrow("SELECT settings FROM organizations WHERE id = $1", org_id)
            if current is None:
                raise ContentError([f"organization: no organisation {org_id}"])
            settings = spec.organization.settings()
            language = (current["settings"] or {}).get("language")
            if language and settings.get("language", language) != language and not set_language:
                summary.notes.append(
                    f"organization.language: kept the organisation's {language!r} (the file says "
                    f"{settings.pop('language')!r}; import --set-language changes it)"
                )
            if settings:
                await conn.execute(
                    "UPDATE organizations SET settings = COALESCE(settings, '{}') || $2 WHERE id = $1",
                    org_id,
                    settings,
                )
            for survey, questions in zip(spec.surveys, content.questions, strict=True):
                await _survey(conn, org_id, survey, questions, summary)
            venue_ids = await event_content.write_venues(conn, org_id, spec.venues, summary)
            event_ids = {
                e.name: await _event(conn, org_id, e, spec.organization.timezone, summary)
                for e in spec.events
            }
            for e in spec.events:
                await event_content.write_event_parts(conn, org_id, event_ids[e.name], e, venue_ids, summary)
            for i, poll in enumerate(spec.polls):
                await _poll(conn, org_id, i, poll, summary)
            poll_ids = summary.ids.get("polls", {})
            for s in spec.staff:
                await _staff(conn, org_id, event_ids[s.event], s, summary)
            for programme in spec.programmes:
                pid, created = await save_programme(
                    conn, org_id, programme, spec.organization.timezone, datetime.now(UTC)
                )
                summary.count("programmes", created, programme.key, pid)
            if content.logo is not None:
                await save_logo(conn, org_id, *content.logo)
            for template, pictures in content.hypecards:
                ids = (event_ids.get(template.event or ""), poll_ids.get(template.poll or ""))
                template_id, created = await save_template(
                    conn, org_id, template, pictures, *(UUID(str(i)) if i else None for i in ids)
                )
                summary.count("hypecards", created, template.name, template_id)
    except asyncpg.PostgresError as err:
        raise ContentError([f"the database refused the import: {err}"]) from None
    return summary


async def _existing(conn: asyncpg.Connection, item: _Timed, sql: str, key: str) -> Any:
    """The item's row by its natural key, locked; its relative times are counted from its first import."""
    row = await conn.fetchrow(f"{sql} ORDER BY created_at LIMIT 1 FOR UPDATE", key)
    item._first_imported = row["created_at"] if row else datetime.now(UTC)
    item.anchor_at(item.first_imported)
    return row["id"] if row else None


async def _survey(
    conn: asyncpg.Connection, org_id: UUID, s: SurveySpec, questions: list[Question], summary: ImportSummary
) -> None:
    sid = await _existing(conn, s, "SELECT id, created_at FROM surveys WHERE title = $1", s.title)
    values = (s.description, s.questions, s.settings, s.max_responses, s.starts_at, s.ends_at, s.status)
    created = sid is None
    if created:
        sid = await conn.fetchval(
            """INSERT INTO surveys (organization_id, title, description, questions, settings, max_responses,
                                    starts_at, ends_at, status, published_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::varchar, CASE WHEN $9::varchar = 'active' THEN now() END) RETURNING id""",
            org_id,
            s.title,
            *values,
        )
    else:
        await conn.execute(
            """UPDATE surveys SET description = $2, questions = $3, settings = $4, max_responses = $5,
                      starts_at = $6, ends_at = $7, status = $8::varchar,
                      published_at = COALESCE(published_at, CASE WHEN $8::varchar = 'active' THEN now() END)
               WHERE id = $1""",
            sid,
            *values,
        )
    summary.count("surveys", created, s.title, sid)
    await _project_questions(conn, org_id, sid, questions)


async def _project_questions(
    conn: asyncpg.Connection, org_id: UUID, survey_id: UUID, questions: list[Question]
) -> None:
    """The relational projection of ``surveys.questions`` (for reporting), rewritten from the JSON."""
    await conn.execute("DELETE FROM questions WHERE survey_id = $1", survey_id)
    for position, q in enumerate(questions, 1):
        config = q.model_dump(
            mode="json",
            include={"min", "max", "integer", "max_length", "next", "branches"},
            exclude_none=True,
        )
        qid = await conn.fetchval(
            """INSERT INTO questions (organization_id, survey_id, key, position, kind, text, required, config)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
            org_id,
            survey_id,
            q.id,
            position,
            q.type.value,
            q.label("en"),
            q.required,
            config,
        )
        await conn.executemany(
            """INSERT INTO question_options (organization_id, question_id, key, text, position)
               VALUES ($1, $2, $3, $4, $5)""",
            [(org_id, qid, o.id, o.label("en"), n) for n, o in enumerate(q.options, 1)],
        )


async def _event(
    conn: asyncpg.Connection, org_id: UUID, e: EventSpec, org_zone: str | None, summary: ImportSummary
) -> UUID:
    eid = await _existing(conn, e, "SELECT id, created_at FROM events WHERE name = $1", e.name)
    values = (
        e.description,
        e.starts_at,
        e.ends_at,
        e.timezone or org_zone or DEFAULT_TIMEZONE,
        e.venue_name,
        e.venue_address,
        e.status,
    )
    created = eid is None
    if created:
        eid = await conn.fetchval(
            """INSERT INTO events (organization_id, name, description, starts_at, ends_at, timezone, venue_name,
                                   venue_address, status, published_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::varchar, CASE WHEN $9::varchar = 'published' THEN now() END)
               RETURNING id""",
            org_id,
            e.name,
            *values,
        )
    else:
        await conn.execute(
            """UPDATE events SET description = $2, starts_at = $3, ends_at = $4, timezone = $5, venue_name = $6,
                      venue_address = $7, status = $8::varchar,
                      published_at = COALESCE(published_at, CASE WHEN $8::varchar = 'published' THEN now() END)
               WHERE id = $1""",
            eid,
            *values,
        )
    summary.count("events", created, e.name, eid)
    for order, tt in enumerate(e.ticket_types):
        await _ticket_type(conn, org_id, eid, order, tt, summary, e.name, e.first_imported)
    await conn.execute(
        "UPDATE ticket_types SET is_active = false WHERE event_id = $1 AND NOT (name = ANY($2))",
        eid,
        [tt.name for tt in e.ticket_types],
    )
    await save_reminders(conn, org_id, eid, e.reminders, datetime.now(UTC))
    return eid


async def _ticket_type(
    conn: asyncpg.Connection,
    org_id: UUID,
    event_id: UUID,
    order: int,
    tt: TicketTypeSpec,
    summary: ImportSummary,
    event_name: str,
    event_created: datetime,
) -> None:
    tt.anchor_at(event_created)  # a ticket type's relative times count from its event's first import
    values = (
        tt.description,
        tt.price,
        tt.currency,
        tt.quantity_total,
        tt.max_per_order,
        tt.sales_start_at,
        tt.sales_end_at,
        tt.is_active,
        order,
        tt.max_per_contact,
    )
    tid = await conn.fetchval(
        "SELECT id FROM ticket_types WHERE event_id = $1 AND name = $2 FOR UPDATE", event_id, tt.name
    )
    created = tid is None
    if created:
        tid = await conn.fetchval(
            """INSERT INTO ticket_types (organization_id, event_id, name, description, price, currency,
                                         quantity_total, max_per_order, sales_start_at, sales_end_at, is_active,
                                         sort_order, max_per_contact)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id""",
            org_id,
            event_id,
            tt.name,
            *values,
        )
    else:  # sold and held stay: the inventory CHECK refuses a total below them
        await conn.execute(
            """UPDATE ticket_types SET description = $2, price = $3, currency = $4, quantity_total = $5,
                      max_per_order = $6, sales_start_at = $7, sales_end_at = $8, is_active = $9, sort_order = $10,
                      max_per_contact = $11
               WHERE id = $1""",
            tid,
            *values,
        )
    summary.count("ticket_types", created, f"{event_name}/{tt.name}", tid)


async def _poll(
    conn: asyncpg.Connection, org_id: UUID, index: int, p: PollSpec, summary: ImportSummary
) -> None:
    options = [{"id": o.id, "text": o.text, "votes": 0} for o in p.options]
    # the lock keeps votes out while the options change
    pid = await _existing(conn, p, "SELECT id, created_at FROM polls WHERE question = $1", p.question)
    created = pid is None
    if created:
        pid = await conn.fetchval(
            """INSERT INTO polls (organization_id, question, options, allow_multiple, show_results, ends_at, status)
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
            org_id,
            p.question,
            options,
            p.allow_multiple,
            p.show_results,
            p.ends_at,
            p.status,
        )
    else:
        await conn.execute(
            "UPDATE polls SET allow_multiple = $2, show_results = $3, ends_at = $4, status = $5 WHERE id = $1",
            pid,
            p.allow_multiple,
            p.show_results,
            p.ends_at,
            p.status,
        )
    await _poll_options(conn, org_id, index, pid, p)
    summary.count("polls", created, p.question, pid)


async def _poll_options(conn: asyncpg.Connection, org_id: UUID, index: int, pid: UUID, p: PollSpec) -> None:
    """``poll_options`` rows (votes kept), then ``polls.options`` JSON rewritten from them, as votes do."""
    keep = [o.id for o in p.options]
    voted = await conn.fetch(
        "SELECT id FROM poll_options WHERE poll_id = $1 AND NOT (id = ANY($2)) AND votes > 0", pid, keep
    )
    if voted:
        names = ", ".join(repr(r["id"]) for r in voted)
        raise ContentError([f"polls[{index}].options: option(s) {names} have votes and cannot be removed"])
    await conn.execute("DELETE FROM poll_options WHERE poll_id = $1 AND NOT (id = ANY($2))", pid, keep)
    await conn.executemany(
        """INSERT INTO poll_options (poll_id, id, organization_id, text, votes, sort_order)
           VALUES ($1, $2, $3, $4, 0, $5)
           ON CONFLICT (poll_id, id) DO UPDATE SET text = EXCLUDED.text, sort_order = EXCLUDED.sort_order""",
        [(pid, o.id, org_id, o.text, n) for n, o in enumerate(p.options, 1)],
    )
    await conn.execute(
        """UPDATE polls SET options = (SELECT jsonb_agg(jsonb_build_object('id', id, 'text', text, 'votes', votes)
                                                        ORDER BY sort_order, id)
                                       FROM poll_options WHERE poll_id = $1) WHERE id = $1""",
        pid,
    )


async def _staff(
    conn: asyncpg.Connection, org_id: UUID, event_id: UUID, s: StaffSpec, summary: ImportSummary
) -> None:
    row = await conn.fetchrow(
        """INSERT INTO participants (organization_id, event_id, name, phone, role) VALUES ($1, $2, $3, $4, 'staff')
           ON CONFLICT (event_id, phone, role) DO UPDATE SET name = COALESCE(EXCLUDED.name, participants.name)
           RETURNING id, (xmax = 0) AS inserted""",
        org_id,
        event_id,
        s.name,
        s.phone,
    )
    summary.count("staff", row["inserted"], f"{s.event}/{s.phone}", row["id"])
