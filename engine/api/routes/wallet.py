"""The organisation's token wallet: balance (and a pause, when replies wait for a top-up), the ledger, and top-ups
paid by M-Pesa (engine/topups.py, as `chatnation wallet buy`: an STK push to the payer's phone; only M-Pesa's
confirmed word credits the wallet)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import httpx
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse

from engine import topups
from engine.api import paging
from engine.api.auth import Caller, scope
from engine.api.idempotency import REPLAYABLE, IdempotencyKey, create_once
from engine.api.problems import not_found
from engine.mpesa import DarajaClient, PaymentRefused
from engine.wallet_pause import status as pause_status

router = APIRouter(prefix="/wallet", tags=["wallet"])


class Wallet(BaseModel):
    balance: int
    currency: str | None
    low_balance_threshold: int | None
    lifetime_purchased: int | None
    lifetime_consumed: int | None
    paused: dict[str, Any] | None


class LedgerEntry(BaseModel):
    id: UUID
    created_at: datetime
    type: str
    amount: int
    balance_before: int
    balance_after: int
    module: str | None
    action: str | None
    reference_id: UUID | None


@router.get("", response_model=Wallet, summary="Balance and lifetime totals")
async def get_wallet(caller: Caller = Depends(scope("wallet", "read"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        row = await conn.fetchrow(
            """SELECT balance, currency, low_balance_threshold, lifetime_purchased, lifetime_consumed
               FROM wallets"""
        )
        if row is None:
            raise not_found("wallet")
        return {**dict(row), "paused": await pause_status(conn)}


@router.get("/ledger", response_model=paging.Page[LedgerEntry], summary="Ledger rows, newest first")
async def ledger(
    caller: Caller = Depends(scope("wallet", "read")),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    before = paging.decode(cursor)
    async with caller.tx() as conn:
        rows = await conn.fetch(
            """SELECT id, created_at, type, amount, balance_before, balance_after, module, action, reference_id
               FROM token_transactions
               WHERE $1::timestamptz IS NULL OR (created_at, id) < ($1, $2::uuid)
               ORDER BY created_at DESC, id DESC LIMIT $3""",
            before[0] if before else None,
            before[1] if before else None,
            limit + 1,
        )
    data, next_cursor = paging.page([dict(r) for r in rows], limit)
    return {"data": data, "next_cursor": next_cursor}


class NewTopUp(BaseModel):
    tokens: int = Field(ge=1, le=1_000_000, description="Tokens bought (bonus tokens come on top)")
    phone: str = Field(pattern=topups.MPESA_PHONE, description="The M-Pesa number that pays: 2547XXXXXXXX")


class TopUp(BaseModel):
    id: UUID
    tokens: int
    bonus_tokens: int
    amount: int = Field(description="What M-Pesa asks for, in whole shillings")
    currency: str
    phone: str
    status: Literal["pending", "completed", "failed"] = Field(
        description="pending until M-Pesa confirms (credited: completed) or refuses (failed)"
    )
    checkout_request_id: str | None
    reason: str | None = Field(description="Why it failed, as M-Pesa said")
    created_at: datetime
    completed_at: datetime | None


async def _top_up(conn: Any, purchase_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow(
        """SELECT t.id, t.tokens, COALESCE(t.bonus_tokens, 0) AS bonus_tokens, t.amount::int AS amount,
                  t.currency, p.phone, t.payment_status AS status, p.checkout_request_id,
                  CASE WHEN t.payment_status = 'failed' THEN p.result_desc END AS reason, t.created_at,
                  t.completed_at
           FROM token_purchases t JOIN payment_requests p ON p.token_purchase_id = t.id
           WHERE t.id = $1""",
        purchase_id,
    )
    return dict(row) if row else None


@router.post(
    "/topups",
    status_code=201,
    response_model=TopUp,
    summary="Buy tokens by M-Pesa: an STK push to the payer's phone",
    responses=REPLAYABLE,
)
async def request_top_up(
    new: NewTopUp,
    request: Request,
    caller: Caller = Depends(scope("wallet", "write")),
    idempotency_key: str | None = IdempotencyKey,
) -> JSONResponse:
    """The payer gets M-Pesa's PIN prompt; the wallet is credited (one `purchase` ledger row, bonus included)
    when M-Pesa confirms, seen with GET /v1/wallet/topups/{id}. A request M-Pesa refuses at once answers
    `failed` with the reason. With an Idempotency-Key a retry pushes nothing twice."""
    settings = request.app.state.settings
    started: list[topups.NewPurchase] = []  # the callback secret stays in memory: never in the stored answer

    async def create(conn: Any) -> dict[str, Any]:
        made = await topups.start_purchase(
            conn, caller.organization_id, new.tokens, new.phone, settings.token_price_kes
        )
        assert made is not None  # not an automatic refill: always a purchase
        started.append(made)
        return {"id": made.purchase_id}

    response = await create_once(
        caller, idempotency_key, "POST", request.url.path, new.model_dump(), create, status_code=201
    )
    purchase_id = UUID(json.loads(bytes(response.body))["id"])
    replayed = {"Idempotent-Replayed": "true"} if not started else {}
    if started:  # committed: the STK push now, as `chatnation wallet buy` does
        async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as http:
            try:
                await topups.push(
                    DarajaClient(http, settings), caller.pool, caller.organization_id, started[0]
                )
            except PaymentRefused:
                pass  # the purchase is failed with M-Pesa's reason, shown in the answer
    async with caller.tx() as conn:
        shown = await _top_up(conn, purchase_id)
    return JSONResponse(
        TopUp.model_validate(shown).model_dump(mode="json"), status_code=201, headers=replayed
    )


@router.get("/topups/{topup_id}", response_model=TopUp, summary="A top-up and whether M-Pesa confirmed it")
async def get_top_up(topup_id: UUID, caller: Caller = Depends(scope("wallet", "read"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        found = await _top_up(conn, topup_id)
    if found is None:
        raise not_found(f"top-up {topup_id}")
    return found
