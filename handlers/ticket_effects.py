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

import qrcode

from engine import mailer
from engine.logging import get_logger
from engine.turn import Turn
from handlers import payments
from state_machines.checkin import CheckInOutcome, CheckInTicket
from state_machines.formatting import DEFAULT_TIMEZONE
from state_machines.my_tickets import FindMyTickets, MyTickets, OwnedTicket
from state_machines.tickets import (
    HoldTickets,
    IssueTickets,
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
                                     unit_price, total, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
        turn.org.id,
        type_id,
        turn.contact.id,
        turn.conversation.id,
        effect.quantity,
        unit,
        total,
        expires,
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
        # a payment still open for this hold will not be honoured: say so in its row
        await turn.conn.execute(
            """UPDATE payment_requests SET status = 'expired', result_desc = COALESCE(result_desc, $2)
               WHERE hold_id = $1 AND status IN ('pending', 'requested')""",
            UUID(effect.hold_id),
            effect.reason[:100],
        )


async def request_payment(turn: Turn, effect: RequestPayment) -> None:
    """Records the request in this transaction; M-Pesa is asked only after it commits."""
    request_id = await turn.conn.fetchval(
        """INSERT INTO payment_requests (organization_id, contact_id, conversation_id, hold_id, phone, amount,
                                         account_reference, description)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
        turn.org.id,
        turn.contact.id,
        turn.conversation.id,
        UUID(effect.hold_id),
        effect.phone,
        effect.amount,
        effect.account_reference,
        effect.description,
    )
    turn.after_commit.append(payments.stk_push_after_commit(turn, request_id, effect))


async def issue(turn: Turn, effect: IssueTickets) -> TicketsIssued:
    conn = turn.conn
    row = await conn.fetchrow(
        """UPDATE ticket_holds SET status = 'issued', holder_name = $2, holder_email = $3
           WHERE id = $1 AND status = 'held' RETURNING ticket_type_id, quantity""",
        UUID(effect.hold_id),
        effect.holder_name,
        effect.holder_email,
    )
    event_name = (
        await conn.fetchval(
            """SELECT e.name FROM ticket_holds h JOIN ticket_types tt ON tt.id = h.ticket_type_id
           JOIN events e ON e.id = tt.event_id WHERE h.id = $1""",
            UUID(effect.hold_id),
        )
        or ""
    )
    if row is None:  # paid after the hold lapsed: needs a person (refund or manual issue)
        log.error(
            "RECONCILE: payment for a hold that is no longer held",
            hold_id=effect.hold_id,
            payment_reference=effect.payment_reference,
        )
        return TicketsIssued(effect.hold_id, (), event_name)
    await conn.execute(
        "UPDATE ticket_types SET quantity_held = quantity_held - $2, quantity_sold = quantity_sold + $2 WHERE id = $1",
        row["ticket_type_id"],
        row["quantity"],
    )
    unit_paid = effect.amount / row["quantity"] if row["quantity"] else Decimal(0)
    codes = []
    for _ in range(row["quantity"]):
        code = "TKT-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
        ticket_id = await conn.fetchval(
            """INSERT INTO tickets (organization_id, ticket_type_id, contact_id, hold_id, ticket_code, holder_name,
                                    holder_email, holder_phone, amount_paid, payment_reference, payment_status)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id""",
            turn.org.id,
            row["ticket_type_id"],
            turn.contact.id,
            UUID(effect.hold_id),
            code,
            effect.holder_name,
            effect.holder_email,
            turn.contact.phone,
            unit_paid,
            effect.payment_reference,
            "paid" if effect.amount > 0 else "free",
        )
        await conn.execute(
            "INSERT INTO ticket_images (ticket_id, organization_id, image) VALUES ($1, $2, $3)",
            ticket_id,
            turn.org.id,
            qr_png(code),
        )
        codes.append(code)
    if effect.holder_email and mailer.enabled(turn.runtime.settings if turn.runtime else None):
        await mailer.queue_tickets_email(
            turn.conn, turn.org.id, effect.hold_id, effect.holder_email, turn.language
        )
    return TicketsIssued(effect.hold_id, tuple(codes), event_name)


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
