"""Payments you can trust, end to end: a buyer on the WhatsApp simulator, M-Pesa's simulator (STK push, its
callbacks, the STK Push Query), the gateway and the workers; an attacker who has seen a callback URL posts
to it directly. Every test has its own organisation and phone numbers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from handlers.payments import reconcile_once
from simulators.chat import ChatDriver
from state_machines.i18n import t
from tests.helpers import phone, run_cli, wait_until

EVENT = {"name": "Jazz Night", "starts_at": "+10d", "ends_at": "+11d", "venue_name": "Carnivore"}


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls) -> AsyncIterator[LocalStack]:  # type: ignore[no-untyped-def]
    st = await LocalStack(settings.model_copy(update={"mpesa_query_backoff_seconds": 0.2})).start()
    yield st
    await st.stop()


@pytest.fixture
async def attacker() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def setup_org(make_org, app_pool, quantity: int = 10, **org_settings: Any):  # type: ignore[no-untyped-def]
    org_id, new = await make_org("Payments", tokens=10_000)
    content = {
        "events": [
            {
                **EVENT,
                "ticket_types": [
                    {"name": "Regular", "price": 2500, "quantity_total": quantity, "max_per_order": 4}
                ],
            }
        ]
    }
    await import_content(app_pool, org_id, parse_content(content))
    if org_settings:
        async with tenant_tx(app_pool, org_id) as conn:
            await conn.execute(
                "UPDATE organizations SET settings = COALESCE(settings, '{}') || $2 WHERE id = $1",
                org_id,
                org_settings,
            )
    return org_id, new.phone_number_id


def chat(stack: LocalStack, pnid: str) -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Wanjiku"), quiet=0.3)


async def fetch(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def to_confirm(user: ChatDriver, quantity: str | None = "1") -> None:
    await user.say("hi")
    await user.tap("Jazz Night")
    await user.tap("Regular")
    if quantity is not None:  # one left: no quantity question
        await user.tap(quantity)
    await user.say("Wanjiku Kamau")
    await user.say("skip")


async def pushed(stack: LocalStack, user: ChatDriver) -> dict[str, Any]:
    """The simulator's record of the STK push to this user (its CallBackURL is what an attacker sees)."""

    async def find() -> dict[str, Any] | None:
        mine = [r for r in stack.mpesa.requests if r["phone"] == user.user.wa_id]
        return mine[-1] if mine else None

    return await wait_until(find, timeout=10)


async def requested(app_pool, org) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    async def stored() -> list[dict[str, Any]]:
        return await fetch(
            app_pool, org, "SELECT * FROM payment_requests WHERE checkout_request_id IS NOT NULL"
        )

    return (await wait_until(stored, timeout=10))[0]


def forged(record: dict[str, Any], code: int, **meta: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "MerchantRequestID": record["merchant_request_id"],
        "CheckoutRequestID": record["checkout_request_id"],
        "ResultCode": code,
        "ResultDesc": "The service request is processed successfully."
        if code == 0
        else "Request cancelled by user",
    }
    if code == 0:
        items = {
            "Amount": record["amount"],
            "MpesaReceiptNumber": "FORGED0001",
            "TransactionDate": 20261202101500,
        }
        items |= {"PhoneNumber": int(record["phone"])} | meta
        result["CallbackMetadata"] = {"Item": [{"Name": k, "Value": v} for k, v in items.items()]}
    return {"Body": {"stkCallback": result}}


async def suspicious(app_pool, org, count: int = 1) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    async def rows() -> list[dict[str, Any]] | None:
        found = await fetch(app_pool, org, "SELECT reason, claimed_result_code FROM suspicious_callbacks")
        return found if len(found) >= count else None

    return await wait_until(rows, timeout=15)


def junk_token(seen: dict[str, Any], i: int) -> str:
    """A request secret we never handed out: random, or with the real organisation's part (seen in a URL)."""
    org_part = seen["request"]["CallBackURL"].rsplit("/", 1)[1].split("-", 1)[0]
    return f"{org_part if i % 4 == 1 else uuid.uuid4().hex}-{uuid.uuid4().hex}"


# ---------------------------------------------------------------- forged callbacks


async def test_a_forged_success_issues_nothing(stack, make_org, app_pool, attacker) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool)
    user = chat(stack, pnid)
    stack.mpesa.set_outcomes({user.user.wa_id: "no_callback"})  # the buyer has not answered the prompt yet
    await to_confirm(user)
    assert user.texts(await user.tap("Confirm"))[0].startswith(
        t("tickets.pay_prompt", "en", amount="KES 2,500")
    )
    record = await pushed(stack, user)
    await requested(app_pool, org)
    url = record["request"]["CallBackURL"]
    # Amount 1 against KES 2,500, another phone, receipt FORGED0001
    cheap = forged(record, 0, Amount=1.0, PhoneNumber=254799999999)
    assert (await attacker.post(url, json=cheap)).status_code == 200  # Daraja is always answered 200
    [row] = await suspicious(app_pool, org)
    assert "amount 1.0, requested 2500" in row["reason"] and "phone" in row["reason"]
    # the right amount and phone (the attacker knows them): M-Pesa's query says it is still being processed
    exact = forged(record, 0)
    assert (await attacker.post(url, json=exact)).status_code == 200
    rows = await suspicious(app_pool, org, 2)
    assert any("still processing" in r["reason"] for r in rows)
    assert await user.settle(expect=0) == []  # nothing said to the buyer
    assert await fetch(app_pool, org, "SELECT 1 FROM tickets") == []
    [payment] = await fetch(app_pool, org, "SELECT status, receipt FROM payment_requests")
    assert (payment["status"], payment["receipt"]) == ("requested", None)
    assert not any("FORGED0001" in text for text in user.texts(stack.whatsapp.messages(to=user.user.wa_id)))


async def test_a_forged_failure_before_the_real_success_does_not_win(
    stack, make_org, app_pool, attacker
) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool)
    user = chat(stack, pnid)
    stack.mpesa.callback_delay = 3.0  # the buyer takes three seconds to enter the PIN
    try:
        await to_confirm(user)
        await user.tap("Confirm")
        record = await pushed(stack, user)
        await requested(app_pool, org)
        response = await attacker.post(record["request"]["CallBackURL"], json=forged(record, 1032))
        assert response.status_code == 200
        [row] = await suspicious(app_pool, org)
        # refused: M-Pesa had no outcome yet (or, on a slow machine, already said paid)
        assert row["claimed_result_code"] == 1032
        assert "still processing" in row["reason"] or "M-Pesa says paid" in row["reason"]
        said = user.texts(await user.settle(expect=2, timeout=15))  # the ticket image and the summary
    finally:
        stack.mpesa.callback_delay = 0.2
    assert said[-1].startswith("🎉 Payment received (M-Pesa receipt SIM")
    [payment] = await fetch(app_pool, org, "SELECT status, receipt FROM payment_requests")
    assert payment["status"] == "paid" and payment["receipt"].startswith("SIM")
    [hold] = await fetch(app_pool, org, "SELECT status FROM ticket_holds")
    assert hold["status"] == "issued"
    assert len(await fetch(app_pool, org, "SELECT 1 FROM tickets")) == 1
    # a failure after the confirmed success changes nothing: neither forged nor M-Pesa's own word
    await attacker.post(record["request"]["CallBackURL"], json=forged(record, 1032))
    stack.mpesa.set_query({user.user.wa_id: "failed"})
    try:
        await reconcile_once(stack._runtimes[0], min_age=timedelta(0))
    finally:
        stack.mpesa.set_query({user.user.wa_id: "auto"})
    await suspicious(app_pool, org, 2)
    assert await user.settle(expect=0) == []
    [payment] = await fetch(app_pool, org, "SELECT status FROM payment_requests")
    assert payment["status"] == "paid"


async def test_duplicate_callbacks_are_idempotent(stack, make_org, app_pool, attacker) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool)
    user = chat(stack, pnid)
    await to_confirm(user, "2")
    said = user.texts(await user.tap("Confirm", expect=4))
    assert said[-1].startswith("🎉 Payment received")
    record = await pushed(stack, user)
    for _ in range(3):  # Daraja repeats itself; an attacker replays the real one
        await attacker.post(f"{stack.mpesa.base_url}/_sim/callback/{record['checkout_request_id']}")
    await attacker.post(record["request"]["CallBackURL"], json=record["callback"])
    assert await user.settle(expect=0, timeout=3) == []
    assert len(await fetch(app_pool, org, "SELECT 1 FROM tickets")) == 2
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (2, 0)
    charges = await fetch(
        app_pool, org, "SELECT amount FROM token_transactions WHERE action = 'ticket_issued'"
    )
    assert len(charges) == 1


async def test_a_junk_flood_costs_a_real_purchase_nothing(stack, make_org, app_pool, attacker) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool)
    first = chat(stack, pnid)
    await to_confirm(first)
    await first.tap("Confirm", expect=3)
    seen = await pushed(stack, first)  # a URL the attacker has seen: its request is already paid
    base = seen["request"]["CallBackURL"].rsplit("/", 1)[0]
    junk = [
        (f"{base}/{junk_token(seen, i)}" if i % 2 else seen["request"]["CallBackURL"], {**forged(seen, 0)})
        for i in range(60)
    ]
    for i, (_, body) in enumerate(junk):
        body["Body"]["stkCallback"]["CheckoutRequestID"] = f"ws_CO_JUNK{i:04d}"
    buyer = chat(stack, pnid)
    await to_confirm(buyer)
    started = time.monotonic()
    flood = asyncio.gather(*(attacker.post(url, json=body) for url, body in junk))
    said = buyer.texts(await buyer.tap("Confirm", expect=3))
    elapsed = time.monotonic() - started
    responses = await flood
    assert all(r.status_code == 200 for r in responses)
    # unknown ids once held a router slot for 20 x 0.5 s each: 60 of them made this purchase time out
    assert said[-1].startswith("🎉 Payment received") and elapsed < 8, (elapsed, said)
    # the ones naming the seen request are on record as suspicious; the rest named no request at all
    rows = await suspicious(app_pool, org, 30)
    assert len(rows) == 30 and all("CheckoutRequestID is not this request's" in r["reason"] for r in rows)
    assert len(await fetch(app_pool, org, "SELECT 1 FROM tickets")) == 2


# ---------------------------------------------------------------- the payment timer, late and lost callbacks


async def test_a_lost_callback_is_found_by_the_payment_timer(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool, payment_timeout_seconds=2)
    user = chat(stack, pnid)
    stack.mpesa.set_outcomes({user.user.wa_id: "lost_callback"})  # paid; the callback never arrives
    await to_confirm(user)
    await user.tap("Confirm")
    said = user.texts(await user.settle(expect=2, timeout=20))
    assert said[-1].startswith("🎉 Payment confirmed by M-Pesa")
    [payment] = await fetch(app_pool, org, "SELECT status, confirmed_by, settlement FROM payment_requests")
    assert (payment["status"], payment["confirmed_by"], payment["settlement"]) == ("paid", "timer", "issued")
    [hold] = await fetch(app_pool, org, "SELECT status FROM ticket_holds")
    assert hold["status"] == "issued"


async def test_not_paid_at_the_timer_releases_and_tells_the_buyer(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool, payment_timeout_seconds=2)
    user = chat(stack, pnid)
    stack.mpesa.set_outcomes({user.user.wa_id: "no_callback"})
    stack.mpesa.set_query({user.user.wa_id: "failed"})  # M-Pesa: cancelled by the user
    try:
        await to_confirm(user)
        await user.tap("Confirm")
        said = user.texts(await user.settle(expect=1, timeout=20))
    finally:
        stack.mpesa.set_query({user.user.wa_id: "auto"})
    assert said[0].startswith(t("tickets.pay_failed_cancelled", "en"))
    [hold] = await fetch(app_pool, org, "SELECT status, release_reason FROM ticket_holds")
    assert (hold["status"], hold["release_reason"]) == ("released", "cancelled_by_user")
    [payment] = await fetch(app_pool, org, "SELECT status FROM payment_requests")
    assert payment["status"] == "failed"


async def test_daraja_unreachable_holds_longer_then_releases_and_a_late_success_issues(
    stack, make_org, app_pool
) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool, payment_timeout_seconds=2, payment_grace_seconds=3)
    user = chat(stack, pnid)
    stack.mpesa.set_outcomes({user.user.wa_id: "lost_callback"})
    stack.mpesa.set_query({user.user.wa_id: "unreachable"})
    try:
        await to_confirm(user)
        await user.tap("Confirm")
        checking = user.texts(await user.settle(expect=1, timeout=20))
        assert checking == [t("tickets.pay_checking", "en")]
        [hold] = await fetch(app_pool, org, "SELECT status FROM ticket_holds")
        assert hold["status"] == "held"  # kept a little longer
        released = user.texts(await user.settle(expect=1, timeout=20))
        assert released[0].startswith(t("tickets.pay_unconfirmed", "en", amount="KES 2,500"))
        [hold] = await fetch(app_pool, org, "SELECT status, release_reason FROM ticket_holds")
        assert (hold["status"], hold["release_reason"]) == ("released", "unconfirmed")
        [payment] = await fetch(app_pool, org, "SELECT status, last_query_state FROM payment_requests")
        assert (payment["status"], payment["last_query_state"]) == ("requested", "unreachable")
        await reconcile_once(stack._runtimes[0], min_age=timedelta(0))  # still unreachable: nothing decided
        assert await user.settle(expect=0) == []
    finally:
        stack.mpesa.set_query({user.user.wa_id: "auto"})
    await fetch(app_pool, org, "UPDATE payment_requests SET next_query_at = NULL")
    assert await reconcile_once(stack._runtimes[0], min_age=timedelta(0)) >= 1
    said = user.texts(await user.settle(expect=2, timeout=15))
    assert said[-1].startswith("🎉 M-Pesa has now confirmed your payment")
    [payment] = await fetch(app_pool, org, "SELECT status, confirmed_by, settlement FROM payment_requests")
    assert (payment["status"], payment["confirmed_by"], payment["settlement"]) == (
        "paid",
        "reconciler",
        "issued",
    )
    assert len(await fetch(app_pool, org, "SELECT 1 FROM tickets")) == 1


async def test_a_late_success_without_seats_left_is_a_refund_due(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(
        make_org, app_pool, quantity=1, payment_timeout_seconds=2, payment_grace_seconds=2
    )
    late, other = chat(stack, pnid), chat(stack, pnid)
    stack.mpesa.set_outcomes({late.user.wa_id: "lost_callback"})
    stack.mpesa.set_query({late.user.wa_id: "unreachable"})
    try:
        await to_confirm(late, None)
        await late.tap("Confirm")
        await late.settle(expect=2, timeout=25)  # "still checking", then "could not confirm"
        await to_confirm(other, None)
        assert other.texts(await other.tap("Confirm", expect=3))[-1].startswith("🎉 Payment received")
    finally:
        stack.mpesa.set_query({late.user.wa_id: "auto"})
    await fetch(app_pool, org, "UPDATE payment_requests SET next_query_at = NULL")
    await reconcile_once(stack._runtimes[0], min_age=timedelta(0))
    said = late.texts(await late.settle(expect=1, timeout=15))
    assert said == [t("tickets.late_refund", "en", event="Jazz Night", amount="KES 2,500")]
    rows = await fetch(
        app_pool,
        org,
        "SELECT settlement, checkout_request_id FROM payment_requests WHERE phone = $1",
        late.user.wa_id,
    )
    assert rows[0]["settlement"] == "refund_due"
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (1, 0)  # never oversold

    listed = run_cli("payments", "reconcile", "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    due = [r for r in report["refunds_due"] if r["checkout_request_id"] == rows[0]["checkout_request_id"]]
    assert due and Decimal(due[0]["amount"]) == Decimal(2500) and due[0]["phone"] == late.user.wa_id
    done = run_cli("payments", "refunded", rows[0]["checkout_request_id"], "--reference", "RFD123")
    assert done.returncode == 0, done.stderr
    again = json.loads(run_cli("payments", "reconcile", "--json").stdout)
    assert not [r for r in again["refunds_due"] if r["checkout_request_id"] == rows[0]["checkout_request_id"]]
    [row] = await fetch(
        app_pool,
        org,
        "SELECT settlement, refund_reference FROM payment_requests WHERE phone = $1",
        late.user.wa_id,
    )
    assert (row["settlement"], row["refund_reference"]) == ("refunded", "RFD123")


async def test_an_operator_asks_mpesa_about_open_payments(stack, make_org, app_pool, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup_org(make_org, app_pool)  # the payment timer is minutes away
    user = chat(stack, pnid)
    stack.mpesa.set_outcomes({user.user.wa_id: "lost_callback"})
    await to_confirm(user)
    await user.tap("Confirm")
    record = await pushed(stack, user)
    await requested(app_pool, org)
    assert stack.settings is not None
    monkeypatch.setenv("MPESA_BASE_URL", str(stack.settings.mpesa_base_url))
    await asyncio.sleep(stack.mpesa.callback_delay + 0.1)  # the buyer has paid by now
    done = await asyncio.to_thread(run_cli, "payments", "reconcile", "--query", "--org", pnid)
    assert done.returncode == 0, done.stderr
    assert "asked M-Pesa about" in done.stdout and "Refunds due" in done.stdout
    said = user.texts(await user.settle(expect=2, timeout=15))
    assert said[-1].startswith("🎉 Payment confirmed by M-Pesa")
    [payment] = await fetch(app_pool, org, "SELECT status, confirmed_by FROM payment_requests")
    assert (payment["status"], payment["confirmed_by"]) == ("paid", "reconciler")
    assert record["checkout_request_id"]
