"""Registering organisations: the WhatsApp number that routes to them, their token and a funded wallet."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from engine.db import tenant_tx


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
            """INSERT INTO organizations (id, name, slug, type, phone, whatsapp_phone_id, whatsapp_access_token, settings)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            org_id, new.name, new.slug or slugify(new.name), new.type, new.display_phone,
            new.phone_number_id, new.access_token, settings,
        )
        await conn.execute("INSERT INTO wallets (organization_id) VALUES ($1)", org_id)
        if new.tokens > 0:
            await credit(conn, org_id, new.tokens, type_="purchase", action="opening_balance")
    return org_id
