"""M-Pesa around the ticket flow and top-ups: asking for the payment after the state committed, checking what
M-Pesa says before anything is decided, and routing the verified outcome into the contact's ordered path.

The sequence for one purchase: the inbound transaction commits "awaiting payment" and a ``payment_requests``
row with the hash of a fresh per-request secret (which names the organisation); after commit the STK push is sent with that secret in the
CallBackURL path, and its answer is published into the contact's shard (``requested`` or ``request_failed``).

A callback is a hint (docs/tickets.md, "Payments you can trust"): the router finds its request by the secret
in its path, under the organisation the secret names (an unknown secret or CheckoutRequestID costs one indexed
read and is dropped), compares the
CheckoutRequestID, MerchantRequestID, amount and phone with the request (a mismatch is recorded in
``suspicious_callbacks`` and refused), then asks the STK Push Query. Only M-Pesa's own answer (paid or
failed) goes on into the shard, as a ``result`` event with ``verified`` set. The payment timer and the
reconciler ask the same question (``check_after_commit``, ``reconcile_once``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractIncomingMessage

from engine import metrics
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.mpesa import PaymentRefused, QueryAnswer, token_hash, token_org, whole_shillings
from engine.runtime import Runtime
from engine.turn import Turn

log = get_logger(__name__)
ROUTE_WAIT_ATTEMPTS = (
    10  # a real request's CheckoutRequestID is stored a few ms after Daraja answered the push
)
ROUTE_WAIT_SECONDS = 0.2
RECONCILE_MIN_AGE = timedelta(seconds=60)  # younger requests are the timer's business
RECONCILE_BATCH = 50

Route = Mapping[str, Any]
ROUTE_COLUMNS = """organization_id, contact_id, id AS payment_request_id, hold_id, checkout_request_id,
                   merchant_request_id, amount, phone, status, purpose"""


# ---------------------------------------------------------------- the STK push, after commit


def stk_push_after_commit(
    turn: Turn, request_id: UUID, hold_id: str, amount: Any, reference: str, description: str, token: str
) -> Callable[[], Awaitable[None]]:
    org_id, phone, pnid = turn.org.id, turn.contact.phone, turn.org.phone_number_id

    async def push() -> None:
        rt: Runtime = turn.runtime
        event: dict[str, Any] = {
            "v": 1,
            "kind": "payment",
            "phone_number_id": pnid,
            "wa_id": phone,
            "hold_id": hold_id,
        }
        try:
            accepted = await rt.payments.stk_push(phone, amount, reference, description, token)
        except PaymentRefused as err:
            log.warning("M-Pesa refused the payment request", error=str(err), hold_id=hold_id)
            await rt.publish_inbound(
                phone,
                {
                    **event,
                    "type": "request_failed",
                    "reason": str(err)[:200],
                    "external_id": f"payreq-failed:{request_id}",
                },
                f"payreq-failed:{request_id}",
            )
            async with tenant_tx(rt.app_pool, org_id) as conn:
                await conn.execute(
                    "UPDATE payment_requests SET status = 'error', result_desc = $2 WHERE id = $1 AND status = 'pending'",
                    request_id,
                    str(err)[:500],
                )
            return
        async with tenant_tx(rt.app_pool, org_id) as conn:
            await conn.execute(
                """UPDATE payment_requests SET status = 'requested', checkout_request_id = $2, merchant_request_id = $3
                   WHERE id = $1 AND status = 'pending'""",
                request_id,
                accepted.checkout_request_id,
                accepted.merchant_request_id,
            )
        await rt.publish_inbound(
            phone,
            {
                **event,
                "type": "requested",
                "checkout_request_id": accepted.checkout_request_id,
                "external_id": f"payreq:{request_id}",
            },
            f"payreq:{request_id}",
        )

    return push


# ---------------------------------------------------------------- callbacks: verify, confirm, route


async def route_callback(rt: Runtime, message: AbstractIncomingMessage) -> None:
    """payments queue -> (checks, STK Push Query) -> the paying contact's inbound shard."""
    body = json.loads(message.body)
    checkout = str(body.get("checkout_request_id") or "")
    token = str(body.get("callback_token") or "")
    route = await _route(rt, token)
    if route is None:  # not a URL we handed out: one indexed read, nothing held, nothing parked
        metrics.MPESA_CALLBACKS.labels("unknown").inc()
        log.warning(
            "M-Pesa callback for no request of ours: refused",
            checkout_request_id=checkout[:100],
            source_ip=body.get("source_ip"),
        )
        return
    for _ in range(ROUTE_WAIT_ATTEMPTS):  # only a real request's callback waits for its id
        if route["checkout_request_id"] is not None or route["status"] != "pending":
            break
        await asyncio.sleep(ROUTE_WAIT_SECONDS)
        route = await _route(rt, token) or route
    problems = mismatches(route, body)
    if problems:
        await record_suspicious(rt, route, body, "; ".join(problems))
        return
    if route["status"] == "paid":  # decided already: a repeat needs no question to M-Pesa
        if int(body.get("result_code", -1)) != 0:
            await record_suspicious(rt, route, body, "a failure for a payment M-Pesa confirmed as paid")
            return
        metrics.MPESA_CALLBACKS.labels("duplicate").inc()
        return
    answer = await rt.payments.stk_query(checkout)
    await note_query(rt, route, answer)
    claimed = int(body.get("result_code", -1))
    if answer.final and (claimed == 0) != (answer.state == "paid"):
        said = "paid" if claimed == 0 else f"failed ({claimed})"
        await record_suspicious(rt, route, body, f"callback said {said}; M-Pesa says {answer.state}")
    elif answer.state == "pending":
        await record_suspicious(rt, route, body, "callback before M-Pesa had an outcome (still processing)")
        return
    if not answer.final:  # unreachable: the payment timer and the reconciler ask again
        metrics.MPESA_CALLBACKS.labels("unconfirmed").inc()
        return
    metrics.MPESA_CALLBACKS.labels("confirmed").inc()
    meta = body.get("metadata") or {}
    receipt = meta.get("MpesaReceiptNumber") if claimed == 0 and answer.state == "paid" else None
    await deliver(rt, route, answer, str(receipt) if receipt else None, "callback")


async def _route(rt: Runtime, token: str) -> Route | None:
    """The request a callback secret names: read under the organisation it names (row-level security), by
    the secret's hash (unique, indexed)."""
    org = token_org(token)
    if org is None:
        return None
    async with tenant_tx(rt.app_pool, org) as conn:
        row = await conn.fetchrow(
            f"SELECT {ROUTE_COLUMNS} FROM payment_requests WHERE callback_token_hash = $1", token_hash(token)
        )
    return dict(row) if row is not None else None


def mismatches(route: Route, body: Mapping[str, Any]) -> list[str]:
    """What in the callback contradicts the request it names (empty: nothing)."""
    problems = []
    if str(body.get("checkout_request_id") or "") != (route["checkout_request_id"] or ""):
        problems.append("CheckoutRequestID is not this request's")
    if (
        route["merchant_request_id"]
        and str(body.get("merchant_request_id") or "") != route["merchant_request_id"]
    ):
        problems.append("MerchantRequestID is not this request's")
    if int(body.get("result_code", -1)) == 0:
        meta = body.get("metadata") or {}
        try:
            amount: float | None = float(meta.get("Amount"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            amount = None
        if amount != whole_shillings(route["amount"]):
            problems.append(f"amount {meta.get('Amount')!r}, requested {whole_shillings(route['amount'])}")
        if str(meta.get("PhoneNumber") or "") != route["phone"]:
            problems.append("phone is not the payer's")
    return problems


async def record_suspicious(rt: Runtime, route: Route, body: Mapping[str, Any], reason: str) -> None:
    metrics.MPESA_CALLBACKS.labels("suspicious").inc()
    log.warning(
        "suspicious M-Pesa callback refused",
        reason=reason,
        payment_request_id=str(route["payment_request_id"]),
        checkout_request_id=str(body.get("checkout_request_id"))[:100],
        source_ip=body.get("source_ip"),
    )
    async with tenant_tx(rt.app_pool, route["organization_id"]) as conn:
        await conn.execute(
            """INSERT INTO suspicious_callbacks (organization_id, payment_request_id, checkout_request_id, reason,
                                                claimed_result_code, source_ip, payload)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            route["organization_id"],
            route["payment_request_id"],
            str(body.get("checkout_request_id") or "")[:100],
            reason[:200],
            int(body["result_code"]) if isinstance(body.get("result_code"), int) else None,
            str(body.get("source_ip") or "")[:64] or None,
            json.dumps(body.get("payload") or {}),
        )


async def note_query(rt: Runtime, route: Route, answer: QueryAnswer) -> None:
    """The last question asked, for the reconciler's pace and for operators."""
    async with tenant_tx(rt.app_pool, route["organization_id"]) as conn:
        await conn.execute(
            """UPDATE payment_requests SET query_count = query_count + 1, last_query_at = now(), last_query_state = $2::text,
                      next_query_at = CASE WHEN $2::text IN ('pending', 'unreachable')
                                           THEN now() + make_interval(secs => LEAST(600, 30 * (query_count + 1)))
                                           ELSE next_query_at END
               WHERE id = $1""",
            route["payment_request_id"],
            answer.state,
        )


async def deliver(rt: Runtime, route: Route, answer: QueryAnswer, receipt: str | None, trigger: str) -> None:
    """M-Pesa's final answer: a ticket payment into its contact's shard; a top-up settled here."""
    if route["purpose"] == "tokens":
        from engine.topups import settle_token_purchase

        await settle_token_purchase(rt, route, answer, receipt)
        return
    event = await result_event(rt, route, answer, receipt, trigger)
    await rt.publish_inbound(event["wa_id"], event, event["external_id"])


async def result_event(
    rt: Runtime, route: Route, answer: QueryAnswer, receipt: str | None, trigger: str
) -> dict[str, Any]:
    async with tenant_tx(rt.app_pool, route["organization_id"]) as conn:
        phone = await conn.fetchval("SELECT phone FROM contacts WHERE id = $1", route["contact_id"])
        pnid = await conn.fetchval(
            "SELECT whatsapp_phone_id FROM organizations WHERE id = $1", route["organization_id"]
        )
    checkout = route["checkout_request_id"]
    return {
        "v": 1,
        "kind": "payment",
        "type": "result",
        "phone_number_id": pnid,
        "wa_id": phone,
        # one event per outcome (a repeat is a duplicate); a receipt learnt later gets its own, to be recorded
        "external_id": f"mpesa:{checkout}:{answer.state}" + (f":{receipt}" if receipt else ""),
        "checkout_request_id": checkout,
        "hold_id": str(route["hold_id"]) if route["hold_id"] else None,
        "payment_request_id": str(route["payment_request_id"]),
        "result_code": answer.result_code,
        "result_desc": answer.result_desc,
        "metadata": {"Amount": str(route["amount"]), **({"MpesaReceiptNumber": receipt} if receipt else {})},
        "verified": answer.state,
        "trigger": trigger,
    }


# ---------------------------------------------------------------- in the contact's transaction


async def record_result(turn: Turn, body: Mapping[str, Any]) -> bool:
    """The payment's row follows M-Pesa's verified answer, in the event's transaction; False when the event
    must not reach the conversation (an unverified hint, a repeat, or a failure after a confirmed success)."""
    verified = body.get("verified")
    if body.get("type") not in ("result", "unconfirmed"):
        return True
    if verified not in ("paid", "failed", "pending", "unreachable"):
        log.warning("unverified payment result ignored", checkout_request_id=body.get("checkout_request_id"))
        return False
    if verified in ("pending", "unreachable"):
        return True
    row = await turn.conn.fetchrow(
        "SELECT status, receipt FROM payment_requests WHERE id = $1 FOR UPDATE",
        UUID(body["payment_request_id"]),
    )
    if row is None:
        return False
    receipt = (body.get("metadata") or {}).get("MpesaReceiptNumber")
    if row["status"] == "paid":
        if receipt and not row["receipt"]:
            await turn.conn.execute(
                "UPDATE payment_requests SET receipt = $2 WHERE id = $1",
                UUID(body["payment_request_id"]),
                str(receipt)[:50],
            )
        if verified == "failed":
            log.warning(
                "a failure after a confirmed success is ignored",
                payment_request_id=body["payment_request_id"],
            )
        return False
    if verified == "failed" and row["status"] == "failed":
        return False
    await turn.conn.execute(
        """UPDATE payment_requests SET status = $2, result_code = $3, result_desc = $4,
                  receipt = COALESCE(receipt, $5), confirmed_at = now(), confirmed_by = $6
           WHERE id = $1""",
        UUID(body["payment_request_id"]),
        verified,
        body.get("result_code"),
        body.get("result_desc"),
        str(receipt)[:50] if receipt else None,
        str(body.get("trigger") or "callback")[:20],
    )
    return True


# ---------------------------------------------------------------- the payment timer's question


def check_after_commit(turn: Turn, hold_id: str, attempt: int) -> Callable[[], Awaitable[None]]:
    """After the timer's transaction: ask M-Pesa about the hold's payment and tell the shard (``result`` when
    final, ``unconfirmed`` when pending or unreachable)."""
    org_id, phone, pnid = turn.org.id, turn.contact.phone, turn.org.phone_number_id

    async def check() -> None:
        rt: Runtime = turn.runtime
        async with tenant_tx(rt.app_pool, org_id) as conn:
            row = await conn.fetchrow(
                f"SELECT {ROUTE_COLUMNS} FROM payment_requests WHERE hold_id = $1 ORDER BY created_at DESC LIMIT 1",
                UUID(hold_id),
            )
        route = dict(row) if row is not None else None
        answer = QueryAnswer("unreachable", result_desc="the STK push was not accepted")
        if route is not None and route["checkout_request_id"]:
            answer = await rt.payments.stk_query(route["checkout_request_id"])
            await note_query(rt, route, answer)
        if route is not None and answer.final:
            await deliver(rt, route, answer, None, "timer")
            return
        key = f"mpesa-check:{hold_id}:{attempt}"
        await rt.publish_inbound(
            phone,
            {
                "v": 1,
                "kind": "payment",
                "type": "unconfirmed",
                "phone_number_id": pnid,
                "wa_id": phone,
                "external_id": key,
                "hold_id": hold_id,
                "verified": answer.state,
                "attempt": attempt,
            },
            key,
        )

    return check


# ---------------------------------------------------------------- the reconciler


async def reconcile_forever(rt: Runtime, stop: asyncio.Event) -> None:
    """Requests left open (callback lost, Daraja down at the timer) are asked about again, backing off; any
    number of processes may run this (rows are claimed with SKIP LOCKED)."""
    from engine.topups import refill_sweep

    while not stop.is_set():
        try:
            await reconcile_once(rt)
            await refill_sweep(rt)  # wallets below their threshold whose automatic refill has not started
        except (OSError, asyncpg.PostgresError) as err:
            log.warning("payment reconciler failed; will try again", error=repr(err))
        try:
            await asyncio.wait_for(stop.wait(), rt.settings.mpesa_reconcile_interval_seconds)
        except TimeoutError:
            pass


async def reconcile_once(rt: Runtime, *, min_age: timedelta = RECONCILE_MIN_AGE) -> int:
    """One pass; returns how many requests were asked about."""
    give_up = timedelta(hours=rt.settings.mpesa_reconcile_give_up_hours)
    async with rt.owner_pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE payment_requests SET status = 'expired',
                      result_desc = COALESCE(result_desc, 'no answer from M-Pesa in time: see payments reconcile')
               WHERE status = 'requested' AND created_at < now() - $1::interval""",
            give_up,
        )
        # an automatic refill M-Pesa never answered stops the refills (as a failed one does)
        await conn.execute(
            """UPDATE wallets w SET auto_refill_pending = NULL, auto_refill_stopped_at = now(),
                      auto_refill_stopped_reason = 'M-Pesa never answered the automatic refill'
               FROM payment_requests p
               WHERE p.token_purchase_id = w.auto_refill_pending AND p.status = 'expired'"""
        )
        rows = await conn.fetch(
            """UPDATE payment_requests SET next_query_at = now() + make_interval(secs => LEAST(600, 30 * (query_count + 1)))
               WHERE id IN (SELECT id FROM payment_requests
                            WHERE status = 'requested' AND checkout_request_id IS NOT NULL
                              AND created_at < now() - $1::interval
                              AND (next_query_at IS NULL OR next_query_at <= now())
                            ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING """
            + ROUTE_COLUMNS,
            min_age,
            RECONCILE_BATCH,
        )
    for row in rows:
        route = dict(row)
        answer = await rt.payments.stk_query(route["checkout_request_id"])
        await note_query(rt, route, answer)
        if answer.final:
            await deliver(rt, route, answer, None, "reconciler")
    return len(rows)
