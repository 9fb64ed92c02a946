"""The schema: every table of the design with its columns, migrations applied once, edits refused."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from engine.migrate import MigrationEdited, load_migrations, migrate
from tests.helpers import shared_dir

DESIGN = shared_dir() / "seed" / "schema-design.md"
# Named in the design's diagrams without SQL; designed here in the same conventions.
DIAGRAM_TABLES = {
    "sessions",
    "speakers",
    "check_ins",
    "exhibitor_staff",
    "participants",
    "venues",
    "booth_locations",
    "api_keys",
    "segments",
    "broadcast_recipients",
    "conversation_states",
    "questions",
    "question_options",
    "response_items",
    "poll_options",
    "template_layers",
}
ENGINE_TABLES = {
    "processed_events",
    "outbox",
    "payment_requests",
    "conversation_timers",
    "ticket_holds",
    "ticket_images",
    "schema_migrations",
}
_CONSTRAINT_WORDS = {"UNIQUE", "PRIMARY", "CONSTRAINT", "CHECK", "FOREIGN"}


def design_columns() -> dict[str, set[str]]:
    """table -> columns, from the CREATE TABLE statements in the design document's SQL blocks."""
    text = DESIGN.read_text()
    tables: dict[str, set[str]] = {}
    for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", text, flags=re.S):
        cols = set()
        for line in body.splitlines():
            line = line.split("--")[0].strip()
            m = re.match(r"(\w+)\s+\w+", line)
            if m and m.group(1).upper() not in _CONSTRAINT_WORDS:
                cols.add(m.group(1))
        tables[name] = cols
    return tables


async def actual_columns(conn: asyncpg.Connection) -> dict[str, set[str]]:
    rows = await conn.fetch(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema='public'"
    )
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["table_name"], set()).add(r["column_name"])
    return out


def test_design_document_parses_into_many_tables() -> None:
    tables = design_columns()
    assert {"organizations", "wallets", "messages", "tickets", "polls", "embeddings"} <= tables.keys()
    assert {"balance", "reserved_balance", "low_balance_threshold"} <= tables["wallets"]


async def test_every_design_table_exists_with_its_columns(owner_pool: asyncpg.Pool) -> None:
    async with owner_pool.acquire() as conn:
        actual = await actual_columns(conn)
    for table, cols in design_columns().items():
        assert table in actual, f"missing table {table}"
        assert cols <= actual[table], f"{table} lacks {sorted(cols - actual[table])}"
    assert DIAGRAM_TABLES | ENGINE_TABLES <= actual.keys()


async def test_every_table_has_timestamps_and_updated_at_is_kept_by_the_database(
    owner_pool: asyncpg.Pool,
) -> None:
    async with owner_pool.acquire() as conn:
        actual = await actual_columns(conn)
        for table, cols in actual.items():
            if table == "schema_migrations":
                continue
            assert {"created_at", "updated_at"} <= cols, table
        async with conn.transaction():
            org = await conn.fetchval(
                "INSERT INTO organizations (name, slug) VALUES ('T', 'ts-' || gen_random_uuid()) RETURNING id"
            )
            await conn.execute("UPDATE organizations SET updated_at = '2000-01-01' WHERE id = $1", org)
            before = await conn.fetchval("SELECT updated_at FROM organizations WHERE id = $1", org)
            await conn.execute("UPDATE organizations SET name = 'U' WHERE id = $1", org)
            after = await conn.fetchval("SELECT updated_at FROM organizations WHERE id = $1", org)
            assert before.year > 2000 and after >= before  # the trigger overrides even an explicit value


async def test_money_is_decimal_and_tokens_are_integer(owner_pool: asyncpg.Pool) -> None:
    rows = await owner_pool.fetch(
        """SELECT table_name, column_name, data_type FROM information_schema.columns
           WHERE table_schema = 'public' AND column_name IN ('price', 'amount_paid', 'total', 'unit_price', 'balance',
                                                             'tokens', 'tokens_consumed')"""
    )
    kinds = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    assert kinds[("ticket_types", "price")] == "numeric"
    assert kinds[("tickets", "amount_paid")] == "numeric"
    assert kinds[("wallets", "balance")] == "integer"
    assert kinds[("messages", "tokens_consumed")] == "integer"


async def test_vector_index_is_hnsw(owner_pool: asyncpg.Pool) -> None:
    indexdef = await owner_pool.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_embeddings_vector'"
    )
    assert "hnsw" in indexdef and "vector_cosine_ops" in indexdef


async def test_migrations_are_recorded_once_and_a_second_run_changes_nothing(db_urls, settings) -> None:  # type: ignore[no-untyped-def]
    names = [m.name for m in load_migrations()]
    assert await migrate(db_urls.owner, settings.app_db_role, settings.app_db_password) == []
    conn = await asyncpg.connect(db_urls.owner)
    try:
        recorded = await conn.fetch("SELECT filename, checksum FROM schema_migrations ORDER BY filename")
        schema_before = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns ORDER BY 1, 2"
        )
        await migrate(db_urls.owner, settings.app_db_role, settings.app_db_password)
        schema_after = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns ORDER BY 1, 2"
        )
    finally:
        await conn.close()
    assert [r["filename"] for r in recorded] == names
    assert {r["checksum"] for r in recorded} == {m.checksum for m in load_migrations()}
    assert schema_before == schema_after


async def test_fresh_database_concurrent_runners_and_edited_migration(
    db_urls, settings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    import asyncio
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    name = f"mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(db_urls.owner)
    await admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(db_urls.owner)
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    try:
        for m in load_migrations():
            (tmp_path / m.name).write_text(m.sql)
        # two runners at once on an empty database: one applies, the other finds nothing to do
        results = await asyncio.gather(
            *(migrate(url, settings.app_db_role, settings.app_db_password, tmp_path) for _ in range(2))
        )
        assert sorted(len(r) for r in results) == [0, len(load_migrations())]
        edited = sorted(tmp_path.glob("*.sql"))[1]
        edited.write_text(edited.read_text() + "\n-- edited\n")
        with pytest.raises(MigrationEdited, match=edited.name):
            await migrate(url, settings.app_db_role, settings.app_db_password, tmp_path)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
