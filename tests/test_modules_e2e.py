"""The conversation modules end to end: signed webhooks -> gateway -> RabbitMQ -> workers -> PostgreSQL ->
outbox -> sender -> the WhatsApp simulator, with M-Pesa paid through its simulator. Content is imported with
engine.content_import; every test has its own organisation and phone numbers."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.results import poll_results
from simulators.chat import ChatDriver
from state_machines.i18n import t
from tests.helpers import phone, wait_until

EVENT = {"name": "Jazz Night", "starts_at": "+10d", "ends_at": "+11d", "venue_name": "Carnivore"}


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def setup_org(make_org, app_pool, content: dict[str, Any], tokens: int = 10_000):  # type: ignore[no-untyped-def]
    org_id, new = await make_org("Modules", tokens=tokens)
    summary = await import_content(app_pool, org_id, parse_content(content))
    return org_id, new.phone_number_id, summary


def chat(stack: LocalStack, pnid: str, wa_id: str | None = None, name: str = "Wanjiku") -> ChatDriver:
    return ChatDriver(stack.whatsapp, stack.user(pnid, wa_id or phone(), name), quiet=0.3)


async def fetch(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def test_survey_with_a_branch_is_stored_completed_and_charged(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    questions = [
        {"id": "visited", "type": "yes_no", "text": "Been before?", "branches": {"no": "heard"}},
        {"id": "rating", "type": "rating", "text": "How was it?", "next": "genres"},
        {
            "id": "heard",
            "type": "single_choice",
            "text": "How did you hear?",
            "options": [{"id": "radio", "text": "Radio"}, {"id": "friend", "text": "A friend"}],
        },
        {
            "id": "genres",
            "type": "multiple_choice",
            "text": "Music?",
            "options": [
                {"id": "jazz", "text": "Jazz"},
                {"id": "gospel", "text": "Gospel"},
                {"id": "bongo", "text": "Bongo"},
            ],
        },
        {"id": "age", "type": "number", "text": "Age?", "min": 13, "max": 120, "integer": True},
        {"id": "email", "type": "email", "text": "Email?", "required": False},
    ]
    org, pnid, summary = await setup_org(
        make_org,
        app_pool,
        {
            "organization": {"prices": {"survey_completed": 7}},
            "surveys": [{"title": "Listeners", "questions": questions}],
        },
    )
    user = chat(stack, pnid)
    assert len(await user.say("hi")) == 1
    assert len(await user.tap("Listeners", expect=2)) == 2
    for action, answer in [("tap", "No"), ("say", "2"), ("say", "jazz and bongo"), ("say", "34")]:
        replies = await (user.tap(answer) if action == "tap" else user.say(answer))
        assert len(replies) == 1, (answer, user.texts())
    assert user.texts(await user.say("skip"))[0].startswith(t("survey.thanks", "en", title="Listeners"))

    survey_id = summary.ids["surveys"]["Listeners"]
    [response] = await fetch(app_pool, org, "SELECT status, answers FROM survey_responses")
    assert response["status"] == "completed"
    assert response["answers"] == {
        "visited": False,
        "heard": "friend",
        "genres": ["jazz", "bongo"],
        "age": 34,
        "email": None,
    }  # the branch skipped the rating
    [survey] = await fetch(
        app_pool, org, "SELECT response_count FROM surveys WHERE id = $1", uuid.UUID(survey_id)
    )
    assert survey["response_count"] == 1
    items = await fetch(app_pool, org, "SELECT question_key, value FROM response_items")
    assert {i["question_key"]: i["value"] for i in items} == response[
        "answers"
    ]  # the skip stored as JSON null
    debits = await fetch(
        app_pool, org, "SELECT amount FROM token_transactions WHERE action = 'survey_completed'"
    )
    assert debits == [{"amount": -7}]


async def buy(
    user: ChatDriver, type_name: str, quantity: str | None, *, expect_after_confirm: int
) -> list[str]:
    """From the menu to Confirm; returns what the bot said after Confirm."""
    await user.say("hi")
    await user.tap("Jazz Night")
    await user.tap(type_name)
    if quantity is not None:
        await user.tap(quantity)
    await user.say("Wanjiku Kamau")
    await user.say("skip")
    return user.texts(await user.tap("Confirm", expect=expect_after_confirm))


async def test_ticket_purchase_paid_by_mpesa_sends_ticket_images(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await setup_org(
        make_org,
        app_pool,
        {
            "events": [
                {
                    **EVENT,
                    "ticket_types": [
                        {"name": "Regular", "price": 1500, "quantity_total": 10, "max_per_order": 4}
                    ],
                }
            ]
        },
    )
    user = chat(stack, pnid)
    said = await buy(user, "Regular", "2", expect_after_confirm=4)
    assert said[0].startswith(t("tickets.pay_prompt", "en", amount="KES 3,000"))
    images = [m for m in user.last if m["type"] == "image"]
    assert len(images) == 2
    assert all(
        m["payload"]["image"]["id"] in stack.whatsapp.media for m in images
    )  # uploaded, sent by media id

    tickets = await fetch(app_pool, org, "SELECT ticket_code, amount_paid, payment_status FROM tickets")
    codes = {r["ticket_code"] for r in tickets}
    assert len(codes) == 2 and all(
        r["payment_status"] == "paid" and r["amount_paid"] == Decimal(1500) for r in tickets
    )
    assert all(any(code in m["payload"]["image"]["caption"] for m in images) for code in codes)
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (2, 0)
    [payment] = await fetch(app_pool, org, "SELECT status, amount, receipt FROM payment_requests")
    assert (payment["status"], payment["amount"]) == ("paid", Decimal(3000)) and payment["receipt"]
    [hold] = await fetch(app_pool, org, "SELECT status FROM ticket_holds")
    assert hold["status"] == "issued"


@pytest.mark.parametrize(
    ("outcome", "reason", "text"),
    [
        ("insufficient_funds", "insufficient_funds", "tickets.pay_failed_insufficient"),
        ("cancelled", "cancelled_by_user", "tickets.pay_failed_cancelled"),
    ],
)
async def test_failed_payment_releases_the_hold(stack, make_org, app_pool, outcome, reason, text) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await setup_org(
        make_org,
        app_pool,
        {
            "events": [
                {
                    **EVENT,
                    "ticket_types": [
                        {"name": "Regular", "price": 1500, "quantity_total": 10, "max_per_order": 4}
                    ],
                }
            ]
        },
    )
    user = chat(stack, pnid)
    stack.mpesa.set_outcomes({user.user.wa_id: outcome})
    said = await buy(user, "Regular", "3", expect_after_confirm=2)
    assert said[1].startswith(t(text, "en", amount="KES 4,500"))
    [hold] = await fetch(app_pool, org, "SELECT status, release_reason FROM ticket_holds")
    assert (hold["status"], hold["release_reason"]) == ("released", reason)
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (0, 0)
    assert await fetch(app_pool, org, "SELECT 1 FROM tickets") == []
    [payment] = await fetch(app_pool, org, "SELECT status FROM payment_requests")
    assert payment["status"] == "failed"


async def test_twenty_buyers_for_the_last_five_tickets(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await setup_org(
        make_org,
        app_pool,
        {
            "events": [
                {
                    **EVENT,
                    "ticket_types": [
                        {"name": "Last call", "price": 500, "quantity_total": 5, "max_per_order": 1}
                    ],
                }
            ]
        },
    )
    buyers = [chat(stack, pnid) for _ in range(20)]

    async def to_confirm(user: ChatDriver) -> None:  # max_per_order 1: no quantity question
        for step in ("hi", "Jazz Night", "Last call", "Buyer Name", "skip"):
            replies = await (user.tap(step) if step in ("Jazz Night", "Last call") else user.say(step))
            assert len(replies) == 1, (step, user.texts())

    await asyncio.gather(*(to_confirm(u) for u in buyers))
    results = await asyncio.gather(*(u.tap("Confirm", expect=1) for u in buyers))
    # the winners are paying: to the others the last seats are reserved (they may free up), not sold out
    refused = (
        t("tickets.reserved_type_final", "en", type="Last call"),
        t("tickets.sold_out_type_final", "en", type="Last call"),
    )
    losers = [u for u, r in zip(buyers, results, strict=True) if u.texts(r)[0].startswith(refused)]
    winners = [u for u in buyers if u not in losers]
    assert (len(winners), len(losers)) == (5, 15)

    async def all_issued() -> bool:
        return len(await fetch(app_pool, org, "SELECT 1 FROM tickets")) == 5

    await wait_until(all_issued)
    [tt] = await fetch(app_pool, org, "SELECT quantity_sold, quantity_held FROM ticket_types")
    assert (tt["quantity_sold"], tt["quantity_held"]) == (5, 0)
    owners = await fetch(
        app_pool, org, "SELECT DISTINCT c.phone FROM tickets t JOIN contacts c ON c.id = t.contact_id"
    )
    assert {r["phone"] for r in owners} == {u.user.wa_id for u in winners}


async def test_two_hundred_concurrent_voters_exact_tallies(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    options = [
        {"id": "a", "text": "Sauti Sol"},
        {"id": "b", "text": "Nviiri"},
        {"id": "c", "text": "Bensoul"},
    ]
    org, pnid, summary = await setup_org(
        make_org, app_pool, {"polls": [{"question": "Best act?", "options": options}]}
    )
    poll_id = summary.ids["polls"]["Best act?"]
    voters = [stack.user(pnid, phone(), f"Voter {i}") for i in range(200)]
    choice = ["a", "a", "b", "c"]  # expected tallies 100 / 50 / 50
    gate = asyncio.Semaphore(50)

    async def vote(i: int) -> None:
        async with gate:  # the poll tapped from an old menu, then an option: in order, per contact
            await voters[i].pick_row(f"poll:{poll_id}", "Best act?")
            option = next(o for o in options if o["id"] == choice[i % 4])
            await voters[i].tap_button(option["id"], option["text"])

    await asyncio.gather(*(vote(i) for i in range(200)))

    async def all_answered() -> bool:  # each voter: the question, then the results
        return len(stack.whatsapp.messages(phone_number_id=pnid)) >= 400

    await wait_until(all_answered, timeout=60)
    async with tenant_tx(app_pool, org) as conn:
        result = await poll_results(conn, uuid.UUID(poll_id))
    assert result["poll"]["consistent"] and result["poll"]["voters"] == 200
    assert {o["id"]: (o["votes"], o["counted_votes"], o["json_votes"]) for o in result["options"]} == {
        "a": (100, 100, 100),
        "b": (50, 50, 50),
        "c": (50, 50, 50),
    }


def quick_survey(**organization: Any) -> dict[str, Any]:
    """Content with one two-question survey, "Quick"; ``organization`` settings such as the reminder's delay."""
    return {
        "organization": organization,
        "surveys": [
            {
                "title": "Quick",
                "questions": [
                    {"id": "q1", "type": "text", "text": "Anything?"},
                    {"id": "q2", "type": "text", "text": "More?"},
                ],
            }
        ],
    }


async def test_after_stop_only_the_confirmation_and_the_unsubscribed_reply(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, pnid, _ = await setup_org(make_org, app_pool, quick_survey(survey_reminder_seconds=1))
    user = chat(stack, pnid)
    await user.say("hi")
    await user.tap("Quick", expect=2)
    assert user.texts(await user.say("STOP")) == [t("common.opted_out", "en")]

    async def reminder_handled() -> bool:  # the reminder came due and the worker took it: it said nothing
        rows = await fetch(
            app_pool,
            org,
            """SELECT 1 FROM conversation_timers tm JOIN processed_events p
                                               ON p.external_id = 'timer:' || tm.id WHERE tm.kind = 'survey_reminder'""",
        )
        return bool(rows)

    await wait_until(reminder_handled, timeout=15)
    assert await user.settle(expect=0) == []
    assert user.texts(await user.say("hello")) == [t("common.unsubscribed", "en")]
    outbound = await fetch(app_pool, org, "SELECT count(*) AS n FROM messages WHERE direction = 'outbound'")
    assert outbound[0]["n"] == 5  # menu, survey intro, question, STOP confirmation, "you are unsubscribed"


async def test_double_scanned_ticket_admits_once(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    gates = [phone(), phone()]
    org, pnid, _ = await setup_org(
        make_org,
        app_pool,
        {
            "events": [
                {
                    **EVENT,
                    "starts_at": "+1h",  # the doors are open
                    "ticket_types": [
                        {"name": "Community", "price": 0, "quantity_total": 5, "max_per_order": 1}
                    ],
                }
            ],
            "staff": [{"event": "Jazz Night", "phone": g, "name": f"Gate {i}"} for i, g in enumerate(gates)],
        },
    )
    user = chat(stack, pnid)
    said = await buy(user, "Community", None, expect_after_confirm=2)  # free: the ticket straight away
    assert len(said) == 2 and user.last[0]["type"] == "image"
    [ticket] = await fetch(app_pool, org, "SELECT ticket_code FROM tickets")
    staff = [chat(stack, pnid, g, "Gate") for g in gates]
    replies = await asyncio.gather(*(s.say(f"CHECKIN {ticket['ticket_code']}") for s in staff))
    outcomes = sorted(
        s.texts(r)[0].split(":")[0].split(" at ")[0] for s, r in zip(staff, replies, strict=True)
    )
    assert outcomes == sorted(["✅ VALID", "⛔ ALREADY USED"])
    rows = await fetch(app_pool, org, "SELECT outcome FROM check_ins ORDER BY outcome")
    assert [r["outcome"] for r in rows] == ["admitted", "already_used"]
    [used] = await fetch(app_pool, org, "SELECT status FROM tickets")
    assert used["status"] == "used"


async def test_a_survey_reminder_comes_once_for_the_question_being_asked(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    """Each step starts a reminder; only the one of the state the contact is in when it fires says anything."""
    org, pnid, _ = await setup_org(make_org, app_pool, quick_survey(survey_reminder_seconds=2))
    user = chat(stack, pnid)
    await user.say("hi")
    assert user.texts(await user.tap("Quick", expect=2))[-1].endswith("Anything?")
    assert user.texts(await user.say("fine"))[-1].endswith("More?")  # within the first reminder's 2 s
    reminded = user.texts(await user.settle(expect=2, timeout=15))
    assert reminded[0] == t("survey.reminder", "en", title="Quick") and reminded[1].endswith("More?")
    assert await user.settle(expect=0) == []  # the first question's reminder was stale: it said nothing
    timers = await fetch(
        app_pool,
        org,
        """SELECT kind, state_version, status FROM conversation_timers
                                           WHERE kind = 'survey_reminder' ORDER BY state_version""",
    )
    versions = [r["state_version"] for r in timers]
    assert len(versions) == 2 and versions[0] < versions[1]
    assert all(r["status"] == "fired" for r in timers)


async def test_a_capped_survey_takes_no_more_than_its_responses(stack, make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    """The survey's row is read under its lock when it has max_responses: a response in progress counts."""
    content = quick_survey()
    content["surveys"][0]["max_responses"] = 1
    org, pnid, _ = await setup_org(make_org, app_pool, content)
    first, second = chat(stack, pnid), chat(stack, pnid)
    await first.say("hi")
    assert first.texts(await first.tap("Quick", expect=2))[-1].endswith("Anything?")
    await second.say("hi")
    refused = second.texts(await second.tap("Quick"))
    assert refused[0].startswith(t("survey.refused_full", "en", title="Quick"))
    rows = await fetch(app_pool, org, "SELECT status FROM survey_responses")
    assert [r["status"] for r in rows] == ["in_progress"]
