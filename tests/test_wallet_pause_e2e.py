"""Issue 20, item 1, end to end: an organisation at 0 tokens. The contact's messages are not taken past what
they saw (no survey started, no answer stored to an unseen question); they hear once that we cannot answer
right now (free by default); the admins hear that replies are paused; `chatnation wallet balance` says since
when and how much was not sent; after a top-up the conversation goes on from where the contact really was."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.wallet import credit
from simulators.chat import ChatDriver
from state_machines.i18n import t
from tests.helpers import phone
from tests.test_ops_cli import cli, cli_json

NOTICE = t("wallet.paused_notice", "en")
SURVEY = {
    "title": "Feedback",
    "questions": [
        {"id": "visited", "type": "yes_no", "text": "Have you visited before?"},
        {"id": "comment", "type": "text", "text": "Anything else?"},
    ],
}


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def setup(make_org, app_pool, tokens: int, **organization):  # type: ignore[no-untyped-def]
    org, new = await make_org("Paused", tokens=tokens)
    await import_content(app_pool, org, parse_content({"organization": organization, "surveys": [SURVEY]}))
    return org, new.phone_number_id


async def rows(app_pool, org, sql: str):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql)]


async def test_a_paused_organisation_moves_nothing_the_contact_did_not_see(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    admin = phone()
    org, pnid = await setup(make_org, app_pool, tokens=1, admin_phones=[admin])
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Wanjiku"), quiet=0.4)
    assert len(await user.say("hi")) == 1  # the menu: the last token
    assert user.texts(await user.tap("Feedback")) == [NOTICE]  # intro + question unpaid: undone, told once
    assert user.texts(await user.say("no", expect=0)) == []  # once per pause: no second notice, no answer
    [conversation] = await rows(
        app_pool,
        org,
        f"SELECT v.current_module FROM conversations v JOIN contacts c ON c.id = v.contact_id "
        f"WHERE c.phone = '{user.user.wa_id}'",
    )
    assert conversation["current_module"] is None  # still at the menu the contact saw
    assert await rows(app_pool, org, "SELECT 1 FROM survey_responses") == []
    told = stack.whatsapp.messages(to=admin)
    assert len(told) == 1 and "paused since" in told[0]["payload"]["text"]["body"]

    code, out = await cli("wallet", "balance", str(org))
    assert code == 0 and "paused since" in out and "3 replies not sent" in out, out
    [wallet] = await cli_json("wallet", "balance", str(org))
    assert wallet["balance"] == 0 and wallet["paused"]["messages_unanswered"] == 2
    ledger = await rows(app_pool, org, "SELECT amount FROM token_transactions WHERE type = 'debit'")
    assert ledger == [{"amount": -1}]  # the notice and the admin's message were free

    async with tenant_tx(app_pool, org) as conn:
        await credit(conn, org, 20)
    assert (await cli_json("wallet", "balance", str(org)))[0]["paused"] is None
    await user.say("hi")
    started = await user.tap("Feedback", expect=2)
    assert user.texts(started)[-1].startswith("(1/2) Have you visited before?")
    await user.say("no")
    [response] = await rows(app_pool, org, "SELECT answers FROM survey_responses")
    assert response["answers"] == {"visited": False}  # the answer to the question the contact saw


async def test_a_charged_notice_is_not_sent_when_even_it_cannot_be_paid(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup(make_org, app_pool, tokens=0, wallet_empty_notice="charged")
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone()), quiet=0.4)
    assert await user.say("hi", expect=0) == []
    [pause] = await rows(app_pool, org, "SELECT replies_not_sent, messages_unanswered FROM wallet_pauses")
    assert (pause["replies_not_sent"], pause["messages_unanswered"]) == (1, 1)
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == 0


async def test_many_contacts_at_once_each_hear_once_and_nothing_overdraws(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid = await setup(make_org, app_pool, tokens=5)
    users = [stack.user(pnid, phone()) for _ in range(20)]
    await asyncio.gather(*(u.say("hi") for u in users))
    await asyncio.gather(*(stack.whatsapp.wait_for_messages(1, to=u.wa_id, timeout=30) for u in users))
    await asyncio.sleep(0.5)
    bodies = [m["payload"] for u in users for m in stack.whatsapp.messages(to=u.wa_id)]
    assert len(bodies) == 20  # one message each: the menu (5) or the notice (15)
    notices = [b for b in bodies if b.get("type") == "text" and b["text"]["body"] == NOTICE]
    assert len(notices) == 15
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT balance FROM wallets") == 0
        assert await conn.fetchval("SELECT min(balance_after) FROM token_transactions") == 0
        assert await conn.fetchval("SELECT count(*) FROM wallet_pauses") == 1
    assert uuid.UUID(str(org))
