"""Tickets sold and admitted only where they are valid, end to end (WhatsApp and M-Pesa simulators, gateway,
workers, PostgreSQL): check-in refusals and who may scan, an event cancelled mid-purchase, "reserved by others"
versus sold out, and the free-ticket limit per contact."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from state_machines.i18n import t, tn
from tests.helpers import phone, wait_until
from tests.test_payments_e2e import to_confirm


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls) -> AsyncIterator[LocalStack]:  # type: ignore[no-untyped-def]
    st = await LocalStack(settings.model_copy(update={"mpesa_query_backoff_seconds": 0.2})).start()
    yield st
    await st.stop()


def chat(stack: LocalStack, pnid: str, wa_id: str | None = None, name: str = "Wanjiku") -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, wa_id or phone(), name), quiet=0.3)


async def fetch(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


def event(
    name: str, price: int = 0, quantity: int = 10, max_per_order: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "starts_at": "+1h",  # the doors are open (240 minutes before the start by default)
        "ends_at": "+5h",
        "venue_name": "Carnivore",
        "ticket_types": [
            {
                "name": "Regular",
                "price": price,
                "quantity_total": quantity,
                "max_per_order": max_per_order,
                **extra,
            }
        ],
    }


async def claim(user: ChatDriver, event_name: str, *, expect: int = 2) -> list[str]:
    """A free ticket (one per order: no quantity question), from the menu."""
    await user.say("hi")
    await user.tap(event_name)
    await user.tap("Regular")
    await user.say("Wanjiku Kamau")
    await user.say("skip")
    return user.texts(await user.tap("Confirm", expect=expect))


# ---------------------------------------------------------------- check-in


async def test_a_ticket_admits_only_at_its_own_event(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    jazz_gate, gospel_gate, admin = phone(), phone(), phone()
    org, new = await make_org("Doors", tokens=10_000, settings={"admin_phones": [admin]})
    content = {
        "events": [event("Jazz Night"), event("Gospel Fest")],
        "staff": [
            {"event": "Jazz Night", "phone": jazz_gate, "name": "Jazz Gate"},
            {"event": "Gospel Fest", "phone": gospel_gate, "name": "Gospel Gate"},
        ],
    }
    await import_content(app_pool, org, parse_content(content))
    pnid = new.phone_number_id
    buyer = chat(stack, pnid)
    assert len(await claim(buyer, "Jazz Night")) == 2
    [ticket] = await fetch(app_pool, org, "SELECT ticket_code FROM tickets")
    code = ticket["ticket_code"]

    other = chat(stack, pnid, gospel_gate, "Gate")
    said = other.texts(await other.say(f"CHECKIN {code}"))[0]
    assert said.startswith("⛔ NOT FOR THIS EVENT") and "Ticket for Jazz Night" in said

    await fetch(
        app_pool,
        org,
        "UPDATE events SET starts_at = now() + interval '1 day', ends_at = now() + interval '2 days'",
    )
    gate = chat(stack, pnid, jazz_gate, "Gate")
    assert gate.texts(await gate.say(f"CHECKIN {code}"))[0].startswith("⏳ DOORS NOT OPEN YET")
    await fetch(
        app_pool,
        org,
        "UPDATE events SET starts_at = now() - interval '3 days', ends_at = now() - interval '2 days'",
    )
    assert gate.texts(await gate.say(f"CHECKIN {code}"))[0].startswith("⛔ EVENT ENDED")
    await fetch(
        app_pool,
        org,
        "UPDATE events SET starts_at = now(), ends_at = now() + interval '3 hours', status = 'cancelled'",
    )
    assert gate.texts(await gate.say(f"CHECKIN {code}"))[0].startswith("🚫 EVENT CANCELLED")
    [status] = await fetch(app_pool, org, "SELECT status FROM tickets")
    assert status["status"] == "valid"  # refused scans leave the ticket as it was

    await fetch(app_pool, org, "UPDATE events SET status = 'published'")
    boss = chat(stack, pnid, admin, "Admin")  # the organisation's admin may scan at any of its events
    assert boss.texts(await boss.say(f"CHECKIN {code}"))[0].startswith("✅ VALID: admit")
    assert gate.texts(await gate.say(f"CHECKIN {code}"))[0].startswith("⛔ ALREADY USED")
    outcomes = await fetch(app_pool, org, "SELECT outcome FROM check_ins ORDER BY created_at")
    assert [r["outcome"] for r in outcomes] == [
        "wrong_event",
        "not_open_yet",
        "event_ended",
        "event_cancelled",
        "admitted",
        "already_used",
    ]


# ---------------------------------------------------------------- selling


async def test_an_event_cancelled_mid_purchase_sells_nothing(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Cancel", tokens=10_000)
    await import_content(
        app_pool, org, parse_content({"events": [event("Jazz Night", price=1000, max_per_order=4)]})
    )
    user = chat(stack, new.phone_number_id)
    await to_confirm(user, "2")
    await fetch(app_pool, org, "UPDATE events SET status = 'cancelled'")
    said = user.texts(await user.tap("Confirm"))
    assert said[0].startswith(t("tickets.event_cancelled", "en", event="Jazz Night"))
    assert await fetch(app_pool, org, "SELECT 1 FROM ticket_holds") == []
    assert await fetch(app_pool, org, "SELECT 1 FROM payment_requests") == []
    assert stack.mpesa.requests == [] or all(r["phone"] != user.user.wa_id for r in stack.mpesa.requests)


async def test_an_event_cancelled_while_the_buyer_pays_is_a_refund_due(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("CancelPaying", tokens=10_000)
    await import_content(
        app_pool, org, parse_content({"events": [event("Jazz Night", price=1000, max_per_order=4)]})
    )
    user = chat(stack, new.phone_number_id)
    stack.mpesa.callback_delay = 2.0
    try:
        await to_confirm(user)
        assert user.texts(await user.tap("Confirm"))[0].startswith(
            t("tickets.pay_prompt", "en", amount="KES 1,000")
        )
        await fetch(app_pool, org, "UPDATE events SET status = 'cancelled'")
        said = user.texts(await user.settle(expect=1, timeout=15))
    finally:
        stack.mpesa.callback_delay = 0.2
    assert said == [t("tickets.cancelled_refund", "en", event="Jazz Night", amount="KES 1,000")]
    assert await fetch(app_pool, org, "SELECT 1 FROM tickets") == []
    [payment] = await fetch(app_pool, org, "SELECT status, settlement FROM payment_requests")
    assert (payment["status"], payment["settlement"]) == ("paid", "refund_due")
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (0, 0)


async def test_reserved_by_others_then_free_then_sold_out(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Reserved", tokens=10_000)
    await import_content(
        app_pool, org, parse_content({"events": [event("Jazz Night", price=1000, quantity=1)]})
    )
    pnid = new.phone_number_id
    paying, waiting, late = chat(stack, pnid), chat(stack, pnid), chat(stack, pnid)
    stack.mpesa.set_outcomes({paying.user.wa_id: "no_callback", waiting.user.wa_id: "success"})
    await paying.say("hi")
    await paying.tap("Jazz Night")
    await paying.tap("Regular")  # the last one: no quantity question
    await paying.say("Paying Person")
    await paying.say("skip")
    await paying.tap("Confirm")  # held while M-Pesa waits for the PIN

    await waiting.say("hi")
    said = waiting.texts(await waiting.tap("Jazz Night", expect=1))
    assert said[0].startswith(t("tickets.reserved_all", "en", event="Jazz Night"))
    assert t("tickets.sold_out_all", "en", event="Jazz Night") not in said[0]

    await paying.tap("Cancel")  # the seat frees up: said at once, not after a cache expires
    said = waiting.texts(await waiting.tap("Jazz Night"))
    assert "Regular" in said[0] and t("tickets.reserved_all", "en", event="Jazz Night") not in said[0]
    await waiting.tap("Regular")
    await waiting.say("Waiting Person")
    await waiting.say("skip")
    assert waiting.texts(await waiting.tap("Confirm", expect=3))[-1].startswith("🎉 Payment received")

    await late.say("hi")
    said = late.texts(await late.tap("Jazz Night", expect=1))
    assert said[0].startswith(t("tickets.sold_out_all", "en", event="Jazz Night"))


async def test_a_free_ticket_once_per_contact(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Free", tokens=10_000)
    await import_content(app_pool, org, parse_content({"events": [event("Open Day", max_per_order=1)]}))
    user = chat(stack, new.phone_number_id)
    assert len(await claim(user, "Open Day")) == 2  # the ticket and the summary
    again = await claim(user, "Open Day", expect=1)
    assert again[0].startswith(tn("tickets.limit_reached", "en", 1, type="Regular", have=1))

    async def one() -> bool:
        return len(await fetch(app_pool, org, "SELECT 1 FROM tickets")) == 1

    await wait_until(one)
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (1, 0)
    other = chat(stack, new.phone_number_id)  # someone else may still claim one
    assert len(await claim(other, "Open Day")) == 2
