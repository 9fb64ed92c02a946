"""What the REST API's tests share: an organisation with a key, its data, a client on the app in-process."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import httpx

from engine.api.app import create_app
from engine.api_keys import create_key, parse_scopes
from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.settings import Settings


@dataclass
class Tenant:
    org_id: UUID
    key: str
    contacts: list[UUID] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # survey, poll, event, ticket_type, key_id

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def new_key(
    pool: asyncpg.Pool, org_id: UUID, scopes: list[str], expires_at: datetime | None = None
) -> tuple[str, UUID]:
    async with tenant_tx(pool, org_id) as conn:
        made = await create_key(conn, org_id, name="test", scopes=parse_scopes(scopes), expires_at=expires_at)
    return made.key, made.id


async def make_tenant(
    make_org: Any, pool: asyncpg.Pool, name: str, scopes: list[str] | None = None
) -> Tenant:
    """An organisation with two contacts (one with a conversation and messages), a survey with one response,
    a poll, an event with a ticket type and one ticket sold and checked in, and a key."""
    org_id, _ = await make_org(name)
    key, key_id = await new_key(pool, org_id, scopes or ["*"])
    summary = await import_content(
        pool,
        org_id,
        parse_content(
            {
                "surveys": [
                    {"title": f"{name} survey", "questions": [{"id": "q1", "type": "text", "text": "Hi?"}]}
                ],
                "polls": [
                    {
                        "question": f"{name} poll?",
                        "options": [{"id": "y", "text": "Yes"}, {"id": "n", "text": "No"}],
                    }
                ],
                "events": [
                    {
                        "name": f"{name} night",
                        "starts_at": "+30d",
                        "ends_at": "+31d",
                        "status": "published",
                        "ticket_types": [{"name": "Regular", "price": 100, "quantity_total": 10}],
                    }
                ],
            }
        ),
    )
    tenant = Tenant(org_id, key)
    tenant.ids["key_id"] = str(key_id)
    tenant.ids["survey"] = summary.ids["surveys"][f"{name} survey"]
    tenant.ids["poll"] = summary.ids["polls"][f"{name} poll?"]
    tenant.ids["event"] = summary.ids["events"][f"{name} night"]
    now = datetime.now(UTC)
    async with tenant_tx(pool, org_id) as conn:
        for i, who in enumerate((f"{name} Alice", f"{name} Bob")):
            phone = f"2547{uuid.uuid4().int % 10**8:08d}"
            contact = await conn.fetchval(
                """INSERT INTO contacts (organization_id, phone, whatsapp_id, name, created_at, first_seen_at)
                   VALUES ($1, $2, $2, $3, $4, $4) RETURNING id""",
                org_id,
                phone,
                who,
                now + timedelta(seconds=i),
            )
            tenant.contacts.append(contact)
        first = tenant.contacts[0]
        conv = await conn.fetchval(
            """INSERT INTO conversations (organization_id, contact_id, current_state, current_module, state_data,
                                          state_version)
               VALUES ($1, $2, 'question', 'survey', '{"q": 1}', 3) RETURNING id""",
            org_id,
            first,
        )
        tenant.ids["conversation"] = str(conv)
        await conn.execute(
            """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                                due_at)
               VALUES ($1, $2, $3, 'reminder', 3, now() + interval '1 hour')""",
            org_id,
            conv,
            first,
        )
        for n, (direction, text) in enumerate((("inbound", "hello"), ("outbound", f"{name} says hi"))):
            await conn.execute(
                """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content,
                                         created_at)
                   VALUES ($1, $2, $3, $4, 'text', $5, $6)""",
                org_id,
                conv,
                first,
                direction,
                text,
                now + timedelta(seconds=n),
            )
        await conn.execute(
            """INSERT INTO survey_responses (organization_id, survey_id, contact_id, status, answers)
               VALUES ($1, $2, $3, 'completed', '{"q1": "fine"}')""",
            org_id,
            UUID(tenant.ids["survey"]),
            first,
        )
        ticket_type = await conn.fetchval(
            "UPDATE ticket_types SET quantity_sold = 1 WHERE event_id = $1 RETURNING id",
            UUID(tenant.ids["event"]),
        )
        tenant.ids["ticket_type"] = str(ticket_type)
        await conn.execute(
            """INSERT INTO tickets (organization_id, ticket_type_id, contact_id, ticket_code, status, checked_in_at)
               VALUES ($1, $2, $3, $4, 'used', now())""",
            org_id,
            ticket_type,
            first,
            uuid.uuid4().hex[:12].upper(),
        )
    return tenant


@asynccontextmanager
async def api_client(
    settings: Settings, pool: asyncpg.Pool, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a fresh app (its own limiters) in this process, on the application role's pool, from an
    address of its own (refused keys are counted per address in the database, across apps: sql/039)."""
    app = create_app(settings.model_copy(update=overrides), pool=pool)
    n = uuid.uuid4().int
    transport = httpx.ASGITransport(app=app, client=(f"198.51.{n % 250}.{(n >> 8) % 250 + 1}", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client
