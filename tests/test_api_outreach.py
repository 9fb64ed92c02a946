"""The REST API's outreach (issue 17 over issue 15's engine): broadcasts (create with Idempotency-Key, list in
cursor pages, show, pause, resume, cancel, recipients as pages and CSV), message templates (list, sync from the
Cloud API simulator) and wallet top-ups by M-Pesa (an STK push to the simulator, once per Idempotency-Key);
scopes; an organisation's key never reaching another's broadcasts, top-ups or ids in bodies."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from uuid import UUID

import pytest
from pydantic import AnyUrl

from engine import broadcasts
from engine.broadcast_stats import RECIPIENT_FIELDS
from engine.db import tenant_tx
from simulators.mpesa import MpesaSimulator
from simulators.whatsapp import WhatsAppSimulator
from tests.api_helpers import Tenant, api_client, make_tenant, new_key
from tests.test_api import _problem

LATER = (datetime.now(UTC) + timedelta(days=2)).isoformat()


@pytest.fixture
async def tenants(make_org, app_pool) -> tuple[Tenant, Tenant]:  # type: ignore[no-untyped-def]
    return await make_tenant(make_org, app_pool, "Alpha"), await make_tenant(make_org, app_pool, "Beta")


async def _start(app_pool: Any, t: Tenant, broadcast_id: str) -> int | None:
    """What the scheduler does when the broadcast is due: recipients resolved, tokens reserved."""
    async with tenant_tx(app_pool, t.org_id) as conn:
        await conn.execute("UPDATE broadcasts SET scheduled_at = now() WHERE id = $1", UUID(broadcast_id))
        org = SimpleNamespace(id=t.org_id, settings={})
        return await broadcasts.start(conn, org, UUID(broadcast_id), datetime.now(UTC) + timedelta(seconds=1))


async def test_broadcast_create_show_control_and_recipients(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    body = {
        "name": "Doors",
        "text": "Hi {{name}}, doors open at 6",
        "audience": {"tags": ["vip"]},
        "at": LATER,
    }
    async with api_client(settings, app_pool) as client:
        for contact in a.contacts:
            await client.post(f"/v1/contacts/{contact}/tags", json={"add": ["vip"]}, headers=a.auth)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        made = await client.post("/v1/broadcasts", json=body, headers={**a.auth, **key})
        assert made.status_code == 201, made.text
        created = made.json()
        assert (created["status"], created["name"], created["matching_contacts"]) == ("scheduled", "Doors", 2)
        assert created["message_type"] == "text" and created["recipients"] == 0
        again = await client.post("/v1/broadcasts", json=body, headers={**a.auth, **key})
        assert again.status_code == 201 and again.json() == created
        assert again.headers["idempotent-replayed"] == "true"
        other = await client.post("/v1/broadcasts", json={**body, "name": "Other"}, headers={**a.auth, **key})
        _problem(other, 422)
        second = (await client.post("/v1/broadcasts", json={**body, "name": "Second"}, headers=a.auth)).json()
        page1 = (await client.get("/v1/broadcasts", params={"limit": 1}, headers=a.auth)).json()
        assert [b["id"] for b in page1["data"]] == [second["id"]] and page1["next_cursor"]
        page2 = (
            await client.get(
                "/v1/broadcasts", params={"limit": 1, "cursor": page1["next_cursor"]}, headers=a.auth
            )
        ).json()
        assert [b["id"] for b in page2["data"]] == [created["id"]] and page2["next_cursor"] is None

        bid = created["id"]
        paused = await client.post(f"/v1/broadcasts/{bid}/pause", headers=a.auth)
        assert paused.json() == {"id": bid, "status": "paused", "released": 0}
        resumed = (await client.post(f"/v1/broadcasts/{bid}/resume", headers=a.auth)).json()
        assert resumed["status"] == "scheduled"
        assert await _start(app_pool, a, bid) == 2
        shown = (await client.get(f"/v1/broadcasts/{bid}", headers=a.auth)).json()
        assert (shown["status"], shown["recipients"], shown["pending"]) == ("running", 2, 2)
        assert shown["tokens_reserved"] > 0 and shown["estimated_finish"]
        first = (
            await client.get(f"/v1/broadcasts/{bid}/recipients", params={"limit": 1}, headers=a.auth)
        ).json()
        rest = (
            await client.get(
                f"/v1/broadcasts/{bid}/recipients",
                params={"limit": 1, "cursor": first["next_cursor"]},
                headers=a.auth,
            )
        ).json()
        assert [r["position"] for r in first["data"] + rest["data"]] == [1, 2] and rest["next_cursor"] is None
        assert {r["contact_id"] for r in first["data"] + rest["data"]} == {str(c) for c in a.contacts}
        exported = await client.get(f"/v1/broadcasts/{bid}/recipients.csv", headers=a.auth)
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert tuple(rows[0]) == RECIPIENT_FIELDS and [r["status"] for r in rows] == ["pending", "pending"]
        cancelled = (await client.post(f"/v1/broadcasts/{bid}/cancel", headers=a.auth)).json()
        assert cancelled["status"] == "cancelled" and cancelled["released"] == shown["tokens_reserved"]
        refused = await client.post(f"/v1/broadcasts/{bid}/resume", headers=a.auth)
        assert "cancelled" in _problem(refused, 409)["detail"]
        wallet = (await client.get("/v1/wallet", headers=a.auth)).json()
        assert wallet["balance"] == 1000  # reserved, then all released


async def test_broadcasts_refused_as_invalid(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with api_client(settings, app_pool) as client:
        for body, where in (
            ({"name": "nothing to say"}, "text or template"),
            ({"text": "hi", "at": "2026-12-24T18:00:00"}, "at"),  # no offset
            ({"text": "hi", "audience": {"colour": "red"}}, "audience"),
            ({"text": "Hi {{nickname}}"}, "nickname"),
            ({"template": {"name": "promo"}}, "language"),
            ({"text": "hi", "at": "1900-01-01T00:00:00+00:00"}, "2000"),
        ):
            refused = await client.post("/v1/broadcasts", json=body, headers=a.auth)
            assert where in _problem(refused, 422)["detail"] or where in refused.text, (body, refused.text)
        _problem(await client.get(f"/v1/broadcasts/{uuid.uuid4()}", headers=a.auth), 404)
        _problem(await client.get("/v1/broadcasts/x/recipients", headers=a.auth), 422)
        _problem(await client.get("/v1/broadcasts", params={"cursor": "bm9wZQ"}, headers=a.auth), 400)
        bad_position = await client.get(
            f"/v1/broadcasts/{uuid.uuid4()}/recipients",
            params={"cursor": "WyIyMDI2IiwgIngiXQ"},
            headers=a.auth,
        )
        _problem(bad_position, 400)


async def test_a_media_broadcast_by_the_api(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    poster = {"type": "image", "url": "https://cdn.example.org/poster.jpg"}
    async with api_client(settings, app_pool) as client:
        made = await client.post(
            "/v1/broadcasts", json={"text": "Tonight, {{name}}", "media": poster, "at": LATER}, headers=a.auth
        )
        assert made.status_code == 201, made.text
        created = made.json()
        assert (created["message_type"], created["media_type"], created["media_url"]) == (
            "image",
            "image",
            "https://cdn.example.org/poster.jpg",
        )
        shown = (await client.get(f"/v1/broadcasts/{created['id']}", headers=a.auth)).json()
        assert (shown["media_type"], shown["media_url"]) == ("image", poster["url"])
        async with tenant_tx(app_pool, a.org_id) as conn:  # what the fan-out sends (as the CLI's --image)
            row = await conn.fetchrow(
                "SELECT media_type, media_url, message_content FROM broadcasts WHERE id = $1",
                UUID(created["id"]),
            )
        assert tuple(row) == ("image", poster["url"], "Tonight, {{name}}")
        by_id = {
            "media": {"type": "document", "id": "1234567"},
            "template": {"name": "promo", "language": "en"},
        }
        both = await client.post("/v1/broadcasts", json={**by_id, "at": LATER}, headers=a.auth)
        assert both.status_code == 201, both.text
        assert (both.json()["message_type"], both.json()["media_url"]) == ("document_or_template", "1234567")
        for media, where in (
            ({"type": "image", "url": "http://cdn.example.org/poster.jpg"}, "neither an https:// URL"),
            ({"type": "image"}, "exactly one of url"),
            ({"type": "image", "url": "https://x.org/a.jpg", "id": "12"}, "exactly one of url"),
            ({"type": "video", "id": "abc"}, "not an uploaded media id"),
            ({"type": "sticker", "id": "12"}, "media.type"),
            ({"type": "image", "id": "12", "caption": "x"}, "caption"),
        ):
            refused = await client.post("/v1/broadcasts", json={"media": media}, headers=a.auth)
            assert where in _problem(refused, 422)["detail"], (media, refused.text)
        long_caption = {"media": {"type": "image", "id": "12"}, "text": "x" * 1025}
        refused = await client.post("/v1/broadcasts", json=long_caption, headers=a.auth)
        assert "at most 1024" in _problem(refused, 422)["detail"]


async def test_scopes_of_broadcasts_templates_and_wallet(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    reader, _ = await new_key(app_pool, a.org_id, ["broadcasts:read", "templates:read", "wallet:read"])
    auth = {"Authorization": f"Bearer {reader}"}
    content_only, _ = await new_key(app_pool, a.org_id, ["content"])
    async with api_client(settings, app_pool) as client:
        assert (await client.get("/v1/broadcasts", headers=auth)).status_code == 200
        assert (await client.get("/v1/templates", headers=auth)).status_code == 200
        refused = await client.post("/v1/broadcasts", json={"text": "hi"}, headers=auth)
        assert "broadcasts:write" in _problem(refused, 403)["detail"]
        assert (
            "templates:write"
            in _problem(await client.post("/v1/templates/sync", headers=auth), 403)["detail"]
        )
        top_up = await client.post(
            "/v1/wallet/topups", json={"tokens": 10, "phone": "254712345678"}, headers=auth
        )
        assert "wallet:write" in _problem(top_up, 403)["detail"]
        other = {"Authorization": f"Bearer {content_only}"}
        assert "broadcasts:read" in _problem(await client.get("/v1/broadcasts", headers=other), 403)["detail"]
        assert "templates:read" in _problem(await client.get("/v1/templates", headers=other), 403)["detail"]


async def _b_broadcast(app_pool: Any, b: Tenant) -> str:
    async with tenant_tx(app_pool, b.org_id) as conn:
        made = await broadcasts.create(
            conn, b.org_id, broadcasts.NewBroadcast(name="Beta news", text="hello")
        )
    assert made is not None
    return str(made)


async def test_a_key_never_reaches_another_organisations_outreach(
    settings, app_pool, owner_pool, tenants
) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    theirs = await _b_broadcast(app_pool, b)
    async with tenant_tx(app_pool, b.org_id) as conn:
        purchase = await conn.fetchval(
            """INSERT INTO token_purchases (wallet_id, organization_id, tokens, amount, currency, payment_status)
               SELECT id, organization_id, 5, 5, 'KES', 'pending' FROM wallets RETURNING id"""
        )
        await conn.execute(
            """INSERT INTO payment_requests (organization_id, purpose, token_purchase_id, phone, amount,
                                             account_reference, description)
               VALUES ($1, 'tokens', $2, '254712345678', 5, 'TOKENS', 'Tokens')""",
            b.org_id,
            purchase,
        )
    async with owner_pool.acquire() as conn:
        before = await conn.fetchrow(
            "SELECT status, paused_at, cancelled_at FROM broadcasts WHERE id = $1", UUID(theirs)
        )
    async with api_client(settings, app_pool) as client:
        for method, path in (
            ("GET", f"/v1/broadcasts/{theirs}"),
            ("POST", f"/v1/broadcasts/{theirs}/pause"),
            ("POST", f"/v1/broadcasts/{theirs}/resume"),
            ("POST", f"/v1/broadcasts/{theirs}/cancel"),
            ("GET", f"/v1/broadcasts/{theirs}/recipients"),
            ("GET", f"/v1/broadcasts/{theirs}/recipients.csv"),
            ("GET", f"/v1/wallet/topups/{purchase}"),
        ):
            response = await client.request(method, path, headers=a.auth)
            _problem(response, 404)
            assert "Beta" not in response.text
        for audience in (
            {"survey_id": b.ids["survey"]},
            {"poll_id": b.ids["poll"]},
            {"event_id": b.ids["event"]},
            {"ticket_type_id": b.ids["ticket_type"]},
        ):
            refused = await client.post(
                "/v1/broadcasts", json={"text": "hi", "audience": audience}, headers=a.auth
            )
            assert next(iter(audience.values())) in _problem(refused, 404)["detail"]
        refused = await client.post(
            "/v1/broadcasts",
            json={"text": "hi", "event_id": b.ids["event"], "audience": {"tags": ["x"]}},
            headers=a.auth,
        )
        _problem(refused, 404)
        listed = (await client.get("/v1/broadcasts", headers=a.auth)).text
        assert theirs not in listed and "Beta" not in listed
        assert theirs in (await client.get("/v1/broadcasts", headers=b.auth)).text
        assert (await client.get(f"/v1/wallet/topups/{purchase}", headers=b.auth)).status_code == 200
    async with owner_pool.acquire() as conn:
        after = await conn.fetchrow(
            "SELECT status, paused_at, cancelled_at FROM broadcasts WHERE id = $1", UUID(theirs)
        )
        made_by_a = await conn.fetchval(
            "SELECT count(*) FROM broadcasts WHERE organization_id = $1", a.org_id
        )
    assert after == before and made_by_a == 0


@pytest.fixture
async def whatsapp() -> AsyncIterator[tuple[WhatsAppSimulator, str]]:
    sim = WhatsAppSimulator(accept_any_token=True)
    url = await sim.start()
    yield sim, url
    await sim.stop()


async def test_templates_synced_and_listed(settings, make_org, app_pool, whatsapp) -> None:  # type: ignore[no-untyped-def]
    sim, url = whatsapp
    waba = f"waba{uuid.uuid4().hex[:10]}"
    org, _ = await make_org("Tpl", business_account_id=waba)
    sim.set_templates(
        waba,
        [
            {
                "name": "show_reminder",
                "language": "en",
                "status": "APPROVED",
                "category": "MARKETING",
                "components": [{"type": "BODY", "text": "Hello {{1}}"}],
            },
            {"name": "draft_one", "language": "sw", "status": "PENDING", "components": []},
        ],
    )
    key, _ = await new_key(app_pool, org, ["templates"])
    auth = {"Authorization": f"Bearer {key}"}
    without, _ = await make_org("NoWaba")
    other, _ = await new_key(app_pool, without, ["templates"])
    async with api_client(settings, app_pool, whatsapp_api_base_url=AnyUrl(url)) as client:
        assert (await client.get("/v1/templates", headers=auth)).json()["data"] == []
        synced = await client.post("/v1/templates/sync", headers=auth)
        assert synced.status_code == 200, synced.text
        assert synced.json() == {"added": 2, "updated": 0, "removed": 0, "total": 2}
        listed = (await client.get("/v1/templates", headers=auth)).json()["data"]
        assert [(t["name"], t["language"], t["status"]) for t in listed] == [
            ("draft_one", "sw", "PENDING"),
            ("show_reminder", "en", "APPROVED"),
        ]
        assert listed[1]["components"] == [{"type": "BODY", "text": "Hello {{1}}"}]
        assert (await client.get("/v1/templates", headers={"Authorization": f"Bearer {other}"})).json()[
            "data"
        ] == []
        no_account = await client.post("/v1/templates/sync", headers={"Authorization": f"Bearer {other}"})
        assert "Business Account" in _problem(no_account, 409)["detail"]
    async with api_client(settings, app_pool, whatsapp_api_base_url=AnyUrl("http://127.0.0.1:9")) as client:
        down = await client.post("/v1/templates/sync", headers=auth)
        assert "Cloud API" in _problem(down, 502)["detail"]


@pytest.fixture
async def mpesa() -> AsyncIterator[tuple[MpesaSimulator, str]]:
    sim = MpesaSimulator("ck", "cs", "174379", "passkey", default_outcome="no_callback")
    url = await sim.start()
    yield sim, url
    await sim.stop()


async def test_wallet_top_up_pushed_once_per_key(settings, app_pool, tenants, mpesa) -> None:  # type: ignore[no-untyped-def]
    sim, url = mpesa
    a, b = tenants
    daraja = {
        "mpesa_base_url": AnyUrl(url),
        "mpesa_consumer_key": "ck",
        "mpesa_consumer_secret": "cs",
        "mpesa_shortcode": "174379",
        "mpesa_passkey": "passkey",
    }
    payer = "254712345678"
    async with api_client(settings, app_pool, **daraja) as client:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        asked = await client.post(
            "/v1/wallet/topups", json={"tokens": 5000, "phone": payer}, headers={**a.auth, **key}
        )
        assert asked.status_code == 201, asked.text
        top_up = asked.json()
        assert (top_up["status"], top_up["tokens"], top_up["bonus_tokens"], top_up["amount"]) == (
            "pending",
            5000,
            250,
            5000,
        )
        assert top_up["checkout_request_id"] and top_up["phone"] == payer
        pushes = [r for r in sim.requests if r["phone"] == payer]
        assert len(pushes) == 1 and pushes[0]["amount"] == 5000
        again = await client.post(
            "/v1/wallet/topups", json={"tokens": 5000, "phone": payer}, headers={**a.auth, **key}
        )
        assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
        assert again.json()["id"] == top_up["id"]
        assert len([r for r in sim.requests if r["phone"] == payer]) == 1  # no second push
        shown = (await client.get(f"/v1/wallet/topups/{top_up['id']}", headers=a.auth)).json()
        assert shown == top_up
        _problem(await client.get(f"/v1/wallet/topups/{top_up['id']}", headers=b.auth), 404)
        _problem(
            await client.post("/v1/wallet/topups", json={"tokens": 5, "phone": "0712345678"}, headers=a.auth),
            422,
        )
        _problem(
            await client.post("/v1/wallet/topups", json={"tokens": 0, "phone": payer}, headers=a.auth), 422
        )
        wallet = (await client.get("/v1/wallet", headers=a.auth)).json()
        assert wallet["balance"] == 1000  # nothing credited before M-Pesa confirms
    async with api_client(settings, app_pool, mpesa_base_url=AnyUrl("http://127.0.0.1:9")) as client:
        down = await client.post("/v1/wallet/topups", json={"tokens": 10, "phone": payer}, headers=a.auth)
        assert down.status_code == 201
        assert down.json()["status"] == "failed" and "unreachable" in down.json()["reason"]
    async with tenant_tx(app_pool, a.org_id) as conn:
        secrets = await conn.fetch(
            "SELECT callback_token_hash FROM payment_requests WHERE purpose = 'tokens'"
        )
        stored = await conn.fetch("SELECT response::text AS r FROM api_idempotency")
    assert len(secrets) == 2 and all(s["callback_token_hash"] for s in secrets)
    assert all(str(a.org_id.hex) not in r["r"] for r in stored)  # no callback secret kept in a stored answer
