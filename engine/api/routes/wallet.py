"""The organisation's token wallet: balance (and a pause, when replies wait for a top-up), the ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from engine.api import paging
from engine.api.auth import Caller, scope
from engine.api.problems import not_found
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
