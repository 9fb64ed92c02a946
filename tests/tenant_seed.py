"""Puts one row for an organisation into every tenant table, generically from the catalogue.

Used by the isolation tests: whatever tables a migration adds, they are seeded and checked without
editing the test. Values are the simplest that satisfy the constraints; a few columns with CHECK lists get
a known-good value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import asyncpg

KNOWN_VALUES: dict[tuple[str, str], Any] = {
    ("token_transactions", "type"): "debit",
    ("messages", "direction"): "inbound",
    ("template_layers", "kind"): "text",
    ("check_ins", "outcome"): "admitted",
    ("poll_options", "id"): "o1",
    ("poll_votes", "option_id"): "o1",
    ("outbox", "payload"): {},
}

# Tables whose rows never outlive their transaction (deleted by a commit-time trigger): not seeded, and no row of
# them is expected afterwards; their row-level security is checked like every other's.
TRANSIENT = frozenset({"wallet_charges"})  # sql/078: a charge waiting for its commit


async def tenant_tables(conn: asyncpg.Connection) -> list[str]:
    rows = await conn.fetch(
        """SELECT c.table_name FROM information_schema.columns c
           JOIN information_schema.tables t USING (table_schema, table_name)
           WHERE c.table_schema = 'public' AND c.column_name = 'organization_id' AND t.table_type = 'BASE TABLE'
           ORDER BY 1"""
    )
    return [r["table_name"] for r in rows]


async def _required_columns(conn: asyncpg.Connection, table: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT column_name, data_type, udt_name, character_maximum_length FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = $1 AND is_nullable = 'NO'
             AND column_default IS NULL AND is_generated = 'NEVER'""",
        table,
    )


async def _foreign_keys(conn: asyncpg.Connection, table: str) -> dict[str, tuple[str, str]]:
    rows = await conn.fetch(
        """SELECT a.attname AS column_name, cf.relname AS ref_table, af.attname AS ref_column
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class cf ON cf.oid = k.confrelid
           JOIN LATERAL unnest(k.conkey, k.confkey) AS col(attnum, fattnum) ON true
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = col.attnum
           JOIN pg_attribute af ON af.attrelid = cf.oid AND af.attnum = col.fattnum
           WHERE k.contype = 'f' AND c.relname = $1""",
        table,
    )
    return {r["column_name"]: (r["ref_table"], r["ref_column"]) for r in rows}


def _value(data_type: str, udt: str) -> Any:
    now = datetime.now(UTC)
    return {
        "uuid": uuid4(),
        "integer": 1,
        "bigint": 1,
        "numeric": Decimal("1.00"),
        "boolean": True,
        "timestamp with time zone": now,
        "jsonb": {},
        "bytea": b"\x89PNG",
        "text": uuid4().hex[:10],
        "character varying": uuid4().hex[:10],
        "time without time zone": now.time(),
        "USER-DEFINED": None,
        "ARRAY": [],
    }.get(data_type, "x")


async def seed_tenant(conn: asyncpg.Connection, org_id: UUID) -> dict[str, UUID | str]:
    """As the owner (bypassing RLS): one row per tenant table for ``org_id``; returns table -> row key."""
    tables = await tenant_tables(conn)
    fks = {t: await _foreign_keys(conn, t) for t in tables}
    required = {t: await _required_columns(conn, t) for t in tables}
    created: dict[str, Any] = {"organizations": {"id": org_id}}
    pending = [t for t in tables if t not in TRANSIENT]
    while pending:
        progressed = False
        for table in list(pending):
            needs = {
                fks[table][c["column_name"]][0] for c in required[table] if c["column_name"] in fks[table]
            }
            if not needs <= created.keys():
                continue
            created[table] = await _insert(conn, table, org_id, required[table], fks[table], created)
            pending.remove(table)
            progressed = True
        if not progressed:
            raise RuntimeError(f"cannot order tables by foreign keys: {pending}")
    return {table: row.get("id", org_id) for table, row in created.items()}


async def _insert(
    conn: asyncpg.Connection,
    table: str,
    org_id: UUID,
    columns: list[asyncpg.Record],
    fks: dict[str, tuple[str, str]],
    created: dict[str, Any],
) -> dict[str, Any]:
    values: dict[str, Any] = {"organization_id": org_id}
    for c in columns:
        name = c["column_name"]
        if name in values:
            continue
        if (table, name) in KNOWN_VALUES:
            values[name] = KNOWN_VALUES[(table, name)]
        elif name in fks:
            ref_table, ref_column = fks[name]
            values[name] = created[ref_table][ref_column]
        else:
            values[name] = _value(c["data_type"], c["udt_name"])
            if isinstance(values[name], str) and c["character_maximum_length"]:
                values[name] = values[name][: c["character_maximum_length"]]
    if table == "user_roles":
        values.update(user_id=created["users"]["id"], role_id=created["roles"]["id"])
    cols = ", ".join(values)
    params = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    args = list(values.values())
    return dict(await conn.fetchrow(f"INSERT INTO {table} ({cols}) VALUES ({params}) RETURNING *", *args))
