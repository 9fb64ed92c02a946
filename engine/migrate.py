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
    db = await conn.fetchval("SELECT quote_ident(current_database())")
    for stmt in (
        f"GRANT CONNECT ON DATABASE {db} TO {ident}",
        f"GRANT USAGE ON SCHEMA public TO {ident}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {ident}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {ident}",
        f"REVOKE ALL ON schema_migrations FROM {ident}",
    ):
        try:
            await conn.execute(stmt)
        except asyncpg.exceptions.InternalServerError as err:  # "tuple concurrently updated" on grants
            if "concurrently" not in str(err):
                raise
            await conn.execute(stmt)
