"""Applies ``sql/*.sql`` in order, once each, recording a checksum.

Refuses to run when an applied file was edited; safe to run twice or from two processes at once (an
advisory lock serialises runners, and each file commits together with its record).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from engine.resources import resource_dir

_LOCK_KEY = 0x43484154  # "CHAT": one migration runner at a time per database


class MigrationEdited(RuntimeError):
    """An already applied migration file no longer matches what was applied."""


class MigrationsMissing(RuntimeError):
    """No migration files where they should be: applying nothing would leave an empty database behind."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the ones shipped with the engine), in order; never none."""
    directory = directory or resource_dir("sql")
    found = [Migration(p.name, p.read_text()) for p in sorted(directory.glob("*.sql"))]
    if not found:
        raise MigrationsMissing(f"no migrations (*.sql) in {directory}")
    return found


async def migrate(
    owner_url: str, app_role: str, app_password: str, directory: Path | None = None
) -> list[str]:
    """Apply pending migrations; returns the names applied now."""
    migrations = load_migrations(directory)  # before connecting: a broken install fails the same everywhere
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            applied = await _apply_pending(conn, migrations)
            await _ensure_app_role(conn, app_role, app_password)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()


async def _apply_pending(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               filename TEXT PRIMARY KEY,
               checksum TEXT NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"""
    )
    done = {
        r["filename"]: r["checksum"]
        for r in await conn.fetch("SELECT filename, checksum FROM schema_migrations")
    }
    for m in migrations:
        if m.name in done and done[m.name] != m.checksum:
            raise MigrationEdited(f"{m.name} was edited after it was applied; add a new migration instead")
    applied = []
    for m in migrations:
        if m.name in done:
            continue
        async with conn.transaction():
            await conn.execute(m.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (filename, checksum) VALUES ($1, $2)", m.name, m.checksum
            )
        applied.append(m.name)
    return applied


async def _ensure_app_role(conn: asyncpg.Connection, role: str, password: str) -> None:
    """The application's non-superuser role, with data rights only (no DDL, no RLS bypass)."""
    ident = await conn.fetchval("SELECT quote_ident($1)", role)
    literal = await conn.fetchval("SELECT quote_literal($1)", password)
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        try:
            await conn.execute(f"CREATE ROLE {ident} LOGIN PASSWORD {literal} NOSUPERUSER NOBYPASSRLS")
        except asyncpg.DuplicateObjectError:
            pass  # another database's runner created it at the same moment; roles are cluster-wide
    for attempt in range(3):
        try:
            async with conn.transaction():  # all at once: a running engine never sees half of a change
                await _app_privileges(conn, role, ident)
            return
        except asyncpg.exceptions.InternalServerError as err:  # "tuple concurrently updated" on grants
            if "concurrently" not in str(err) or attempt == 2:
                raise


# What the application role may do (docs/schema.md, "Tenant isolation"; tests/test_trust_boundary.py holds the
# allow-list): connect, use the schema, read and write the tables that row-level security confines, draw from
# sequences (USAGE: nextval for ids, not their last_value), run the SECURITY DEFINER functions, which nobody
# else (PUBLIC) may. Nothing on tables without row-level security, no TEMP, no CREATE anywhere. Only what
# differs is changed, so a runner with nothing to do changes no catalog row.
_TENANT_TABLE_RIGHTS = ["DELETE", "INSERT", "SELECT", "UPDATE"]
# Tables without row-level security that the application role may still use, and how (none today; keep
# tests/test_trust_boundary.py's OTHER_RELATION_RIGHTS the same). Everything else without RLS: no rights at all.
APP_RIGHTS_WITHOUT_RLS: dict[str, list[str]] = {}
DEFINER_OWNER = "chatnation_definer"  # made by sql/017_trust_boundary.sql
PINNED_SEARCH_PATH = "pg_catalog, public, pg_temp"


async def _app_privileges(conn: asyncpg.Connection, role: str, ident: str) -> None:
    db = await conn.fetchval("SELECT quote_ident(current_database())")
    stmts: list[str] = []
    if not await conn.fetchval("SELECT has_database_privilege($1, current_database(), 'CONNECT')", role):
        stmts.append(f"GRANT CONNECT ON DATABASE {db} TO {ident}")
    if await conn.fetchval(
        "SELECT has_database_privilege($1, current_database(), 'TEMPORARY')"
        " OR has_database_privilege($1, current_database(), 'CREATE')",
        role,
    ):
        stmts.append(f"REVOKE TEMPORARY, CREATE ON DATABASE {db} FROM PUBLIC")
        stmts.append(f"REVOKE TEMPORARY, CREATE ON DATABASE {db} FROM {ident}")
    if not await conn.fetchval("SELECT has_schema_privilege($1, 'public', 'USAGE')", role):
        stmts.append(f"GRANT USAGE ON SCHEMA public TO {ident}")
    for schema in await conn.fetch(
        "SELECT quote_ident(nspname) AS name FROM pg_namespace WHERE has_schema_privilege($1, oid, 'CREATE')",
        role,
    ):
        stmts.append(f"REVOKE CREATE ON SCHEMA {schema['name']} FROM PUBLIC")
        stmts.append(f"REVOKE CREATE ON SCHEMA {schema['name']} FROM {ident}")
    relations = await conn.fetch(
        """SELECT c.oid::regclass::text AS name, c.relname, c.relkind = 'S' AS sequence,
                  c.relkind IN ('r', 'p') AND c.relrowsecurity AS tenant,
                  ARRAY(SELECT DISTINCT a.privilege_type FROM aclexplode(c.relacl) a
                        WHERE a.grantee = r.oid ORDER BY 1) AS rights,
                  EXISTS (SELECT FROM pg_attribute t, aclexplode(t.attacl) a
                          WHERE t.attrelid = c.oid AND a.grantee = r.oid) AS column_rights
           FROM pg_class c, pg_roles r
           WHERE r.rolname = $1 AND c.relnamespace = 'public'::regnamespace
             AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')""",
        role,
    )
    for rel in relations:
        if rel["sequence"]:
            want, kind = ["USAGE"], "SEQUENCE"
        else:
            kind = "TABLE"
            want = (
                _TENANT_TABLE_RIGHTS
                if rel["tenant"]
                else sorted(APP_RIGHTS_WITHOUT_RLS.get(rel["relname"], []))
            )
        if list(rel["rights"]) != want or rel["column_rights"]:
            stmts.append(f"REVOKE ALL ON {kind} {rel['name']} FROM {ident}")
            if want:
                stmts.append(f"GRANT {', '.join(want)} ON {kind} {rel['name']} TO {ident}")
    # Every SECURITY DEFINER function, whichever migration made it, runs as the definer owner with the search
    # path pinned (pg_temp last); what that owner may read is granted by the migrations (sql/017).
    for fn in await conn.fetch(
        """SELECT p.oid::regprocedure::text AS name FROM pg_proc p
           WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace
             AND (pg_get_userbyid(p.proowner) <> $1
                  OR NOT COALESCE(p.proconfig @> ARRAY[$2], false))""",
        DEFINER_OWNER,
        f"search_path={PINNED_SEARCH_PATH}",
    ):
        stmts.append(f"ALTER FUNCTION {fn['name']} SET search_path = {PINNED_SEARCH_PATH}")
        stmts.append(f"GRANT CREATE ON SCHEMA public TO {DEFINER_OWNER}")  # ALTER ... OWNER needs it
        stmts.append(f"ALTER FUNCTION {fn['name']} OWNER TO {DEFINER_OWNER}")
        stmts.append(f"REVOKE CREATE ON SCHEMA public FROM {DEFINER_OWNER}")
    for stmt in stmts:
        await conn.execute(stmt)
    stmts = []
    for fn in await conn.fetch(
        """SELECT p.oid::regprocedure::text AS name,
                  p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public,
                  EXISTS (SELECT FROM aclexplode(p.proacl) a, pg_roles r
                          WHERE r.rolname = $1 AND a.grantee = r.oid AND a.privilege_type = 'EXECUTE') AS granted
           FROM pg_proc p WHERE p.prosecdef AND p.pronamespace = 'public'::regnamespace""",
        role,
    ):
        if fn["public"]:
            stmts.append(f"REVOKE ALL ON FUNCTION {fn['name']} FROM PUBLIC")
        if not fn["granted"]:
            stmts.append(f"GRANT EXECUTE ON FUNCTION {fn['name']} TO {ident}")
    # The engine's advisory locks (the migration runner's, the relay's, the timer scanner's) are the owner's:
    # the application role holding one would stop migrations or the relay for good. PostgreSQL's own functions:
    # only a superuser can take them from PUBLIC (docs/schema.md says what an operator does otherwise).
    superuser = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    advisory = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS name,
                  p.proacl IS NULL OR EXISTS (SELECT FROM aclexplode(p.proacl) a WHERE a.grantee = 0) AS public,
                  has_function_privilege($1, p.oid, 'EXECUTE') AS granted
           FROM pg_proc p
           WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.proname LIKE 'pg%advisory%lock%'
             AND p.proname NOT LIKE '%unlock%'""",  # releasing its own locks harms nobody (pools' resets do)
        role,
    )
    for fn in advisory if superuser else []:
        if fn["public"]:
            stmts.append(f"REVOKE EXECUTE ON FUNCTION {fn['name']} FROM PUBLIC")
        if fn["granted"]:
            stmts.append(f"REVOKE EXECUTE ON FUNCTION {fn['name']} FROM {ident}")
    for stmt in stmts:
        await conn.execute(stmt)
