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


def encode(at: datetime, item_id: UUID) -> str:
    raw = json.dumps([at.isoformat(), str(item_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> tuple[datetime, UUID] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, item_id = json.loads(raw)
        return datetime.fromisoformat(at), UUID(item_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(400, "bad-cursor", "the cursor is not one this API gave") from None


def page(
    rows: list[dict[str, Any]], limit: int, at: str = "created_at"
) -> tuple[list[dict[str, Any]], str | None]:
    """Rows fetched with ``LIMIT limit + 1``: the page and the cursor of the next one (None at the end)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(rows[-1][at], rows[-1]["id"])
