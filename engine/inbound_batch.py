"""Many inbound events in one transaction: one commit (and one WAL flush) for a batch instead of one per event.

The consumer's ``Batcher`` hands over the heads of different lanes of one tenant (never two events of one
contact). Each event runs its usual effect (``engine.inbound.effect_of``, or a status's ``apply_status``) under
a savepoint of its own; an event that raises is rolled back to its savepoint alone, and its lane tries it again
on its own, counted as today. After the commit, each committed event's own after-commit work (its replies
published, confirmed, then M-Pesa and the counters), concurrently across events; then the lanes ack.

One organisation per batch, on purpose: the tenant is set once for the transaction (``tenant_transaction``), and
the commit-time triggers (sql/013: a reply's payment, a poll's tallies, a survey's count) run at COMMIT under
the tenant set then, so a batch of two organisations would pay one's replies under the other's row-level
security. Events of another organisation (or without one) are left to run on their own.

Savepoints are nested rather than released (one round trip per event instead of two): ``ROLLBACK TO`` names the
newest savepoint of that name, the event's own. Each event writes in at most two subtransactions (its own and
the turn's, engine/turn.py), which is why a batch is capped (settings.inbound_batch_size, at most 24): past 64
subtransactions a backend's snapshot overflows and every other backend pays for it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from aio_pika.abc import AbstractIncomingMessage
from structlog.contextvars import bound_contextvars

from engine import metrics_worker as metrics
from engine.consumer import INFRASTRUCTURE_ERRORS, Park, RunAlone
from engine.db import tenant_transaction
from engine.inbound import SOURCES, Effect, after_commit, apply_status, decoded, effect_of
from engine.logging import get_logger, masked
from engine.runtime import Runtime
from engine.turn import Org

log = get_logger(__name__)

SAVEPOINT = "batch_event"


@dataclass
class _Event:
    index: int
    message: AbstractIncomingMessage
    kind: str
    body: dict[str, Any]
    effect: Effect | None = None

    def context(self, org: Org) -> dict[str, Any]:
        """What the lines logged while it runs name (as the consumer and engine.inbound.handle bind them)."""
        return {
            "role": "inbound",
            "message_id": self.message.message_id,
            "kind": self.kind,
            "contact": masked(self.body.get("wa_id")),
            "organization_id": str(org.id),
        }


async def handle_batch(rt: Runtime, messages: list[AbstractIncomingMessage]) -> list[BaseException | None]:
    """One outcome per message (engine.consumer.BatchHandler): None once committed and its after-commit work
    done, RunAlone for what this batch did not take, or the error of the event's own part."""
    outcomes: list[BaseException | None] = [RunAlone() for _ in messages]
    org, events = await _taken(rt, messages, outcomes)
    if org is None or len(events) < 2:
        return outcomes  # nothing to share a commit with: each runs on its own, as without batches
    started = time.perf_counter()
    try:
        committed = await _transaction(rt, org, events, outcomes)
    except INFRASTRUCTURE_ERRORS as err:  # the database went away: every event backs off and runs on its own
        for event in events:
            outcomes[event.index] = err
        return outcomes
    except Exception as err:  # refused at commit (a commit-time trigger, a deadlock): none of it happened
        log.info("batch not committed; its events run on their own", error=repr(err), events=len(events))
        for event in events:
            outcomes[event.index] = RunAlone()
        return outcomes
    metrics.batch_events.observe(len(committed))
    done = await asyncio.gather(*(_finish(rt, org, event) for event in committed))
    seconds = time.perf_counter() - started
    for event, outcome in zip(committed, done, strict=True):
        outcomes[event.index] = outcome
        metrics.processing_seconds.labels(event.kind).observe(seconds)
    return outcomes


async def _taken(
    rt: Runtime, messages: list[AbstractIncomingMessage], outcomes: list[BaseException | None]
) -> tuple[Org | None, list[_Event]]:
    """The events this batch takes: of the first organisation found, of a kind with a transaction."""
    org: Org | None = None
    events: list[_Event] = []
    for index, message, body in decoded(messages, outcomes):
        kind = body["kind"]
        if kind != "status" and kind not in SOURCES:
            continue  # ignored parts, template webhooks, unknown kinds: on their own
        org_id = await rt.orgs.for_phone_number(str(body.get("phone_number_id")))
        if org_id is None:
            continue  # parked on its own, with its reason
        if org is None:
            org = await rt.orgs.get(org_id)
        if org_id != org.id:
            continue
        events.append(_Event(index, message, kind, body))
    return org, events


async def _transaction(
    rt: Runtime, org: Org, events: list[_Event], outcomes: list[BaseException | None]
) -> list[_Event]:
    """Every event under its own savepoint, one commit; the events that took effect."""
    committed: list[_Event] = []
    async with rt.app_pool.acquire() as conn, tenant_transaction(conn, org.id):
        for event in events:
            await conn.execute(f"SAVEPOINT {SAVEPOINT}")
            try:
                with bound_contextvars(**event.context(org)):
                    event.effect = await _apply(conn, rt, org, event)
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as err:
                await conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
                outcomes[event.index] = _alone_or(err)
                if isinstance(err, Park):
                    metrics.events.labels(event.kind, "parked").inc()
                continue
            if event.effect is not None:
                committed.append(event)
    return committed


async def _apply(conn: asyncpg.Connection, rt: Runtime, org: Org, event: _Event) -> Effect | None:
    """None: not for this batch after all (a status for a reply not recorded yet waits on its own)."""
    if event.kind == "status":
        outcome = await apply_status(conn, org.id, event.body)
        return None if outcome == "unknown_message" else Effect("status", outcome)
    return await effect_of(conn, rt, org, SOURCES[event.kind], event.kind, event.body, exact_wallet=False)


def _alone_or(err: Exception) -> Exception:
    """A wallet beaten by concurrent spending runs on its own (counted under the wallet's lock there)."""
    if isinstance(err, asyncpg.exceptions.CheckViolationError) and err.constraint_name == "positive_balance":
        return RunAlone()
    return err


async def _finish(rt: Runtime, org: Org, event: _Event) -> BaseException | None:
    """The committed event's after-commit work; an error (the broker) leaves it unacked, to run again alone:
    a duplicate then, which publishes its unsent replies again."""
    assert event.effect is not None
    with bound_contextvars(**event.context(org)):
        try:
            outcome = await after_commit(rt, event.effect)
        except Exception as err:
            return err
    metrics.events.labels(event.kind, outcome).inc()
    return None
