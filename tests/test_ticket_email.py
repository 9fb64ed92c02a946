"""Issue 20, item 4: the tickets e-mail, end to end. A buyer who gives an address gets their tickets by e-mail
with each QR code attached (aiosmtplib to the SMTP simulator, a real aiosmtpd server); a refusal for good is
recorded as failed, a temporary one is retried; without SMTP the flow does not ask for an address."""

from __future__ import annotations

from decimal import Decimal

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from simulators.chat import ChatDriver
from state_machines import tickets as tk
from state_machines.base import Inbound, State
from state_machines.i18n import t
from tests.helpers import body_of, context, phone, wait_until

EVENT = {
    "name": "Gospel Sunday",
    "starts_at": "+10d",
    "ends_at": "+11d",
    "venue_name": "KICC",
    "ticket_types": [{"name": "Community", "price": 0, "max_per_order": 3}],
}


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def buy_free(stack: LocalStack, pnid: str, email: str, quantity: str = "2") -> ChatDriver:
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Amina"), quiet=0.3)
    await user.say("hi")
    await user.tap("Gospel Sunday")
    await user.tap("Community")
    await user.tap(quantity)
    await user.say("Amina Wanjiru")
    asked = user.texts(await user.say(email))
    assert asked[0].startswith("Please confirm your order:") and f"Email: {email}" in asked[0]
    await user.tap("Confirm", expect=int(quantity) + 1)
    return user


async def org_with_event(make_org, app_pool):  # type: ignore[no-untyped-def]
    org, new = await make_org("Mail", tokens=1000)
    await import_content(app_pool, org, parse_content({"events": [EVENT]}))
    return org, new.phone_number_id


async def test_tickets_come_by_email_with_their_qr_codes(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await org_with_event(make_org, app_pool)
    await buy_free(stack, pnid, "amina@example.com")
    assert stack.smtp is not None
    (mail,) = await stack.smtp.wait_for("amina@example.com")
    assert mail["Subject"] == t("email.tickets_subject", "en", event="Gospel Sunday")

    async def marked():  # type: ignore[no-untyped-def]
        async with tenant_tx(app_pool, org) as conn:
            return await conn.fetchrow(
                "SELECT status, attempts, sent_at FROM ticket_emails WHERE status = 'sent'"
            )

    row = await wait_until(marked)  # committed just after the server took it
    async with tenant_tx(app_pool, org) as conn:
        codes = sorted(r["ticket_code"] for r in await conn.fetch("SELECT ticket_code FROM tickets"))
    attachments = list(mail.iter_attachments())
    assert sorted(a.get_filename() for a in attachments) == [f"{c}.png" for c in codes]
    assert all(a.get_content_type() == "image/png" and a.get_content()[:4] == b"\x89PNG" for a in attachments)
    body = mail.get_body(preferencelist=("plain",)).get_content()
    assert all(code in body for code in codes) and "Amina Wanjiru" in body and "KICC" in body
    assert (row["status"], row["attempts"]) == ("sent", 1) and row["sent_at"] is not None


async def test_a_refused_address_is_failed_and_a_busy_server_is_tried_again(
    stack, make_org, app_pool
) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await org_with_event(make_org, app_pool)
    assert stack.smtp is not None
    stack.smtp.refuse("gone@example.com", 550)
    stack.smtp.refuse("busy@example.com", 451)
    await buy_free(stack, pnid, "gone@example.com", quantity="1")
    await buy_free(stack, pnid, "busy@example.com", quantity="1")

    async def tried() -> list[dict]:  # type: ignore[type-arg]
        async with tenant_tx(app_pool, org) as conn:
            rows = [
                dict(r)
                for r in await conn.fetch(
                    "SELECT to_address, status, attempts, last_error FROM ticket_emails"
                )
            ]
        return rows if len(rows) == 2 and all(r["attempts"] for r in rows) else []

    by_address = {r["to_address"]: r for r in await wait_until(tried)}
    assert (
        by_address["gone@example.com"]["status"] == "failed"
        and "550" in by_address["gone@example.com"]["last_error"]
    )
    assert by_address["busy@example.com"]["status"] == "pending"  # 451: retried after a delay
    del stack.smtp.refusals["busy@example.com"]
    (mail,) = await stack.smtp.wait_for("busy@example.com", timeout=30)
    assert len(list(mail.iter_attachments())) == 1
    assert stack.smtp.to("gone@example.com") == []


def test_without_email_the_flow_does_not_ask_for_an_address() -> None:
    event = {
        "id": "e1",
        "name": "Gospel Sunday",
        "starts_at": None,
        "venue_name": "KICC",
        "status": "published",
        "ticket_types": [
            {"id": "t1", "name": "Community", "price": Decimal(0), "remaining": None, "max_per_order": 1}
        ],
    }
    from datetime import UTC, datetime

    ctx = context(
        datetime(2026, 3, 1, tzinfo=UTC), contact_name="Amina", data={"event": event, "email_tickets": False}
    )
    step = tk.start("e1", State(), ctx)
    step = tk.step(step.state, Inbound("Community"), ctx)
    step = tk.step(step.state, Inbound("Amina Wanjiru"), ctx)
    assert step.state.step == "confirm" and step.state.data["holder_email"] is None
    (prompt,) = step.replies
    assert "Email" not in body_of(prompt) and body_of(prompt).startswith("Please confirm your order:")
    asking = tk.step(
        tk.step(tk.start("e1", State(), ctx_with(ctx)).state, Inbound("Community"), ctx_with(ctx)).state,
        Inbound("Amina Wanjiru"),
        ctx_with(ctx),
    )
    assert asking.state.step == "holder_email"  # with e-mail on, the address is asked for


def ctx_with(ctx):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    return replace(ctx, data={**ctx.data, "email_tickets": True})
