"""What an operator sees of a broadcast: status, counters, skips by reason, failures by code, tokens (reserved,
spent, released, and refunded for sends that failed for good: sql/031), and an estimated finish. The counters are the broadcast's own (moved by each batch and by every status webhook,
monotonic: a message counts once per stage it passed, sql/014 and sql/027)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine.broadcast_fanout import estimated_finish

SUMMARY = """
SELECT b.id, b.name, b.status, b.status_reason, b.source, b.message_type, b.media_type, b.media_url,
       b.template_name, b.scheduled_at,
       b.started_at, b.completed_at, b.recipient_count AS recipients,
       b.recipient_count - b.queued_count - b.skipped_count AS pending, b.queued_count AS queued,
       b.sent_count AS sent, b.delivered_count AS delivered, b.read_count AS read, b.failed_count AS failed,
       b.skipped_count AS skipped, b.tokens_reserved, b.tokens_spent, b.tokens_released, b.tokens_refunded,
       (SELECT count(*) FROM broadcast_recipients r WHERE r.broadcast_id = b.id AND r.refunded_at IS NOT NULL)
           AS refunded, b.created_at
FROM broadcasts b WHERE b.id = $1"""


async def stats(
    conn: asyncpg.Connection, broadcast_id: UUID, now: datetime, rate_limit: float
) -> dict[str, Any] | None:
    row = await conn.fetchrow(SUMMARY, broadcast_id)
    if row is None:
        return None
    out = dict(row)
    out["skipped_by_reason"] = {
        r["skip_reason"]: r["n"]
        for r in await conn.fetch(
            """SELECT skip_reason, count(*) AS n FROM broadcast_recipients
               WHERE broadcast_id = $1 AND status = 'skipped' GROUP BY 1 ORDER BY 2 DESC""",
            broadcast_id,
        )
    }
    out["failed_by_code"] = {
        str(r["error_code"]): r["n"]
        for r in await conn.fetch(
            """SELECT error_code, count(*) AS n FROM broadcast_recipients
               WHERE broadcast_id = $1 AND status = 'failed' GROUP BY 1 ORDER BY 2 DESC""",
            broadcast_id,
        )
    }
    out["in_flight"] = await conn.fetchval(  # queued, not yet sent or failed
        "SELECT count(*) FROM broadcast_recipients WHERE broadcast_id = $1 AND status = 'queued'",
        broadcast_id,
    )
    recent = await conn.fetchval(
        "SELECT count(*) FROM messages WHERE broadcast_id = $1 AND sent_at > $2",
        broadcast_id,
        now - timedelta(seconds=30),
    )
    rate = recent / 30 if recent else rate_limit
    left = out["pending"] + out["in_flight"]
    out["estimated_finish"] = estimated_finish(left, rate, now) if out["status"] == "running" else None
    return out


async def listing(
    conn: asyncpg.Connection, limit: int = 50, before: tuple[datetime, UUID] | None = None
) -> list[dict[str, Any]]:
    """Broadcasts newest first; ``before`` (created_at, id) of the last one seen: the next page (the API's)."""
    rows = await conn.fetch(
        """SELECT id, name, status, source, recipient_count AS recipients, queued_count AS queued,
                  sent_count AS sent, delivered_count AS delivered, read_count AS read, failed_count AS failed,
                  skipped_count AS skipped, scheduled_at, completed_at, created_at
           FROM broadcasts
           WHERE $2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid)
           ORDER BY created_at DESC, id DESC LIMIT $1""",
        limit,
        before[0] if before else None,
        before[1] if before else None,
    )
    return [dict(r) for r in rows]


# What a recipient's row says, in this order (the CSV of `chatnation broadcast recipients` and of the API).
RECIPIENT_FIELDS = (
    "phone",
    "name",
    "status",
    "kind",
    "skip_reason",
    "error_code",
    "tokens",
    "refunded_at",
    "queued_at",
    "wa_message_id",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
)


async def recipients(
    conn: asyncpg.Connection,
    broadcast_id: UUID,
    after: tuple[int, UUID] | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Recipients in fan-out order; ``after`` (position, id) of the last one seen and ``limit``: a page."""
    rows = await conn.fetch(
        """SELECT r.id, r.position, c.id AS contact_id, c.phone, c.name, r.status, r.kind, r.skip_reason,
                  r.error_code, r.tokens, r.refunded_at, r.queued_at, m.wa_message_id, m.sent_at, m.delivered_at, m.read_at,
                  m.failed_at
           FROM broadcast_recipients r JOIN contacts c ON c.id = r.contact_id
           LEFT JOIN messages m ON m.id = r.message_id
           WHERE r.broadcast_id = $1 AND ($2::int IS NULL OR (r.position, r.id) > ($2, $3::uuid))
           ORDER BY r.position, r.id LIMIT $4""",
        broadcast_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [dict(r) for r in rows]
