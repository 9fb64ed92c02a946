"""Human handover for the organisation's agents: the queue (open handovers with their last messages), assign,
reply as an agent (text inside the 24-hour window), close (the bot resumes with the menu)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, model_validator
from starlette.responses import JSONResponse

from engine import handovers
from engine.api import paging
from engine.api.auth import Caller, scope
from engine.api.idempotency import IdempotencyKey, create_once
from engine.api.problems import ApiProblem, not_found
from engine.api.routes.contacts import Message

router = APIRouter(prefix="/handovers", tags=["handover"])
Status = Literal["waiting", "assigned", "closed"]
PRINTABLE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$"  # newlines and tabs allowed in a message


class HandoverContact(BaseModel):
    id: UUID
    phone: str
    name: str | None


class Handover(BaseModel):
    id: UUID
    status: Status
    reason: str
    request_text: str | None
    contact: HandoverContact
    assigned_to: str | None
    assigned_at: datetime | None
    first_reply_at: datetime | None
    agent_replies: int
    closed_at: datetime | None
    created_at: datetime
    last_user_message_at: datetime | None = Field(description="The 24-hour window runs from here")
    last_messages: list[Message] = Field(description=f"The latest {handovers.LAST_MESSAGES}, newest first")


class Assignment(BaseModel):
    agent: str = Field(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")


class TemplateChoice(BaseModel):
    name: str = Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9_]+$")
    language: str = Field(min_length=2, max_length=20, pattern=r"^[A-Za-z_]+$")
    params: list[str] | dict[str, Any] | None = Field(
        None, description="The body's parameters in order, or {header, body, buttons} (engine/templates.py)"
    )


class AgentReply(BaseModel):
    """Either ``text`` (inside the 24-hour window) or an approved ``template`` (at any time)."""

    text: str | None = Field(None, min_length=1, max_length=4096, pattern=PRINTABLE)
    template: TemplateChoice | None = None
    agent: str | None = Field(None, min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")

    @model_validator(mode="after")
    def _one_of(self) -> AgentReply:
        if (self.text is None) == (self.template is None):
            raise ValueError("give text or template (one of them)")
        return self


class QueuedReply(BaseModel):
    id: UUID
    handover_id: UUID
    content: str
    status: str
    created_at: datetime


def _refused(err: handovers.HandoverRefused) -> ApiProblem:
    return ApiProblem(409, err.kind, str(err))


@router.get("", response_model=paging.Page[Handover], summary="The queue: open handovers, oldest first")
async def list_handovers(
    caller: Caller = Depends(scope("handover", "read")),
    status: Status | None = Query(None, description="Default: the open ones (waiting and assigned)"),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    after = paging.decode(cursor)
    async with caller.tx() as conn:
        rows = await handovers.queue(conn, status, after, limit + 1)
    data, next_cursor = paging.page(rows, limit)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{handover_id}", response_model=Handover, summary="One handover with its last messages")
async def get_handover(
    handover_id: UUID, caller: Caller = Depends(scope("handover", "read"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        found = await handovers.one(conn, handover_id)
    if found is None:
        raise not_found(f"handover {handover_id}")
    return found


@router.post(
    "/{handover_id}/assign",
    response_model=Handover,
    summary="Assign to an agent",
    responses={409: {"description": "Closed"}},
)
async def assign(
    handover_id: UUID, body: Assignment, caller: Caller = Depends(scope("handover", "write"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        try:
            found = await handovers.assign(conn, handover_id, body.agent)
        except handovers.HandoverRefused as err:
            raise _refused(err) from None
    if found is None:
        raise not_found(f"handover {handover_id}")
    return found


@router.post(
    "/{handover_id}/messages",
    status_code=201,
    response_model=QueuedReply,
    summary="Reply as an agent: text, or a template outside the 24-hour window (sent after the bot's replies)",
    responses={
        201: {"headers": {"Idempotent-Replayed": {"schema": {"type": "string"}}}},
        409: {"description": "Closed, outside the 24-hour window, or the wallet is empty"},
    },
)
async def agent_reply(
    handover_id: UUID,
    body: AgentReply,
    request: Request,
    caller: Caller = Depends(scope("handover", "write")),
    idempotency_key: str | None = IdempotencyKey,
) -> JSONResponse:
    async def create(conn: Any) -> dict[str, Any]:
        try:
            template = (
                handovers.TemplateReply(body.template.name, body.template.language, body.template.params)
                if body.template
                else None
            )
            found = await handovers.reply(
                conn, caller.organization_id, handover_id, body.text, body.agent, template
            )
        except handovers.HandoverRefused as err:
            raise _refused(err) from None
        if found is None:
            raise not_found(f"handover {handover_id}")
        return found

    return await create_once(caller, idempotency_key, "POST", request.url.path, body.model_dump(), create)


@router.post(
    "/{handover_id}/close",
    response_model=Handover,
    summary="Close: the bot resumes with the menu",
    responses={409: {"description": "Closed already"}},
)
async def close(handover_id: UUID, caller: Caller = Depends(scope("handover", "write"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        try:
            found = await handovers.close(conn, caller.organization_id, handover_id)
        except handovers.HandoverRefused as err:
            raise _refused(err) from None
    if found is None:
        raise not_found(f"handover {handover_id}")
    return found
