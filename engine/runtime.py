"""Everything a worker process shares, built once at start-up: settings, pools, broker, HTTP clients."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import aiohttp
import asyncpg
import httpx
from aio_pika.abc import AbstractRobustConnection

from engine.ai import AI, create_ai
from engine.broker import Publisher, Topology, connect
from engine.db import DatabaseUrls, create_pool, database_urls, tenant_tx
from engine.mpesa import DarajaClient, PaymentProvider
from engine.settings import Settings
from engine.turn import Org
from engine.whatsapp.client import new_session

ORG_TTL_SECONDS = 5.0  # a change to an organisation's settings (prices, language) reaches the hot path this late


@dataclass
class Runtime:
    settings: Settings
    topology: Topology
    urls: DatabaseUrls
    app_pool: asyncpg.Pool
    owner_pool: asyncpg.Pool
    connection: AbstractRobustConnection
    publisher: Publisher
    http: httpx.AsyncClient
    payments: PaymentProvider
    ai: AI | None = None  # the model for the knowledge base; None without OPENAI_API_KEY
    whatsapp_http: aiohttp.ClientSession = field(default_factory=new_session)  # the sender's (engine/whatsapp/client.py)
    _org_cache: dict[str, tuple[float, UUID | None]] = field(default_factory=dict)
    _orgs: dict[UUID, tuple[float, Org]] = field(default_factory=dict)

    @classmethod
    async def start(cls, settings: Settings, *, pool_size: int | None = None) -> Runtime:
        urls = await database_urls(settings)
        size = pool_size or settings.db_pool_size
        app_pool = await create_pool(urls.app, max_size=size, session_state=False)
        owner_pool = await create_pool(urls.owner, max_size=3)
        connection = await connect(settings)
        topology = Topology.from_settings(settings)
        channel = await connection.channel()
        await topology.declare(channel)
        await channel.close()
        publisher = await Publisher.open(connection, settings.publish_timeout_seconds)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0),
                                 limits=httpx.Limits(max_connections=200, max_keepalive_connections=50))
        return cls(settings, topology, urls, app_pool, owner_pool, connection, publisher, http,
                   DarajaClient(http, settings), create_ai(settings))

    async def close(self) -> None:
        await self.http.aclose()
        await self.whatsapp_http.close()
        await self.connection.close()
        await self.app_pool.close()
        await self.owner_pool.close()

    async def org_for_phone_number(self, phone_number_id: str) -> UUID | None:
        """Routing lookup, cached briefly: the hot path asks it for every message."""
        hit = self._org_cache.get(phone_number_id)
        now = time.monotonic()
        # a known number is cached for 30 s; an unknown one for 2 s, so a number registered to fix parked
        # messages is seen by their replay at once
        if hit and now - hit[0] < (30 if hit[1] is not None else 2):
            return hit[1]
        org_id = await self.app_pool.fetchval("SELECT org_by_phone_number_id($1)", phone_number_id)
        self._org_cache[phone_number_id] = (now, org_id)
        return org_id

    async def org(self, org_id: UUID) -> Org:
        """The organisation's name, number and settings, cached briefly: every event needs them."""
        hit = self._orgs.get(org_id)
        if hit and time.monotonic() - hit[0] < ORG_TTL_SECONDS:
            return hit[1]
        async with tenant_tx(self.app_pool, org_id) as conn:
            row = await conn.fetchrow("SELECT id, name, whatsapp_phone_id, settings FROM organizations WHERE id = $1",
                                      org_id)
        org = Org(row["id"], row["name"], row["whatsapp_phone_id"], row["settings"] or {})
        self._orgs[org_id] = (time.monotonic(), org)
        return org

    async def publish_inbound(self, contact_key: str, body: dict[str, Any], message_id: str) -> None:
        """Into the contact's ordered path (timers and payment results go this way too)."""
        await self.publisher.publish(self.topology.inbound_exchange, self.topology.inbound_route(contact_key),
                                     body, message_id=message_id)
