"""M-Pesa around the ticket flow: asking for the payment after the state committed, and routing Daraja's
callbacks into the contact's ordered path.

The sequence for one purchase: the inbound transaction commits "awaiting payment" and a ``payment_requests``
row; then (after commit) the STK push is sent; its answer is published into the contact's shard as a
``payment`` event (``requested`` with the CheckoutRequestID, or ``request_failed``) before the checkout id
is stored, so that the callback, which can only be routed once the id is stored, always comes after it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from aio_pika.abc import AbstractIncomingMessage

from engine.consumer import Park
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.mpesa import PaymentRefused
from engine.runtime import Runtime
from engine.turn import Turn
from state_machines.tickets import RequestPayment

log = get_logger(__name__)
ROUTE_ATTEMPTS = 20  # the callback can arrive before the checkout id is stored (a few ms later)


def stk_push_after_commit(
    turn: Turn, request_id: UUID, effect: RequestPayment
) -> Callable[[], Awaitable[None]]:
    org_id, phone, pnid = turn.org.id, turn.contact.phone, turn.org.phone_number_id

    async def push() -> None:
        rt: Runtime = turn.runtime
        event: dict[str, Any] = {
            "v": 1,
            "kind": "payment",
            "phone_number_id": pnid,
            "wa_id": phone,
            "hold_id": effect.hold_id,
        }
        try:
            accepted = await rt.payments.stk_push(
                phone, effect.amount, effect.account_reference, effect.description
            )
        except PaymentRefused as err:
            log.warning("M-Pesa refused the payment request", error=str(err), hold_id=effect.hold_id)
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
                    "UPDATE payment_requests SET status = 'error', result_desc = $2 WHERE id = $1",
                    request_id,
                    str(err)[:500],
                )
            return
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
        async with tenant_tx(rt.app_pool, org_id) as conn:
            await conn.execute(
                """UPDATE payment_requests SET status = 'requested', checkout_request_id = $2, merchant_request_id = $3
                   WHERE id = $1""",
                request_id,
                accepted.checkout_request_id,
                accepted.merchant_request_id,
            )

    return push


async def route_callback(rt: Runtime, message: AbstractIncomingMessage) -> None:
    """payments queue -> the paying contact's inbound shard (so the result runs in the contact's order)."""
    body = json.loads(message.body)
    checkout = str(body.get("checkout_request_id") or "")
    route = None
    for _ in range(ROUTE_ATTEMPTS):
        route = await rt.app_pool.fetchrow("SELECT * FROM payment_route($1)", checkout)
        if route is not None:
            break
        await asyncio.sleep(0.5)
    if route is None:
        raise Park(f"M-Pesa callback for an unknown CheckoutRequestID {checkout!r}")
    async with tenant_tx(rt.app_pool, route["organization_id"]) as conn:
        # 'expired' too: money taken after the hold lapsed must still be on record, for a refund
        previous = await conn.fetchval(
            """UPDATE payment_requests SET status = CASE WHEN $2 = 0 THEN 'paid' ELSE 'failed' END,
                      result_code = $2, result_desc = $3, receipt = $4
               WHERE id = $1 AND status IN ('pending', 'requested', 'expired')
               RETURNING (SELECT status FROM payment_requests WHERE id = $1)""",
            route["payment_request_id"],
            int(body.get("result_code", -1)),
            body.get("result_desc"),
            (body.get("metadata") or {}).get("MpesaReceiptNumber"),
        )
        if previous == "expired" and int(body.get("result_code", -1)) == 0:
            log.error(
                "RECONCILE: paid after the hold lapsed; refund or issue by hand", checkout_request_id=checkout
            )
        phone = await conn.fetchval("SELECT phone FROM contacts WHERE id = $1", route["contact_id"])
        pnid = await conn.fetchval(
            "SELECT whatsapp_phone_id FROM organizations WHERE id = $1", route["organization_id"]
        )
    event = {
        "v": 1,
        "kind": "payment",
        "type": "result",
        "phone_number_id": pnid,
        "wa_id": phone,
        "external_id": f"mpesa:{checkout}",
        "checkout_request_id": checkout,
        "result_code": int(body.get("result_code", -1)),
        "result_desc": body.get("result_desc") or "",
        "metadata": body.get("metadata") or {},
    }
    await rt.publish_inbound(phone, event, event["external_id"])
