"""Results of surveys and polls, read in a tenant transaction (``chatnation results``).

Survey answers come from ``survey_responses.answers`` (the JSON the bot writes in the answer's transaction),
counted over every response that answered the question, whatever its status; the response statuses are
counted separately. Poll tallies come from ``poll_options`` and are checked against ``poll_votes`` and the
``polls.options`` JSON: the three must agree.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any, TextIO
from uuid import UUID

import asyncpg

from state_machines.survey_format import CHOICE_KINDS, Kind, Question, SurveyFormatError, validate_questions

SHOWN_VALUES = 5  # free-text answers listed per question (the newest first)


class NotFound(LookupError):
    pass


def _percent(part: int, whole: int) -> int:
    return (200 * part + whole) // (2 * whole) if whole else 0  # rounded half up, as the bot shows it


@dataclass
class QuestionSummary:
    id: str
    type: str
    text: str
    answered: int = 0
    skipped: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # option / yes-no / rating -> answers
    stats: dict[str, float] = field(default_factory=dict)  # number: min, mean, max
    values: list[str] = field(default_factory=list)  # text-like answers, newest first

    def describe(self, labels: dict[str, str]) -> str:
        if self.counts:
            return " · ".join(
                f"{labels.get(k, k)} {n} ({_percent(n, self.answered)}%)" for k, n in self.counts.items()
            )
        if self.stats:
            return "min {min:g} · mean {mean:.1f} · max {max:g}".format(**self.stats)
        more = self.answered - len(self.values)
        return " | ".join(self.values) + (f" (+{more} more)" if more > 0 else "")


def _keys(q: Question) -> list[str]:
    if q.type in CHOICE_KINDS:
        return [o.id for o in q.options]
    return {Kind.YES_NO: ["yes", "no"], Kind.RATING: ["1", "2", "3", "4", "5"]}.get(q.type, [])


def summarise(q: Question, answers: Sequence[dict[str, Any]]) -> QuestionSummary:
    """One question over the responses' answers (newest first); absent = not reached, None = skipped."""
    s = QuestionSummary(q.id, q.type.value, q.label("en"))
    given = [a[q.id] for a in answers if q.id in a]
    s.skipped = sum(v is None for v in given)
    values = [v for v in given if v is not None]
    s.answered = len(values)
    if keys := _keys(q):
        counter: Counter[str] = Counter()
        for v in values:
            chosen = v if isinstance(v, list) else [("yes" if v else "no") if isinstance(v, bool) else str(v)]
            counter.update(str(c) for c in chosen)
        s.counts = {k: counter.get(k, 0) for k in keys}
    elif q.type == Kind.NUMBER and values:
        numbers = [float(v) for v in values]
        s.stats = {"min": min(numbers), "mean": fmean(numbers), "max": max(numbers)}
    else:
        s.values = [_shown(v) for v in values[:SHOWN_VALUES]]
    return s


def _shown(value: Any) -> str:
    """An answer as a person reads it: a photo by its media id, a location as coordinates and its name."""
    if isinstance(value, dict) and "media_id" in value:
        return f"photo {value['media_id']}" + (f" ({value['caption']})" if value.get("caption") else "")
    if isinstance(value, dict) and "latitude" in value:
        where = f"{value['latitude']:.5f},{value['longitude']:.5f}"
        return where + (
            f" ({value.get('name') or value.get('address')})"
            if value.get("name") or value.get("address")
            else ""
        )
    return str(value)


async def _survey_row(conn: asyncpg.Connection, survey_id: UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, title, status, questions, response_count FROM surveys WHERE id = $1", survey_id
    )
    if row is None:
        raise NotFound(f"no survey {survey_id}")
    return row


def _questions(raw: Any) -> list[Question]:
    try:
        return validate_questions(raw)
    except SurveyFormatError as err:
        raise NotFound(f"the survey's questions do not validate: {err}") from None


async def survey_results(conn: asyncpg.Connection, survey_id: UUID) -> dict[str, Any]:
    survey = await _survey_row(conn, survey_id)
    questions = _questions(survey["questions"])
    rows = await conn.fetch(
        "SELECT status, answers FROM survey_responses WHERE survey_id = $1 ORDER BY started_at DESC",
        survey_id,
    )
    statuses = Counter(r["status"] for r in rows)
    answers = [dict(r["answers"] or {}) for r in rows]
    summaries = [summarise(q, answers) for q in questions]
    labels = {q.id: {o.id: o.label("en") for o in q.options} for q in questions}
    for q in questions:
        if q.type == Kind.YES_NO:
            labels[q.id] = {"yes": "Yes", "no": "No"}
    return {
        "survey": {
            "id": str(survey["id"]),
            "title": survey["title"],
            "status": survey["status"],
            "response_count": survey["response_count"],
            "responses": len(rows),
            **{s: statuses.get(s, 0) for s in ("completed", "in_progress", "abandoned")},
        },
        "questions": [{**vars(s), "summary": s.describe(labels[s.id])} for s in summaries],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    return str(value)


async def export_survey_csv(conn: asyncpg.Connection, survey_id: UUID, path: Path) -> int:
    """One row per response: who, status, times, then one column per question id. Returns the row count."""
    with path.open("w", newline="", encoding="utf-8") as f:
        return await write_survey_csv(conn, survey_id, f)


async def write_survey_csv(conn: asyncpg.Connection, survey_id: UUID, out: TextIO) -> int:
    """The CSV of export_survey_csv written to ``out`` (the CLI's file, the API's response)."""
    questions = _questions((await _survey_row(conn, survey_id))["questions"])
    rows = await conn.fetch(
        """SELECT r.id, c.phone, r.status, r.started_at, r.completed_at, r.answers
           FROM survey_responses r JOIN contacts c ON c.id = r.contact_id
           WHERE r.survey_id = $1 ORDER BY r.started_at, r.id""",
        survey_id,
    )
    writer = csv.writer(out)
    writer.writerow(
        ["response_id", "phone", "status", "started_at", "completed_at", *[q.id for q in questions]]
    )
    for r in rows:
        answers = r["answers"] or {}
        writer.writerow(
            [
                r["id"],
                r["phone"],
                r["status"],
                _cell(r["started_at"]),
                _cell(r["completed_at"]),
                *[_cell(answers.get(q.id)) for q in questions],
            ]
        )
    return len(rows)


async def poll_results(conn: asyncpg.Connection, poll_id: UUID) -> dict[str, Any]:
    poll = await conn.fetchrow(
        "SELECT id, question, status, options, voter_count FROM polls WHERE id = $1", poll_id
    )
    if poll is None:
        raise NotFound(f"no poll {poll_id}")
    options = await conn.fetch(
        """SELECT o.id, o.text, o.votes, (SELECT count(*) FROM poll_votes v WHERE v.poll_id = o.poll_id
                                                                          AND v.option_id = o.id) AS counted
           FROM poll_options o WHERE o.poll_id = $1 ORDER BY o.sort_order, o.id""",
        poll_id,
    )
    voters = await conn.fetchval(
        "SELECT count(DISTINCT contact_id) FROM poll_votes WHERE poll_id = $1", poll_id
    )
    in_json = {str(o["id"]): int(o.get("votes") or 0) for o in poll["options"] or []}
    rows = [
        {
            "id": o["id"],
            "text": o["text"],
            "votes": o["votes"],
            "percent": _percent(o["votes"], voters),
            "counted_votes": o["counted"],
            "json_votes": in_json.get(o["id"]),
        }
        for o in options
    ]
    consistent = (
        all(r["votes"] == r["counted_votes"] == r["json_votes"] for r in rows)
        and set(in_json) == {r["id"] for r in rows}
        and poll["voter_count"] == voters
    )
    return {
        "poll": {
            "id": str(poll["id"]),
            "question": poll["question"],
            "status": poll["status"],
            "voters": voters,
            "consistent": consistent,
        },
        "options": rows,
    }


async def content_list(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Surveys, events, polls and programmes of the tenant, with ids, state and counts (kind, then age)."""
    rows = await conn.fetch(
        """SELECT 'survey' AS kind, title AS name, id, status,
                  format('%s responses', response_count) AS counts, starts_at, ends_at, created_at
           FROM surveys
           UNION ALL
           SELECT 'event', e.name, e.id, e.status,
                  format('%s sold', (SELECT COALESCE(sum(quantity_sold), 0) FROM ticket_types t
                                     WHERE t.event_id = e.id)),
                  e.starts_at, e.ends_at, e.created_at
           FROM events e
           UNION ALL
           SELECT 'poll', question, id, status, format('%s voters', voter_count), NULL, ends_at, created_at
           FROM polls
           UNION ALL
           SELECT 'programme', name, id, CASE WHEN is_active THEN 'active' ELSE 'inactive' END,
                  COALESCE(schedule_type, ''), NULL, NULL, created_at
           FROM programs
           ORDER BY kind, created_at, id"""
    )
    return [dict(r) for r in rows]


async def event_tickets(conn: asyncpg.Connection, event_id: UUID) -> dict[str, Any]:
    """Tickets sold and checked in, per ticket type and in all."""
    event = await conn.fetchrow("SELECT id, name, status, starts_at FROM events WHERE id = $1", event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    types = await conn.fetch(
        """SELECT t.id, t.name, t.price, t.currency, t.quantity_total AS total, t.quantity_sold AS sold,
                  t.quantity_held AS held,
                  (SELECT count(*) FROM tickets k WHERE k.ticket_type_id = t.id AND k.checked_in_at IS NOT NULL)
                      AS checked_in
           FROM ticket_types t WHERE t.event_id = $1 ORDER BY t.sort_order, t.name, t.id""",
        event_id,
    )
    rows = [{**dict(t), "price": str(t["price"])} for t in types]
    return {
        "event": dict(event),
        "ticket_types": rows,
        "sold": sum(r["sold"] for r in rows),
        "checked_in": sum(r["checked_in"] for r in rows),
    }
