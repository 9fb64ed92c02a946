"""Event webhooks to the CRM (engine/webhooks.py, sql/036): registration through the API (Idempotency-Key,
secrets shown once, other organisations' endpoints out of reach), events recorded in the transaction of the
change and only for endpoints that want them, deliveries signed, retried with backoff, leased, given up,
redelivered, visible through the API and the CLI; end to end, a STOP typed on WhatsApp reaches the CRM."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from engine import webhooks
from engine.db import tenant_tx
from engine.settings import Settings
from tests.api_helpers import Tenant, api_client, make_tenant
from tests.crm_receiver import CrmReceiver
from tests.helpers import run_cli, wait_until


@pytest.fixture
async def tenants(make_org, app_pool) -> tuple[Tenant, Tenant]:  # type: ignore[no-untyped-def]
    return await make_tenant(make_org, app_pool, "Alpha"), await make_tenant(make_org, app_pool, "Beta")


@pytest.fixture
async def crm() -> AsyncIterator[CrmReceiver]:
    receiver = await CrmReceiver().start()
    yield receiver
    await receiver.stop()


def test_signature_is_hmac_over_time_and_body() -> None:
    body = b'{"id":"e1"}'
    header = webhooks.sign("whsec_x", body, at=1_700_000_000)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert webhooks.verify("whsec_x", body, header, now=1_700_000_100)
    assert not webhooks.verify("whsec_x", body + b" ", header, now=1_700_000_100)  # another body
    assert not webhooks.verify("whsec_y", body, header, now=1_700_000_100)  # another secret
    assert not webhooks.verify("whsec_x", body, header, now=1_700_000_000 + 301)  # too old: a replay
    assert not webhooks.verify("whsec_x", body, "v1=abc", now=1_700_000_000)


def test_backoff_doubles_to_a_cap() -> None:
    delays = [webhooks.backoff(n, 10.0) for n in (1, 2, 3, 20)]
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24 and 32 <= delays[2] <= 48
    assert delays[3] <= 3600 * 1.2


async def _register(client: httpx.AsyncClient, t: Tenant, url: str, events: list[str], **headers: str) -> Any:
    return await client.post(
        "/v1/webhooks", json={"url": url, "events": events}, headers={**t.auth, **headers}
    )


async def test_registration_idempotent_and_private(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    async with api_client(settings, app_pool) as client:
        key = str(uuid4())
        first = await _register(
            client, a, "http://127.0.0.1:9/hooks", ["survey.completed"], **{"Idempotency-Key": key}
        )
        assert first.status_code == 201, first.text
        made = first.json()
        assert made["secret"].startswith("whsec_") and made["events"] == ["survey.completed"]
        again = await _register(
            client, a, "http://127.0.0.1:9/hooks", ["survey.completed"], **{"Idempotency-Key": key}
        )
        assert (
            again.status_code == 201
            and again.json() == made
            and again.headers["idempotent-replayed"] == "true"
        )
        other = await _register(
            client, a, "http://127.0.0.1:9/other", ["poll.voted"], **{"Idempotency-Key": key}
        )
        assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
        # B may use the same Idempotency-Key: keys are per organisation
        assert (
            await _register(client, b, "http://127.0.0.1:9/b", ["poll.voted"], **{"Idempotency-Key": key})
        ).status_code == 201
        listed = (await client.get("/v1/webhooks", headers=a.auth)).json()["data"]
        assert [e["id"] for e in listed] == [made["id"]] and "secret" not in listed[0]
        assert made["secret"] not in (await client.get(f"/v1/webhooks/{made['id']}", headers=a.auth)).text
        unknown = await _register(client, a, "http://127.0.0.1:9/hooks", ["everything.happened"])
        assert unknown.status_code == 422
        not_http = await _register(client, a, "ftp://127.0.0.1/hooks", ["poll.voted"])
        assert not_http.status_code == 422
        # B's key: A's endpoint is not found, whatever the route
        for method, path in (
            ("GET", f"/v1/webhooks/{made['id']}"),
            ("GET", f"/v1/webhooks/{made['id']}/deliveries"),
            ("DELETE", f"/v1/webhooks/{made['id']}"),
        ):
            response = await client.request(method, path, headers=b.auth)
            assert response.status_code == 404, (path, response.text)
        assert made["id"] not in (await client.get("/v1/webhooks", headers=b.auth)).text
        read_only = await client.post(
            "/v1/webhooks",
            json={"url": "http://127.0.0.1:9/x", "events": ["poll.voted"]},
            headers={"Authorization": f"Bearer {await _read_key(app_pool, a)}"},
        )
        assert read_only.status_code == 403
        assert (await client.delete(f"/v1/webhooks/{made['id']}", headers=a.auth)).status_code == 204
        assert (await client.get(f"/v1/webhooks/{made['id']}", headers=a.auth)).json()["active"] is False
    async with tenant_tx(app_pool, a.org_id) as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM api_idempotency WHERE idempotency_key = $1", key) == 1
        )


async def _read_key(app_pool: Any, t: Tenant) -> str:
    from tests.api_helpers import new_key

    key, _ = await new_key(app_pool, t.org_id, ["read"])
    return key


async def _events(app_pool: Any, t: Tenant) -> list[dict[str, Any]]:
    async with tenant_tx(app_pool, t.org_id) as conn:
        rows = await conn.fetch(
            """SELECT e.type, e.data, d.status, d.endpoint_id FROM webhook_events e
               JOIN webhook_deliveries d ON d.event_id = e.id ORDER BY e.created_at, e.type"""
        )
    return [dict(r) for r in rows]


async def test_events_recorded_with_the_change_for_those_who_want_them(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    async with api_client(settings, app_pool) as client:
        made = (
            await _register(client, a, "http://127.0.0.1:9/h", ["contact.opted_out", "survey.completed"])
        ).json()
        contact = a.contacts[1]
        await client.post(f"/v1/contacts/{contact}/opt-out", headers=a.auth)
        await client.post(f"/v1/contacts/{contact}/opt-out", headers=a.auth)  # already out: no second event
        await client.post(f"/v1/contacts/{contact}/opt-in", headers=a.auth)  # not subscribed: nothing
        await client.post(f"/v1/contacts/{b.contacts[1]}/opt-out", headers=b.auth)  # B has no endpoint
    with pytest.raises(RuntimeError):  # a change rolled back records no event either
        async with tenant_tx(app_pool, a.org_id) as conn:
            await conn.execute("UPDATE contacts SET opted_in = false WHERE id = $1", a.contacts[0])
            raise RuntimeError("rolled back")
    async with tenant_tx(app_pool, a.org_id) as conn:  # a survey completed (as the bot's applier does)
        await conn.execute(
            """INSERT INTO survey_responses (organization_id, survey_id, contact_id, status, answers, completed_at)
               VALUES ($1, $2, $3, 'completed', '{"q1": "yes"}', now())""",
            a.org_id,
            UUID(a.ids["survey"]),
            a.contacts[1],
        )
    events = await _events(app_pool, a)
    assert [(e["type"], e["status"], str(e["endpoint_id"])) for e in events] == [
        ("contact.opted_out", "pending", made["id"]),
        ("survey.completed", "pending", made["id"]),
    ]
    assert events[0]["data"]["contact"]["id"] == str(a.contacts[1])
    assert events[1]["data"]["answers"] == {"q1": "yes"} and events[1]["data"]["survey_id"] == a.ids["survey"]
    assert await _events(app_pool, b) == []


def _fast(settings: Settings, **more: Any) -> Settings:
    return settings.model_copy(
        update={"webhook_backoff_seconds": 0.05, "webhook_timeout_seconds": 2.0, **more}
    )


async def _drain(owner_pool: Any, settings: Settings, until: Any, rounds: int = 200) -> None:
    async with httpx.AsyncClient(timeout=2.0) as http:
        for _ in range(rounds):
            await webhooks.deliver_due(owner_pool, http, settings)
            if await until():
                return
            await asyncio.sleep(0.03)
    raise AssertionError("deliveries did not settle")


async def test_delivery_signed_retried_and_visible(settings, app_pool, owner_pool, tenants, crm) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    crm.answers = [500, 503]
    async with api_client(settings, app_pool) as client:
        made = (await _register(client, a, crm.url, ["contact.opted_out"])).json()
        await client.post(f"/v1/contacts/{a.contacts[1]}/opt-out", headers=a.auth)

        async def delivered() -> bool:
            return [e["status"] for e in await _events(app_pool, a)] == ["delivered"]

        await _drain(owner_pool, _fast(settings), delivered)
        assert len(crm.received) == 3
        ids = {r.headers["X-ChatNation-Event-Id"] for r in crm.received}
        assert len(ids) == 1  # the same event every time: the receiver dedupes by it
        for request in crm.received:
            assert webhooks.verify(made["secret"], request.body, request.headers["X-ChatNation-Signature"])
            assert request.headers["X-ChatNation-Event"] == "contact.opted_out"
        body = json.loads(crm.received[-1].body)
        assert body["id"] in ids and body["type"] == "contact.opted_out"
        assert body["data"]["contact"]["id"] == str(a.contacts[1]) and body["organization_id"] == str(
            a.org_id
        )
        page = (await client.get(f"/v1/webhooks/{made['id']}/deliveries", headers=a.auth)).json()
        [delivery] = page["data"]
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == (
            "delivered",
            3,
            200,
        )
        assert delivery["event_id"] == body["id"] and delivery["delivered_at"]
        everything = (await client.get("/v1/webhooks/deliveries?status=delivered", headers=a.auth)).json()
        assert [d["id"] for d in everything["data"]] == [delivery["id"]]
    shown = run_cli("webhooks", "deliveries", "--org", str(a.org_id), "--json")
    assert shown.returncode == 0, shown.stderr
    assert [(d["id"], d["status"], d["attempts"]) for d in json.loads(shown.stdout)] == [
        (delivery["id"], "delivered", 3)
    ]


async def test_given_up_then_redelivered(settings, app_pool, owner_pool, tenants, crm) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    crm.answers = [500, 500]
    fast = _fast(settings, webhook_max_attempts=2)
    async with api_client(settings, app_pool) as client:
        await _register(client, a, crm.url, ["contact.opted_out"])
        await client.post(f"/v1/contacts/{a.contacts[1]}/opt-out", headers=a.auth)

        async def failed() -> bool:
            return [e["status"] for e in await _events(app_pool, a)] == ["failed"]

        await _drain(owner_pool, fast, failed)
        [delivery] = (await client.get("/v1/webhooks/deliveries", headers=a.auth)).json()["data"]
        assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("failed", 2, 500)
        assert "HTTP 500" in delivery["last_error"]
        assert (
            await client.post(f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=b.auth)
        ).status_code == 404
        again = await client.post(f"/v1/webhooks/deliveries/{delivery['id']}/redeliver", headers=a.auth)
        assert again.json()["status"] == "pending"

        async def delivered() -> bool:
            return [e["status"] for e in await _events(app_pool, a)] == ["delivered"]

        await _drain(owner_pool, fast, delivered)
    assert len(crm.received) == 3


async def test_a_lost_attempt_is_sent_again_after_its_lease(
    settings, app_pool, owner_pool, tenants, crm
) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with api_client(settings, app_pool) as client:
        await _register(client, a, crm.url, ["contact.opted_out"])
        await client.post(f"/v1/contacts/{a.contacts[1]}/opt-out", headers=a.auth)
    claimed = await webhooks.claim_due(owner_pool, lease_seconds=0.3)  # a sender that dies before it posts
    assert [d.event_type for d in claimed if d.url == crm.url] == ["contact.opted_out"]
    assert [d for d in await webhooks.claim_due(owner_pool, 0.3) if d.url == crm.url] == []  # leased
    await asyncio.sleep(0.4)

    async def delivered() -> bool:
        return [e["status"] for e in await _events(app_pool, a)] == ["delivered"]

    await _drain(owner_pool, _fast(settings), delivered)
    assert len(crm.received) == 1


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    from engine.local_stack import LocalStack

    st = await LocalStack(_fast(settings)).start()
    yield st
    await st.stop()


async def test_stop_on_whatsapp_reaches_the_crm(stack, make_org, app_pool, crm) -> None:  # type: ignore[no-untyped-def]
    """Through the gateway and the workers: STOP → the inbound transaction records contact.opted_out → the relay
    role delivers it, signed; the conversation's reply is not held up by the CRM (it answers slowly here)."""
    from simulators.chat import ChatDriver
    from state_machines.i18n import t
    from tests.helpers import phone

    org, new = await make_org("Hooks")
    async with tenant_tx(app_pool, org) as conn:
        made = await webhooks.create_endpoint(conn, org, crm.url, ["contact.opted_out"], stack.settings)
    crm.delay = 3.0
    wa_id = phone()
    user = ChatDriver(stack.whatsapp, stack.user(new.phone_number_id, wa_id, "Wanjiku"), quiet=0.3)
    await user.say("hi")
    assert user.texts(await user.say("STOP")) == [t("common.opted_out", "en")]

    async def posted() -> bool:
        return bool(crm.received)

    await wait_until(posted, timeout=20)
    started = asyncio.get_running_loop().time()
    assert user.texts(await user.say("hello")) == [
        t("common.unsubscribed", "en")
    ]  # while the CRM still hangs
    assert asyncio.get_running_loop().time() - started < crm.delay
    request = crm.received[0]
    assert webhooks.verify(made["secret"], request.body, request.headers["X-ChatNation-Signature"])
    assert json.loads(request.body)["data"]["contact"]["phone"] == wa_id
