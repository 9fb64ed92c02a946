"""Shared fixtures: a fresh database (migrated) and a private broker prefix per test session.

The database is made the same way the project makes its own: on the server DATABASE_URL names, else on the
embedded pgserver under .data/. Environment variables are set for the session so that subprocesses
(gateway, workers) started by tests land on the same database and queues.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from engine.settings import Settings, get_settings

SESSION_TAG = uuid.uuid4().hex[:10]


def _database_url_for(name: str) -> str:
    base = os.environ.get("DATABASE_URL")
    if base:
        parts = urlsplit(base)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    from engine.embedded_pg import ensure_embedded

    return ensure_embedded(Settings().data_dir, database=name)


@pytest.fixture(scope="session")
def test_env() -> Iterator[dict[str, str]]:
    """DATABASE_URL of a fresh database and a broker prefix, exported for the whole session."""
    db_name = f"test_{SESSION_TAG}"
    base = os.environ.get("DATABASE_URL")
    if base:
        import asyncio

        async def create() -> None:
            conn = await asyncpg.connect(base)
            await conn.execute(f'CREATE DATABASE "{db_name}"')
            await conn.close()

        asyncio.run(create())
    url = _database_url_for(db_name)
    previous = {k: os.environ.get(k) for k in ("DATABASE_URL", "BROKER_PREFIX", "ENVIRONMENT")}
    os.environ.update(DATABASE_URL=url, BROKER_PREFIX=f"t{SESSION_TAG}", ENVIRONMENT="test")
    get_settings.cache_clear()
    yield {"DATABASE_URL": url, "BROKER_PREFIX": f"t{SESSION_TAG}"}
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    _drop_database(url, db_name)


def _drop_database(url: str, name: str) -> None:
    import asyncio

    async def drop() -> None:
        parts = urlsplit(url)
        admin = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
async def db_urls(settings: Settings):  # type: ignore[no-untyped-def]
    from engine.db import database_urls
    from engine.migrate import migrate

    urls = await database_urls(settings)
    await migrate(urls.owner, settings.app_db_role, settings.app_db_password)
    return urls


@pytest.fixture(scope="session")
async def owner_pool(db_urls) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    from engine.db import create_pool

    pool = await create_pool(db_urls.owner, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def app_pool(db_urls) -> AsyncIterator[asyncpg.Pool]:  # type: ignore[no-untyped-def]
    from engine.db import create_pool

    pool = await create_pool(db_urls.app, max_size=20, session_state=False)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def broker(settings: Settings):  # type: ignore[no-untyped-def]
    """A connection to the real RabbitMQ with this session's topology declared (deleted afterwards)."""
    from engine.broker import Topology, connect

    connection = await connect(settings)
    topology = Topology.from_settings(settings)
    channel = await connection.channel()
    await topology.declare(channel)
    yield connection
    channel = await connection.channel()
    await topology.delete(channel)
    await connection.close()


@pytest.fixture
async def make_org(app_pool: asyncpg.Pool):  # type: ignore[no-untyped-def]
    """Creates organisations with a unique WhatsApp phone number id each."""
    from engine.orgs import NewOrganization, create_organization

    async def make(name: str = "Org", tokens: int = 1000, **kw):  # type: ignore[no-untyped-def]
        tag = uuid.uuid4().hex[:8]
        new = NewOrganization(
            name=f"{name} {tag}",
            slug=f"{name.lower()}-{tag}",
            phone_number_id=kw.pop("phone_number_id", f"pn{tag}"),
            access_token=kw.pop("access_token", f"tok{tag}"),
            tokens=tokens,
            **kw,
        )
        org_id = await create_organization(app_pool, new)
        return org_id, new

    return make
