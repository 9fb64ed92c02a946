"""Human handover end to end: WhatsApp → gateway → workers → the handover row and the CRM's webhook; the bot
silent; the unanswered notice; an agent's reply through the API, the outbox and the sender, in order; the
close bringing the menu back; another organisation's key reaching none of it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from engine import webhooks
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from state_machines.i18n import t
from tests.api_helpers import api_client, new_key
from tests.helpers import phone, wait_until


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def _org(make_org, app_pool, **org_settings: Any):  # type: ignore[no-untyped-def]
    org, new = await make_org("Handover", settings=org_settings)
    key, _ = await new_key(app_pool, org, ["*"])
    return org, new.phone_number_id, {"Authorization": f"Bearer {key}"}


async def test_handover_round_trip(stack, make_org, app_pool, settings) -> None:  # type: ignore[no-untyped-def]
    org, pnid, auth = await _org(
        make_org, app_pool, handover_wait_seconds=4, handover_hours="Mon-Fri 8am-5pm"
    )
    other, _, other_auth = await _org(make_org, app_pool)
    async with tenant_tx(app_pool, org) as conn:
        await webhooks.create_endpoint(
            conn, org, "http://127.0.0.1:9/never-called", ["handover.requested"], settings
        )
    wa_id = phone()
    user = ChatDriver(stack.whatsapp, stack.user(pnid, wa_id, "Wanjiku"), quiet=0.3)
    await user.say("hi")
    assert user.texts(await user.say("Talk to a person")) == [t("handover.requested", "en")]
    assert (await user.say("my ticket did not arrive", expect=0)) == []  # stored for the agents, not answered

    async with api_client(settings, app_pool) as client:

        async def stored() -> dict[str, Any] | None:  # the worker took the message (no reply tells us when)
            queue = (await client.get("/v1/handovers", headers=auth)).json()["data"]
            contents = [m["content"] for m in queue[0]["last_messages"]] if queue else []
            return queue[0] if len(queue) == 1 and "my ticket did not arrive" in contents else None

        item = await wait_until(stored, timeout=20)
        assert (item["status"], item["reason"], item["contact"]["phone"]) == ("waiting", "keyword", wa_id)
        handover_id = item["id"]
        assert (await client.get("/v1/handovers", headers=other_auth)).json()["data"] == []

        # nobody answered within handover_wait_seconds: a polite line with the hours of service
        notice = user.texts(await user.settle(expect=1, timeout=15))
        assert len(notice) == 1 and "Mon-Fri 8am-5pm" in notice[0]

        # another organisation's key: A's handover is not found on any route, and nothing is sent
        for method, path, body in (
            ("GET", f"/v1/handovers/{handover_id}", None),
            ("POST", f"/v1/handovers/{handover_id}/assign", {"agent": "Mallory"}),
            ("POST", f"/v1/handovers/{handover_id}/messages", {"text": "hello from B"}),
            ("POST", f"/v1/handovers/{handover_id}/close", None),
        ):
            response = await client.request(method, path, json=body, headers=other_auth)
            assert response.status_code == 404, (path, response.text)

        assigned = await client.post(
            f"/v1/handovers/{handover_id}/assign", json={"agent": "Achieng"}, headers=auth
        )
        assert assigned.json()["status"] == "assigned" and assigned.json()["assigned_to"] == "Achieng"
        idem = {"Idempotency-Key": str(uuid4()), **auth}
        body = {"text": "Hi Wanjiku, Achieng here: I am resending your ticket now.", "agent": "Achieng"}
        sent = await client.post(f"/v1/handovers/{handover_id}/messages", json=body, headers=idem)
        assert sent.status_code == 201, sent.text
        again = await client.post(f"/v1/handovers/{handover_id}/messages", json=body, headers=idem)
        assert again.json()["id"] == sent.json()["id"] and again.headers["idempotent-replayed"] == "true"
        assert user.texts(await user.settle(expect=1)) == [body["text"]]  # once, through the same sender

        closed = await client.post(f"/v1/handovers/{handover_id}/close", headers=auth)
        assert closed.json()["status"] == "closed"
        back = user.texts(await user.settle(expect=1))
        assert back and back[0].startswith(t("handover.closed", "en"))
        assert (await client.post(f"/v1/handovers/{handover_id}/close", headers=auth)).status_code == 409
        shut = await client.post(f"/v1/handovers/{handover_id}/messages", json={"text": "late"}, headers=auth)
        assert shut.status_code == 409
        assert (await client.get("/v1/handovers", headers=auth)).json()["data"] == []
        assert [
            h["id"] for h in (await client.get("/v1/handovers?status=closed", headers=auth)).json()["data"]
        ] == [handover_id]
    assert len(await user.say("hi")) >= 1  # the bot answers again

    async with tenant_tx(app_pool, org) as conn:
        events = await conn.fetch("SELECT type, data FROM webhook_events")
        outbound = await conn.fetch(
            "SELECT content FROM messages WHERE direction = 'outbound' AND payload->>'agent' = 'Achieng'"
        )
    assert [e["type"] for e in events] == ["handover.requested"]
    assert events[0]["data"]["contact"]["phone"] == wa_id and events[0]["data"]["handover_id"] == handover_id
    assert [r["content"] for r in outbound] == [body["text"]]
    async with tenant_tx(app_pool, other) as conn:
        assert await conn.fetchval("SELECT count(*) FROM messages WHERE content = 'hello from B'") == 0


async def test_agent_replies_need_the_24_hour_window(stack, make_org, app_pool, settings) -> None:  # type: ignore[no-untyped-def]
    org, pnid, auth = await _org(make_org, app_pool)
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Otieno"), quiet=0.3)
    assert user.texts(await user.say("AGENT")) == [t("handover.requested", "en")]
    async with tenant_tx(app_pool, org) as conn:
        handover_id: UUID = await conn.fetchval("SELECT id FROM handovers")
        await conn.execute(
            "UPDATE conversations SET last_user_message_at = last_user_message_at - $1::interval",
            timedelta(hours=25),
        )
    async with api_client(settings, app_pool) as client:
        refused = await client.post(
            f"/v1/handovers/{handover_id}/messages", json={"text": "hello?"}, headers=auth
        )
    assert refused.status_code == 409 and refused.json()["type"].endswith("outside-window")
    await wait_until(lambda: _no_pending_send(app_pool, org), timeout=5)
    # an approved template reaches them at any time
    await _approved(
        app_pool, org, "agent_follow_up", "Hello {{1}}, our team has an answer for you. Reply to continue."
    )
    template = {"name": "agent_follow_up", "language": "en", "params": ["Otieno"]}
    async with api_client(settings, app_pool) as client:
        bad = await client.post(
            f"/v1/handovers/{handover_id}/messages",
            json={"template": {**template, "params": []}},
            headers=auth,
        )
        assert bad.status_code == 409 and bad.json()["type"].endswith("template-parameters")
        neither = await client.post(
            f"/v1/handovers/{handover_id}/messages", json={"agent": "A"}, headers=auth
        )
        assert neither.status_code == 422
        sent = await client.post(
            f"/v1/handovers/{handover_id}/messages", json={"template": template}, headers=auth
        )
    assert sent.status_code == 201, sent.text
    [message] = await user.settle(expect=1)
    assert message["payload"]["type"] == "template"
    assert message["payload"]["template"]["name"] == "agent_follow_up"


async def _approved(app_pool: Any, org: UUID, name: str, body: str) -> None:
    """An approved template as a sync would have stored it."""
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute(
            """INSERT INTO message_templates (organization_id, whatsapp_business_id, name, language, category, status,
                                              parameter_format, components)
               VALUES ($1, 'waba', $2, 'en', 'UTILITY', 'APPROVED', 'POSITIONAL', $3)""",
            org,
            name,
            [{"type": "BODY", "text": body}],
        )


async def _no_pending_send(app_pool: Any, org: UUID) -> bool:
    async with tenant_tx(app_pool, org) as conn:
        return bool(await conn.fetchval("SELECT count(*) = 0 FROM messages WHERE content = 'hello?'"))


async def test_agents_get_a_whatsapp_notice_once(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    """settings.handover_agents: each agent's number gets one notice when a handover opens, through the outbox
    and the sender: a text to an agent who wrote within 24 hours, the handover_agent_template to one who did
    not; asking again while the handover is open tells nobody again."""
    chatting, silent = phone(), phone()
    org, pnid, _ = await _org(
        make_org,
        app_pool,
        handover_agents=[f"+{chatting}", silent, "not a number"],
        handover_agent_template={
            "name": "agent_handover",
            "language": "en",
            "params": ["{{name}}", "{{phone}}"],
        },
    )
    await _approved(app_pool, org, "agent_handover", "{{1}} ({{2}}) asks for a person: see the CRM.")
    agent = ChatDriver(stack.whatsapp, stack.user(pnid, chatting, "Achieng"), quiet=0.3)
    other = ChatDriver(stack.whatsapp, stack.user(pnid, silent, "Otieno"), quiet=0.3)
    await agent.say("hi")  # this agent is inside the 24-hour window
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Wanjiku"), quiet=0.3)
    await user.say("hi")
    assert user.texts(await user.say("AGENT")) == [t("handover.requested", "en")]
    [notice] = agent.texts(await agent.settle(expect=1, timeout=15))
    assert notice.startswith("New handover: Wanjiku (+" + user.user.wa_id + ") asks for a person")
    [sent] = await other.settle(expect=1, timeout=15)
    assert sent["payload"]["type"] == "template" and sent["payload"]["template"]["name"] == "agent_handover"
    params = [p["text"] for c in sent["payload"]["template"]["components"] for p in c["parameters"]]
    assert params == ["Wanjiku", "+" + user.user.wa_id]

    await user.say("AGENT again please", expect=0)
    assert await agent.settle(expect=0) == [] and await other.settle(expect=0) == []
    async with tenant_tx(app_pool, org) as conn:
        notices = await conn.fetch(
            """SELECT c.phone, m.tokens_consumed FROM messages m JOIN contacts c ON c.id = m.contact_id
               WHERE m.direction = 'outbound' AND m.payload->>'handover_id' IS NOT NULL"""
        )
    assert sorted((r["phone"], r["tokens_consumed"]) for r in notices) == sorted([(chatting, 0), (silent, 0)])
