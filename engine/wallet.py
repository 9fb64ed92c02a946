"""The organisation's token wallet. Every change writes a ledger row (balance before/after) in the caller's
transaction; the balance never goes negative (a CHECK constraint backs the conditional update), and a
concurrent debit waits on the wallet row instead of losing an update."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

# Documented defaults (docs/operations.md); an organisation overrides them in settings.prices.
DEFAULT_PRICES: dict[str, int] = {
    "outbound_reply": 1,
    "survey_completed": 5,
    "ticket_issued": 10,
    "ai_answer": 2,  # per answer, plus ai_tokens_per_token below for model usage
    "poll_vote": 0,
}
AI_TOKENS_PER_TOKEN = 1000  # one wallet token per 1,000 model tokens (rounded up)


def price_of(action: str, org_settings: dict[str, Any] | None) -> int:
    prices = (org_settings or {}).get("prices") or {}
    return int(prices.get(action, DEFAULT_PRICES.get(action, 0)))


@dataclass(frozen=True)
class Debit:
    ok: bool
    balance: int
    crossed_low_threshold: bool = False


async def debit(
    conn: asyncpg.Connection,
    organization_id: UUID | str,
    amount: int,
    *,
    module: str,
    action: str,
    reference_id: UUID | str | None = None,
    metadata: dict[str, Any] | None = None,
) -> Debit:
    """Debit ``amount`` or nothing at all (ok False when the balance cannot pay)."""
    if amount < 0:
        raise ValueError("a debit amount is never negative")
    row = await conn.fetchrow(
        """UPDATE wallets SET balance = balance - $2, lifetime_consumed = lifetime_consumed + $2
           WHERE organization_id = $1 AND balance >= $2
           RETURNING id, balance, low_balance_threshold""",
        organization_id, amount,
    )
    if row is None:
        balance = await conn.fetchval("SELECT balance FROM wallets WHERE organization_id = $1", organization_id)
        return Debit(ok=False, balance=balance or 0)
    if amount:
        await _ledger(conn, row["id"], organization_id, "debit", -amount, row["balance"] + amount, row["balance"],
                      module, action, reference_id, metadata)
    threshold = row["low_balance_threshold"] or 0
    return Debit(ok=True, balance=row["balance"],
                 crossed_low_threshold=row["balance"] < threshold <= row["balance"] + amount)


@dataclass(frozen=True)
class DebitEach:
    count: int  # how many of the items the wallet paid for (the first ones)
    balance: int
    crossed_low_threshold: bool = False


async def debit_each(
    conn: asyncpg.Connection,
    organization_id: UUID | str,
    price: int,
    references: list[UUID],
    *,
    module: str,
    action: str,
) -> DebitEach:
    """Pay ``price`` for each item, as many as the balance allows, in one statement; one ledger row each."""
    if price <= 0:
        return DebitEach(count=len(references), balance=-1)
    row = await conn.fetchrow(
        """WITH w AS (SELECT id, balance, LEAST($3::int, balance / $2) AS n, low_balance_threshold
                      FROM wallets WHERE organization_id = $1 FOR UPDATE)
           UPDATE wallets SET balance = wallets.balance - $2 * w.n, lifetime_consumed = lifetime_consumed + $2 * w.n
           FROM w WHERE wallets.id = w.id
           RETURNING wallets.id, w.balance AS before, w.n, wallets.balance AS after, w.low_balance_threshold""",
        organization_id, price, len(references),
    )
    if row is None:
        return DebitEach(count=0, balance=0)
    before, n = row["before"], row["n"]
    await conn.executemany(
        """INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                           module, action, reference_id)
           VALUES ($1, $2, 'debit', $3, $4, $5, $6, $7, $8)""",
        [(row["id"], organization_id, -price, before - i * price, before - (i + 1) * price, module, action, ref)
         for i, ref in enumerate(references[:n])],
    )
    threshold = row["low_balance_threshold"] or 0
    return DebitEach(count=n, balance=row["after"], crossed_low_threshold=row["after"] < threshold <= before)


async def credit(
    conn: asyncpg.Connection,
    organization_id: UUID | str,
    amount: int,
    *,
    type_: str = "purchase",
    action: str = "topup",
    module: str = "billing",
    reference_id: UUID | str | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    if amount <= 0:
        raise ValueError("a credit amount is positive")
    row = await conn.fetchrow(
        """UPDATE wallets SET balance = balance + $2,
                  lifetime_purchased = lifetime_purchased + CASE WHEN $3 = 'purchase' THEN $2 ELSE 0 END,
                  low_balance_signalled_at = NULL
           WHERE organization_id = $1 RETURNING id, balance""",
        organization_id, amount, type_,
    )
    if row is None:
        raise LookupError(f"organisation {organization_id} has no wallet")
    await _ledger(conn, row["id"], organization_id, type_, amount, row["balance"] - amount, row["balance"],
                  module, action, reference_id, metadata)
    return int(row["balance"])


async def _ledger(conn: asyncpg.Connection, wallet_id: UUID, organization_id: UUID | str, type_: str, amount: int,
                  before: int, after: int, module: str, action: str, reference_id: UUID | str | None,
                  metadata: dict[str, Any] | None) -> None:
    await conn.execute(
        """INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                           module, action, reference_id, metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        wallet_id, organization_id, type_, amount, before, after, module, action, reference_id, metadata,
    )


async def signal_low_balance_once(conn: asyncpg.Connection, organization_id: UUID | str) -> bool:
    """True only for the first caller since the last top-up: the low balance is logged once, not per message."""
    return bool(await conn.fetchval(
        """UPDATE wallets SET low_balance_signalled_at = now()
           WHERE organization_id = $1 AND low_balance_signalled_at IS NULL RETURNING true""",
        organization_id,
    ))
