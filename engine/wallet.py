"""The organisation's token wallet. Every change writes a ledger row (balance before/after) in the caller's
transaction; the balance never goes negative (a CHECK constraint backs the conditional update), and a
concurrent debit waits on the wallet row instead of losing an update."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from engine import wallet_pause

# Documented defaults (docs/operations.md); an organisation overrides them in settings.prices.
DEFAULT_PRICES: dict[str, int] = {
    "outbound_reply": 1,
    "survey_completed": 5,
    "ticket_issued": 10,
    "ai_answer": 2,  # per answer, plus ai_tokens_per_token below for model usage
    "poll_vote": 0,
    "ai_transcription": 1,  # a voice note turned into words
    "hypecard_generated": 5,  # per card delivered (the image message and the share line are replies as well)
}
AI_TOKENS_PER_TOKEN = 1000  # one wallet token per 1,000 model tokens (rounded up)


def price_of(action: str, org_settings: dict[str, Any] | None) -> int:
    prices = (org_settings or {}).get("prices") or {}
    return int(prices.get(action, DEFAULT_PRICES.get(action, 0)))


@dataclass(frozen=True)
class Debit:
    ok: bool
    balance: int | None  # None: paid at commit (not known before it)
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
    keep: int = 0,
    at_commit: bool = False,
) -> Debit:
    """Debit ``amount`` or nothing at all (ok False when the balance cannot pay). ``keep``: what must stay in
    the wallet for payments this transaction makes at commit (its replies).

    ``at_commit`` (the caller knows the balance leaves ample room: ``pays_at_commit``): the commit makes the
    debit (sql/078), so the wallet is not locked until then, and one wallet update pays all of the
    transaction's charges, a ledger row each. If the wallet cannot pay at commit after all, the commit fails with
    positive_balance and nothing of the transaction happened (the inbound path runs it again, debiting at once)."""
    if amount < 0:
        raise ValueError("a debit amount is never negative")
    if at_commit:
        if amount == 0:
            raise ValueError("a debit paid at commit is positive")
        await conn.execute(
            """INSERT INTO wallet_charges (organization_id, amount, module, action, reference_id, metadata)
               VALUES ($1, $2, $3, $4, $5, $6)""",
            organization_id,
            amount,
            module,
            action,
            reference_id,
            metadata,
        )
        return Debit(ok=True, balance=None)
    row = await conn.fetchrow(
        """UPDATE wallets SET balance = balance - $2, lifetime_consumed = lifetime_consumed + $2
           WHERE organization_id = $1 AND balance >= $2::int + $3::int
           RETURNING id, balance, low_balance_threshold""",
        organization_id,
        amount,
        keep,
    )
    if row is None:
        balance = await conn.fetchval(
            "SELECT balance FROM wallets WHERE organization_id = $1", organization_id
        )
        return Debit(ok=False, balance=balance or 0)
    if amount:
        await _ledger(
            conn,
            row["id"],
            organization_id,
            "debit",
            -amount,
            row["balance"] + amount,
            row["balance"],
            module,
            action,
            reference_id,
            metadata,
        )
    threshold = row["low_balance_threshold"] or 0
    return Debit(
        ok=True,
        balance=row["balance"],
        crossed_low_threshold=row["balance"] < threshold <= row["balance"] + amount,
    )


# A reply is paid at commit, without the wallet's lock in between (sql/013), when the balance read at the start
# of the transaction exceeds the low-balance threshold by this much more than the replies cost: concurrent
# spending cannot outrun it in practice, and the rare commit that finds it did is run again exactly.
PAY_AT_COMMIT_HEADROOM = 1000


def pays_at_commit(headroom: int | None, amount: int) -> bool:
    """Whether a spend of ``amount`` (everything the transaction spends, this included) may be paid at commit:
    the balance read at its start, unlocked, leaves PAY_AT_COMMIT_HEADROOM beyond it and the low-balance
    threshold (so no threshold is crossed by it, and concurrent spending cannot outrun it in practice)."""
    return headroom is not None and headroom >= amount + PAY_AT_COMMIT_HEADROOM


@dataclass(frozen=True)
class Affordable:
    count: int  # how many of the items the wallet can pay for (the first ones)
    crossed_low_threshold: bool = False


async def affordable(
    conn: asyncpg.Connection, organization_id: UUID | str, price: int, wanted: int, headroom: int | None
) -> Affordable:
    """How many of ``wanted`` items at ``price`` the wallet pays for. ``headroom`` (balance minus threshold,
    read without a lock) answers "all" when it is ample; otherwise the wallet's row is locked to the commit
    and the exact count is returned. The debit itself is the commit-time trigger's."""
    if price <= 0 or wanted == 0:
        return Affordable(count=wanted)
    if pays_at_commit(headroom, price * wanted):
        return Affordable(count=wanted)
    row = await conn.fetchrow(
        "SELECT balance, low_balance_threshold FROM wallets WHERE organization_id = $1 FOR UPDATE",
        organization_id,
    )
    if row is None:
        return Affordable(count=0)
    balance, threshold = row["balance"], row["low_balance_threshold"] or 0
    count = min(wanted, balance // price)
    return Affordable(count=count, crossed_low_threshold=balance - count * price < threshold <= balance)


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
        organization_id,
        amount,
        type_,
    )
    if row is None:
        raise LookupError(f"organisation {organization_id} has no wallet")
    await _ledger(
        conn,
        row["id"],
        organization_id,
        type_,
        amount,
        row["balance"] - amount,
        row["balance"],
        module,
        action,
        reference_id,
        metadata,
    )
    # a paused organisation resumes: replies held for the top-up go out (engine/wallet_pause.py)
    await wallet_pause.resume(conn, UUID(str(organization_id)), datetime.now(UTC))
    return int(row["balance"])


async def _ledger(
    conn: asyncpg.Connection,
    wallet_id: UUID,
    organization_id: UUID | str,
    type_: str,
    amount: int,
    before: int,
    after: int,
    module: str,
    action: str,
    reference_id: UUID | str | None,
    metadata: dict[str, Any] | None,
) -> None:
    await conn.execute(
        """INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                           module, action, reference_id, metadata)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        wallet_id,
        organization_id,
        type_,
        amount,
        before,
        after,
        module,
        action,
        reference_id,
        metadata,
    )


async def signal_low_balance_once(conn: asyncpg.Connection, organization_id: UUID | str) -> bool:
    """True only for the first caller since the last top-up: the low balance is logged once, not per message."""
    return bool(
        await conn.fetchval(
            """UPDATE wallets SET low_balance_signalled_at = now()
           WHERE organization_id = $1 AND low_balance_signalled_at IS NULL RETURNING true""",
            organization_id,
        )
    )
