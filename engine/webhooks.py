"""Event webhooks out to the CRM: endpoints registered per organisation, events recorded by triggers in the
transaction of the change (sql/036), delivered by the relay role, signed, retried with backoff.

Delivery: every relay process runs ``deliver_forever``. A batch of due rows is claimed across tenants (the
owner's connection, ``FOR UPDATE SKIP LOCKED``) and leased (``next_attempt_at`` moved past the request's
timeout, ``attempts`` counted) in one short transaction; the POSTs run outside any transaction; each outcome is
written back. A process that dies mid-request leaves its rows to come due again when the lease ends: at least
once, the event id in the body and a header lets the receiver drop a repeat. A 2xx is delivered; anything else
(another status, a timeout, a refused connection) is retried after ``backoff(attempts)``, up to
WEBHOOK_MAX_ATTEMPTS, then failed (visible with the API and `chatnation webhooks deliveries`).

Signature: ``X-ChatNation-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; the
receiver recomputes it over the raw body and refuses an old ``t`` (docs/api.md shows how).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from engine.logging import get_logger
from engine.settings import Settings

log = get_logger(__name__)

EVENT_TYPES = (
    "survey.completed",
    "ticket.issued",
    "ticket.checked_in",
    "payment.confirmed",
    "payment.refund_due",
    "poll.voted",
    "contact.opted_out",
    "contact.opted_in",
    "broadcast.finished",
    "handover.requested",
)
SIGNATURE_HEADER = "X-ChatNation-Signature"
BATCH = 50
POLL_SECONDS = 0.5


class WebhookError(ValueError):
    """A registration the engine refuses (an unknown event type, a URL it will not call)."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The signature header's value for ``body`` at ``at`` (unix seconds, default now)."""
    at = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300, now: int | None = None) -> bool:
    """What a receiver does: the timestamp recent, the HMAC equal (compared in constant time)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((int(time.time()) if now is None else now) - at) > tolerance:
        return False
    expected = sign(secret, body, at).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff(attempts: int, base: float, cap: float = 3600.0) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: doubling from ``base``, jittered ±20%."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


def check_registration(url: str, events: list[str], settings: Settings) -> list[str]:
    """The event types, deduplicated; refuses an unknown type or a URL that is not http(s) (https only in
    production)."""
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise WebhookError(f"unknown event type(s) {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}")
    if not events:
        raise WebhookError("name at least one event type")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise WebhookError("not a URL") from None
    allowed = ("https",) if settings.environment == "production" else ("https", "http")
    if parsed.scheme not in allowed or not parsed.host:
        raise WebhookError(f"the URL must be {' or '.join(allowed)} with a host")
    return sorted(set(events))


# ------------------------------------------------------------------------------------ registration (tenant)

ENDPOINT_COLUMNS = "id, url, event_types AS events, description, active, created_at"


async def create_endpoint(
    conn: asyncpg.Connection,
    organization_id: UUID,
    url: str,
    events: list[str],
    settings: Settings,
    description: str | None = None,
) -> dict[str, Any]:
    """A new endpoint with its signing secret (the only time the secret is returned)."""
    events = check_registration(url, events, settings)
    row = await conn.fetchrow(
        f"""INSERT INTO webhook_endpoints (organization_id, url, event_types, secret, description)
            VALUES ($1, $2, $3, $4, $5) RETURNING {ENDPOINT_COLUMNS}, secret""",
        organization_id,
        url,
        events,
        new_secret(),
        description,
    )
    return dict(row)


async def list_endpoints(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id")
    return [dict(r) for r in rows]


async def get_endpoint(conn: asyncpg.Connection, endpoint_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return dict(row) if row else None


async def remove_endpoint(conn: asyncpg.Connection, endpoint_id: UUID) -> bool:
    """Deactivate: no new events; its deliveries stay visible, the pending ones are not sent."""
    row = await conn.fetchval(
        "UPDATE webhook_endpoints SET active = false WHERE id = $1 AND active RETURNING id", endpoint_id
    )
    return row is not None


DELIVERY_COLUMNS = """d.id, d.event_id, e.type AS event_type, d.endpoint_id, d.status, d.attempts,
                      d.next_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at"""


async def list_deliveries(
    conn: asyncpg.Connection,
    *,
    endpoint_id: UUID | None = None,
    status: str | None = None,
    before: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Deliveries newest first (``limit`` rows; the API asks one more to know a next page)."""
    rows = await conn.fetch(
        f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
            WHERE ($1::uuid IS NULL OR d.endpoint_id = $1) AND ($2::text IS NULL OR d.status = $2)
              AND ($3::timestamptz IS NULL OR (d.created_at, d.id) < ($3, $4::uuid))
            ORDER BY d.created_at DESC, d.id DESC LIMIT $5""",
        endpoint_id,
        status,
        before[0] if before else None,
        before[1] if before else None,
        limit,
    )
    return [dict(r) for r in rows]


async def redeliver(conn: asyncpg.Connection, delivery_id: UUID) -> dict[str, Any] | None:
    """A failed (or delivered) delivery due again now, its attempts counted from zero."""
    row = await conn.fetchval(
        """UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now()
           WHERE id = $1 RETURNING id""",
        delivery_id,
    )
    if row is None:
        return None
    found = await conn.fetchrow(
        f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
            WHERE d.id = $1""",
        delivery_id,
    )
    return dict(found) if found else None


# ------------------------------------------------------------------------------------ delivery (the owner's)


@dataclass(frozen=True)
class Due:
    id: UUID
    attempts: int
    url: str
    secret: str
    body: bytes
    event_id: UUID
    event_type: str


def event_body(row: asyncpg.Record) -> bytes:
    return json.dumps(
        {
            "id": str(row["event_id"]),
            "type": row["type"],
            "created_at": row["event_at"].isoformat(),
            "organization_id": str(row["organization_id"]),
            "data": row["data"],
        },
        separators=(",", ":"),
        default=str,
    ).encode()


async def claim_due(owner_pool: asyncpg.Pool, lease_seconds: float, limit: int = BATCH) -> list[Due]:
    """Due deliveries of every organisation, leased to this process (one short transaction)."""
    async with owner_pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            """WITH due AS (
                   SELECT d.id FROM webhook_deliveries d
                   WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                   ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
               ), leased AS (
                   UPDATE webhook_deliveries d SET attempts = d.attempts + 1,
                          next_attempt_at = now() + make_interval(secs => $2)
                   FROM due WHERE d.id = due.id
                   RETURNING d.id, d.attempts, d.event_id, d.endpoint_id
               )
               SELECT l.id, l.attempts, l.event_id, w.url, w.secret, w.active, e.type, e.data,
                      e.created_at AS event_at, e.organization_id
               FROM leased l JOIN webhook_endpoints w ON w.id = l.endpoint_id
               JOIN webhook_events e ON e.id = l.event_id""",
            limit,
            lease_seconds,
        )
        inactive = [r["id"] for r in rows if not r["active"]]
        if inactive:
            await conn.execute(
                """UPDATE webhook_deliveries SET status = 'failed', last_error = 'endpoint removed'
                   WHERE id = ANY($1::uuid[])""",
                inactive,
            )
    return [
        Due(r["id"], r["attempts"], r["url"], r["secret"], event_body(r), r["event_id"], r["type"])
        for r in rows
        if r["active"]
    ]


async def deliver(http: httpx.AsyncClient, due: Due) -> tuple[int | None, str | None]:
    """POST one delivery: (status code or None, error text or None)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ChatNation-Webhooks/1",
        SIGNATURE_HEADER: sign(due.secret, due.body),
        "X-ChatNation-Event": due.event_type,
        "X-ChatNation-Event-Id": str(due.event_id),
        "X-ChatNation-Delivery": str(due.id),
    }
    try:
        response = await http.post(due.url, content=due.body, headers=headers)
    except httpx.HTTPError as err:
        return None, f"{type(err).__name__}: {err}"[:500] or type(err).__name__
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}: {response.text[:200]}"


async def record(
    owner_pool: asyncpg.Pool, due: Due, status: int | None, error: str | None, settings: Settings
) -> str:
    """The outcome of one attempt; returns the delivery's status now."""
    if error is None:
        outcome = "delivered"
        delay = 0.0
    else:
        outcome = "failed" if due.attempts >= settings.webhook_max_attempts else "pending"
        delay = backoff(due.attempts, settings.webhook_backoff_seconds)
    await owner_pool.execute(
        """UPDATE webhook_deliveries SET status = $2::text, last_status_code = $3, last_error = $4,
                  delivered_at = CASE WHEN $2::text = 'delivered' THEN now() END,
                  next_attempt_at = now() + make_interval(secs => $5)
           WHERE id = $1 AND status = 'pending'""",
        due.id,
        outcome,
        status,
        error,
        delay,
    )
    if error is not None:
        log.warning(
            "webhook not delivered" + (" (given up)" if outcome == "failed" else "; will retry"),
            delivery_id=str(due.id),
            event_type=due.event_type,
            attempts=due.attempts,
            error=error[:200],
        )
    return outcome


async def deliver_due(owner_pool: asyncpg.Pool, http: httpx.AsyncClient, settings: Settings) -> int:
    """One round: claim what is due, POST it all concurrently, record each outcome; returns how many."""
    lease = settings.webhook_timeout_seconds * 2 + 5
    batch = await claim_due(owner_pool, lease, limit=settings.webhook_concurrency)

    async def one(due: Due) -> None:
        status, error = await deliver(http, due)
        await record(owner_pool, due, status, error, settings)

    await asyncio.gather(*(one(d) for d in batch))
    return len(batch)


async def deliver_forever(rt: Any, stop: asyncio.Event) -> None:
    """The relay role's webhook sender (every relay process; rows are claimed with SKIP LOCKED)."""
    settings: Settings = rt.settings
    timeout = httpx.Timeout(
        settings.webhook_timeout_seconds, connect=min(5.0, settings.webhook_timeout_seconds)
    )
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:
        while not stop.is_set():
            try:
                if await deliver_due(rt.owner_pool, http, settings):
                    continue
            except (asyncpg.PostgresError, OSError) as err:  # an outage: the table says where to resume
                log.warning("webhook delivery interrupted; retrying", error=repr(err))
            try:
                await asyncio.wait_for(stop.wait(), timeout=POLL_SECONDS)
            except TimeoutError:
                pass
