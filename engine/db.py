"""Database access: the owner's and the application's connection pools, and tenant-scoped transactions.

Two roles, on purpose: the owner (DATABASE_URL) runs migrations and the few cross-tenant jobs (outbox relay,
timer scan); all tenant work runs as APP_DB_ROLE, a non-superuser that row-level security confines to the
organisation set for the transaction (``app.current_org``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit
from uuid import UUID

import asyncpg

from engine.settings import Settings

DEPLOYMENT_SETTING = "chatnation.deployment"  # sql/070


@dataclass(frozen=True)
class DatabaseUrls:
    owner: str
    app: str


def with_user(url: str, user: str, password: str) -> str:
    """The same server and database, as another user."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


async def database_urls(settings: Settings) -> DatabaseUrls:
    owner = settings.database_url
    if owner is None:
        from engine.embedded_pg import ensure_embedded

        owner = await asyncio.to_thread(ensure_embedded, settings.data_dir)
    return DatabaseUrls(owner=owner, app=with_user(owner, settings.app_db_role, settings.app_db_password))


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Nothing to reset: asyncpg has already rolled back any open transaction."""


async def create_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    session_state: bool = True,
    deployment: str | None = None,
) -> asyncpg.Pool:
    """``session_state=False`` for the application role's pools: their users keep no session state (the tenant
    is set per transaction; no LISTEN, no advisory locks), so asyncpg's reset query on every release, one
    round trip per transaction, is skipped.

    ``deployment`` (the BROKER_PREFIX) is the connections' ``chatnation.deployment``: the outbox rows, timers
    and e-mails they write belong to that deployment's relay (sql/070)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=30,
        reset=None if session_state else _no_session_state,
        server_settings={DEPLOYMENT_SETTING: deployment} if deployment else None,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def tenant_tx(pool: asyncpg.Pool, organization_id: UUID | str) -> AsyncIterator[asyncpg.Connection]:
    """One transaction confined by row-level security to ``organization_id``."""
    async with pool.acquire() as conn, tenant_transaction(conn, organization_id):
        yield conn


@asynccontextmanager
async def savepoint(conn: asyncpg.Connection, name: str) -> AsyncIterator[None]:
    """Inside a tenant transaction (begun by hand, so asyncpg's nested ``transaction()`` refuses): what the block
    wrote is undone when it raises, and the transaction goes on."""
    await conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except Exception:
        await conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        raise
    await conn.execute(f"RELEASE SAVEPOINT {name}")


class TenantSwitchRefused(RuntimeError):
    """A tenant transaction was asked for on a connection already inside a transaction: it would have moved that
    transaction (and what it already did) to another organisation, or committed it half-way."""


@asynccontextmanager
async def tenant_transaction(conn: asyncpg.Connection, organization_id: UUID | str) -> AsyncIterator[None]:
    """BEGIN and the tenant in one round trip (one simple query); COMMIT on success, ROLLBACK on any exception.

    Never inside an open transaction: that one keeps its tenant (the SQL functions that set the tenant refuse
    likewise, sql/017_trust_boundary.sql)."""
    org = UUID(str(organization_id))
    if conn.is_in_transaction():
        current = None
        with contextlib.suppress(asyncpg.PostgresError):  # an aborted transaction answers nothing
            current = await conn.fetchval("SELECT current_setting('app.current_org', true)")
        raise TenantSwitchRefused(
            f"a transaction is already open on this connection (organisation {current or 'none'});"
            f" it is not moved to organisation {org}"
        )
    # One simple-protocol query, which takes no parameters: the id is parsed again, so nothing but a UUID
    # reaches the SQL text.
    await conn.execute(f"BEGIN; SELECT set_config('app.current_org', '{org}', true)")
    try:
        yield
    except BaseException:
        with contextlib.suppress(
            Exception
        ):  # a broken connection: the pool discards it, the server rolls back
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")  # a commit-time trigger's error is raised here, and nothing was committed
