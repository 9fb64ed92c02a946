"""Everything a worker process shares, built once at start-up: settings, pools, broker, HTTP clients."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import httpx
from aio_pika.abc import AbstractRobustConnection

from engine.ai import AI, create_ai
from engine.broker import Publisher, Topology, connect, inbound_ordering, ordering_headers
from engine.broker_admin import ensure_parking_unlimited
from engine.db import DatabaseUrls, create_pool, database_urls
from engine.layout import LayoutFollower
from engine.mpesa import DarajaClient, PaymentProvider
from engine.orgs import OrgDirectory
from engine.settings import Settings
from engine.whatsapp.client import new_session


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
    layout: LayoutFollower | None = None  # the inbound layout (engine/layout.py); set by start()
    ai: AI | None = None  # the model for the knowledge base; None without OPENAI_API_KEY
    orgs: OrgDirectory = field(init=False)  # organisations as the hot path sees them, cached briefly
    whatsapp_http: aiohttp.ClientSession = field(
        default_factory=new_session
    )  # the sender's (engine/whatsapp/client.py)

    @classmethod
    async def start(cls, settings: Settings, *, pool_size: int | None = None) -> Runtime:
        urls = await database_urls(settings)
        size = pool_size or settings.db_pool_size
        deployment = settings.broker_prefix  # what this process writes is relayed by its own deployment
        app_pool = await create_pool(urls.app, max_size=size, session_state=False, deployment=deployment)
        owner_pool = await create_pool(urls.owner, max_size=3, deployment=deployment)
        connection = await connect(settings)
        topology = Topology.from_settings(settings)
        channel = await connection.channel()
        await topology.declare(channel, inbound=False)
        await channel.close()
        layout = LayoutFollower(topology, settings.inbound_shards)
        await layout.start(connection)
        await ensure_parking_unlimited(settings, connection, topology)
        publisher = await Publisher.open(connection, settings.publish_timeout_seconds)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
        return cls(
            settings,
            topology,
            urls,
            app_pool,
            owner_pool,
            connection,
            publisher,
            http,
            DarajaClient(http, settings),
            layout=layout,
            ai=create_ai(settings),
        )

    def __post_init__(self) -> None:
        self.orgs = OrgDirectory(self.app_pool)

    async def close(self) -> None:
        await self.http.aclose()
        await self.whatsapp_http.close()
        await self.connection.close()
        await self.app_pool.close()
        await self.owner_pool.close()

    def consumed_topology(self) -> Topology:
        """The topology with the inbound queues the layout says to consume now (engine/layout.py)."""
        return self.topology if self.layout is None else self.layout.current.consuming(self.topology)

    async def publish_inbound(self, contact_key: str, body: dict[str, Any], message_id: str) -> None:
        """Into the contact's ordered path (timers and payment results go this way too), by the layout as
        read over this connection (engine/layout.py)."""
        topology = self.topology
        if self.layout is not None:
            topology = await self.layout.publishing(self.settings.publish_timeout_seconds)
        await self.publisher.publish(
            topology.inbound_exchange,
            topology.inbound_route(contact_key),
            body,
            message_id=message_id,
            headers=ordering_headers(*inbound_ordering(body, message_id)),
        )
