"""Appliers of the survey module's effects."""

from __future__ import annotations

from uuid import UUID

from engine.turn import Turn
from handlers.context import load_survey, read_once, remember, survey_of
from state_machines.survey import (
    AbandonSurveyResponse,
    BeginSurveyResponse,
    CompleteSurvey,
    SaveSurveyAnswer,
    SurveyRefused,
    SurveyResponseReady,
)


async def begin_response(turn: Turn, effect: BeginSurveyResponse) -> SurveyResponseReady | SurveyRefused:
    """Resume the contact's response in progress, or open one if the survey takes it. A capped survey's row
    is locked so that max_responses holds under concurrent starts (open responses count against it)."""
    conn, sid = turn.conn, UUID(effect.survey_id)
    survey = await read_once(
        turn, "survey", effect.survey_id, load_survey
    )  # the first question reads it again
    if survey is not None and survey["max_responses"] is not None:  # only a capped survey needs the lock
        row = await conn.fetchrow("SELECT * FROM surveys WHERE id = $1 FOR UPDATE", sid)
        survey = remember(turn, "survey", effect.survey_id, survey_of(row) if row else None)
    if (
        survey is None
        or survey["status"] != "active"
        or (survey["ends_at"] and survey["ends_at"] <= turn.now)
    ):
        return SurveyRefused(effect.survey_id, "closed")
    if survey["starts_at"] and survey["starts_at"] > turn.now:
        return SurveyRefused(effect.survey_id, "not_started")
    open_row = await conn.fetchrow(
        "SELECT * FROM survey_responses WHERE survey_id = $1 AND contact_id = $2 AND status = 'in_progress'",
        sid,
        turn.contact.id,
    )
    if open_row is not None:
        return SurveyResponseReady(
            effect.survey_id,
            str(open_row["id"]),
            dict(open_row["answers"] or {}),
            open_row["current_question_key"],
        )
    allow_more = bool((survey["settings"] or {}).get("allow_multiple_responses"))
    if not allow_more and await conn.fetchval(
        "SELECT 1 FROM survey_responses WHERE survey_id = $1 AND contact_id = $2 AND status = 'completed'",
        sid,
        turn.contact.id,
    ):
        return SurveyRefused(effect.survey_id, "already_responded")
    if survey["max_responses"] is not None:
        open_count = await conn.fetchval(
            "SELECT count(*) FROM survey_responses WHERE survey_id = $1 AND status = 'in_progress'", sid
        )
        if survey["response_count"] + open_count >= survey["max_responses"]:
            return SurveyRefused(effect.survey_id, "full")
    response_id = await conn.fetchval(
        """INSERT INTO survey_responses (organization_id, survey_id, contact_id, started_at)
           VALUES ($1, $2, $3, $4) RETURNING id""",
        turn.org.id,
        sid,
        turn.contact.id,
        turn.now,
    )
    return SurveyResponseReady(effect.survey_id, str(response_id), {}, None)


async def save_answer(turn: Turn, effect: SaveSurveyAnswer) -> None:
    """The answer on the response and as its item, in one statement; only while the response is in progress.
    A skipped question (value None) is stored as JSON null: response_items.value is NOT NULL."""
    await turn.conn.execute(
        """WITH response AS (
               UPDATE survey_responses
               SET answers = answers || jsonb_build_object($3::text, $4::jsonb),
                   current_question = current_question + 1, current_question_key = $5, last_answer_at = $6
               WHERE id = $2 AND status = 'in_progress' RETURNING id)
           INSERT INTO response_items (organization_id, response_id, question_key, value, answered_at)
           SELECT $1, id, $3, COALESCE($4::jsonb, 'null'::jsonb), $6 FROM response
           ON CONFLICT (response_id, question_key)
               DO UPDATE SET value = EXCLUDED.value, answered_at = EXCLUDED.answered_at""",
        turn.org.id,
        UUID(effect.response_id),
        effect.question_id,
        effect.value,
        effect.next_question_id,
        turn.now,
    )


async def complete(turn: Turn, effect: CompleteSurvey) -> None:
    # surveys.response_count moves at commit (a deferred trigger, sql/013): counted once, with the completion
    await turn.conn.execute(
        """UPDATE survey_responses SET status = 'completed', completed_at = $2, current_question_key = NULL
           WHERE id = $1 AND status = 'in_progress'""",
        UUID(effect.response_id),
        turn.now,
    )


async def abandon(turn: Turn, effect: AbandonSurveyResponse) -> None:
    await turn.conn.execute(
        "UPDATE survey_responses SET status = 'abandoned' WHERE id = $1 AND status = 'in_progress'",
        UUID(effect.response_id),
    )
