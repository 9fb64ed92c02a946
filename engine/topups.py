"""Token top-ups paid by M-Pesa (docs/tickets.md, "Token top-ups").

A top-up is a ``token_purchases`` row (tokens, bonus tokens, the KES amount) and a ``payment_requests`` row of
purpose ``tokens`` with its own callback secret; the STK push goes to the payer's phone. Only M-Pesa's confirmed
word (the STK Push Query, via the payments router or the reconciler) credits the wallet, with exactly one
``purchase`` ledger row: the purchase moves from pending to completed once, in the same transaction.

Automatic refills (``wallets.auto_refill_enabled``, ``auto_refill_amount``): when the balance falls below the
low-balance threshold one purchase starts (``wallets.auto_refill_pending`` names it: never two at once); a failed
or refused one sets ``auto_refill_stopped_at`` and no further refill starts until an operator resumes them
(``chatnation wallet auto-refill ORG --resume``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any
from uuid import UUID

import asyncpg

from engine import wallet
from engine.db import tenant_tx
from engine.logging import get_logger
from engine.mpesa import PaymentProvider, PaymentRefused, QueryAnswer, new_callback_token, token_hash
from engine.runtime import Runtime

log = get_logger(__name__)
MPESA_PHONE = r"^254(7|1)[0-9]{8}$"  # who may be asked to pay: a Kenyan M-Pesa number, 2547XXXXXXXX
ACCOUNT_REFERENCE = "TOKENS"
DESCRIPTION = "Tokens"
# (at least this many tokens, bonus percent): the larger the purchase, the larger the bonus
DEFAULT_BONUS_TIERS: tuple[tuple[int, int], ...] = ((50_000, 15), (10_000, 10), (5_000, 5))


@dataclass(frozen=True)
class NewPurchase:
    purchase_id: UUID
    request_id: UUID
    callback_token: str
    tokens: int
    bonus_tokens: int
    amount: Decimal
    phone: str


def bonus_for(tokens: int, org_settings: Mapping[str, Any] | None = None) -> int:
    """Bonus tokens for a purchase: the organisation's ``token_bonus_tiers`` ([[min_tokens, percent], ...]) or
    the default tiers; rounded down."""
    tiers = (org_settings or {}).get("token_bonus_tiers") or DEFAULT_BONUS_TIERS
    percent = max((int(p) for minimum, p in tiers if tokens >= int(minimum)), default=0)
    return tokens * percent // 100


def price_of_tokens(tokens: int, price_per_token: Decimal) -> Decimal:
    """What M-Pesa is asked for: whole shillings, rounded up."""
    return (Decimal(tokens) * price_per_token).to_integral_value(ROUND_CEILING)


async def start_purchase(
    conn: asyncpg.Connection,
    org_id: UUID,
    tokens: int,
    phone: str,
    price_per_token: Decimal,
    *,
    automatic: bool = False,
) -> NewPurchase | None:
    """The purchase and its payment request, in the caller's tenant transaction. An automatic refill first
    claims the wallet (None: one is already running, refills are stopped, or the balance is not below the
    threshold)."""
    if tokens <= 0:
        raise ValueError("tokens must be positive")
    settings = await conn.fetchval("SELECT settings FROM organizations WHERE id = $1", org_id) or {}
    bonus = bonus_for(tokens, settings)
    amount = price_of_tokens(tokens, price_per_token)
    wallet_id = await conn.fetchval("SELECT id FROM wallets WHERE organization_id = $1 FOR UPDATE", org_id)
    if wallet_id is None:
        raise LookupError(f"organisation {org_id} has no wallet")
    purchase_id = await conn.fetchval(
        """INSERT INTO token_purchases (wallet_id, organization_id, tokens, bonus_tokens, amount, currency,
                                        payment_method, payment_status)
           VALUES ($1, $2, $3, $4, $5, 'KES', 'mpesa', 'pending') RETURNING id""",
        wallet_id,
        org_id,
        tokens,
        bonus,
        amount,
    )
    if automatic:
        claimed = await conn.fetchval(
            """UPDATE wallets SET auto_refill_pending = $2
               WHERE organization_id = $1 AND auto_refill_enabled AND auto_refill_pending IS NULL
                 AND auto_refill_stopped_at IS NULL AND balance < COALESCE(low_balance_threshold, 0)
               RETURNING true""",
            org_id,
            purchase_id,
        )
        if not claimed:
            await conn.execute("DELETE FROM token_purchases WHERE id = $1", purchase_id)
            return None
    token = new_callback_token(org_id)
    request_id = await conn.fetchval(
        """INSERT INTO payment_requests (organization_id, purpose, token_purchase_id, phone, amount, account_reference,
                                         description, callback_token_hash)
           VALUES ($1, 'tokens', $2, $3, $4, $5, $6, $7) RETURNING id""",
        org_id,
        purchase_id,
        phone,
        amount,
        ACCOUNT_REFERENCE,
        DESCRIPTION,
        token_hash(token),
    )
    return NewPurchase(purchase_id, request_id, token, tokens, bonus, amount, phone)


async def push(payments: PaymentProvider, pool: asyncpg.Pool, org_id: UUID, new: NewPurchase) -> str:
    """The STK push for a purchase (after its transaction committed); returns the CheckoutRequestID. A refusal
    fails the purchase (and stops automatic refills if it was one) and raises ``PaymentRefused``."""
    try:
        accepted = await payments.stk_push(
            new.phone, new.amount, ACCOUNT_REFERENCE, DESCRIPTION, new.callback_token
        )
    except PaymentRefused as err:
        async with tenant_tx(pool, org_id) as conn:
            await conn.execute(
                "UPDATE payment_requests SET status = 'error', result_desc = $2 WHERE id = $1",
                new.request_id,
                str(err)[:500],
            )
            await _failed(conn, org_id, new.purchase_id, f"M-Pesa refused the request: {err}")
        raise
    async with tenant_tx(pool, org_id) as conn:
        await conn.execute(
            """UPDATE payment_requests SET status = 'requested', checkout_request_id = $2, merchant_request_id = $3
               WHERE id = $1 AND status = 'pending'""",
            new.request_id,
            accepted.checkout_request_id,
            accepted.merchant_request_id,
        )
    return accepted.checkout_request_id


async def refill_if_due(rt: Runtime, org_id: UUID) -> bool:
    """Starts the automatic refill of this organisation's wallet if it is due; True if one started."""
    async with tenant_tx(rt.app_pool, org_id) as conn:
        due = await conn.fetchrow(
            """SELECT w.auto_refill_amount, o.settings FROM wallets w JOIN organizations o ON o.id = w.organization_id
               WHERE w.auto_refill_enabled AND w.auto_refill_pending IS NULL AND w.auto_refill_stopped_at IS NULL
                 AND w.balance < COALESCE(w.low_balance_threshold, 0)"""
        )
        if due is None:
            return False
        phone = await _billing_phone(conn, due["settings"] or {})
        if not due["auto_refill_amount"] or phone is None:
            await conn.execute(
                """UPDATE wallets SET auto_refill_stopped_at = now(), auto_refill_stopped_reason = $2
                   WHERE organization_id = $1 AND auto_refill_stopped_at IS NULL""",
                org_id,
                "no auto_refill_amount" if not due["auto_refill_amount"] else "no billing phone to ask",
            )
            log.warning("automatic refill cannot start: stopped", organization_id=str(org_id))
            return False
        new = await start_purchase(
            conn, org_id, int(due["auto_refill_amount"]), phone, rt.settings.token_price_kes, automatic=True
        )
    if new is None:
        return False
    log.info("automatic refill started", tokens=new.tokens, organization_id=str(org_id))
    try:
        await push(rt.payments, rt.app_pool, org_id, new)
    except PaymentRefused:
        return False
    return True


async def refill_sweep(rt: Runtime) -> int:
    """Every wallet below its threshold with refills on and none running (the reconciler calls this)."""
    async with rt.owner_pool.acquire() as conn:
        due = await conn.fetch(
            """SELECT organization_id FROM wallets
               WHERE auto_refill_enabled AND auto_refill_pending IS NULL AND auto_refill_stopped_at IS NULL
                 AND balance < COALESCE(low_balance_threshold, 0) LIMIT 100"""
        )
    started = 0
    for row in due:
        started += await refill_if_due(rt, row["organization_id"])
    return started


async def _billing_phone(conn: asyncpg.Connection, org_settings: Mapping[str, Any]) -> str | None:
    """Who is asked to pay an automatic refill: settings.billing_phone, else whoever paid the last top-up."""
    if org_settings.get("billing_phone"):
        return str(org_settings["billing_phone"])
    phone = await conn.fetchval(
        "SELECT phone FROM payment_requests WHERE purpose = 'tokens' AND status = 'paid' ORDER BY created_at DESC LIMIT 1"
    )
    return str(phone) if phone else None


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
            return await _credit(conn, org, purchase_id, receipt)
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
        await _failed(conn, org, purchase_id, f"M-Pesa: {answer.result_desc or answer.result_code}")
        return True


async def _credit(conn: asyncpg.Connection, org: UUID, purchase_id: UUID, receipt: str | None) -> bool:
    bought = await conn.fetchrow(
        """UPDATE token_purchases SET payment_status = 'completed', completed_at = now(),
                  payment_reference = COALESCE($2, payment_reference)
           WHERE id = $1 AND payment_status = 'pending' RETURNING tokens, bonus_tokens""",
        purchase_id,
        receipt,
    )
    if bought is None:  # credited before: once, whatever repeats
        return False
    tokens = int(bought["tokens"]) + int(bought["bonus_tokens"] or 0)
    await wallet.credit(
        conn,
        org,
        tokens,
        action="mpesa_topup",
        reference_id=purchase_id,
        metadata={"tokens": bought["tokens"], "bonus_tokens": bought["bonus_tokens"], "receipt": receipt},
    )
    await conn.execute(
        "UPDATE wallets SET auto_refill_pending = NULL WHERE organization_id = $1 AND auto_refill_pending = $2",
        org,
        purchase_id,
    )
    log.info("token top-up credited", tokens=tokens, purchase_id=str(purchase_id))
    return True


async def _failed(conn: asyncpg.Connection, org: UUID, purchase_id: UUID, reason: str) -> None:
    await conn.execute(
        "UPDATE token_purchases SET payment_status = 'failed' WHERE id = $1 AND payment_status = 'pending'",
        purchase_id,
    )
    # an automatic refill that failed stops the automatic refills until an operator resumes them
    stopped = await conn.fetchval(
        """UPDATE wallets SET auto_refill_pending = NULL, auto_refill_stopped_at = now(),
                  auto_refill_stopped_reason = $3
           WHERE organization_id = $1 AND auto_refill_pending = $2 RETURNING true""",
        org,
        purchase_id,
        reason[:500],
    )
    if stopped:
        log.warning("automatic refill failed: refills stopped until an operator resumes them", reason=reason)
