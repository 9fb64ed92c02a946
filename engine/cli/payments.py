"""`chatnation payments reconcile|refunded`: what people must act on after M-Pesa (docs/tickets.md)."""

from __future__ import annotations

from typing import Any

import asyncpg
import typer

from engine.cli.common import console, emit, pools, resolve_org, run, settings
from engine.cli.errors import NotFound

app = typer.Typer(
    help="M-Pesa payments: what needs a person (reconcile), refunds done.", no_args_is_help=True
)

SUSPICIOUS_DAYS = 7

# Confirmed as paid by M-Pesa and no tickets, no refund due, no top-up credited: someone must look.
PAID_WITHOUT_TICKETS = """
    SELECT o.name AS organization, p.checkout_request_id, p.phone, p.amount, p.receipt, p.confirmed_at,
           p.confirmed_by, p.purpose
    FROM payment_requests p JOIN organizations o ON o.id = p.organization_id
    WHERE p.status = 'paid' AND p.settlement IS NULL
      AND NOT EXISTS (SELECT FROM tickets t WHERE t.hold_id = p.hold_id)
      AND ($1::uuid IS NULL OR p.organization_id = $1)
    ORDER BY p.confirmed_at"""
REFUNDS_DUE = """
    SELECT o.name AS organization, p.checkout_request_id, p.phone, p.amount, p.receipt, p.settled_at AS due_since,
           e.name AS event
    FROM payment_requests p JOIN organizations o ON o.id = p.organization_id
    LEFT JOIN ticket_holds h ON h.id = p.hold_id LEFT JOIN ticket_types tt ON tt.id = h.ticket_type_id
    LEFT JOIN events e ON e.id = tt.event_id
    WHERE p.settlement = 'refund_due' AND ($1::uuid IS NULL OR p.organization_id = $1)
    ORDER BY p.settled_at"""
UNCONFIRMED = """
    SELECT o.name AS organization, p.checkout_request_id, p.phone, p.amount, p.status, p.created_at,
           p.query_count, p.last_query_state
    FROM payment_requests p JOIN organizations o ON o.id = p.organization_id
    WHERE ((p.status = 'requested' AND p.created_at < now() - interval '10 minutes') OR p.status = 'expired')
      AND p.checkout_request_id IS NOT NULL AND ($1::uuid IS NULL OR p.organization_id = $1)
    ORDER BY p.created_at DESC LIMIT 100"""
SUSPICIOUS = f"""
    SELECT o.name AS organization, s.created_at, s.checkout_request_id, s.reason, s.claimed_result_code,
           s.source_ip
    FROM suspicious_callbacks s JOIN organizations o ON o.id = s.organization_id
    WHERE s.created_at > now() - interval '{SUSPICIOUS_DAYS} days' AND ($1::uuid IS NULL OR s.organization_id = $1)
    ORDER BY s.created_at DESC LIMIT 100"""
SECTIONS = {
    "paid_without_tickets": (PAID_WITHOUT_TICKETS, "Paid, no tickets and no refund recorded"),
    "refunds_due": (REFUNDS_DUE, "Refunds due (paid after the seats were gone)"),
    "unconfirmed": (UNCONFIRMED, "No final answer from M-Pesa yet"),
    "suspicious_callbacks": (SUSPICIOUS, f"Suspicious callbacks, last {SUSPICIOUS_DAYS} days"),
}


@app.command("reconcile")
def reconcile(
    org: str | None = typer.Option(None, "--org", help="one organisation (id or phone_number_id)"),
    query: bool = typer.Option(False, "--query", help="ask M-Pesa about open requests first"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Paid without tickets, refunds due, payments M-Pesa has not answered, suspicious callbacks."""

    s = settings()

    async def body() -> dict[str, list[dict[str, Any]]]:
        async with pools(s) as (urls, pool):
            org_id = await resolve_org(pool, org) if org else None
            if query:
                await _query_open(s)
            conn = await asyncpg.connect(urls.owner)  # across organisations: the owner's view
            try:
                return {
                    name: [dict(r) for r in await conn.fetch(sql, org_id)]
                    for name, (sql, _) in SECTIONS.items()
                }
            finally:
                await conn.close()

    report = run(body)
    if as_json:
        import json

        print(json.dumps(report, default=str, indent=2))
        return
    for name, (_, title) in SECTIONS.items():
        emit(report[name], as_json=False, title=title)
        console.print()


async def _query_open(s: Any) -> None:
    from datetime import timedelta

    from engine.runtime import Runtime
    from handlers.payments import reconcile_once

    rt = await Runtime.start(s)
    try:
        asked = await reconcile_once(rt, min_age=timedelta(0))
    finally:
        await rt.close()
    console.print(f"asked M-Pesa about {asked} open payment request(s)", highlight=False)


@app.command("refunded")
def refunded(
    checkout_request_id: str,
    reference: str = typer.Option(..., "--reference", help="the M-Pesa reversal or B2C transaction id"),
    note: str | None = typer.Option(None, "--note"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Mark a refund due as done (after sending the money back)."""
    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with pools(s) as (urls, _):
            conn = await asyncpg.connect(urls.owner)
            try:
                row = await conn.fetchrow(
                    """UPDATE payment_requests SET settlement = 'refunded', refunded_at = now(),
                              refund_reference = $2, refund_note = $3
                       WHERE checkout_request_id = $1 AND settlement = 'refund_due'
                       RETURNING checkout_request_id, phone, amount, refund_reference, refunded_at""",
                    checkout_request_id,
                    reference[:100],
                    note,
                )
            finally:
                await conn.close()
        if row is None:
            raise NotFound(f"no refund due for CheckoutRequestID {checkout_request_id!r}")
        return [dict(row)]

    emit(run(body), as_json=as_json, title="Refund recorded")
