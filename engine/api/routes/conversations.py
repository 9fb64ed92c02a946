"""A contact's conversation: where the bot is with it, and a reset to the start (the menu at its next message)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from engine.api.auth import Caller, scope
from engine.api.problems import not_found

router = APIRouter(prefix="/contacts/{contact_id}/conversation", tags=["conversations"])


class Conversation(BaseModel):
    id: UUID
    status: str
    module: str | None = Field(
        description="The module the contact is in (survey, tickets…); null at the menu"
    )
    step: str
    data: dict[str, Any]
    version: int
    pending_timers: int
    last_message_at: datetime | None
    last_user_message_at: datetime | None


_SELECT = """SELECT c.id, c.status, c.current_module AS module, COALESCE(c.current_state, 'idle') AS step,
                    COALESCE(c.state_data, '{}') AS data, c.state_version AS version, c.last_message_at,
                    c.last_user_message_at,
                    (SELECT count(*) FROM conversation_timers t
                     WHERE t.conversation_id = c.id AND t.status = 'pending') AS pending_timers
             FROM conversations c"""


async def conversation_of(conn: asyncpg.Connection, contact_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"{_SELECT} WHERE c.contact_id = $1 AND c.status = 'active'", contact_id)
    return dict(row) if row else None


async def reset_conversation(conn: asyncpg.Connection, contact_id: UUID) -> dict[str, Any] | None:
    """Back to the start: no module, step idle, its memory and pending timers dropped; the version moves on, so
    a timer already on its way is stale. Waits for a message of the contact being handled (its row lock)."""
    conversation_id = await conn.fetchval(
        """UPDATE conversations SET current_module = NULL, current_state = 'idle', state_data = '{}',
                  state_version = state_version + 1, current_reference_id = NULL
           WHERE contact_id = $1 AND status = 'active' RETURNING id""",
        contact_id,
    )
    if conversation_id is None:
        return None
    await conn.execute(
        """UPDATE conversation_timers SET status = 'cancelled'
           WHERE conversation_id = $1 AND status = 'pending'""",
        conversation_id,
    )
    await conn.execute("DELETE FROM conversation_states WHERE conversation_id = $1", conversation_id)
    return await conversation_of(conn, contact_id)


@router.get("", response_model=Conversation, summary="The contact's conversation state")
async def get_conversation(
    contact_id: UUID, caller: Caller = Depends(scope("conversations", "read"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        found = await conversation_of(conn, contact_id)
    if found is None:
        raise not_found(f"conversation of contact {contact_id}")
    return found


@router.post("/reset", response_model=Conversation, summary="Reset the conversation to the start")
async def reset(
    contact_id: UUID, caller: Caller = Depends(scope("conversations", "write"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        found = await reset_conversation(conn, contact_id)
    if found is None:
        raise not_found(f"conversation of contact {contact_id}")
    return found
