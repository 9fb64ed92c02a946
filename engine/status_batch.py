"""Status webhooks in batches, set-based: one statement and one commit for many (issue 15).

A broadcast brings three status webhooks (sent, delivered, read) for every message it sends; applied one call and
one commit each (``engine.inbound.apply_status``) they cost PostgreSQL more than the send. The inbound role's
consumer hands the first attempts of status events of one number, gathered for ``STATUS_BATCH_WINDOW_MS``
(``engine.consumer.Batcher``, never two of one contact), to ``handle_statuses``, which applies them with
``apply_status_webhooks`` (sql/077) in one round trip: per message monotonic, the broadcasts' counters summed
and moved just before the commit. Each message is acked by its lane after that commit; a crash before it
brings the batch back, and what it had applied is then stale (moves nothing twice).

Run on their own instead, as without batches (``RunAlone``): 'failed' (its refund has its ledger row), a
status whose message is not recorded yet (the alone path looks again half a second later), a second webhook
for a message already in the batch, anything that is not a well-formed sent, delivered or read, and the whole
batch when the database refuses it (e.g. a deadlock).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from engine import metrics_worker as metrics
from engine.broker import kind_of
from engine.consumer import INFRASTRUCTURE_ERRORS, RunAlone
from engine.inbound import decoded
from engine.logging import get_logger
from engine.runtime import Runtime

log = get_logger(__name__)

BATCHED = frozenset({"sent", "delivered", "read"})
# (WhatsApp id, status, time, error code, error title): one webhook as apply_status_webhooks takes it
Status = tuple[str, str, datetime | None, int | None, str | None]


def is_status(message: AbstractIncomingMessage) -> bool:
    """Whether a queued event is a status webhook (what the status batcher takes): by the gateway's kind
    header, else (events queued by an older gateway) by its body."""
    kind = kind_of(message.headers)
    if kind is not None:
        return kind == "status"
    try:
        body = json.loads(message.body)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("kind") == "status"


def batchable(body: dict[str, Any]) -> Status | None:
    """(WhatsApp id, status, time, error code, error title) of a status a batch takes, else None."""
    status = body.get("payload")
    if not isinstance(status, dict):
        return None
    wa_id, new, ts = status.get("id"), status.get("status"), status.get("timestamp")
    if not isinstance(wa_id, str) or not wa_id or new not in BATCHED:
        return None
    try:
        at = datetime.fromtimestamp(int(ts), UTC) if ts else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None  # alone, it fails as it always did
    errors = status.get("errors") or [{}]
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code, title = first.get("code"), first.get("title")
    if code is not None and (not isinstance(code, int) or isinstance(code, bool) or abs(code) >= 2**31):
        return None
    if title is not None and not isinstance(title, str):
        return None
    return wa_id, str(new), at, code, title


async def apply_statuses(
    pool: asyncpg.Pool | asyncpg.Connection,
    org_id: UUID,
    statuses: list[Status],
) -> list[bool | None]:
    """One per status, in order: None (no reply with that WhatsApp id, yet), True (it moved), False (stale)."""
    if not statuses:
        return []
    moved = await pool.fetchval(
        "SELECT apply_status_webhooks($1, $2::text[], $3::text[], $4::timestamptz[], $5::int[], $6::text[])",
        org_id,
        *([s[i] for s in statuses] for i in range(5)),
    )
    return list(moved)


async def handle_statuses(rt: Runtime, messages: list[AbstractIncomingMessage]) -> list[BaseException | None]:
    """One outcome per message (engine.consumer.BatchHandler): None once applied and committed, RunAlone for
    what the batch did not take, or the error that kept the batch from the database."""
    started = time.perf_counter()
    outcomes: list[BaseException | None] = [RunAlone() for _ in messages]
    by_org: dict[UUID, list[tuple[int, Status]]] = {}
    seen: set[tuple[UUID, str]] = set()
    for index, _, body in decoded(messages, outcomes):
        if body["kind"] != "status":
            continue
        status = batchable(body)
        if status is None:
            continue
        org_id = await rt.orgs.for_phone_number(str(body.get("phone_number_id")))
        if org_id is None or (org_id, status[0]) in seen:
            continue  # parked on its own with its reason; a second one for a message: after the first
        seen.add((org_id, status[0]))
        by_org.setdefault(org_id, []).append((index, status))
    for org_id, taken in by_org.items():
        try:
            moved = await apply_statuses(rt.app_pool, org_id, [s for _, s in taken])
        except INFRASTRUCTURE_ERRORS as err:  # the database went away: each backs off and runs on its own
            for index, _ in taken:
                outcomes[index] = err
            continue
        except asyncpg.PostgresError as err:  # refused (a deadlock, bad data): none of it happened
            log.info(
                "status batch not applied; its events run on their own", error=repr(err), events=len(taken)
            )
            continue
        metrics.batch_events.observe(len(taken))
        seconds = time.perf_counter() - started
        for (index, _), result in zip(taken, moved, strict=True):
            if result is None:
                continue  # not recorded yet: alone, it looks again half a second later
            outcomes[index] = None
            metrics.events.labels("status", "processed" if result else "stale").inc()
            metrics.processing_seconds.labels("status").observe(seconds)
    return outcomes
