"""Appliers of the ticket module's effects: holds, payment requests, issuing, check-in.

Inventory is decided by one conditional UPDATE on the ticket type (sold + held <= total, backed by a CHECK
constraint), so concurrent buyers of the last tickets can never oversell: the losers get ``SoldOut``.
"""

from __future__ import annotations

import io
import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg
import qrcode

from engine import mailer, mpesa
from engine.logging import get_logger
from engine.turn import Turn
from handlers import payments
from state_machines.checkin import CODE_ALPHABET, CheckInOutcome, CheckInTicket
from state_machines.formatting import DEFAULT_TIMEZONE
from state_machines.my_tickets import FindMyTickets, MyTickets, OwnedTicket
from state_machines.tickets import (
    HoldTickets,
    IssueTickets,
    LatePaymentSettled,
    LimitReached,
    QueryPayment,
    ReleaseHold,
    RequestPayment,
    SalesClosed,
    SoldOut,
    TicketsHeld,
    TicketsIssued,
)

log = get_logger(__name__)


async def hold(turn: Turn, effect: HoldTickets) -> TicketsHeld | SoldOut | SalesClosed | LimitReached:
    """Seats are taken only while the event is published and the type on sale (checked in this statement,
    in the buyer's transaction); a free type also counts what this contact already has."""
    conn, type_id = turn.conn, UUID(effect.ticket_type_id)
    limit = await _contact_limit(turn, type_id, effect.quantity)
    if limit is not None:
        return limit
    row = await conn.fetchrow(
        """UPDATE ticket_types tt SET quantity_held = quantity_held + $2
           FROM events e
           WHERE tt.id = $1 AND e.id = tt.event_id AND tt.is_active AND e.status = 'published' AND e.ends_at > $3
             AND (tt.sales_start_at IS NULL OR tt.sales_start_at <= $3) AND (tt.sales_end_at IS NULL OR $3 < tt.sales_end_at)
             AND (tt.quantity_total IS NULL OR tt.quantity_total - tt.quantity_sold - tt.quantity_held >= $2)
           RETURNING tt.price""",
        type_id,
        effect.quantity,
        turn.now,
    )
    if row is None:
        return await _why_not_held(turn, effect)
    unit = Decimal(row["price"])
    total = unit * effect.quantity
    expires = turn.now + timedelta(seconds=effect.hold_seconds)
    hold_id = await conn.fetchval(
        """INSERT INTO ticket_holds (organization_id, ticket_type_id, contact_id, conversation_id, quantity,
                                     unit_price, total, expires_at, holder_name, holder_email)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id""",
        turn.org.id,
        type_id,
        turn.contact.id,
        turn.conversation.id,
        effect.quantity,
        unit,
        total,
        expires,
        effect.holder_name,
        effect.holder_email,
    )
    return TicketsHeld(str(hold_id), effect.ticket_type_id, effect.quantity, unit, total, expires)


async def _why_not_held(turn: Turn, effect: HoldTickets) -> SoldOut | SalesClosed:
    info = await turn.conn.fetchrow(
        """SELECT tt.is_active, tt.sales_start_at, tt.sales_end_at, tt.quantity_held, e.status, e.ends_at,
                  GREATEST(tt.quantity_total - tt.quantity_sold - tt.quantity_held, 0) AS remaining
           FROM ticket_types tt JOIN events e ON e.id = tt.event_id WHERE tt.id = $1""",
        UUID(effect.ticket_type_id),
    )
    now = turn.now
    if info is None or info["status"] != "published" or info["ends_at"] <= now:
        return SalesClosed(
            effect.ticket_type_id, "event_cancelled" if info and info["status"] == "cancelled" else "closed"
        )
    start, end = info["sales_start_at"], info["sales_end_at"]
    if not info["is_active"] or (start is not None and now < start) or (end is not None and now >= end):
        return SalesClosed(effect.ticket_type_id, "closed")
    return SoldOut(effect.ticket_type_id, int(info["remaining"] or 0), int(info["quantity_held"] or 0))


async def _contact_limit(turn: Turn, type_id: UUID, quantity: int) -> LimitReached | None:
    """A free type: at most ``max_per_contact`` (default ``max_per_order``) tickets per contact in total,
    counting those held for them now. The contact's events run one at a time, so the count holds."""
    tt = await turn.conn.fetchrow(
        "SELECT price, max_per_order, max_per_contact, name FROM ticket_types WHERE id = $1", type_id
    )
    if tt is None or Decimal(tt["price"]) > 0:
        return None
    limit = int(tt["max_per_contact"] or tt["max_per_order"] or 10)
    have = await turn.conn.fetchval(
        """SELECT (SELECT count(*) FROM tickets WHERE contact_id = $1 AND ticket_type_id = $2
                   AND status IN ('valid', 'used'))
                + (SELECT COALESCE(sum(quantity), 0) FROM ticket_holds WHERE contact_id = $1 AND ticket_type_id = $2
                   AND status = 'held')""",
        turn.contact.id,
        type_id,
    )
    if int(have) + quantity <= limit:
        return None
    return LimitReached(str(type_id), int(have), limit)


async def release(turn: Turn, effect: ReleaseHold) -> None:
    status = "expired" if effect.reason == "expired" else "released"
    row = await turn.conn.fetchrow(
        """UPDATE ticket_holds SET status = $2, release_reason = $3 WHERE id = $1 AND status = 'held'
           RETURNING ticket_type_id, quantity""",
        UUID(effect.hold_id),
        status,
        effect.reason[:50],
    )
    if row is not None:  # released once, whatever repeats
        await turn.conn.execute(
            "UPDATE ticket_types SET quantity_held = quantity_held - $2 WHERE id = $1",
            row["ticket_type_id"],
            row["quantity"],
        )
        # a payment still open for this hold may yet be made: the reconciler asks M-Pesa about it soon
        await turn.conn.execute(
            """UPDATE payment_requests SET next_query_at = now() WHERE hold_id = $1 AND status = 'requested'""",
            UUID(effect.hold_id),
        )
        await turn.conn.execute(
            """UPDATE payment_requests SET status = 'expired', result_desc = COALESCE(result_desc, $2)
               WHERE hold_id = $1 AND status = 'pending'""",
            UUID(effect.hold_id),
            effect.reason[:100],
        )


async def request_payment(turn: Turn, effect: RequestPayment) -> None:
    """Records the request in this transaction (with the hash of its callback secret); M-Pesa is asked only
    after it commits."""
    token = mpesa.new_callback_token(turn.org.id)
    request_id = await turn.conn.fetchval(
        """INSERT INTO payment_requests (organization_id, contact_id, conversation_id, hold_id, phone, amount,
                                         account_reference, description, callback_token_hash)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
        turn.org.id,
        turn.contact.id,
        turn.conversation.id,
        UUID(effect.hold_id),
        effect.phone,
        effect.amount,
        effect.account_reference,
        effect.description,
        mpesa.token_hash(token),
    )
    turn.after_commit.append(
        payments.stk_push_after_commit(
            turn,
            request_id,
            effect.hold_id,
            effect.amount,
            effect.account_reference,
            effect.description,
            token,
        )
    )


async def query_payment(turn: Turn, effect: QueryPayment) -> None:
    """The payment timer's question to M-Pesa, asked after this transaction commits."""
    turn.after_commit.append(payments.check_after_commit(turn, effect.hold_id, effect.attempt))


async def issue(turn: Turn, effect: IssueTickets) -> TicketsIssued | LatePaymentSettled:
    conn, hold_id = turn.conn, UUID(effect.hold_id)
    hold = await conn.fetchrow(
        """SELECT h.status, h.quantity, h.ticket_type_id, h.holder_name, h.holder_email, tt.name AS type_name,
                  e.name AS event_name, e.status AS event_status, e.ends_at
           FROM ticket_holds h JOIN ticket_types tt ON tt.id = h.ticket_type_id JOIN events e ON e.id = tt.event_id
           WHERE h.id = $1 FOR UPDATE OF h""",
        hold_id,
    )
    if hold is None:
        return TicketsIssued(effect.hold_id, (), "")
    if hold["status"] != "issued" and (hold["event_status"] != "published" or hold["ends_at"] <= turn.now):
        return await _event_closed(turn, effect, hold)  # cancelled (or over) while the buyer was paying
    late = effect.late or hold["status"] != "held"
    if late:
        settled = await _settle_late(turn, effect, hold)
        if settled is not None:
            return settled
    name = effect.holder_name or hold["holder_name"] or turn.contact.name or turn.contact.phone
    email = effect.holder_email if effect.holder_name else hold["holder_email"]
    await conn.execute(
        "UPDATE ticket_holds SET status = 'issued', holder_name = $2, holder_email = $3 WHERE id = $1",
        hold_id,
        name,
        email,
    )
    await conn.execute(
        "UPDATE ticket_types SET quantity_held = quantity_held - $2, quantity_sold = quantity_sold + $2 WHERE id = $1",
        hold["ticket_type_id"],
        hold["quantity"],
    )
    codes = await _write_tickets(turn, effect, hold["ticket_type_id"], hold["quantity"], name, email)
    await conn.execute(
        """UPDATE payment_requests SET settlement = 'issued', settled_at = now()
           WHERE hold_id = $1 AND status = 'paid' AND settlement IS NULL""",
        hold_id,
    )
    if email and mailer.enabled(turn.runtime.settings if turn.runtime else None):
        await mailer.queue_tickets_email(turn.conn, turn.org.id, effect.hold_id, email, turn.language)
    if late:
        return LatePaymentSettled(
            effect.hold_id, "issued", tuple(codes), hold["event_name"], hold["type_name"], effect.amount
        )
    return TicketsIssued(effect.hold_id, tuple(codes), hold["event_name"])


async def _event_closed(turn: Turn, effect: IssueTickets, hold: asyncpg.Record) -> LatePaymentSettled:
    """No tickets for an event that no longer runs: the seats go back, money paid is a refund due."""
    await release(turn, ReleaseHold(effect.hold_id, "event_closed"))
    reason = "event_cancelled" if hold["event_status"] == "cancelled" else "closed"
    if effect.amount <= 0:
        return LatePaymentSettled(effect.hold_id, "closed", event_name=hold["event_name"], reason=reason)
    due = await turn.conn.fetchval(
        """UPDATE payment_requests SET settlement = 'refund_due', settled_at = now(), refund_reason = $2
           WHERE hold_id = $1 AND status = 'paid' AND settlement IS NULL RETURNING id""",
        UUID(effect.hold_id),
        reason,
    )
    if due is None:
        return LatePaymentSettled(effect.hold_id, "already", event_name=hold["event_name"])
    log.warning("paid for an event that closed meanwhile: refund due", hold_id=effect.hold_id)
    return LatePaymentSettled(
        effect.hold_id,
        "refund_due",
        (),
        hold["event_name"],
        hold["type_name"],
        effect.amount,
        effect.payment_reference,
        reason,
    )


async def _settle_late(turn: Turn, effect: IssueTickets, hold: asyncpg.Record) -> LatePaymentSettled | None:
    """A payment confirmed after its hold was let go: the seats are taken again if any remain and the event
    still sells (None: go on and issue), else a refund is recorded as due. Settled once, whatever repeats."""
    conn, hold_id = turn.conn, UUID(effect.hold_id)
    settled = await conn.fetchval(
        "SELECT settlement FROM payment_requests WHERE hold_id = $1 AND status = 'paid' AND settlement IS NOT NULL",
        hold_id,
    )
    if settled is not None or hold["status"] == "issued":
        return LatePaymentSettled(effect.hold_id, "already", event_name=hold["event_name"])
    if hold["status"] == "held":
        return None
    retaken = await conn.fetchval(
        """UPDATE ticket_types tt SET quantity_held = quantity_held + $2
           FROM events e
           WHERE tt.id = $1 AND e.id = tt.event_id AND tt.is_active AND e.status = 'published' AND e.ends_at > $3
             AND (tt.quantity_total IS NULL OR tt.quantity_total - tt.quantity_sold - tt.quantity_held >= $2)
           RETURNING tt.id""",
        hold["ticket_type_id"],
        hold["quantity"],
        turn.now,
    )
    if retaken is not None:
        await conn.execute("UPDATE ticket_holds SET status = 'held' WHERE id = $1", hold_id)
        return None
    await conn.execute(
        """UPDATE payment_requests SET settlement = 'refund_due', settled_at = now(), refund_reason = 'sold_out'
           WHERE hold_id = $1 AND status = 'paid' AND settlement IS NULL""",
        hold_id,
    )
    log.warning("paid after the hold lapsed and no seats remain: refund due", hold_id=effect.hold_id)
    return LatePaymentSettled(
        effect.hold_id,
        "refund_due",
        (),
        hold["event_name"],
        hold["type_name"],
        effect.amount,
        effect.payment_reference,
    )


def new_ticket_code() -> str:
    return "TKT-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))


async def _write_tickets(
    turn: Turn, effect: IssueTickets, type_id: UUID, quantity: int, name: str, email: str | None
) -> list[str]:
    unit_paid = effect.amount / quantity if quantity else Decimal(0)
    codes = []
    for _ in range(quantity):
        code = new_ticket_code()
        ticket_id = await turn.conn.fetchval(
            """INSERT INTO tickets (organization_id, ticket_type_id, contact_id, hold_id, ticket_code, holder_name,
                                    holder_email, holder_phone, amount_paid, payment_reference, payment_status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
            turn.org.id,
            type_id,
            turn.contact.id,
            UUID(effect.hold_id),
            code,
            name,
            email,
            turn.contact.phone,
            unit_paid,
            effect.payment_reference,
            "paid" if effect.amount > 0 else "free",
        )
        await turn.conn.execute(
            "INSERT INTO ticket_images (ticket_id, organization_id, image) VALUES ($1, $2, $3)",
            ticket_id,
            turn.org.id,
            qr_png(code),
        )
        codes.append(code)
    return codes


def qr_png(text: str) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text, box_size=8, border=2).save(buffer, format="PNG")
    return buffer.getvalue()


DOOR_OPENS_MINUTES = 240  # before the event starts (events.settings / organisation settings override)
DOOR_CLOSES_MINUTES = 120  # after it ends


async def check_in(turn: Turn, effect: CheckInTicket) -> CheckInOutcome:
    """A ticket admits once, to its own event, while that event is published and inside its door window, when
    scanned by that event's staff or an organisation admin. The ticket row is locked first, so that of two
    simultaneous scans exactly one admits; every refusal is recorded with its reason."""
    conn = turn.conn
    ticket = await conn.fetchrow(
        """SELECT t.id, t.holder_name, t.status, t.checked_in_at, tt.name AS type_name, e.id AS event_id,
                  e.name AS event_name, e.status AS event_status, e.starts_at, e.ends_at, e.settings AS event_settings
           FROM tickets t JOIN ticket_types tt ON tt.id = t.ticket_type_id JOIN events e ON e.id = tt.event_id
           WHERE t.ticket_code = $1 FOR UPDATE OF t""",
        effect.code,
    )
    if ticket is None:
        return CheckInOutcome(effect.code, "unknown", None, None, None, None)
    outcome = await _refusal(turn, ticket)
    checked_in_at = ticket["checked_in_at"]
    if outcome is None:
        checked_in_at = turn.now
        await conn.execute(
            "UPDATE tickets SET status = 'used', checked_in_at = $2 WHERE id = $1", ticket["id"], turn.now
        )
        outcome = "valid"
    await conn.execute(
        """INSERT INTO check_ins (organization_id, ticket_id, event_id, checked_in_by_contact_id, outcome)
           VALUES ($1, $2, $3, $4, $5)""",
        turn.org.id,
        ticket["id"],
        ticket["event_id"],
        turn.contact.id,
        {"valid": "admitted"}.get(outcome, outcome),
    )
    return CheckInOutcome(
        effect.code,
        outcome,
        ticket["holder_name"],
        ticket["event_name"],
        ticket["type_name"],
        checked_in_at,
        doors_open_at=_door_window(turn, ticket)[0] if outcome == "not_open_yet" else None,
    )


async def _refusal(turn: Turn, ticket: asyncpg.Record) -> str | None:
    """Why this scan must not admit (None: admit). The scanner's rights first: what a ticket of another event
    is, is not for this door to say."""
    admins = {str(p) for p in turn.org.settings.get("admin_phones") or []}
    if turn.contact.phone not in admins:
        staff_here = await turn.conn.fetchval(
            "SELECT EXISTS (SELECT FROM participants WHERE event_id = $1 AND phone = $2 AND role = 'staff')",
            ticket["event_id"],
            turn.contact.phone,
        )
        if not staff_here:
            return "wrong_event"
    if ticket["event_status"] == "cancelled":
        return "event_cancelled"
    if ticket["event_status"] == "completed":
        return "event_ended"
    if ticket["event_status"] != "published":
        return "event_not_published"
    opens, closes = _door_window(turn, ticket)
    if turn.now < opens:
        return "not_open_yet"
    if turn.now > closes:
        return "event_ended"
    if ticket["status"] == "used":
        return "already_used"
    if ticket["status"] != "valid":
        return "cancelled"
    return None


def _door_window(turn: Turn, ticket: asyncpg.Record) -> tuple[datetime, datetime]:
    """When the doors open and close: minutes around the event's start and end, from the event's settings,
    else the organisation's (``door_opens_minutes_before``, ``door_closes_minutes_after``)."""
    event_settings = ticket["event_settings"] or {}

    def minutes(key: str, default: int) -> int:
        return int(event_settings.get(key, turn.org.settings.get(key, default)))

    opens = ticket["starts_at"] - timedelta(minutes=minutes("door_opens_minutes_before", DOOR_OPENS_MINUTES))
    closes = ticket["ends_at"] + timedelta(minutes=minutes("door_closes_minutes_after", DOOR_CLOSES_MINUTES))
    return opens, closes


async def find_my_tickets(turn: Turn, effect: FindMyTickets) -> MyTickets:
    """The contact's valid and used tickets for events that have not ended, soonest first."""
    rows = await turn.conn.fetch(
        """SELECT t.ticket_code, t.holder_name, t.status, tt.name AS type_name, e.name AS event_name,
                  e.starts_at, e.timezone
           FROM tickets t JOIN ticket_types tt ON tt.id = t.ticket_type_id JOIN events e ON e.id = tt.event_id
           WHERE t.contact_id = $1 AND t.status IN ('valid', 'used') AND e.ends_at > $2
           ORDER BY e.starts_at, t.created_at, t.ticket_code LIMIT 50""",
        turn.contact.id,
        turn.now,
    )
    return MyTickets(
        effect.code,
        tuple(
            OwnedTicket(
                r["ticket_code"],
                r["event_name"],
                r["starts_at"],
                r["type_name"],
                r["holder_name"] or "",
                r["status"],
                r["timezone"] or DEFAULT_TIMEZONE,
            )
            for r in rows
        ),
    )
