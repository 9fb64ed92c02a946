"""Appliers of the ticket module's effects: holds, payment requests, issuing, check-in.

Inventory is decided by one conditional UPDATE on the ticket type (sold + held <= total, backed by a CHECK
constraint), so concurrent buyers of the last tickets can never oversell: the losers get ``SoldOut``.
"""

from __future__ import annotations

import io
import secrets
from datetime import timedelta
from decimal import Decimal
from uuid import UUID

import asyncpg
import qrcode

from engine import mailer, mpesa
from engine.logging import get_logger
from engine.turn import Turn
from handlers import payments
from state_machines.checkin import CheckInOutcome, CheckInTicket
from state_machines.formatting import DEFAULT_TIMEZONE
from state_machines.my_tickets import FindMyTickets, MyTickets, OwnedTicket
from state_machines.tickets import (
    HoldTickets,
    IssueTickets,
    LatePaymentSettled,
    QueryPayment,
    ReleaseHold,
    RequestPayment,
    SoldOut,
    TicketsHeld,
    TicketsIssued,
)

log = get_logger(__name__)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud at a gate


async def hold(turn: Turn, effect: HoldTickets) -> TicketsHeld | SoldOut:
    conn, type_id = turn.conn, UUID(effect.ticket_type_id)
    row = await conn.fetchrow(
        """UPDATE ticket_types SET quantity_held = quantity_held + $2
           WHERE id = $1 AND is_active AND (quantity_total IS NULL OR quantity_total - quantity_sold - quantity_held >= $2)
           RETURNING price""",
        type_id,
        effect.quantity,
    )
    if row is None:
        remaining = await conn.fetchval(
            """SELECT GREATEST(quantity_total - quantity_sold - quantity_held, 0) FROM ticket_types
               WHERE id = $1 AND is_active""",
            type_id,
        )
        return SoldOut(effect.ticket_type_id, int(remaining or 0))
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
    token = mpesa.new_callback_token()
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
                  e.name AS event_name
           FROM ticket_holds h JOIN ticket_types tt ON tt.id = h.ticket_type_id JOIN events e ON e.id = tt.event_id
           WHERE h.id = $1 FOR UPDATE OF h""",
        hold_id,
    )
    if hold is None:
        return TicketsIssued(effect.hold_id, (), "")
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
        """UPDATE payment_requests SET settlement = 'refund_due', settled_at = now()
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


async def _write_tickets(
    turn: Turn, effect: IssueTickets, type_id: UUID, quantity: int, name: str, email: str | None
) -> list[str]:
    unit_paid = effect.amount / quantity if quantity else Decimal(0)
    codes = []
    for _ in range(quantity):
        code = "TKT-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
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


async def check_in(turn: Turn, effect: CheckInTicket) -> CheckInOutcome:
    """A ticket admits once: the conditional UPDATE lets exactly one of two simultaneous scans through."""
    conn = turn.conn
    admitted = await conn.fetchrow(
        """UPDATE tickets SET status = 'used', checked_in_at = $2 WHERE ticket_code = $1 AND status = 'valid'
           RETURNING id, holder_name, ticket_type_id, checked_in_at""",
        effect.code,
        turn.now,
    )
    ticket = admitted or await conn.fetchrow(
        "SELECT id, holder_name, ticket_type_id, checked_in_at, status FROM tickets WHERE ticket_code = $1",
        effect.code,
    )
    if ticket is None:
        return CheckInOutcome(effect.code, "unknown", None, None, None, None)
    info = await conn.fetchrow(
        """SELECT tt.name AS type_name, e.name AS event_name, e.id AS event_id FROM ticket_types tt
           JOIN events e ON e.id = tt.event_id WHERE tt.id = $1""",
        ticket["ticket_type_id"],
    )
    outcome = "valid" if admitted else {"used": "already_used"}.get(ticket["status"], "cancelled")
    await conn.execute(
        """INSERT INTO check_ins (organization_id, ticket_id, event_id, checked_in_by_contact_id, outcome)
           VALUES ($1, $2, $3, $4, $5)""",
        turn.org.id,
        ticket["id"],
        info["event_id"],
        turn.contact.id,
        {"valid": "admitted"}.get(outcome, outcome),
    )
    return CheckInOutcome(
        effect.code,
        outcome,
        ticket["holder_name"],
        info["event_name"],
        info["type_name"],
        ticket["checked_in_at"],
    )


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
