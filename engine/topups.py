"""Token top-ups paid by M-Pesa: a ``token_purchases`` row (tokens and bonus tokens) and its payment request;
on M-Pesa's confirmed word the wallet gets exactly one ``purchase`` ledger row (docs/tickets.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from engine import wallet
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.mpesa import QueryAnswer
from engine.runtime import Runtime

log = get_logger(__name__)


async def settle_token_purchase(
    rt: Runtime, route: Mapping[str, Any], answer: QueryAnswer, receipt: str | None
) -> bool:
    """Applies M-Pesa's final answer to a top-up once; True when this call changed anything."""
    org = route["organization_id"]
    async with tenant_tx(rt.app_pool, org) as conn:
        request = await conn.fetchrow(
            "SELECT status, token_purchase_id FROM payment_requests WHERE id = $1 FOR UPDATE",
            route["payment_request_id"],
        )
        if request is None or request["status"] == "paid" or request["token_purchase_id"] is None:
            return False
        purchase_id: UUID = request["token_purchase_id"]
        if answer.state == "paid":
            await conn.execute(
                """UPDATE payment_requests SET status = 'paid', result_code = $2, result_desc = $3, receipt = $4,
                          confirmed_at = now(), confirmed_by = 'query', settlement = 'credited', settled_at = now()
                   WHERE id = $1""",
                route["payment_request_id"],
                answer.result_code,
                answer.result_desc,
                receipt,
            )
            bought = await conn.fetchrow(
                """UPDATE token_purchases SET payment_status = 'completed', completed_at = now(),
                          payment_reference = COALESCE($2, payment_reference)
                   WHERE id = $1 AND payment_status = 'pending' RETURNING tokens, bonus_tokens""",
                purchase_id,
                receipt,
            )
            if bought is None:
                return False
            tokens = int(bought["tokens"]) + int(bought["bonus_tokens"] or 0)
            await wallet.credit(
                conn,
                org,
                tokens,
                action="mpesa_topup",
                reference_id=purchase_id,
                metadata={
                    "tokens": bought["tokens"],
                    "bonus_tokens": bought["bonus_tokens"],
                    "receipt": receipt,
                },
            )
            await conn.execute(
                "UPDATE wallets SET auto_refill_pending = NULL WHERE organization_id = $1", org
            )
            log.info("token top-up credited", tokens=tokens, purchase_id=str(purchase_id))
            return True
        if request["status"] == "failed":
            return False
        await conn.execute(
            """UPDATE payment_requests SET status = 'failed', result_code = $2, result_desc = $3,
                      confirmed_at = now(), confirmed_by = 'query'
               WHERE id = $1""",
            route["payment_request_id"],
            answer.result_code,
            answer.result_desc,
        )
        await conn.execute(
            "UPDATE token_purchases SET payment_status = 'failed' WHERE id = $1 AND payment_status = 'pending'",
            purchase_id,
        )
        # an automatic refill that failed stops the automatic refills until an operator acts
        await conn.execute(
            """UPDATE wallets SET auto_refill_pending = NULL,
                      auto_refill_stopped_at = CASE WHEN auto_refill_pending = $2 THEN now()
                                                    ELSE auto_refill_stopped_at END
               WHERE organization_id = $1""",
            org,
            purchase_id,
        )
        return True
