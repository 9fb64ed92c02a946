"""The inbound role: one queued event -> one PostgreSQL transaction, tenant-scoped by RLS -> ack.

Kinds: ``message`` (a user wrote), ``status`` (sent/delivered/read/failed of our reply), ``payment`` (an
M-Pesa result routed here so that it runs in the contact's order), ``timer`` (a due conversation timer).
Every kind that takes effect records its external id in ``processed_events`` in the same transaction, so
a redelivery or a second webhook has no effect at all.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

import handlers
from engine import metrics_worker as metrics
from engine.broker import inbound_ordering, ordering_of
from engine.consumer import Park
from engine.db import tenant_transaction, tenant_tx
from engine.logging import get_logger
from engine.runtime import Runtime
from engine.turn import Contact, Conversation, Org, Turn
from engine.whatsapp.webhook import inbound_to_event_fields
from state_machines.base import State

log = get_logger(__name__)

STATUSES = frozenset({"sent", "delivered", "read", "failed"})  # what a status webhook may move a reply to


def decode(message: AbstractIncomingMessage) -> dict[str, Any]:
    try:
        body = json.loads(message.body)
    except ValueError as err:
        raise Park(f"not JSON: {err}") from None
    if not isinstance(body, dict) or "kind" not in body:
        raise Park("not an engine event (no 'kind')")
    return body


def key_of(message: AbstractIncomingMessage) -> tuple[str, str]:
    """(contact key, tenant key): from the headers the gateway and the engine set, else from the body."""
    found = ordering_of(message.headers)
    if found is not None:
        return found
    try:
        return inbound_ordering(json.loads(message.body), message.message_id)
    except (ValueError, AttributeError):  # not a JSON object: its own lane, parked by the handler
        return str(message.message_id), "?"


async def handle(rt: Runtime, message: AbstractIncomingMessage) -> None:
    body = decode(message)
    kind = body["kind"]
    with metrics.processing_seconds.labels(kind).time():
        outcome = await _dispatch(rt, kind, body)
    metrics.events.labels(kind, outcome).inc()


async def _dispatch(rt: Runtime, kind: str, body: dict[str, Any]) -> str:
    if kind in ("error", "other"):
        log.info("webhook part without a conversation effect", kind=kind, field=body.get("field"),
                 payload=str(body.get("payload"))[:300])
        return "ignored"
    org_id = await rt.orgs.for_phone_number(str(body.get("phone_number_id")))
    if org_id is None:
        raise Park(f"unknown phone_number_id {body.get('phone_number_id')!r}")
    if kind == "status":
        return await _status(rt, org_id, body)
    source = {"message": "wa_message", "payment": "mpesa_callback", "timer": "timer"}.get(kind)
    if source is None:
        raise Park(f"unknown event kind {kind!r}")
    org = await rt.orgs.get(org_id)  # before the transaction's connection: a cache miss takes one of its own
    try:
        return await _take_effect(rt, org, source, kind, body, exact_wallet=False)
    except asyncpg.exceptions.CheckViolationError as err:
        if err.constraint_name != "positive_balance":
            raise
        # concurrent spending beat the unlocked balance check: run it again, counting under the wallet's lock
        log.info("wallet changed under a reply's payment; event run again with the wallet locked")
        return await _take_effect(rt, org, source, kind, body, exact_wallet=True)


async def _take_effect(rt: Runtime, org: Org, source: str, kind: str, body: dict[str, Any],
                       exact_wallet: bool) -> str:
    async with rt.app_pool.acquire() as conn, tenant_transaction(conn, org.id):
        claimed, headroom = await claim(conn, org.id, source, str(body["external_id"]))
        if not claimed:
            metrics.duplicates.labels(source).inc()
            return "duplicate"
        turn = await open_turn(conn, org, body, kind)
        if turn is None:
            return "ignored"
        turn.runtime = rt
        turn.wallet_headroom = None if exact_wallet else headroom
        await handlers.route(kind, turn, body)
        await turn.finish()
    for work in turn.after_commit:  # only what committed: a crash before here leaves it to its timer
        await work()
    return "processed"


async def _status(rt: Runtime, org_id: UUID, body: dict[str, Any]) -> str:
    """The status webhook can beat the sender's recording of the WhatsApp id: look again once, half a second
    later, outside any transaction (holding no connection while waiting)."""
    for attempt in range(2):
        async with tenant_tx(rt.app_pool, org_id) as conn:
            outcome = await apply_status(conn, org_id, body)
        if outcome != "unknown_message" or attempt:
            break
        await asyncio.sleep(0.5)
    if outcome == "unknown_message":
        log.info("status for a message this engine did not send", wa_message_id=(body.get("payload") or {}).get("id"))
        return "ignored"
    return outcome


async def claim(conn: asyncpg.Connection, org_id: UUID, source: str, external_id: str) -> tuple[bool, int | None]:
    """(True the first time an event is seen, the wallet's balance above its threshold, read without a lock).
    A concurrent twin waits on the key and then sees it taken."""
    row = await conn.fetchrow(
        """INSERT INTO processed_events (organization_id, source, external_id) VALUES ($1, $2, $3)
           ON CONFLICT DO NOTHING
           RETURNING (SELECT balance - COALESCE(low_balance_threshold, 0) FROM wallets WHERE organization_id = $1)""",
        org_id, source, external_id)
    return (row is not None, row[0] if row is not None else None)


async def open_turn(conn: asyncpg.Connection, org: Org, body: dict[str, Any], kind: str) -> Turn | None:
    now = datetime.now(UTC)
    org_id = org.id
    wa_id = str(body.get("wa_id") or "")
    if kind == "message":
        contact_row = await upsert_contact(conn, org_id, wa_id, body.get("contact_name"), now)
    else:
        contact_row = await conn.fetchrow("SELECT * FROM contacts WHERE phone = $1", wa_id)
        if contact_row is None:
            log.warning("event for an unknown contact", kind=kind, wa_id=wa_id)
            return None
    contact = Contact(contact_row["id"], contact_row["phone"], contact_row["name"], contact_row["language"],
                      contact_row["opted_in"], contact_row["message_count"])
    conversation = await open_conversation(conn, org_id, contact.id)
    turn = Turn(conn=conn, org=org, contact=contact, conversation=conversation, now=now, trigger=kind,
                initial_version=conversation.state.version)
    if kind == "message":
        await store_inbound(turn, body)
    return turn


async def upsert_contact(conn: asyncpg.Connection, org_id: UUID, wa_id: str, name: str | None,
                         now: datetime) -> asyncpg.Record:
    return await conn.fetchrow(
        """INSERT INTO contacts (organization_id, phone, whatsapp_id, name, first_seen_at, last_seen_at,
                                 message_count, opted_in, opted_in_at)
           VALUES ($1, $2, $2, $3, $4, $4, 1, true, $4)
           ON CONFLICT (organization_id, phone) DO UPDATE
               SET last_seen_at = GREATEST(contacts.last_seen_at, EXCLUDED.last_seen_at),
                   message_count = contacts.message_count + 1,
                   name = COALESCE(EXCLUDED.name, contacts.name)
           RETURNING *""",
        org_id, wa_id, name, now,
    )


async def open_conversation(conn: asyncpg.Connection, org_id: UUID, contact_id: UUID) -> Conversation:
    """The contact's active conversation, locked for this transaction; opened on first contact."""
    for _ in range(2):
        row = await conn.fetchrow(
            "SELECT * FROM conversations WHERE contact_id = $1 AND status = 'active' FOR UPDATE", contact_id)
        if row is not None:
            state = State(module=row["current_module"], step=row["current_state"] or "idle",
                          data=row["state_data"] or {}, version=row["state_version"])
            return Conversation(row["id"], state, row["last_user_message_at"])
        await conn.execute(
            """INSERT INTO conversations (organization_id, contact_id, current_state) VALUES ($1, $2, 'idle')
               ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING""", org_id, contact_id)
    raise RuntimeError("conversation could not be opened")


async def store_inbound(turn: Turn, body: dict[str, Any]) -> None:
    payload = body.get("payload") or {}
    kind, text, _ = inbound_to_event_fields(payload)
    ts = body.get("timestamp")
    sent_at = datetime.fromtimestamp(int(ts), UTC) if ts else turn.now
    await turn.conn.execute(
        """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content, payload,
                                 wa_message_id, created_at)
           VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8)""",
        turn.org.id, turn.conversation.id, turn.contact.id, str(payload.get("type") or kind)[:20], text, payload,
        body["external_id"], sent_at,
    )
    turn.conversation.last_user_message_at = turn.now  # written with the state, in Turn.finish
    turn.inbound_wa_id = body["external_id"]


async def apply_status(conn: asyncpg.Connection, org_id: UUID, body: dict[str, Any]) -> str:
    status = body.get("payload") or {}
    new = str(status.get("status"))
    if new not in STATUSES:
        return "ignored"  # 'played' and future kinds
    errors = status.get("errors") or [{}]
    ts = datetime.fromtimestamp(int(status["timestamp"]), UTC) if status.get("timestamp") else None
    changed = await conn.fetchval(
        """SELECT advance_message_status(id, $3, $4, $5, $6) FROM messages
           WHERE organization_id = $1 AND wa_message_id = $2 AND direction = 'outbound'""",
        org_id, status.get("id"), new, ts, errors[0].get("code"), errors[0].get("title"))
    if changed is None:
        return "unknown_message"
    return "processed" if changed else "stale"


async def advance_status(conn: asyncpg.Connection, message_id: UUID, new: str, at: datetime | None = None,
                         error_code: int | None = None, error_title: str | None = None) -> bool:
    """Monotonic, with broadcast counters: ``advance_message_status`` in sql/014."""
    return bool(await conn.fetchval("SELECT advance_message_status($1, $2, $3, $4, $5)",
                                    message_id, new, at, error_code, error_title))
