"""Message templates: synced from the Cloud API (the simulator, every page, over real HTTP), kept current by the
status and quality webhooks through the gateway and the inbound role, and sent only when APPROVED with
parameters that match the template. Real PostgreSQL (as the application role), RabbitMQ and simulators."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from engine.db import tenant_tx
from engine.inbound import arrive
from engine.local_stack import LocalStack
from engine.orgs import update_organization
from engine.replies import write_outbound
from engine.templates import TemplateError, placeholders, sync_templates, template_send
from engine.whatsapp.client import CloudApiClient, new_session
from simulators import ServerRunner  # noqa: F401  (the simulators' base, started by WhatsAppSimulator)
from simulators.whatsapp import WhatsAppSimulator
from tests.helpers import phone, run_cli, wait_until

BODY2: dict[str, Any] = {"type": "BODY", "text": "Hello {{1}}, doors open at {{2}}."}
TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "show_reminder",
        "language": "en",
        "status": "APPROVED",
        "category": "MARKETING",
        "quality_score": {"score": "GREEN"},
        "components": [BODY2, {"type": "FOOTER", "text": "Reply STOP to opt out"}],
    },
    {
        "name": "show_reminder",
        "language": "sw",
        "status": "PENDING",
        "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Habari {{1}}, milango inafunguliwa saa {{2}}."}],
    },
    {
        "name": "poster",
        "language": "en",
        "status": "APPROVED",
        "category": "MARKETING",
        "components": [
            {"type": "HEADER", "format": "IMAGE"},
            {"type": "BODY", "text": "See you at {{1}}"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "text": "Tickets", "url": "https://t.example/{{1}}"},
                    {"type": "QUICK_REPLY", "text": "Not now"},
                ],
            },
        ],
    },
    {
        "name": "named_hello",
        "language": "en",
        "status": "APPROVED",
        "category": "UTILITY",
        "parameter_format": "NAMED",
        "components": [{"type": "BODY", "text": "Hi {{first_name}}, your seat is {{seat}}"}],
    },
    {
        "name": "rejected_one",
        "language": "en",
        "status": "REJECTED",
        "rejected_reason": "PROMOTIONAL",
        "components": [{"type": "BODY", "text": "x"}],
    },
    {
        "name": "paused_one",
        "language": "en",
        "status": "PAUSED",
        "components": [{"type": "BODY", "text": "x"}],
    },
    {
        "name": "disabled_one",
        "language": "en",
        "status": "DISABLED",
        "components": [{"type": "BODY", "text": "y"}],
    },
]
TEMPLATES += [
    {
        "name": f"filler_{i:02d}",
        "language": "en",
        "status": "APPROVED",
        "category": "UTILITY",
        "components": [{"type": "BODY", "text": "Hello"}],
    }
    for i in range(8)
]


@pytest.fixture
async def simulator():  # type: ignore[no-untyped-def]
    sim = WhatsAppSimulator(accept_any_token=True)
    url = await sim.start()
    yield sim, url
    await sim.stop()


async def _org_with_templates(make_org, app_pool, sim: WhatsAppSimulator, url: str) -> tuple[UUID, str]:  # type: ignore[no-untyped-def]
    waba = f"waba{uuid.uuid4().hex[:10]}"
    org, _ = await make_org("Tpl", business_account_id=waba)
    sim.set_templates(waba, TEMPLATES)
    async with new_session() as session:
        client = CloudApiClient(session, url, "v23.0")
        result = await sync_templates(app_pool, org, client)
    assert result.total == len(TEMPLATES)
    return org, waba


async def _send(app_pool, org, name, language, params):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return await template_send(conn, org, name, language, params, to="254700000001")


async def test_sync_reads_every_page_and_replaces_what_is_gone(simulator, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    sim, url = simulator
    org, waba = await _org_with_templates(make_org, app_pool, sim, url)
    pages = [p for p in sim.template_pages if p["waba_id"] == waba]
    assert len(pages) >= 1 and sum(p["count"] for p in pages) == len(TEMPLATES)
    # a small page size: every page followed by its cursor
    sim.set_templates(waba, TEMPLATES[:5])
    sim.template_pages.clear()
    async with new_session() as session:
        from engine.templates import fetch_all_templates

        listed = await fetch_all_templates(CloudApiClient(session, url, "v23.0"), waba, "t", page_size=2)
        assert [t["name"] for t in listed] == [t["name"] for t in TEMPLATES[:5]]
        assert [p["count"] for p in sim.template_pages] == [2, 2, 1]
        result = await sync_templates(app_pool, org, CloudApiClient(session, url, "v23.0"))
    assert (result.added, result.removed, result.total) == (0, len(TEMPLATES) - 5, 5)
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch("SELECT name, language, status, category, quality FROM message_templates")
    assert {(r["name"], r["language"]) for r in rows} == {(t["name"], t["language"]) for t in TEMPLATES[:5]}
    reminder = next(r for r in rows if r["name"] == "show_reminder" and r["language"] == "en")
    assert (reminder["status"], reminder["category"], reminder["quality"]) == (
        "APPROVED",
        "MARKETING",
        "GREEN",
    )


async def test_only_approved_templates_are_sent(simulator, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    sim, url = simulator
    org, _ = await _org_with_templates(make_org, app_pool, sim, url)
    payload = await _send(app_pool, org, "show_reminder", "en", ["Akinyi", "18:00"])
    assert payload["type"] == "template" and payload["to"] == "254700000001"
    assert payload["template"] == {
        "name": "show_reminder",
        "language": {"code": "en"},
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Akinyi"}, {"type": "text", "text": "18:00"}],
            }
        ],
    }
    cases = [
        ("show_reminder", "sw", "not_approved", "PENDING"),
        ("rejected_one", "en", "not_approved", "REJECTED"),
        ("paused_one", "en", "held", "PAUSED"),
        ("disabled_one", "en", "held", "DISABLED"),
        ("show_reminder", "fr", "not_found", "exists in en, sw"),
        ("nothing_like_it", "en", "not_found", "templates sync"),
    ]
    for name, language, reason, said in cases:
        with pytest.raises(TemplateError) as caught:
            await _send(app_pool, org, name, language, ["a", "b"])
        assert caught.value.reason == reason, (name, language)
        assert said in str(caught.value)


@pytest.mark.parametrize(
    ("name", "params", "said"),
    [
        ("show_reminder", ["Akinyi"], "the body takes 2 parameters ({{1}}, {{2}}), 1 given"),
        ("show_reminder", ["a", "b", "c"], "3 given"),
        ("show_reminder", None, "0 given"),
        (
            "show_reminder",
            ["a", {"type": "image", "image": {"link": "https://x"}}],
            "must be currency or date_time or text, not image",
        ),
        ("show_reminder", ["a", ""], "body parameter 2 is empty"),
        ("show_reminder", ["a\nb", "c"], "a new line"),
        ("show_reminder", {"body": ["a", "b"], "header": ["x"]}, "has no header that takes parameters"),
        ("poster", {"body": ["Nairobi"], "buttons": {0: ["abc"]}}, "the header is IMAGE"),
        (
            "poster",
            {"header": ["not an image"], "body": ["N"], "buttons": {0: ["abc"]}},
            "must be image, not text",
        ),
        (
            "poster",
            {"header": {"type": "image", "image": {"link": "https://x/p.png"}}, "body": ["N"]},
            "button 0 (url) takes one text parameter",
        ),
        ("named_hello", ["Akinyi", "B4"], "named (first_name, seat)"),
        ("named_hello", {"body": {"first_name": "Akinyi"}}, "missing seat"),
        ("named_hello", {"body": {"first_name": "A", "seat": "B4", "row": "2"}}, "no parameter called row"),
    ],
)
async def test_parameters_are_checked_against_the_components(  # type: ignore[no-untyped-def]
    simulator, make_org, app_pool, name: str, params: Any, said: str
) -> None:
    sim, url = simulator
    org, _ = await _org_with_templates(make_org, app_pool, sim, url)
    with pytest.raises(TemplateError) as caught:
        await _send(app_pool, org, name, "en", params)
    assert caught.value.reason == "parameters"
    assert said in str(caught.value), str(caught.value)


async def test_headers_buttons_and_named_parameters_are_built(simulator, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    sim, url = simulator
    org, _ = await _org_with_templates(make_org, app_pool, sim, url)
    image = {"type": "image", "image": {"link": "https://x.example/p.png"}}
    poster = await _send(
        app_pool,
        org,
        "poster",
        "en",
        {"header": image, "body": ["Nairobi"], "buttons": {0: ["abc"], 1: ["no"]}},
    )
    assert poster["template"]["components"] == [
        {"type": "header", "parameters": [image]},
        {"type": "body", "parameters": [{"type": "text", "text": "Nairobi"}]},
        {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "abc"}]},
        {
            "type": "button",
            "sub_type": "quick_reply",
            "index": "1",
            "parameters": [{"type": "payload", "payload": "no"}],
        },
    ]
    named = await _send(app_pool, org, "named_hello", "en", {"body": {"seat": "B4", "first_name": "Akinyi"}})
    assert named["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Akinyi", "parameter_name": "first_name"},
        {"type": "text", "text": "B4", "parameter_name": "seat"},
    ]
    assert placeholders("{{1}} and {{ 2 }} and {{1}}") == ["1", "2"]


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings, roles=("inbound", "relay", "sender")).start()
    yield st
    await st.stop()


async def _template_row(app_pool, org, name: str, language: str = "en") -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        row = await conn.fetchrow(
            "SELECT status, status_reason, quality FROM message_templates WHERE name = $1 AND language = $2",
            name,
            language,
        )
    return dict(row)


async def test_status_and_quality_webhooks_are_applied(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    sim = stack.whatsapp
    org, waba = await _org_with_templates(make_org, app_pool, sim, str(stack.settings.whatsapp_api_base_url))  # type: ignore[union-attr]
    assert stack.poster is not None
    response = await sim.post_template_status(
        stack.poster, waba, "show_reminder", "en", "PAUSED", "LOW_QUALITY"
    )
    assert response.status_code == 200

    async def paused() -> bool:
        return (await _template_row(app_pool, org, "show_reminder"))["status"] == "PAUSED"

    await wait_until(paused, timeout=20)
    assert (await _template_row(app_pool, org, "show_reminder"))["status_reason"] == "LOW_QUALITY"
    with pytest.raises(TemplateError) as caught:
        await _send(app_pool, org, "show_reminder", "en", ["a", "b"])
    assert caught.value.reason == "held" and "PAUSED: LOW_QUALITY" in str(caught.value)

    await sim.post_template_quality(stack.poster, waba, "show_reminder", "en", "YELLOW")
    await sim.post_template_status(stack.poster, waba, "show_reminder", "en", "REINSTATED")

    async def reinstated() -> bool:
        row = await _template_row(app_pool, org, "show_reminder")
        return row["status"] == "APPROVED" and row["quality"] == "YELLOW"

    await wait_until(reinstated, timeout=20)
    assert (await _send(app_pool, org, "show_reminder", "en", ["a", "b"]))["type"] == "template"
    # another account's webhook changes nothing here
    await sim.post_template_status(stack.poster, "waba-of-someone-else", "show_reminder", "en", "DISABLED")
    await sim.post_template_status(stack.poster, waba, "rejected_one", "en", "APPROVED")
    await wait_until(lambda: _is(app_pool, org, "rejected_one", "APPROVED"), timeout=20)
    assert (await _template_row(app_pool, org, "show_reminder"))["status"] == "APPROVED"


async def _is(app_pool, org, name: str, status: str) -> bool:  # type: ignore[no-untyped-def]
    return (await _template_row(app_pool, org, name))["status"] == status


async def test_a_template_send_goes_out_on_the_bulk_lane(stack: LocalStack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    """What template_send returns is a send job the pipeline carries: outbox (lane bulk) -> relay -> sender ->
    the simulator, which checks it against the same templates as Meta would."""
    sim = stack.whatsapp
    org, _ = await _org_with_templates(make_org, app_pool, sim, str(stack.settings.whatsapp_api_base_url))  # type: ignore[union-attr]
    async with tenant_tx(app_pool, org) as conn:
        pnid = await conn.fetchval("SELECT whatsapp_phone_id FROM organizations")
        to = phone()
        arrival = await arrive(
            conn, org, "wa_message", "message", {"external_id": f"x-{uuid.uuid4()}", "wa_id": to}
        )
        assert arrival is not None and arrival.contact is not None and arrival.conversation is not None
        payload = await template_send(conn, org, "show_reminder", "en", ["Akinyi", "18:00"], to=to)
        job = {
            "organization_id": str(org),
            "phone_number_id": pnid,
            "to": to,
            "contact_key": to,
            "type": "template",
            "request": payload,
        }
        message_id = await write_outbound(
            conn,
            organization_id=org,
            conversation_id=arrival.conversation.id,
            contact_id=arrival.contact.id,
            job=job,
            content="show_reminder",
            price=0,
            now=datetime.now(UTC),
            lane="bulk",
        )
        assert message_id is not None
        assert await conn.fetchval("SELECT lane FROM outbox WHERE message_id = $1", message_id) == "bulk"
    sent = await sim.wait_for_messages(1, to=to, timeout=20)
    assert sent[0]["payload"]["template"]["name"] == "show_reminder"

    async def recorded() -> Any:
        async with tenant_tx(app_pool, org) as conn:
            return await conn.fetchval("SELECT wa_status = 'sent' FROM messages WHERE id = $1", message_id)

    await wait_until(recorded, timeout=20)


async def test_the_outbox_refuses_an_unknown_lane(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Lane")
    async with tenant_tx(app_pool, org) as conn:
        with pytest.raises(ValueError, match="lane must be one of reply, bulk"):
            await write_outbound(
                conn,
                organization_id=org,
                conversation_id=uuid.uuid4(),
                contact_id=uuid.uuid4(),
                job={"type": "text"},
                content="x",
                price=0,
                now=datetime.now(UTC),
                lane="fast",  # type: ignore[arg-type]
            )


async def test_cli_business_account_sync_and_list(simulator, db_urls) -> None:  # type: ignore[no-untyped-def]
    sim, url = simulator
    tag = uuid.uuid4().hex[:8]
    waba = f"waba{tag}"
    sim.set_templates(waba, TEMPLATES[:3])
    env_url = {"WHATSAPP_API_BASE_URL": url}

    def cli(*args: str) -> Any:
        import os

        old = {k: os.environ.get(k) for k in env_url}
        os.environ.update(env_url)
        try:
            return run_cli(*args)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    created = await asyncio.to_thread(
        cli,
        "org",
        "create",
        "--name",
        f"Cli {tag}",
        "--phone-number-id",
        f"pn{tag}",
        "--access-token",
        "tok",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    org_id = json.loads(created.stdout)[0]["id"]
    missing = await asyncio.to_thread(cli, "templates", "sync", "--org", f"pn{tag}")
    assert missing.returncode == 1 and "no WhatsApp Business Account id" in missing.stderr + missing.stdout
    updated = await asyncio.to_thread(
        cli,
        "org",
        "update",
        f"pn{tag}",
        "--business-account-id",
        waba,
        "--send-rate",
        "250",
        "--messaging-limit",
        "10000",
        "--json",
    )
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)[0]["business_account_id"] == waba
    bad = await asyncio.to_thread(cli, "org", "update", f"pn{tag}", "--messaging-limit", "300")
    assert bad.returncode != 0 and "250, 2000, 10000, 100000 or unlimited" in bad.stderr + bad.stdout
    synced = await asyncio.to_thread(cli, "templates", "sync", "--org", org_id, "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)[0]["total"] == 3
    listed = await asyncio.to_thread(cli, "templates", "list", "--org", f"pn{tag}", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["language"], r["status"]) for r in rows] == [
        ("poster", "en", "APPROVED"),
        ("show_reminder", "en", "APPROVED"),
        ("show_reminder", "sw", "PENDING"),
    ]
    table = await asyncio.to_thread(cli, "templates", "list", "--org", f"pn{tag}")
    assert "show_reminder" in table.stdout and "PENDING" in table.stdout
    shown = await asyncio.to_thread(cli, "org", "show", f"pn{tag}", "--json")
    assert json.loads(shown.stdout)[0]["business_account_id"] == waba
    pool = await asyncpg.connect(db_urls.owner)
    try:
        org_settings = await pool.fetchval("SELECT settings FROM organizations WHERE id = $1", UUID(org_id))
    finally:
        await pool.close()
    assert {"send_rate_per_second": 250.0, "messaging_limit": 10000}.items() <= json.loads(
        org_settings
    ).items()


async def test_update_merges_and_removes_settings(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Upd")
    assert await update_organization(app_pool, org, settings={"messaging_limit": 2000, "x": 1})
    assert await update_organization(app_pool, org, settings={"x": None})
    async with tenant_tx(app_pool, org) as conn:
        org_settings = await conn.fetchval("SELECT settings FROM organizations")
    assert org_settings["messaging_limit"] == 2000 and "x" not in org_settings
    assert not await update_organization(app_pool, uuid.uuid4(), settings={"x": 1})


async def test_the_periodic_sync_fetches_every_account_and_survives_a_failing_one(  # type: ignore[no-untyped-def]
    simulator, make_org, app_pool, owner_pool
) -> None:
    from engine.templates import sync_all_once

    sim, url = simulator
    good, broken = f"waba{uuid.uuid4().hex[:8]}", f"waba{uuid.uuid4().hex[:8]}"
    sim.set_templates(good, TEMPLATES[:2])
    org, _ = await make_org("Periodic", business_account_id=good)
    await make_org("Broken", business_account_id=broken)  # the simulator does not know this account
    async with new_session() as session:
        synced = await sync_all_once(owner_pool, app_pool, CloudApiClient(session, url, "v23.0"))
    assert synced is not None and synced >= 1
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM message_templates") == 2
