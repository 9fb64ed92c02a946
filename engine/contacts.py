"""Contacts an operator brings: a CSV import (phone, name, tags, consent with its source and date) and tags.

Phones are normalised with ``phonenumbers`` to what WhatsApp calls a wa_id: the E.164 number's digits without
the "+" (a number written nationally, 0712 345678, is read in ``region``, Kenya unless told otherwise). Each row
is checked on its own: the good ones are imported in one transaction, the bad ones come back with their line
and what is wrong. Consent: "yes" needs its source and date (marketing templates go only to contacts whose
opt-in is recorded: ``opt_in_source``, ``opt_in_recorded_at``); "no" opts the contact out; empty changes
nothing. An opt-out recorded after the consent's date wins over it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from uuid import UUID

import asyncpg
import phonenumbers

from engine.db import tenant_tx

YES = frozenset({"yes", "y", "true", "1", "opted_in", "opt-in", "opt_in", "granted"})
NO = frozenset({"no", "n", "false", "0", "opted_out", "opt-out", "opt_out", "refused", "withdrawn"})
COLUMNS = {
    "phone": ("phone", "phone_number", "msisdn", "number", "whatsapp", "wa_id"),
    "name": ("name", "full_name"),
    "tags": ("tags", "tag"),
    "consent": ("consent", "opt_in", "opted_in"),
    "consent_source": ("consent_source", "source", "opt_in_source"),
    "consent_date": ("consent_date", "date", "opt_in_date", "opted_in_at"),
    "language": ("language", "lang"),
}
LANGUAGES = frozenset({"en", "sw"})
_TAG = re.compile(r"^[\w][\w .:/-]{0,49}$")


class BadPhone(ValueError):
    pass


def normalize_phone(raw: str, region: str = "KE") -> str:
    """The wa_id of a phone number (E.164 digits, no "+"); BadPhone says why it is not one."""
    text = (raw or "").strip()
    if not text:
        raise BadPhone("no phone number")
    if text.isdigit() and len(text) > 10 and not text.startswith("0"):
        text = "+" + text  # written internationally without the "+": 254712345678
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as err:
        raise BadPhone(f"not a phone number ({err})") from None
    if not phonenumbers.is_valid_number(number):
        raise BadPhone("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164).lstrip("+")


@dataclass(frozen=True)
class ContactRow:
    line: int
    phone: str
    name: str | None
    tags: tuple[str, ...]
    consent: bool | None
    consent_source: str | None
    consent_at: datetime | None
    language: str | None


@dataclass(frozen=True)
class Rejected:
    line: int
    value: str
    problem: str


@dataclass
class ImportResult:
    created: int = 0
    updated: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return self.created + self.updated


def parse_tags(value: str | None) -> tuple[str, ...]:
    """Tags separated by ";", "|" or ",", trimmed, lower-cased, each once, in order."""
    seen: list[str] = []
    for part in re.split(r"[;|,]", value or ""):
        tag = part.strip().lower()
        if tag and tag not in seen:
            if not _TAG.match(tag):
                raise ValueError(f"tag {part.strip()!r}: letters, digits, spaces and . : / - only, up to 50")
            seen.append(tag)
    return tuple(seen)


def _when(value: str, now: datetime) -> datetime:
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            parsed = datetime.combine(date.fromisoformat(text), time())
        except ValueError:
            raise ValueError(f"consent_date {text!r} is not a date (YYYY-MM-DD or ISO 8601)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed > now:
        raise ValueError(f"consent_date {text!r} is in the future")
    return parsed


def parse_csv(
    text: str, *, region: str = "KE", now: datetime | None = None
) -> tuple[list[ContactRow], list[Rejected]]:
    """The rows of a contacts CSV (a header line first; only ``phone`` is required), and the rejected ones."""
    now = now or datetime.now(UTC)
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = {(h or "").strip().lower(): h for h in reader.fieldnames or []}
    where = {key: next((header[a] for a in aliases if a in header), None) for key, aliases in COLUMNS.items()}
    if where["phone"] is None:
        found = ", ".join(h for h in header if h) or "nothing"
        raise ValueError(f"the CSV needs a header line with a 'phone' column (found: {found})")
    rows: list[ContactRow] = []
    rejected: list[Rejected] = []
    first_line: dict[str, int] = {}
    for record in reader:
        line = reader.line_num

        def cell(key: str, record: dict[str, str | None] = record) -> str:
            column = where[key]
            return (record.get(column) or "").strip() if column else ""

        raw_phone = cell("phone")
        if not any((v or "").strip() for v in record.values() if isinstance(v, str)):
            continue  # a blank line
        try:
            row = _row(line, cell, region, now)
        except (BadPhone, ValueError) as err:
            rejected.append(Rejected(line, raw_phone, str(err)))
            continue
        if row.phone in first_line:
            rejected.append(Rejected(line, raw_phone, f"the same number as line {first_line[row.phone]}"))
            continue
        first_line[row.phone] = line
        rows.append(row)
    return rows, rejected


def _row(line: int, cell: Callable[[str], str], region: str, now: datetime) -> ContactRow:
    phone = normalize_phone(cell("phone"), region)
    name = cell("name") or None
    if name is not None and len(name) > 255:
        raise ValueError("name longer than 255 characters")
    consent_text = cell("consent").lower()
    if consent_text and consent_text not in YES | NO:
        raise ValueError(f"consent {cell('consent')!r}: yes or no (or empty to leave it as it is)")
    consent = True if consent_text in YES else False if consent_text in NO else None
    source = cell("consent_source") or None
    when = _when(cell("consent_date"), now) if cell("consent_date") else None
    if consent is True and (source is None or when is None):
        missing = " and ".join(
            n for n, v in (("consent_source", source), ("consent_date", when)) if v is None
        )
        raise ValueError(f"consent yes needs its {missing}")
    if source is not None and len(source) > 200:
        raise ValueError("consent_source longer than 200 characters")
    language = cell("language").lower() or None
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"language {language!r}: en or sw")
    return ContactRow(line, phone, name, parse_tags(cell("tags")), consent, source, when, language)


_UPSERT = """
INSERT INTO contacts (organization_id, phone, whatsapp_id, name, tags, language, opted_in, opted_in_at, opted_out_at,
                      opt_in_source, opt_in_recorded_at)
VALUES ($1, $2, $2, $3, $4::text[], $5, COALESCE($6::boolean, true), CASE WHEN $6 THEN $8::timestamptz END,
        CASE WHEN NOT $6 THEN COALESCE($8, $9::timestamptz) END, CASE WHEN $6 THEN $7::text END,
        CASE WHEN $6 THEN $8 END)
ON CONFLICT (organization_id, phone) DO UPDATE SET
    name = COALESCE(EXCLUDED.name, contacts.name),
    tags = ARRAY(SELECT DISTINCT t FROM unnest(COALESCE(contacts.tags, '{}') || EXCLUDED.tags) AS t ORDER BY t),
    language = COALESCE(EXCLUDED.language, contacts.language),
    -- consent yes counts unless the contact opted out after it; no opts out; NULL leaves things as they are
    opted_in = CASE WHEN $6 IS NULL THEN contacts.opted_in
                    WHEN $6 AND contacts.opted_out_at IS NOT NULL AND contacts.opted_out_at > $8 THEN contacts.opted_in
                    ELSE $6 END,
    opted_in_at = CASE WHEN $6 AND (contacts.opted_out_at IS NULL OR contacts.opted_out_at <= $8) THEN $8
                       ELSE contacts.opted_in_at END,
    opted_out_at = CASE WHEN $6 = false THEN COALESCE($8, $9) ELSE contacts.opted_out_at END,
    opt_in_source = CASE WHEN $6 AND (contacts.opted_out_at IS NULL OR contacts.opted_out_at <= $8) THEN $7
                         WHEN $6 = false THEN NULL ELSE contacts.opt_in_source END,
    opt_in_recorded_at = CASE WHEN $6 AND (contacts.opted_out_at IS NULL OR contacts.opted_out_at <= $8) THEN $8
                              WHEN $6 = false THEN NULL ELSE contacts.opt_in_recorded_at END
RETURNING (xmax = 0) AS created"""


async def import_contacts(
    pool: asyncpg.Pool, org_id: UUID, rows: Iterable[ContactRow], *, now: datetime | None = None
) -> ImportResult:
    """Create or update the contacts of ``rows`` in one transaction of the organisation."""
    now = now or datetime.now(UTC)
    result = ImportResult()
    async with tenant_tx(pool, org_id) as conn:
        for row in rows:
            created = await conn.fetchval(
                _UPSERT,
                org_id,
                row.phone,
                row.name,
                list(row.tags),
                row.language,
                row.consent,
                row.consent_source,
                row.consent_at,
                now,
            )
            if created:
                result.created += 1
            else:
                result.updated += 1
    return result


@dataclass
class TagResult:
    tagged: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


async def tag_contacts(
    pool: asyncpg.Pool,
    org_id: UUID,
    tags: Iterable[str],
    phones: Iterable[str],
    *,
    remove: bool = False,
    region: str = "KE",
) -> TagResult:
    """Add (or with ``remove``, take away) ``tags`` on the contacts with these numbers."""
    wanted = parse_tags(";".join(tags))
    if not wanted:
        raise ValueError("no tag given")
    result = TagResult()
    numbers: list[str] = []
    for n, raw in enumerate(phones, 1):
        try:
            phone = normalize_phone(raw, region)
        except BadPhone as err:
            result.rejected.append(Rejected(n, raw, str(err)))
            continue
        if phone not in numbers:
            numbers.append(phone)
    async with tenant_tx(pool, org_id) as conn:
        if remove:
            sql = """UPDATE contacts SET tags = ARRAY(SELECT t FROM unnest(tags) AS t WHERE NOT t = ANY($3::text[]))
                     WHERE organization_id = $1 AND phone = ANY($2::text[]) RETURNING phone"""
        else:
            sql = """UPDATE contacts SET tags = ARRAY(SELECT DISTINCT t FROM unnest(COALESCE(tags, '{}') || $3::text[]) AS t
                                                ORDER BY t)
                     WHERE organization_id = $1 AND phone = ANY($2::text[]) RETURNING phone"""
        found = {r["phone"] for r in await conn.fetch(sql, org_id, numbers, list(wanted))}
    result.tagged = [p for p in numbers if p in found]
    result.not_found = [p for p in numbers if p not in found]
    return result
