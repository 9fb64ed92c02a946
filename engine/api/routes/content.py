"""Content and its results: surveys, events, polls and programmes with ids; survey results and responses as CSV,
poll tallies, tickets sold and checked in."""

from __future__ import annotations

import io
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from starlette.responses import Response

from engine import results
from engine.api.auth import Caller, scope
from engine.api.problems import ApiProblem

router = APIRouter(tags=["content"])

Kind = Literal["survey", "event", "poll", "programme"]


class ContentItem(BaseModel):
    kind: Kind
    id: UUID
    name: str
    status: str | None
    counts: str
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


class ContentList(BaseModel):
    data: list[ContentItem]
    next_cursor: str | None = None


@router.get("/content", response_model=ContentList, summary="Surveys, events, polls and programmes")
async def list_content(
    caller: Caller = Depends(scope("content", "read")), kind: Kind | None = Query(None)
) -> dict[str, Any]:
    async with caller.tx() as conn:
        rows = await results.content_list(conn)
    return {"data": [r for r in rows if kind is None or r["kind"] == kind], "next_cursor": None}


def _missing(err: results.NotFound) -> ApiProblem:
    return ApiProblem(404, "not-found", str(err))


@router.get("/surveys/{survey_id}/results", summary="A survey's results per question", tags=["results"])
async def survey_results(
    survey_id: UUID, caller: Caller = Depends(scope("results", "read"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        try:
            return await results.survey_results(conn, survey_id)
        except results.NotFound as err:
            raise _missing(err) from None


@router.get(
    "/surveys/{survey_id}/responses.csv",
    summary="A survey's responses, one CSV row each",
    tags=["results"],
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}, "description": "CSV"}},
)
async def survey_csv(survey_id: UUID, caller: Caller = Depends(scope("results", "read"))) -> Response:
    out = io.StringIO()
    async with caller.tx() as conn:
        try:
            await results.write_survey_csv(conn, survey_id, out)
        except results.NotFound as err:
            raise _missing(err) from None
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="survey-{survey_id}.csv"'},
    )


@router.get("/polls/{poll_id}/results", summary="A poll's tallies", tags=["results"])
async def poll_results(poll_id: UUID, caller: Caller = Depends(scope("results", "read"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        try:
            return await results.poll_results(conn, poll_id)
        except results.NotFound as err:
            raise _missing(err) from None


@router.get("/events/{event_id}/tickets", summary="Tickets sold and checked in", tags=["results"])
async def event_tickets(event_id: UUID, caller: Caller = Depends(scope("results", "read"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        try:
            return await results.event_tickets(conn, event_id)
        except results.NotFound as err:
            raise _missing(err) from None
