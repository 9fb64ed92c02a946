"""Contacts: list and search, one with its recent messages and conversation, tags, opt-out and opt-in."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, StringConstraints

from engine.api import paging
from engine.api.auth import Caller, scope
from engine.api.problems import not_found
from engine.api.routes.conversations import Conversation, conversation_of

router = APIRouter(prefix="/contacts", tags=["contacts"])
RECENT_MESSAGES = 20
TEXT = r"^[^\x00-\x1f\x7f]*$"  # printable: no NUL or other control characters
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50, pattern=r"^[^\x00-\x1f\x7f,]+$"),
]


class Contact(BaseModel):
    id: UUID
    phone: str
    name: str | None
    language: str | None
    tags: list[str]
    opted_in: bool
    opted_in_at: datetime | None
    opted_out_at: datetime | None
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    message_count: int
    created_at: datetime


class Message(BaseModel):
    id: UUID
    direction: str
    type: str
    content: str | None
    wa_status: str | None
    created_at: datetime


class ContactDetail(Contact):
    recent_messages: list[Message] = Field(description=f"The latest {RECENT_MESSAGES}, newest first")
    conversation: Conversation | None


class TagChange(BaseModel):
    add: list[Tag] = Field(default_factory=list, max_length=50)
    remove: list[Tag] = Field(default_factory=list, max_length=50)


COLUMNS = """id, phone, name, language, COALESCE(tags, '{}') AS tags, COALESCE(opted_in, true) AS opted_in,
             opted_in_at, opted_out_at, first_seen_at, last_seen_at, COALESCE(message_count, 0) AS message_count,
             created_at"""


def _search(q: str | None) -> tuple[str | None, str | None]:
    """A phone prefix when ``q`` is digits (a leading + dropped), else a name fragment."""
    if not q:
        return None, None
    digits = q.strip().lstrip("+").replace(" ", "")
    if digits.isdigit():
        return digits, None
    return None, q.strip()


@router.get("", response_model=paging.Page[Contact], summary="List or search contacts")
async def list_contacts(
    caller: Caller = Depends(scope("contacts", "read")),
    q: str | None = Query(None, max_length=100, pattern=TEXT, description="A phone prefix or part of a name"),
    tag: Tag | None = Query(None, description="Only contacts with this tag"),
    opted_in: bool | None = Query(None),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    after = paging.decode(cursor)
    phone, name = _search(q)
    async with caller.tx() as conn:
        rows = await conn.fetch(
            f"""SELECT {COLUMNS} FROM contacts
                WHERE ($1::text IS NULL OR phone LIKE $1 || '%')
                  AND ($2::text IS NULL OR name ILIKE '%' || $2 || '%')
                  AND ($3::text IS NULL OR $3 = ANY(tags))
                  AND ($4::bool IS NULL OR COALESCE(opted_in, true) = $4)
                  AND ($5::timestamptz IS NULL OR (created_at, id) > ($5, $6::uuid))
                ORDER BY created_at, id LIMIT $7""",
            phone,
            name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") if name else None,
            tag,
            opted_in,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
        )
    data, next_cursor = paging.page([dict(r) for r in rows], limit)
    return {"data": data, "next_cursor": next_cursor}


async def _contact(conn: asyncpg.Connection, contact_id: UUID) -> dict[str, Any]:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM contacts WHERE id = $1", contact_id)
    if row is None:
        raise not_found(f"contact {contact_id}")
    return dict(row)


@router.get(
    "/{contact_id}", response_model=ContactDetail, summary="One contact, its recent messages and conversation"
)
async def get_contact(
    contact_id: UUID, caller: Caller = Depends(scope("contacts", "read"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        contact = await _contact(conn, contact_id)
        messages = await conn.fetch(
            """SELECT id, direction, type, content, wa_status, created_at FROM messages
               WHERE contact_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2""",
            contact_id,
            RECENT_MESSAGES,
        )
        conversation = await conversation_of(conn, contact_id)
    return {**contact, "recent_messages": [dict(m) for m in messages], "conversation": conversation}


@router.post("/{contact_id}/tags", response_model=Contact, summary="Add and remove tags")
async def change_tags(
    contact_id: UUID, change: TagChange, caller: Caller = Depends(scope("contacts", "write"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        row = await conn.fetchrow(
            f"""UPDATE contacts SET tags = ARRAY(
                    SELECT DISTINCT t FROM unnest(COALESCE(tags, '{{}}') || $2::text[]) AS t
                    WHERE t <> ALL($3::text[]) ORDER BY t)
                WHERE id = $1 RETURNING {COLUMNS}""",
            contact_id,
            change.add,
            change.remove,
        )
    if row is None:
        raise not_found(f"contact {contact_id}")
    return dict(row)


async def set_opt_in(conn: asyncpg.Connection, contact_id: UUID, opted_in: bool) -> dict[str, Any]:
    """Opt a contact out (the bot sends it nothing it did not ask for; STOP does the same) or back in."""
    now = datetime.now(UTC)
    row = await conn.fetchrow(
        f"""UPDATE contacts SET opted_in = $2,
                   opted_out_at = CASE WHEN $2 THEN opted_out_at ELSE $3 END,
                   opted_in_at = CASE WHEN $2 THEN $3 ELSE opted_in_at END
            WHERE id = $1 RETURNING {COLUMNS}""",
        contact_id,
        opted_in,
        now,
    )
    if row is None:
        raise not_found(f"contact {contact_id}")
    return dict(row)


@router.post("/{contact_id}/opt-out", response_model=Contact, summary="Opt the contact out")
async def opt_out(contact_id: UUID, caller: Caller = Depends(scope("contacts", "write"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        return await set_opt_in(conn, contact_id, False)


@router.post("/{contact_id}/opt-in", response_model=Contact, summary="Opt the contact back in")
async def opt_in(contact_id: UUID, caller: Caller = Depends(scope("contacts", "write"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        return await set_opt_in(conn, contact_id, True)
