"""Row-level security, exercised as the application's own non-superuser role, on every tenant table."""

from __future__ import annotations

import asyncpg
import pytest

from engine.db import tenant_tx
from tests.tenant_seed import TRANSIENT, seed_tenant, tenant_tables


@pytest.fixture(scope="module")
async def two_tenants(owner_pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    async with owner_pool.acquire() as conn:
        ids = []
        for name in ("A", "B"):
            org = await conn.fetchval(
                "INSERT INTO organizations (name, slug) VALUES ($1::text, $1::text || '-' || gen_random_uuid()) RETURNING id",
                name,
            )
            await seed_tenant(conn, org)
            ids.append(org)
        tables = await tenant_tables(conn)
    return ids[0], ids[1], tables


async def test_app_role_is_not_superuser_and_cannot_bypass_rls(app_pool: asyncpg.Pool) -> None:
    row = await app_pool.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    assert row["rolsuper"] is False and row["rolbypassrls"] is False


async def test_every_tenant_table_has_forced_rls(owner_pool: asyncpg.Pool, two_tenants) -> None:  # type: ignore[no-untyped-def]
    _, _, tables = two_tenants
    assert len(tables) >= 40
    rows = await owner_pool.fetch(
        "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY($1::text[])",
        [*tables, "organizations"],
    )
    assert {r["relname"] for r in rows if r["relrowsecurity"] and r["relforcerowsecurity"]} == {
        *tables,
        "organizations",
    }


async def test_a_tenant_sees_only_its_own_rows_in_every_table(app_pool: asyncpg.Pool, two_tenants) -> None:  # type: ignore[no-untyped-def]
    a, b, tables = two_tenants
    for table in tables:
        async with tenant_tx(app_pool, a) as conn:
            own = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE organization_id = $1", a)
            foreign = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE organization_id <> $1", a)
        assert own >= 1 or table in TRANSIENT, f"{table}: A does not see its own row"
        assert foreign == 0, f"{table}: A sees {foreign} row(s) of another organisation"
    async with tenant_tx(app_pool, a) as conn:
        assert await conn.fetchval("SELECT count(*) FROM organizations") == 1


async def test_a_tenant_cannot_write_rows_for_another_in_every_table(
    app_pool: asyncpg.Pool, two_tenants
) -> None:  # type: ignore[no-untyped-def]
    a, b, tables = two_tenants
    for table in tables:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_tx(app_pool, a) as conn:
                await conn.execute(f"INSERT INTO {table} (organization_id) VALUES ($1)", b)
        async with tenant_tx(app_pool, a) as conn:
            # B's rows are invisible, so updates and deletes aimed at them touch nothing...
            assert await conn.execute(f"DELETE FROM {table} WHERE organization_id = $1", b) == "DELETE 0"
        # ...and A cannot move its own rows over to B (a transient table keeps none to move).
        if table in TRANSIENT:
            continue
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
            async with tenant_tx(app_pool, a) as conn:
                await conn.execute(
                    f"UPDATE {table} SET organization_id = $2 WHERE organization_id = $1", a, b
                )


async def test_no_tenant_set_sees_nothing(app_pool: asyncpg.Pool, two_tenants) -> None:  # type: ignore[no-untyped-def]
    _, _, tables = two_tenants
    async with app_pool.acquire() as conn:
        for table in tables:
            assert await conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_routing_by_phone_number_needs_no_tenant(app_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org_id, new = await make_org("Route")
    assert await app_pool.fetchval("SELECT org_by_phone_number_id($1)", new.phone_number_id) == org_id
    assert await app_pool.fetchval("SELECT org_by_phone_number_id('nope')") is None


async def test_a_pooled_connection_carries_no_tenant_into_its_next_use(db_urls, two_tenants) -> None:  # type: ignore[no-untyped-def]
    """The application pool skips asyncpg's session reset: the tenant must end with each transaction."""
    from engine.db import create_pool

    a = two_tenants[0]
    pool = await create_pool(db_urls.app, max_size=1, session_state=False)
    try:
        async with tenant_tx(pool, a) as conn:
            assert await conn.fetchval("SELECT count(*) FROM contacts") > 0
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_org()") is None
            assert await conn.fetchval("SELECT count(*) FROM contacts") == 0
    finally:
        await pool.close()


async def test_a_status_webhook_moves_only_its_own_tenants_reply(
    owner_pool: asyncpg.Pool, app_pool: asyncpg.Pool, two_tenants
) -> None:  # type: ignore[no-untyped-def]
    """apply_status_webhook sets the tenant itself (one round trip): another tenant's id finds nothing, and the
    setting ends with the call's own transaction."""
    a, b, _ = two_tenants
    async with owner_pool.acquire() as conn:
        contact, conversation = await conn.fetchrow(
            "SELECT contact_id, id FROM conversations WHERE organization_id = $1 LIMIT 1", b
        )
        await conn.execute(
            """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, wa_message_id,
                                     wa_status) VALUES ($1, $2, $3, 'outbound', 'text', 'wamid.iso', 'sent')""",
            b,
            conversation,
            contact,
        )
    async with app_pool.acquire() as conn:
        assert await conn.fetchval("SELECT apply_status_webhook($1, 'wamid.iso', 'read')", a) is None
        assert await conn.fetchval("SELECT current_org()") is None
        assert await conn.fetchval("SELECT apply_status_webhook($1, 'wamid.iso', 'read')", b) is True
        assert await conn.fetchval("SELECT current_org()") is None
    assert (
        await owner_pool.fetchval("SELECT wa_status FROM messages WHERE wa_message_id = 'wamid.iso'")
        == "read"
    )
