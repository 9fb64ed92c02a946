"""The inbound role: one queued event -> one PostgreSQL transaction, tenant-scoped by RLS -> ack.

Kinds: ``message`` (a user wrote), ``status`` (sent/delivered/read/failed of our reply), ``payment`` (an
M-Pesa result routed here so that it runs in the contact's order), ``timer`` (a due conversation timer),
``card`` (the cards role rendered a HypeCard, or could not).
Every kind that takes effect records its external id in ``processed_events`` in the same transaction, so
a redelivery or a second webhook has no effect at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractIncomingMessage
from structlog.contextvars import bind_contextvars

import handlers
from engine import metrics_worker as metrics
from engine.broker import inbound_ordering, ordering_of
from engine.consumer import Park
from engine.db import tenant_transaction
from engine.logging import get_logger, masked
from engine.outbox import jobs_of_event, publish_jobs
from engine.pg_text import storable
from engine.runtime import Runtime
from engine.templates import TEMPLATE_FIELDS, apply_template_webhook
from engine.turn import Contact, Conversation, Org, Turn
from engine.whatsapp.webhook import inbound_to_event_fields
from state_machines.base import State

log = get_logger(__name__)

SOURCES = {"message": "wa_message", "payment": "mpesa_callback", "timer": "timer", "card": "hypecard"}
STATUSES = frozenset({"sent", "delivered", "read", "failed"})  # what a status webhook may move a reply to


def decode(message: AbstractIncomingMessage) -> dict[str, Any]:
    try:
        body = json.loads(message.body)
    except ValueError as err:
        raise Park(f"not JSON: {err}") from None
    if not isinstance(body, dict) or "kind" not in body:
        raise Park("not an engine event (no 'kind')")
    return storable(body)  # no U+0000 or lone surrogate reaches the database (engine/pg_text.py)


def decoded(
    messages: list[AbstractIncomingMessage], outcomes: list[BaseException | None]
) -> Iterator[tuple[int, AbstractIncomingMessage, dict[str, Any]]]:
    """Each engine event of a batch with its index; one that is not gets its ``Park`` as its outcome."""
    for index, message in enumerate(messages):
        try:
            body = decode(message)
        except Park as err:
            outcomes[index] = err
            continue
        yield index, message, body


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
    # for the lines logged while it runs (the consumer unbinds them); organization_id once known (_dispatch)
    bind_contextvars(kind=kind, contact=masked(body.get("wa_id")), organization_id=None)
    with metrics.processing_seconds.labels(kind).time():
        try:
            outcome = await _dispatch(rt, kind, body)
        except Park:
            metrics.events.labels(kind, "parked").inc()
            raise
    metrics.events.labels(kind, outcome).inc()


async def _dispatch(rt: Runtime, kind: str, body: dict[str, Any]) -> str:
    if kind == "other" and body.get("field") in TEMPLATE_FIELDS:
        return await apply_template_webhook(rt.app_pool, body)
    if kind in ("error", "other"):
        log.info(
            "webhook part without a conversation effect",
            kind=kind,
            field=body.get("field"),
            payload=str(body.get("payload"))[:300],
        )
        return "ignored"
    org_id = await rt.orgs.for_phone_number(str(body.get("phone_number_id")))
    if org_id is None:
        raise Park(f"unknown phone_number_id {body.get('phone_number_id')!r}")
    bind_contextvars(organization_id=str(org_id))
    if kind == "status":
        return await _status(rt, org_id, body)
    source = SOURCES.get(kind)
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


async def _take_effect(
    rt: Runtime, org: Org, source: str, kind: str, body: dict[str, Any], exact_wallet: bool
) -> str:
    async with rt.app_pool.acquire() as conn, tenant_transaction(conn, org.id):
        effect = await effect_of(conn, rt, org, source, kind, body, exact_wallet)
    return await after_commit(rt, effect)


@dataclass
class Effect:
    """What one event did in its transaction, for after the commit."""

    source: str
    outcome: str  # processed | duplicate | ignored
    turn: Turn | None = None
    again: list[dict[str, Any]] | None = None  # a duplicate's send jobs not sent yet


async def effect_of(
    conn: asyncpg.Connection,
    rt: Runtime,
    org: Org,
    source: str,
    kind: str,
    body: dict[str, Any],
    exact_wallet: bool,
) -> Effect:
    """The event's whole effect, in the caller's tenant transaction (or a savepoint of a batch's)."""
    event_key = f"{source}:{body['external_id']}"
    arrival = await arrive(conn, org.id, source, kind, body)
    if arrival is None:
        return Effect(source, "duplicate", again=await jobs_of_event(conn, org.id, event_key))
    if arrival.contact is None or arrival.conversation is None:
        log.warning("event for an unknown contact")
        return Effect(source, "ignored")
    turn = Turn(
        conn=conn,
        org=org,
        contact=arrival.contact,
        conversation=arrival.conversation,
        now=arrival.now,
        trigger=kind,
        initial_version=arrival.conversation.state.version,
        runtime=rt,
        wallet_headroom=None if exact_wallet else arrival.headroom,
        event_key=event_key,
    )
    if kind == "message":
        await store_inbound(turn, body)
        await turn.begin()  # the message stays stored whatever happens to the turn's effects
    await handlers.route(kind, turn, body)
    await turn.finish()
    return Effect(source, "processed", turn=turn)


async def after_commit(rt: Runtime, effect: Effect) -> str:
    if effect.again is not None:  # taken before: what it wrote and is not sent yet goes out again (sql/071)
        metrics.duplicates.labels(effect.source).inc()
        await publish_jobs(rt, effect.again)
        return "duplicate"
    if effect.turn is None:
        return effect.outcome
    # Committed: the replies to the sender's queue before the ack (one hop less than through the relay); a crash
    # before the broker confirmed them brings the event back, and the line above publishes them again.
    await publish_jobs(rt, effect.turn.published)
    for work in effect.turn.after_commit:  # only what committed: a crash before here leaves it to its timer
        await work()
    return "processed"


async def _status(rt: Runtime, org_id: UUID, body: dict[str, Any]) -> str:
    """The status webhook can beat the sender's recording of the WhatsApp id: look again once, half a second
    later, outside any transaction (holding no connection while waiting)."""
    for attempt in range(2):
        async with rt.app_pool.acquire() as conn:
            outcome = await apply_status(conn, org_id, body)
        if outcome != "unknown_message" or attempt:
            break
        await asyncio.sleep(0.5)
    if outcome == "unknown_message":
        log.info(
            "status for a message this engine did not send",
            wa_message_id=(body.get("payload") or {}).get("id"),
        )
        return "ignored"
    return outcome


@dataclass
class Arrival:
    """Who an event is from and their conversation, locked; the wallet's headroom read without a lock."""

    now: datetime
    contact: Contact | None  # None (and no conversation): a payment or timer for a contact no longer here
    conversation: Conversation | None
    headroom: int | None  # balance minus the low-balance threshold


# The event's dedupe key, its contact (upserted for a message, else read) and the contact's active conversation
# (locked; opened when there is none, as open_conversation does), in one statement. No key inserted (a
# duplicate) -> no contact row -> nothing else. A concurrent twin waits on the key until the first commits, then
# sees it taken. A contact's first message (every vote of a radio poll's audience) thus costs one round trip, not
# four: opening its conversation apart took a look, an insert and a second look.
_CLAIM = """claim AS (INSERT INTO processed_events (organization_id, source, external_id) VALUES ($1, $2, $3)
                      ON CONFLICT DO NOTHING RETURNING 1)"""
_UPSERT_CONTACT = """contact AS (
    INSERT INTO contacts (organization_id, phone, whatsapp_id, name, first_seen_at, last_seen_at, message_count,
                          opted_in, opted_in_at)
    SELECT $1, $4, $4, $5, $6, $6, 1, true, $6 WHERE EXISTS (SELECT FROM claim)
    ON CONFLICT (organization_id, phone) DO UPDATE
        SET last_seen_at = GREATEST(contacts.last_seen_at, EXCLUDED.last_seen_at),
            message_count = contacts.message_count + 1,
            name = COALESCE(EXCLUDED.name, contacts.name)
    RETURNING *)"""
_READ_CONTACT = """contact AS (
    SELECT * FROM contacts WHERE organization_id = $1 AND phone = $4 AND EXISTS (SELECT FROM claim))"""
_ARRIVE = """WITH {claim}, {contact},
found AS (SELECT * FROM conversations WHERE contact_id = (SELECT id FROM contact) AND status = 'active' FOR UPDATE),
opened AS (INSERT INTO conversations (organization_id, contact_id, current_state)
           SELECT $1, contact.id, 'idle' FROM contact WHERE NOT EXISTS (SELECT FROM found)
           ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING RETURNING *),
conv AS (SELECT * FROM found UNION ALL SELECT * FROM opened)
SELECT EXISTS (SELECT FROM claim) AS claimed,
       contact.id, contact.phone, contact.name, contact.language, contact.opted_in, contact.message_count,
       conv.id AS conversation_id, conv.current_module, conv.current_state, conv.state_data, conv.state_version,
       conv.last_user_message_at,
       (SELECT balance - COALESCE(low_balance_threshold, 0) FROM wallets WHERE organization_id = $1) AS headroom
FROM (SELECT) AS one LEFT JOIN contact ON true LEFT JOIN conv ON true"""
ARRIVE_BY_MESSAGE = _ARRIVE.format(claim=_CLAIM, contact=_UPSERT_CONTACT)
ARRIVE_OTHERWISE = _ARRIVE.format(claim=_CLAIM, contact=_READ_CONTACT)


async def arrive(
    conn: asyncpg.Connection, org_id: UUID, source: str, kind: str, body: dict[str, Any]
) -> Arrival | None:
    """None for an event already taken. A message upserts its contact; a first one opens the conversation."""
    now = datetime.now(UTC)
    key = (org_id, source, str(body["external_id"]), str(body.get("wa_id") or ""))
    if kind == "message":
        row = await conn.fetchrow(ARRIVE_BY_MESSAGE, *key, body.get("contact_name"), now)
    else:
        row = await conn.fetchrow(ARRIVE_OTHERWISE, *key)
    if not row["claimed"]:
        return None
    if row["id"] is None:
        return Arrival(now, None, None, None)
    contact = Contact(
        row["id"], row["phone"], row["name"], row["language"], row["opted_in"], row["message_count"]
    )
    if row["conversation_id"] is None:  # opened concurrently by another transaction (it waited, then saw it)
        conversation = await open_conversation(conn, org_id, contact.id)
    else:
        conversation = _conversation(row, row["conversation_id"])
    return Arrival(now, contact, conversation, row["headroom"])


async def open_conversation(conn: asyncpg.Connection, org_id: UUID, contact_id: UUID) -> Conversation:
    """The contact's active conversation, locked for this transaction; opened if there is none."""
    for _ in range(2):
        row = await conn.fetchrow(
            "SELECT * FROM conversations WHERE contact_id = $1 AND status = 'active' FOR UPDATE", contact_id
        )
        if row is not None:
            return _conversation(row, row["id"])
        await conn.execute(
            """INSERT INTO conversations (organization_id, contact_id, current_state) VALUES ($1, $2, 'idle')
               ON CONFLICT (contact_id) WHERE status = 'active' DO NOTHING""",
            org_id,
            contact_id,
        )
    raise RuntimeError("conversation could not be opened")


def _conversation(row: asyncpg.Record, conversation_id: UUID) -> Conversation:
    state = State(
        module=row["current_module"],
        step=row["current_state"] or "idle",
        data=row["state_data"] or {},
        version=row["state_version"],
    )
    return Conversation(conversation_id, state, row["last_user_message_at"])


async def store_inbound(turn: Turn, body: dict[str, Any]) -> None:
    payload = body.get("payload") or {}
    kind, text, _ = inbound_to_event_fields(payload)
    ts = body.get("timestamp")
    sent_at = datetime.fromtimestamp(int(ts), UTC) if ts else turn.now
    await turn.conn.execute(
        """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content, payload,
                                 wa_message_id, created_at)
           VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8)""",
        turn.org.id,
        turn.conversation.id,
        turn.contact.id,
        str(payload.get("type") or kind)[:20],
        text,
        payload,
        body["external_id"],
        sent_at,
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
    changed = (
        await conn.fetchval(  # its own transaction, tenant set inside (sql/016), unless the caller has one
            "SELECT apply_status_webhook($1, $2, $3, $4, $5, $6)",
            org_id,
            status.get("id"),
            new,
            ts,
            errors[0].get("code"),
            errors[0].get("title"),
        )
    )
    if changed is None:
        return "unknown_message"
    return "processed" if changed else "stale"


async def advance_status(
    conn: asyncpg.Connection,
    message_id: UUID,
    new: str,
    at: datetime | None = None,
    error_code: int | None = None,
    error_title: str | None = None,
) -> bool:
    """Monotonic, with broadcast counters: ``advance_message_status`` in sql/014."""
    return bool(
        await conn.fetchval(
            "SELECT advance_message_status($1, $2, $3, $4, $5)", message_id, new, at, error_code, error_title
        )
    )
