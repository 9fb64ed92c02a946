"""Cursor pagination: a list answers ``{"data": [...], "next_cursor": ...}``; the cursor is opaque (the sort key
of the last item, base64url JSON) and is sent back as ``?cursor=``."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from fastapi import Query
from pydantic import BaseModel

from engine.api.problems import ApiProblem

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200

Limit = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Items per page")
Cursor = Query(
    None, max_length=200, pattern=r"^[A-Za-z0-9_-]*$", description="next_cursor of the previous page"
)


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_cursor: str | None = None


def _pack(first: Any, item_id: UUID) -> str:
    raw = json.dumps([first, str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unpack(cursor: str) -> tuple[Any, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        first, item_id = json.loads(raw)
        return first, UUID(item_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(400, "bad-cursor", "the cursor is not one this API gave") from None


def encode(at: datetime, item_id: UUID) -> str:
    return _pack(at.isoformat(), item_id)


def decode(cursor: str | None) -> tuple[datetime, UUID] | None:
    if not cursor:
        return None
    at, item_id = _unpack(cursor)
    try:
        return datetime.fromisoformat(at), item_id
    except (ValueError, TypeError):
        raise ApiProblem(400, "bad-cursor", "the cursor is not one this API gave") from None


def decode_position(cursor: str | None) -> tuple[int, UUID] | None:
    """A cursor of a list in a numbered order (a broadcast's recipients): (position, id) of the last item."""
    if not cursor:
        return None
    position, item_id = _unpack(cursor)
    if not isinstance(position, int) or isinstance(position, bool) or abs(position) > 2**31:
        raise ApiProblem(400, "bad-cursor", "the cursor is not one this API gave")
    return position, item_id


def page(
    rows: list[dict[str, Any]], limit: int, at: str = "created_at"
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows fetched with ``LIMIT limit + 1``: the page and the cursor of the next one (None at the end)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1][at]
    return rows, encode(last, rows[-1]["id"]) if isinstance(last, datetime) else _pack(last, rows[-1]["id"])
