"""Registering organisations: the WhatsApp number that routes to them, their token and a funded wallet."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from engine.db import tenant_tx
from engine.expiring import Expiring
from engine.turn import Org

ORG_TTL_SECONDS = (
    5.0  # a change to an organisation (prices, language, a new token) reaches the hot path this late
)


@dataclass(frozen=True)
class NewOrganization:
    name: str
    phone_number_id: str
    access_token: str
    slug: str | None = None
    display_phone: str | None = None
    tokens: int = 0
    language: str = "en"
    type: str | None = None
    settings: dict[str, Any] | None = None
    business_account_id: str | None = None  # the WhatsApp Business Account (its message templates)


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "org"


async def create_organization(pool: asyncpg.Pool, new: NewOrganization) -> UUID:
    """Creates the organisation and its wallet (with an opening purchase in the ledger when tokens > 0).
    Runs as the application role: the organisation's row is written under its own tenant id."""
    from engine.wallet import credit

    org_id: UUID = await pool.fetchval("SELECT gen_random_uuid()")
    settings = {"language": new.language, **(new.settings or {})}
    async with tenant_tx(pool, org_id) as conn:
        await conn.execute(
            """INSERT INTO organizations (id, name, slug, type, phone, whatsapp_phone_id, whatsapp_access_token, settings,
                                         whatsapp_business_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
            org_id,
            new.name,
            new.slug or slugify(new.name),
            new.type,
            new.display_phone,
            new.phone_number_id,
            new.access_token,
            settings,
            new.business_account_id,
        )
        await conn.execute("INSERT INTO wallets (organization_id) VALUES ($1)", org_id)
        if new.tokens > 0:
            await credit(conn, org_id, new.tokens, type_="purchase", action="opening_balance")
    return org_id


async def update_organization(
    pool: asyncpg.Pool,
    org_id: UUID,
    *,
    business_account_id: str | None = None,
    access_token: str | None = None,
    settings: dict[str, Any] | None = None,
) -> bool:
    """Change what is given (None: unchanged); ``settings`` keys are merged into the organisation's settings
    (a None value removes the key). False when there is no such organisation."""
    drop = [k for k, v in (settings or {}).items() if v is None]
    merge = {k: v for k, v in (settings or {}).items() if v is not None}
    async with tenant_tx(pool, org_id) as conn:
        result = await conn.execute(
            """UPDATE organizations SET whatsapp_business_id = COALESCE($2, whatsapp_business_id),
                      whatsapp_access_token = COALESCE($3, whatsapp_access_token),
                      settings = (COALESCE(settings, '{}'::jsonb) - $5::text[]) || $4::jsonb
               WHERE id = $1""",
            org_id,
            business_account_id,
            access_token,
            merge,
            drop,
        )
    return result != "UPDATE 0"


class OrgDirectory:
    """Organisations as the hot path sees them: every event and every send needs one, so they are cached
    briefly. Ask before taking a connection of your own: a miss takes one from the pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._routes: Expiring[str, UUID | None] = Expiring(30.0)
        self._orgs: Expiring[UUID, Org] = Expiring(ORG_TTL_SECONDS)

    def forget(self) -> None:
        """Drop everything cached: what changed is seen at once instead of within the expiry times."""
        self._routes.clear()
        self._orgs.clear()

    async def for_phone_number(self, phone_number_id: str) -> UUID | None:
        """Routing. A known number is kept 30 s; an unknown one 2 s, so a number registered to fix parked
        messages is seen by their replay at once."""

        async def load() -> UUID | None:
            return await self.pool.fetchval("SELECT org_by_phone_number_id($1)", phone_number_id)

        return await self._routes.get(phone_number_id, load, lambda org_id: 30 if org_id is not None else 2)

    async def get(self, org_id: UUID) -> Org:
        async def load() -> Org:
            async with tenant_tx(self.pool, org_id) as conn:
                row = await conn.fetchrow(
                    """SELECT id, name, whatsapp_phone_id, whatsapp_access_token, settings FROM organizations
                       WHERE id = $1""",
                    org_id,
                )
            return Org(
                row["id"],
                row["name"],
                row["whatsapp_phone_id"],
                row["settings"] or {},
                access_token=row["whatsapp_access_token"] or "",
            )

        return await self._orgs.get(org_id, load)
