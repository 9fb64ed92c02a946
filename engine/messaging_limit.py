"""The messaging limit: how many unique users a business may reach outside the 24-hour window in a moving 24 h.

Meta sets it per business portfolio (since October 2025): 250, then 2,000, 10,000, 100,000 or unlimited. Here
it is the organisation's (``settings.messaging_limit``, set with ``chatnation org update --messaging-limit``;
250 until told otherwise, as Meta starts a new portfolio). Users reached are the distinct contacts sent a
template (the only kind that reaches a user outside the window) in the last 24 hours, failed sends not
counted. A broadcast checks its template recipients with ``check_messaging_limit`` before it starts and is
held with the returned reason when they would cross the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

TIERS = (250, 2_000, 10_000, 100_000)
UNLIMITED = "unlimited"
DEFAULT_LIMIT = TIERS[0]
WINDOW = timedelta(hours=24)


def parse_limit(text: str | int) -> int | str:
    """250, 2000, 10000, 100000 or "unlimited" (what ``org update --messaging-limit`` accepts)."""
    value = str(text).strip().lower().replace(",", "").replace("_", "")
    if value in (UNLIMITED, "none", "0"):
        return UNLIMITED
    if value.isdigit() and int(value) in TIERS:
        return int(value)
    raise ValueError(f"a messaging limit is one of {', '.join(map(str, TIERS))} or unlimited, not {text!r}")


def limit_of(org_settings: Mapping[str, Any] | None) -> int | None:
    """The organisation's limit; None: unlimited."""
    configured = (org_settings or {}).get("messaging_limit", DEFAULT_LIMIT)
    try:
        parsed = parse_limit(configured)
    except ValueError:
        parsed = DEFAULT_LIMIT  # an unreadable setting: the smallest tier, never unlimited by mistake
    return None if parsed == UNLIMITED else int(parsed)


async def users_reached(conn: asyncpg.Connection, org_id: UUID, now: datetime) -> set[UUID]:
    """Contacts sent a template in the 24 hours before ``now`` (failed ones not counted)."""
    rows = await conn.fetch(
        """SELECT DISTINCT contact_id FROM messages
           WHERE organization_id = $1 AND direction = 'outbound' AND type = 'template'
             AND created_at > $2 AND wa_status IS DISTINCT FROM 'failed'""",
        org_id,
        now - WINDOW,
    )
    return {r["contact_id"] for r in rows}


@dataclass(frozen=True)
class LimitCheck:
    limit: int | None  # None: unlimited
    reached: int  # unique users reached in the moving 24 h
    new_users: int  # of the recipients, those not reached yet in that time
    fits: bool

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.reached)

    @property
    def reason(self) -> str | None:
        if self.fits:
            return None
        return (
            f"messaging limit: {self.new_users} new users would be reached outside the 24-hour window, "
            f"{self.reached} of {self.limit} already in the last 24 h ({self.remaining} left)"
        )


async def check_messaging_limit(
    conn: asyncpg.Connection,
    org_id: UUID,
    contact_ids: Iterable[UUID],
    now: datetime,
    *,
    limit: int | None | str = "configured",
) -> LimitCheck:
    """Whether templates to ``contact_ids`` keep the organisation within its messaging limit. ``conn`` is in
    a transaction of ``org_id``; ``limit`` overrides the configured one (None: unlimited)."""
    if limit == "configured":
        org_settings = await conn.fetchval("SELECT settings FROM organizations WHERE id = $1", org_id)
        limit = limit_of(org_settings)
    assert limit is None or isinstance(limit, int)
    reached = await users_reached(conn, org_id, now)
    new_users = len(set(contact_ids) - reached)
    fits = limit is None or len(reached) + new_users <= limit
    return LimitCheck(limit=limit, reached=len(reached), new_users=new_users, fits=fits)
