"""The database trust boundary (issue 13; docs/schema.md, "Tenant isolation"), tried as an attacker holding the
application role would: no SECURITY DEFINER function runs code the caller controls, TEMP and CREATE are refused,
no function moves an open transaction to another tenant, no table without row-level security is writable, no
sequence shows its volume, heartbeats cannot be dated in the future, and the role's privileges are exactly the
allow-list below. Every SECURITY DEFINER function found in the catalogue is checked, not only today's."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from engine.db import DatabaseUrls, TenantSwitchRefused, tenant_transaction, tenant_tx
from engine.settings import Settings
from tests.tenant_seed import seed_tenant

PINNED = "search_path=pg_catalog, public, pg_temp"
DEFINER_OWNER = "chatnation_definer"

# The allow-list. Tables that row-level security confines (relrowsecurity): exactly these rights, never
# TRUNCATE (which RLS does not see), REFERENCES, TRIGGER or MAINTAIN. Every other relation: what is named here,
# else nothing. Sequences: USAGE (nextval for ids), never SELECT (last_value) nor UPDATE (setval).
TENANT_TABLE_RIGHTS = {"SELECT", "INSERT", "UPDATE", "DELETE"}
OTHER_RELATION_RIGHTS: dict[str, set[str]] = {}  # schema_migrations, worker_heartbeats, ...: none

SEQUENCE_RIGHTS = {"USAGE"}
# The SECURITY DEFINER functions the application role may run (and nobody else: PUBLIC may not).
APP_DEFINER_FUNCTIONS = {
    "api_key_use(text)",  # the REST API's key by its hash (sql/035, issue 17)
    "api_auth_blocked_for(text,integer,double precision)",  # refused keys per address, all API processes (039)
    "api_auth_failed(text,double precision)",
    "org_by_phone_number_id(text)",
    "orgs_by_business_account_id(text)",
    "payment_route(text)",
}
# What the definer functions' owner may read: these columns, nothing else, nowhere else.
DEFINER_OWNER_COLUMNS = {
    "organizations": {"id", "whatsapp_phone_id", "whatsapp_business_id", "status"},
    "payment_requests": {"id", "organization_id", "contact_id", "checkout_request_id"},
    "api_keys": {"id", "organization_id", "key_hash", "scopes", "expires_at", "revoked_at"},
}
# The tables the definer owner may write, with exactly these rights: no tenant's data in them (no
# organization_id, no row-level security) and no right of the application role's (sql/039).
DEFINER_OWNER_TABLES = {"api_auth_failures": {"SELECT", "INSERT", "DELETE"}}
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


async def _table_privileges(conn: asyncpg.Connection | asyncpg.Pool) -> list[str]:
    """Every table privilege the server knows (MAINTAIN since PostgreSQL 17)."""
    if int(await conn.fetchval("SHOW server_version_num")) >= 170000:
        return [*TABLE_PRIVILEGES, "MAINTAIN"]
    return list(TABLE_PRIVILEGES)


DUMMY_ARGS = {
    "uuid": "'00000000-0000-0000-0000-000000000000'::uuid",
    "text": "'x'",
    "character varying": "'x'",
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "numeric": "0",
    "boolean": "false",
    "timestamp with time zone": "now()",
    "jsonb": "'{}'::jsonb",
    "text[]": "'{}'::text[]",
}


async def _definer_functions(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every SECURITY DEFINER function outside PostgreSQL's own schemas."""
    return await conn.fetch(
        """SELECT p.oid, p.oid::regprocedure::text AS signature,
                  quote_ident(n.nspname) || '.' || quote_ident(p.proname) AS name,
                  pg_get_userbyid(p.proowner) AS owner, p.proconfig,
                  ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) AS arg_types,
                  COALESCE(p.proargnames, '{}') AS arg_names
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             AND n.nspname NOT LIKE 'pg_temp%'
           ORDER BY 2"""
    )


def _call(fn: asyncpg.Record, **by_name: str) -> str:
    names = list(fn["arg_names"]) + [""] * len(fn["arg_types"])
    args = [by_name.get(names[i], DUMMY_ARGS.get(t, f"NULL::{t}")) for i, t in enumerate(fn["arg_types"])]
    return f"SELECT * FROM {fn['name']}({', '.join(args)})"


@pytest.fixture(scope="module")
async def app_conn(db_urls: DatabaseUrls) -> AsyncIterator[asyncpg.Connection]:
    """One connection as the application role, of its own (temporary objects, if it could make any, live here)."""
    conn = await asyncpg.connect(db_urls.app)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
async def two_tenants(owner_pool: asyncpg.Pool) -> tuple[uuid.UUID, uuid.UUID]:
    async with owner_pool.acquire() as conn:
        ids = []
        for name in ("TrustA", "TrustB"):
            org = await conn.fetchval(
                "INSERT INTO organizations (name, slug) VALUES ($1::text, $1::text || '-' || gen_random_uuid())"
                " RETURNING id",
                name,
            )
            await seed_tenant(conn, org)
            ids.append(org)
    return ids[0], ids[1]


def test_the_runner_grants_what_the_allow_list_says() -> None:
    from engine.migrate import APP_RIGHTS_WITHOUT_RLS

    assert {t: set(r) for t, r in APP_RIGHTS_WITHOUT_RLS.items()} == OTHER_RELATION_RIGHTS


# --- SECURITY DEFINER functions ----------------------------------------------------------------------------


async def test_every_definer_function_is_pinned_owned_by_a_powerless_role_and_run_by_the_app_alone(
    owner_pool: asyncpg.Pool, settings: Settings
) -> None:
    async with owner_pool.acquire() as conn:
        functions = await _definer_functions(conn)
        assert {f["signature"] for f in functions} >= APP_DEFINER_FUNCTIONS
        for fn in functions:
            sig = fn["signature"]
            assert PINNED in (fn["proconfig"] or []), f"{sig}: search_path not pinned ({fn['proconfig']})"
            owner = await conn.fetchrow(
                """SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb,
                          (SELECT count(*) FROM pg_auth_members WHERE member = r.oid) AS memberships
                   FROM pg_roles r WHERE rolname = $1""",
                fn["owner"],
            )
            assert fn["owner"] == DEFINER_OWNER, f"{sig} is owned by {fn['owner']}"
            assert not any(owner[k] for k in ("rolsuper", "rolbypassrls", "rolcanlogin", "rolcreaterole")), (
                sig
            )
            assert not owner["rolcreatedb"] and owner["memberships"] == 0, sig
            assert not await conn.fetchval(
                "SELECT pg_has_role($1, $2, 'MEMBER')", settings.app_db_role, fn["owner"]
            ), f"{settings.app_db_role} can act as {fn['owner']}"
            grantees = await conn.fetch(
                """SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS who
                   FROM pg_proc p, aclexplode(COALESCE(p.proacl, acldefault('f', p.proowner))) a
                   WHERE p.oid = $1 AND a.privilege_type = 'EXECUTE'""",
                fn["oid"],
            )
            assert {g["who"] for g in grantees} == {fn["owner"], settings.app_db_role}, sig


async def test_the_definer_owner_holds_only_the_columns_it_reads(owner_pool: asyncpg.Pool) -> None:
    rows = await owner_pool.fetch(
        """SELECT c.relname, c.relkind = 'S' AS sequence,
                  ARRAY(SELECT p FROM unnest($2::text[]) p
                        WHERE CASE WHEN c.relkind = 'S'
                                   THEN CASE WHEN p IN ('SELECT', 'UPDATE') THEN has_sequence_privilege($1, c.oid, p)
                                             ELSE false END
                                   ELSE has_table_privilege($1, c.oid, p) END) AS rights,
                  ARRAY(SELECT a.attname::text FROM pg_attribute a
                        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                          AND has_column_privilege($1, c.oid, a.attnum, 'SELECT,INSERT,UPDATE,REFERENCES')) AS columns
           FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')""",
        DEFINER_OWNER,
        await _table_privileges(owner_pool),
    )
    held = {
        r["relname"]: set(r["columns"])
        for r in rows
        if r["columns"] and r["relname"] not in DEFINER_OWNER_TABLES
    }
    assert held == DEFINER_OWNER_COLUMNS
    rights = {r["relname"]: set(r["rights"]) for r in rows if r["rights"]}
    assert rights == DEFINER_OWNER_TABLES, "the definer owner holds table rights outside DEFINER_OWNER_TABLES"
    for table in DEFINER_OWNER_TABLES:
        assert not await owner_pool.fetchval(
            """SELECT relrowsecurity OR EXISTS (SELECT FROM pg_attribute WHERE attrelid = c.oid
                                                AND attname = 'organization_id')
               FROM pg_class c WHERE oid = $1::regclass""",
            table,
        ), f"{table} holds tenant data: the definer owner may not write it"
    for table, columns in DEFINER_OWNER_COLUMNS.items():
        for column in columns:  # read only
            assert not await owner_pool.fetchval(
                "SELECT has_column_privilege($1, $2, $3, 'INSERT,UPDATE')", DEFINER_OWNER, table, column
            )


@pytest.fixture
async def shadowing_session(db_urls: DatabaseUrls, settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    """The temporary-object attack, in one session: a temporary view named like every relation of the schema,
    each calling a temporary function that raises 'shadowed: ran as <role>' when anything reads it, then the
    session becomes the application role. The application role may no longer create temporary objects (next
    test), so the owner makes them here, in the same session: this proves that the functions would not read them
    even if it could."""
    conn = await asyncpg.connect(db_urls.owner)
    try:
        relations = await conn.fetch(
            """SELECT quote_ident(relname) AS name FROM pg_class
               WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'f')"""
        )
        assert len(relations) > 40
        for i, rel in enumerate(relations):
            await conn.execute(
                f"""CREATE FUNCTION pg_temp.shadow{i}() RETURNS SETOF public.{rel["name"]}
                    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'shadowed: ran as %', current_user; END $$"""
            )
            await conn.execute(f"CREATE TEMP VIEW {rel['name']} AS SELECT * FROM pg_temp.shadow{i}()")
            await conn.execute(f"GRANT SELECT ON pg_temp.{rel['name']} TO PUBLIC")
        # A definer function as today's were (search_path = public, unqualified names): the attack works on it.
        await conn.execute(
            """CREATE FUNCTION pg_temp.vulnerable(p text) RETURNS uuid LANGUAGE sql STABLE SECURITY DEFINER
               SET search_path = public AS $$ SELECT id FROM organizations WHERE whatsapp_phone_id = p $$"""
        )
        await conn.execute(f"GRANT EXECUTE ON FUNCTION pg_temp.vulnerable(text) TO {settings.app_db_role}")
        await conn.execute(f"SET ROLE {settings.app_db_role}")
        yield conn
    finally:
        await conn.close()


async def test_no_definer_function_runs_code_the_caller_controls(
    shadowing_session: asyncpg.Connection, owner_pool: asyncpg.Pool
) -> None:
    conn = shadowing_session
    # the harness catches the attack where it works
    with pytest.raises(asyncpg.RaiseError, match="shadowed: ran as"):
        await conn.fetchval("SELECT pg_temp.vulnerable('x')")
    async with owner_pool.acquire() as owner:
        functions = await _definer_functions(owner)
    assert functions
    for fn in functions:
        sql = _call(fn)
        try:
            async with conn.transaction():
                await conn.fetch(sql)
        except asyncpg.PostgresError as err:
            assert "shadowed" not in str(err), f"{fn['signature']} ran the caller's code: {err}"


async def test_the_app_role_can_create_nothing_temporary_nor_in_any_schema(
    app_conn: asyncpg.Connection,
) -> None:
    for sql in (
        "CREATE TEMP TABLE t (x int)",
        "CREATE TEMP VIEW payment_requests AS SELECT 1 AS organization_id",
        "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE TABLE public.t (x int)",
        "CREATE VIEW public.v AS SELECT 1 AS x",
        "CREATE FUNCTION public.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE SCHEMA attacker",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(sql)
    assert not await app_conn.fetchval(
        "SELECT has_database_privilege(current_database(), 'TEMPORARY')"
        " OR has_database_privilege(current_database(), 'CREATE')"
    )
    assert not await app_conn.fetch(
        "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(oid, 'CREATE')"
    )


# --- no function moves an open transaction to another tenant -----------------------------------------------


async def test_no_function_moves_an_open_transaction_to_another_tenant(
    app_pool: asyncpg.Pool, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_tenants
    async with app_pool.acquire() as conn:
        # every function that sets the tenant goes through enter_tenant, which refuses a switch
        setters = await conn.fetch(
            """SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
               WHERE p.pronamespace = 'public'::regnamespace AND p.prosrc ILIKE '%set_config%'
                 AND p.prosrc ILIKE '%app.current_org%'"""
        )
        unguarded = {s["signature"].split("(")[0] for s in setters} - {"enter_tenant"}
        assert unguarded == set(), (
            "a function sets app.current_org itself: it must PERFORM enter_tenant(p_org) instead"
        )
        callers = await conn.fetch(
            """SELECT p.oid, p.oid::regprocedure::text AS signature,
                      quote_ident(p.proname) AS name, COALESCE(p.proargnames, '{}') AS arg_names,
                      ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t) AS arg_types
               FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
                 AND p.prosrc ILIKE '%enter_tenant(%' AND p.proname <> 'enter_tenant'"""
        )
        assert {c["signature"].split("(")[0] for c in callers} >= {
            "apply_status_webhook",
            "reply_unsent",
            "record_reply_sent",
        }
        for fn in callers:
            org_arg = next(n for n in fn["arg_names"] if n in ("p_org", "p_organization_id"))
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"belongs to organisation {a}"):
                async with tenant_transaction(conn, a):
                    await conn.fetch(_call(fn, **{org_arg: f"'{b}'::uuid"}))
            # the case: A's transaction, after calling with B's id, saw B's contacts
            async with tenant_transaction(conn, a):
                await conn.execute("SAVEPOINT attempt")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(_call(fn, **{org_arg: f"'{b}'::uuid"}))
                await conn.execute("ROLLBACK TO SAVEPOINT attempt")
                assert await conn.fetchval("SELECT current_setting('app.current_org')") == str(a)
                assert await conn.fetchval("SELECT count(*) FROM contacts WHERE organization_id = $1", b) == 0
        # with its own tenant, or outside any transaction, they work as before
        async with tenant_transaction(conn, a):
            assert await conn.fetchval("SELECT reply_unsent($1, gen_random_uuid())", a) is False
        assert await conn.fetchval("SELECT reply_unsent($1, gen_random_uuid())", b) is False
        assert await conn.fetchval("SELECT apply_status_webhook($1, 'wamid.none', 'delivered')", b) is None


async def test_the_engines_tenant_entry_refuses_to_move_an_open_transaction(
    app_pool: asyncpg.Pool, two_tenants: tuple[uuid.UUID, uuid.UUID]
) -> None:
    a, b = two_tenants
    async with app_pool.acquire() as conn:
        async with tenant_transaction(conn, a):
            for other in (b, a):  # never nested: the inner COMMIT would end the outer transaction half-way
                with pytest.raises(TenantSwitchRefused, match=f"organisation {a}"):
                    async with tenant_transaction(conn, other):
                        pass
            assert await conn.fetchval("SELECT current_setting('app.current_org')") == str(a)
            assert await conn.fetchval("SELECT count(DISTINCT organization_id) FROM contacts") == 1
        async with tenant_tx(app_pool, b) as conn2:
            assert await conn2.fetchval("SELECT count(*) FROM contacts WHERE organization_id = $1", a) == 0


# --- tables, sequences, heartbeats ---------------------------------------------------------------------------


async def _relation_rights(conn: asyncpg.Connection, role: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT c.relname, c.relkind = 'S' AS sequence, c.relkind IN ('r', 'p') AND c.relrowsecurity AS tenant,
                  ARRAY(SELECT p FROM unnest($2::text[]) p
                        WHERE CASE WHEN c.relkind = 'S'
                                   THEN CASE WHEN p IN ('USAGE', 'SELECT', 'UPDATE')
                                             THEN has_sequence_privilege($1, c.oid, p) ELSE false END
                                   ELSE CASE WHEN p = 'USAGE' THEN false
                                             ELSE has_table_privilege($1, c.oid, p) END END) AS rights,
                  has_any_column_privilege($1, c.oid, 'SELECT,INSERT,UPDATE,REFERENCES') AS any_column
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
             AND n.nspname NOT LIKE 'pg_temp%' AND n.nspname NOT LIKE 'pg_toast_temp%'
             AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
           ORDER BY 1""",
        role,
        [*await _table_privileges(conn), "USAGE"],
    )


async def test_the_app_roles_privileges_equal_the_allow_list(
    owner_pool: asyncpg.Pool, settings: Settings
) -> None:
    role = settings.app_db_role
    async with owner_pool.acquire() as conn:
        attrs = await conn.fetchrow(
            """SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolreplication,
                      (SELECT array_agg(pg_get_userbyid(roleid)) FROM pg_auth_members WHERE member = r.oid) AS member_of
               FROM pg_roles r WHERE rolname = $1""",
            role,
        )
        assert dict(attrs) == {
            "rolsuper": False,
            "rolbypassrls": False,
            "rolcreaterole": False,
            "rolcreatedb": False,
            "rolreplication": False,
            "member_of": None,
        }
        db = await conn.fetchrow(
            """SELECT has_database_privilege($1, current_database(), 'CONNECT') AS connect,
                      has_database_privilege($1, current_database(), 'TEMPORARY') AS temp,
                      has_database_privilege($1, current_database(), 'CREATE') AS create""",
            role,
        )
        assert dict(db) == {"connect": True, "temp": False, "create": False}
        wrong = []
        for rel in await _relation_rights(conn, role):
            rights = set(rel["rights"])
            if rel["sequence"]:
                want = SEQUENCE_RIGHTS
            elif rel["tenant"]:
                want = TENANT_TABLE_RIGHTS
            else:
                want = OTHER_RELATION_RIGHTS.get(rel["relname"], set())
            if rights != want or (not want and rel["any_column"]):
                wrong.append(f"{rel['relname']}: has {sorted(rights)}, allowed {sorted(want)}")
        assert not wrong, "privileges outside the allow-list (tests/test_trust_boundary.py):\n" + "\n".join(
            wrong
        )
        executable = await conn.fetch(
            """SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
               WHERE p.prosecdef AND has_function_privilege($1, p.oid, 'EXECUTE')
                 AND p.pronamespace::regnamespace::text NOT LIKE 'pg_temp%'""",
            role,
        )
        assert {r["signature"] for r in executable} == APP_DEFINER_FUNCTIONS
        advisory = await conn.fetch(
            """SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
               WHERE p.proname LIKE 'pg%advisory%lock%' AND p.proname NOT LIKE '%unlock%'
                 AND has_function_privilege($1, p.oid, 'EXECUTE')""",
            role,
        )
        assert not advisory, f"the app role can hold the engine's advisory locks: {advisory}"
        # a pool's reset (asyncpg releases its own locks with pg_advisory_unlock_all) still works
        assert await conn.fetchval(
            "SELECT has_function_privilege($1, 'pg_advisory_unlock_all()', 'EXECUTE')", role
        )


async def test_no_table_without_row_level_security_is_writable(
    app_conn: asyncpg.Connection, owner_pool: asyncpg.Pool, settings: Settings
) -> None:
    async with owner_pool.acquire() as conn:
        rows = await _relation_rights(conn, settings.app_db_role)
    without_rls = [r["relname"] for r in rows if not r["sequence"] and not r["tenant"]]
    assert {"worker_heartbeats", "schema_migrations"} <= set(without_rls)
    writable = [r["relname"] for r in rows if not r["sequence"] and not r["tenant"] and r["rights"]]
    assert not writable
    # the attack: one heartbeat dated a century ahead held shards for good
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await app_conn.execute(
            """INSERT INTO worker_heartbeats (worker_id, role, host, pid, heartbeat_at)
               VALUES ('attacker', 'inbound', 'x', 1, now() + interval '100 years')"""
        )
    for sql in (
        "UPDATE worker_heartbeats SET heartbeat_at = now() + interval '100 years'",
        "DELETE FROM worker_heartbeats",
        "SELECT * FROM worker_heartbeats",
        "TRUNCATE outbox",
        "DELETE FROM schema_migrations",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(sql)


async def test_no_sequence_shows_its_last_value(
    app_conn: asyncpg.Connection, owner_pool: asyncpg.Pool
) -> None:
    sequences = [
        r["name"]
        for r in await owner_pool.fetch(
            "SELECT c.oid::regclass::text AS name FROM pg_class c WHERE c.relkind = 'S'"
            " AND c.relnamespace = 'public'::regnamespace"
        )
    ]
    assert "outbox_id_seq" in sequences and "messages_processed_seq" in sequences
    for seq in sequences:
        for sql in (
            f"SELECT last_value FROM {seq}",
            f"SELECT * FROM {seq}",
            f"SELECT setval('{seq}', 1)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app_conn.fetchval(sql)


async def test_a_heartbeat_cannot_be_dated_in_the_future_and_every_one_expires(
    db_urls: DatabaseUrls, owner_pool: asyncpg.Pool
) -> None:
    from engine.shards import LIVE_SECONDS, ShardCoordinator

    role = f"hb{uuid.uuid4().hex[:8]}"
    forged_id = f"forged-{role}"
    await owner_pool.execute(
        """INSERT INTO worker_heartbeats (worker_id, role, host, pid, heartbeat_at, started_at, shard_count)
           VALUES ($1, $2, 'x', 1, now() + interval '100 years', now() - interval '100 years', 4)""",
        forged_id,
        role,
    )
    row = await owner_pool.fetchrow(
        "SELECT heartbeat_at <= now() AS dated_now, started_at >= now() - interval '1 minute' AS started_now"
        " FROM worker_heartbeats WHERE worker_id = $1",
        forged_id,
    )
    assert row["dated_now"] and row["started_now"]
    await owner_pool.execute(
        "UPDATE worker_heartbeats SET heartbeat_at = now() + interval '100 years' WHERE worker_id = $1",
        forged_id,
    )
    assert await owner_pool.fetchval(
        "SELECT heartbeat_at <= now() FROM worker_heartbeats WHERE worker_id = $1", forged_id
    )
    # the real worker: sharing with the forged row while it is fresh, every shard once it has expired
    started: list[int] = []

    async def start(shard: int) -> None:
        started.append(shard)

    async def stop(shard: int) -> None:
        pass

    coordinator = ShardCoordinator(db_urls.owner, role, 4, start, stop, worker_id=f"real-{role}")
    conn = await asyncpg.connect(db_urls.owner)
    try:
        await coordinator._tick(conn)
        assert coordinator.owned == {1, 3}  # the forged row, fresh and started first, has 0 and 2
        await asyncio.sleep(LIVE_SECONDS + 1)
        await coordinator._tick(conn)
        assert coordinator.owned == {0, 1, 2, 3}
    finally:
        await conn.execute("DELETE FROM worker_heartbeats WHERE role = $1", role)
        await conn.close()


async def test_refused_keys_are_counted_only_through_the_definer_functions(
    app_conn: asyncpg.Connection, owner_pool: asyncpg.Pool
) -> None:
    """sql/039: the application role records and reads refusals per address through the two functions only;
    the table keeps a hash of the address, never the address."""
    address = f"192.0.2.{uuid.uuid4().int % 250 + 1}"
    for sql in ("SELECT * FROM api_auth_failures", "DELETE FROM api_auth_failures",
                "INSERT INTO api_auth_failures (client_hash) VALUES ('x')"):  # fmt: skip
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await app_conn.execute(sql)
    assert await app_conn.fetchval("SELECT api_auth_blocked_for($1, 2, 60)", address) == 0
    await app_conn.execute("SELECT api_auth_failed($1, 60)", address)
    assert await app_conn.fetchval("SELECT api_auth_blocked_for($1, 2, 60)", address) == 0
    await app_conn.execute("SELECT api_auth_failed($1, 60)", address)
    assert 59 < await app_conn.fetchval("SELECT api_auth_blocked_for($1, 2, 60)", address) <= 60
    assert await app_conn.fetchval("SELECT api_auth_blocked_for($1, 3, 60)", address) == 0
    assert await app_conn.fetchval("SELECT api_auth_blocked_for('192.0.2.0', 1, 60)") == 0
    stored = await owner_pool.fetch("SELECT client_hash FROM api_auth_failures")
    assert address.encode() not in b"".join(bytes(r["client_hash"]) for r in stored)
    assert hashlib.sha256(address.encode()).digest() in {bytes(r["client_hash"]) for r in stored}
