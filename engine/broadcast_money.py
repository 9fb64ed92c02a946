"""A broadcast's tokens: reserved when it starts, debited per send, the rest released when it ends.

The reservation moves tokens out of the spendable balance into ``wallets.reserved_balance`` (a ``reserve``
ledger row, balance before and after), so conversation replies can never spend what the broadcast needs and
no other code has to know about broadcasts. Each queued send is a ``debit`` row against the reservation
(amount -price, the balance unchanged, ``metadata.reserved_after``), written in the batch's transaction; at
completion or cancel one ``release`` row returns what was not used. Per broadcast, exactly:
reserved = spent + released.

Prices (tokens, per recipient; an organisation overrides them in ``settings.prices``): ``broadcast_text``
for a free-form message, ``template_marketing``, ``template_utility``, ``template_authentication``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from engine import wallet_pause

DEFAULT_PRICES = {
    "broadcast_text": 1,
    "template_marketing": 3,
    "template_utility": 2,
    "template_authentication": 2,
}
MODULE = "broadcasts"


def price(action: str, org_settings: dict[str, Any] | None) -> int:
    prices = (org_settings or {}).get("prices") or {}
    return int(prices.get(action, DEFAULT_PRICES[action]))


@dataclass(frozen=True)
class Prices:
    text: int
    template: int

    def per_recipient(self, has_text: bool, has_template: bool) -> int:
        """What to reserve for one recipient: the dearer of what they may get."""
        return max(self.text if has_text else 0, self.template if has_template else 0)


def prices_for(org_settings: dict[str, Any] | None, category: str | None) -> Prices:
    return Prices(
        text=price("broadcast_text", org_settings),
        template=price(f"template_{category or 'marketing'}", org_settings),
    )


class CannotCover(Exception):
    def __init__(self, needed: int, balance: int) -> None:
        super().__init__(f"the wallet cannot cover it: needs {needed} tokens, has {balance} available")
        self.needed, self.balance = needed, balance


async def reserve(conn: asyncpg.Connection, org_id: UUID, broadcast_id: UUID, amount: int) -> None:
    """Move ``amount`` from the balance into the reservation, or raise ``CannotCover``."""
    if amount == 0:
        return
    row = await conn.fetchrow(
        """WITH w AS (
               UPDATE wallets SET balance = balance - $2, reserved_balance = reserved_balance + $2
               WHERE organization_id = $1 AND balance >= $2 RETURNING id, balance)
           INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                           module, action, reference_id)
           SELECT id, $1, 'reserve', -$2::int, balance + $2, balance, $4, 'broadcast_reserve', $3 FROM w
           RETURNING balance_after""",
        org_id,
        amount,
        broadcast_id,
        MODULE,
    )
    if row is None:
        balance = await conn.fetchval("SELECT balance FROM wallets WHERE organization_id = $1", org_id)
        raise CannotCover(amount, int(balance or 0))


# The batch's last statement: the sends' debits against the reservation and the broadcast's counters, so the
# two rows every batch shares (the wallet and the broadcast) are locked only from here to the commit.
DEBIT_AND_COUNT = """
WITH w AS (
    UPDATE wallets SET reserved_balance = reserved_balance - $3, lifetime_consumed = lifetime_consumed + $3
    WHERE organization_id = $1 AND $3 > 0 RETURNING id, balance, reserved_balance),
ledger AS (
    INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                    module, action, reference_id, metadata)
    SELECT w.id, $1, 'debit', -t.amount, w.balance, w.balance, 'broadcasts', 'broadcast_' || t.kind, t.message_id,
           jsonb_build_object('broadcast_id', $2::uuid, 'from', 'reserved', 'reserved_after', w.reserved_balance)
    FROM w, unnest($4::uuid[], $5::int[], $6::text[]) AS t(message_id, amount, kind)
    WHERE t.amount > 0)
UPDATE broadcasts SET tokens_spent = tokens_spent + $3, queued_count = queued_count + $7,
                      skipped_count = skipped_count + $8
WHERE id = $2"""


async def debit_and_count(
    conn: asyncpg.Connection,
    org_id: UUID,
    broadcast_id: UUID,
    sends: list[tuple[UUID, int, str]],
    skipped: int,
) -> None:
    """``sends``: (message id, tokens, kind) of the recipients this batch queued."""
    await conn.execute(
        DEBIT_AND_COUNT,
        org_id,
        broadcast_id,
        sum(s[1] for s in sends),
        [s[0] for s in sends],
        [s[1] for s in sends],
        [s[2] for s in sends],
        len(sends),
        skipped,
    )


async def release(conn: asyncpg.Connection, org_id: UUID, broadcast_id: UUID) -> int:
    """What the broadcast reserved and did not spend goes back to the balance (once: tokens_released)."""
    unused = await conn.fetchval(
        """WITH old AS (SELECT tokens_reserved - tokens_spent - tokens_released AS unused
                        FROM broadcasts WHERE id = $1 FOR UPDATE)
           UPDATE broadcasts SET tokens_released = tokens_reserved - tokens_spent FROM old
           WHERE id = $1 AND old.unused > 0 RETURNING old.unused""",
        broadcast_id,
    )
    if not unused:
        return 0
    await conn.execute(
        """WITH w AS (
               UPDATE wallets SET balance = balance + $2, reserved_balance = reserved_balance - $2,
                                  low_balance_signalled_at = NULL
               WHERE organization_id = $1 RETURNING id, balance)
           INSERT INTO token_transactions (wallet_id, organization_id, type, amount, balance_before, balance_after,
                                           module, action, reference_id)
           SELECT id, $1, 'release', $2::int, balance - $2, balance, 'broadcasts', 'broadcast_release', $3 FROM w""",
        org_id,
        unused,
        broadcast_id,
    )
    # a paused organisation's held replies go out with what came back (engine/wallet_pause.py)
    await wallet_pause.resume(conn, org_id, datetime.now(UTC))
    return int(unused)
