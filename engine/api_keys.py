"""API keys for the REST API (engine/api/): made, listed and revoked here, for the CLI and the API alike.

A key is ``cn_live_`` and 43 random URL-safe characters. Only its SHA-256 is stored; its first 12 characters
are kept as a prefix that lists show. A key carries scopes, one per resource and level:
``contacts:read``, ``contacts:write``…; ``write`` implies ``read`` of the same resource.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

KEY_PREFIX = "cn_live_"
SHOWN_PREFIX = 12  # api_keys.key_prefix holds this many characters of the key

RESOURCES = (
    "contacts",
    "content",
    "results",
    "wallet",
    "conversations",
    "webhooks",
    "handover",
    "knowledge",
    "broadcasts",
    "templates",
)
LEVELS = ("read", "write")
DEFAULT_SCOPES = ("read",)


class ScopeError(ValueError):
    """A scope that names no resource or level."""


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(given: Iterable[str]) -> list[str]:
    """``contacts:read``, ``contacts:write``, ``contacts`` (both), ``read`` or ``write`` (every resource),
    ``*`` (everything) into the sorted list of ``resource:level`` a key stores."""
    out: set[str] = set()
    for raw in given:
        scope = raw.strip().lower()
        resource, _, level = scope.partition(":")
        if scope in ("*", "write"):
            out.update(f"{r}:{lv}" for r in RESOURCES for lv in LEVELS)
        elif scope == "read":
            out.update(f"{r}:read" for r in RESOURCES)
        elif resource in RESOURCES and level in ("", "write"):
            out.update((f"{resource}:read", f"{resource}:write"))
        elif resource in RESOURCES and level == "read":
            out.add(f"{resource}:read")
        else:
            raise ScopeError(
                f"unknown scope {raw!r}: use RESOURCE[:read|write], read, write or * "
                f"(resources: {', '.join(RESOURCES)})"
            )
    return sorted(out)


@dataclass(frozen=True)
class NewKey:
    id: UUID
    key: str  # shown once, never stored
    prefix: str
    scopes: list[str]
    expires_at: datetime | None


async def create_key(
    conn: asyncpg.Connection,
    organization_id: UUID,
    *,
    name: str,
    scopes: list[str],
    expires_at: datetime | None = None,
) -> NewKey:
    """A new key for the organisation of ``conn``'s tenant transaction."""
    key = new_key()
    key_id = await conn.fetchval(
        """INSERT INTO api_keys (organization_id, name, key_prefix, key_hash, scopes, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        organization_id,
        name,
        key[:SHOWN_PREFIX],
        key_hash(key),
        scopes,
        expires_at,
    )
    return NewKey(key_id, key, key[:SHOWN_PREFIX], scopes, expires_at)


async def list_keys(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, name, key_prefix AS prefix, scopes, created_at, expires_at, last_used_at, revoked_at
           FROM api_keys ORDER BY created_at, id"""
    )
    return [dict(r) for r in rows]


async def revoke_key(conn: asyncpg.Connection, key: str) -> dict[str, Any] | None:
    """Revoke a key by its id or its shown prefix; the key's row, or None when there is no such key."""
    try:
        key_id: UUID | None = UUID(key)
    except ValueError:
        key_id = None
    row = await conn.fetchrow(
        """UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now())
           WHERE id = (SELECT id FROM api_keys WHERE id = $1 OR ($1 IS NULL AND key_prefix = $2)
                       ORDER BY created_at DESC LIMIT 1)
           RETURNING id, name, key_prefix AS prefix, revoked_at""",
        key_id,
        key,
    )
    return dict(row) if row else None


@dataclass(frozen=True)
class KeyRecord:
    id: UUID
    organization_id: UUID
    scopes: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None


async def look_up(pool: asyncpg.Pool, key: str) -> KeyRecord | None:
    """The key's record, or None for a key that does not exist (its use is recorded by the request's
    transaction, engine/api/auth.py)."""
    row = await pool.fetchrow("SELECT * FROM api_key_use($1)", key_hash(key))
    if row is None:
        return None
    return KeyRecord(
        row["id"],
        row["organization_id"],
        frozenset(row["scopes"] or []),
        row["expires_at"],
        row["revoked_at"],
    )
