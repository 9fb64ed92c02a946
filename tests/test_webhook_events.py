"""Every event type an endpoint can subscribe to, delivered end to end by the relay role of a running stack to a
real receiver on loopback that checks `X-ChatNation-Signature` as a CRM would, once per event id: through
WhatsApp (STOP, START, AGENT, a ticket bought and paid by M-Pesa, a payment for an event cancelled meanwhile:
payment.refund_due), and through the change the engine makes for the others (one parametrised path: a survey
completed, a poll vote, a check-in, a broadcast finished)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from engine import webhooks
from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from state_machines.i18n import t
from tests.api_helpers import Tenant, make_tenant
from tests.crm_receiver import CrmReceiver
from tests.helpers import phone, wait_until
from tests.test_payments_e2e import to_confirm
from tests.test_tickets_valid_e2e import event


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls) -> AsyncIterator[LocalStack]:  # type: ignore[no-untyped-def]
    fast = {
        "webhook_backoff_seconds": 0.05,
        "webhook_timeout_seconds": 2.0,
        "mpesa_query_backoff_seconds": 0.2,
    }
    st = await LocalStack(settings.model_copy(update=fast)).start()
    yield st
    await st.stop()


@pytest.fixture
async def crm() -> AsyncIterator[CrmReceiver]:
    receiver = await CrmReceiver().start()
    yield receiver
    await receiver.stop()


async def _subscribe(
    stack: LocalStack, app_pool: Any, org: UUID, crm: CrmReceiver, events: list[str]
) -> None:
    assert stack.settings is not None
    async with tenant_tx(app_pool, org) as conn:
        made = await webhooks.create_endpoint(conn, org, crm.url, events, stack.settings)
    crm.secrets.append(made["secret"])


async def _delivered(
    crm: CrmReceiver, app_pool: Any, org: UUID, types: set[str]
) -> dict[str, dict[str, Any]]:
    """Wait until every type arrived and every delivery row is delivered; each request signed and verified by
    the receiver, its event id in the header and the body, each event id posted once. The last body per type."""

    async def arrived() -> bool:
        return types <= {r.headers.get("X-ChatNation-Event") for r in crm.received}

    await wait_until(arrived, timeout=30)

    async def settled() -> bool:
        async with tenant_tx(app_pool, org) as conn:
            statuses = await conn.fetch("SELECT status, attempts FROM webhook_deliveries")
        return bool(statuses) and all(r["status"] == "delivered" for r in statuses)

    await wait_until(settled, timeout=30)
    await asyncio.sleep(0.3)  # a repeat would come now
    bodies: dict[str, dict[str, Any]] = {}
    ids = []
    for request in crm.received:
        assert request.verified is True, "the receiver could not verify the signature"
        body = json.loads(request.body)
        assert request.headers["X-ChatNation-Event-Id"] == body["id"]
        assert request.headers["X-ChatNation-Event"] == body["type"]
        assert body["organization_id"] == str(org)
        ids.append(body["id"])
        bodies[body["type"]] = body
    assert len(ids) == len(set(ids)), "an event was posted twice"
    assert set(bodies) == types, f"types delivered {sorted(bodies)}, subscribed {sorted(types)}"
    async with tenant_tx(app_pool, org) as conn:
        events = await conn.fetchval("SELECT count(*) FROM webhook_events")
    assert events == len(ids)
    return bodies


def _chat(stack: LocalStack, pnid: str) -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Wanjiku"), quiet=0.3)


async def test_stop_start_and_agent_typed_on_whatsapp(stack, make_org, app_pool, crm) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("HookChat")
    await _subscribe(
        stack, app_pool, org, crm, ["contact.opted_out", "contact.opted_in", "handover.requested"]
    )
    user = _chat(stack, new.phone_number_id)
    await user.say("hi")
    assert user.texts(await user.say("STOP")) == [t("common.opted_out", "en")]
    await user.say("START")
    assert user.texts(await user.say("AGENT")) == [t("handover.requested", "en")]
    bodies = await _delivered(
        crm, app_pool, org, {"contact.opted_out", "contact.opted_in", "handover.requested"}
    )
    for kind in bodies.values():
        assert kind["data"]["contact"]["phone"] == user.user.wa_id
    assert bodies["handover.requested"]["data"]["reason"] == "keyword"


async def _buy(user: ChatDriver) -> None:
    await to_confirm(user)
    assert user.texts(await user.tap("Confirm"))[0].startswith(
        t("tickets.pay_prompt", "en", amount="KES 1,000")
    )


async def test_a_ticket_bought_and_paid_by_mpesa(stack, make_org, app_pool, crm) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("HookPaid", tokens=10_000)
    await import_content(
        app_pool, org, parse_content({"events": [event("Jazz Night", price=1000, max_per_order=4)]})
    )
    await _subscribe(stack, app_pool, org, crm, ["payment.confirmed", "ticket.issued"])
    user = _chat(stack, new.phone_number_id)
    await _buy(user)
    bodies = await _delivered(crm, app_pool, org, {"payment.confirmed", "ticket.issued"})
    paid, issued = bodies["payment.confirmed"]["data"], bodies["ticket.issued"]["data"]
    assert (
        Decimal(str(paid["amount"])) == 1000
        and paid["receipt"]
        and paid["contact"]["phone"] == user.user.wa_id
    )
    assert (
        issued["ticket_code"]
        and issued["ticket_type"] == "Regular"
        and issued["holder_name"] == "Wanjiku Kamau"
    )


async def test_paid_for_an_event_cancelled_meanwhile_is_a_refund_due(stack, make_org, app_pool, crm) -> None:  # type: ignore[no-untyped-def]
    """The payment confirmed after the event was cancelled: no ticket, the seats back, settlement refund_due and
    payment.refund_due recorded in that transaction (sql/038), delivered with its reason."""
    org, new = await make_org("HookRefund", tokens=10_000)
    summary = await import_content(
        app_pool, org, parse_content({"events": [event("Jazz Night", price=1000, max_per_order=4)]})
    )
    await _subscribe(stack, app_pool, org, crm, ["payment.refund_due", "ticket.issued"])
    user = _chat(stack, new.phone_number_id)
    stack.mpesa.callback_delay = 2.0
    try:
        await _buy(user)
        async with tenant_tx(app_pool, org) as conn:
            await conn.execute("UPDATE events SET status = 'cancelled'")
        said = user.texts(await user.settle(expect=1, timeout=15))
    finally:
        stack.mpesa.callback_delay = 0.2
    assert said == [t("tickets.cancelled_refund", "en", event="Jazz Night", amount="KES 1,000")]
    bodies = await _delivered(crm, app_pool, org, {"payment.refund_due"})  # and no ticket.issued
    due = bodies["payment.refund_due"]["data"]
    async with tenant_tx(app_pool, org) as conn:
        payment = await conn.fetchrow("SELECT * FROM payment_requests")
    assert (payment["settlement"], payment["refund_reason"]) == ("refund_due", "event_cancelled")
    assert due["payment_id"] == str(payment["id"]) and due["reason"] == "event_cancelled"
    assert Decimal(str(due["amount"])) == 1000 and due["receipt"] == payment["receipt"]
    assert due["phone"] == user.user.wa_id and due["contact"]["phone"] == user.user.wa_id
    assert due["event_id"] == summary.ids["events"]["Jazz Night"] and due["hold_id"] == str(
        payment["hold_id"]
    )


Change = Callable[[Any, Tenant], Awaitable[None]]


async def _survey_completed(conn: Any, t: Tenant) -> None:
    await conn.execute(
        """INSERT INTO survey_responses (organization_id, survey_id, contact_id, status, answers, completed_at)
           VALUES ($1, $2, $3, 'completed', '{"q1": "yes"}', now())""",
        t.org_id,
        UUID(t.ids["survey"]),
        t.contacts[1],
    )


async def _poll_voted(conn: Any, t: Tenant) -> None:
    await conn.execute(
        "INSERT INTO poll_votes (organization_id, poll_id, contact_id, option_id) VALUES ($1, $2, $3, 'y')",
        t.org_id,
        UUID(t.ids["poll"]),
        t.contacts[1],
    )


async def _checked_in(conn: Any, t: Tenant) -> None:
    """A ticket issued before the endpoint existed, admitted at the gate now (as the check-in applier does)."""
    t.ids["code"] = await conn.fetchval(
        "SELECT ticket_code FROM tickets WHERE ticket_type_id = $1", UUID(t.ids["ticket_type"])
    )
    await conn.execute(
        "UPDATE tickets SET checked_in_at = NULL, status = 'valid' WHERE ticket_code = $1", t.ids["code"]
    )
    await conn.execute(
        "UPDATE tickets SET checked_in_at = now(), status = 'used' WHERE ticket_code = $1", t.ids["code"]
    )


async def _broadcast_finished(conn: Any, t: Tenant) -> None:
    from engine import broadcasts

    made = await broadcasts.create(conn, t.org_id, broadcasts.NewBroadcast(name="Hooks", text="hello"))
    assert made is not None
    await conn.execute(
        "UPDATE broadcasts SET status = 'running', started_at = $2 WHERE id = $1", made, datetime.now(UTC)
    )
    assert await broadcasts.complete_if_done(conn, t.org_id, made)  # no recipient pending: completed


CHANGES: dict[str, tuple[Change, Callable[[dict[str, Any], Tenant], bool]]] = {
    "survey.completed": (_survey_completed, lambda d, t: d["survey_id"] == t.ids["survey"]),
    "poll.voted": (_poll_voted, lambda d, t: (d["poll_id"], d["option_id"]) == (t.ids["poll"], "y")),
    "ticket.checked_in": (_checked_in, lambda d, t: d["ticket_code"] == t.ids["code"] and d["checked_in_at"]),
    "broadcast.finished": (
        _broadcast_finished,
        lambda d, t: d["name"] == "Hooks" and d["status"] == "completed",
    ),
}


@pytest.mark.parametrize("event_type", sorted(CHANGES))
async def test_the_engines_changes_reach_the_crm(stack, make_org, app_pool, crm, event_type: str) -> None:  # type: ignore[no-untyped-def]
    tenant = await make_tenant(make_org, app_pool, "Hooks")
    await _subscribe(stack, app_pool, tenant.org_id, crm, [event_type])
    change, expected = CHANGES[event_type]
    async with tenant_tx(app_pool, tenant.org_id) as conn:
        await change(conn, tenant)
    bodies = await _delivered(crm, app_pool, tenant.org_id, {event_type})
    assert expected(bodies[event_type]["data"], tenant), bodies[event_type]


def test_every_event_type_is_delivered_here() -> None:
    """The event types of this file are every type an endpoint can subscribe to."""
    here = set(CHANGES) | {
        "contact.opted_out",
        "contact.opted_in",
        "handover.requested",
        "payment.confirmed",
        "ticket.issued",
        "payment.refund_due",
    }
    assert here == set(webhooks.EVENT_TYPES)
