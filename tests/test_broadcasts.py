"""Broadcasts on real PostgreSQL, driven through the scheduler's own steps (engine/scheduler.py): resolve once per
contact, text inside the 24-hour window and a template outside it, opt-outs after creation skipped, the
reservation, debits and release exact in the ledger, a wallet that cannot cover it blocked with the reason,
pause/resume/cancel, concurrent schedulers exactly once, status webhooks rolled up."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from engine import scheduler
from engine.broadcast_stats import stats
from engine.broadcasts import BroadcastError, NewBroadcast, control, create
from engine.db import tenant_tx
from engine.inbound import apply_status
from engine.orgs import OrgDirectory
from engine.settings import Settings
from tests.helpers import phone


@dataclass
class Rt:
    """What the scheduler's steps use of a Runtime: the two pools, the organisations and the settings."""

    app_pool: asyncpg.Pool
    owner_pool: asyncpg.Pool
    settings: Settings
    orgs: OrgDirectory

    def batches(self, size: int) -> Rt:
        """The same, with fan-out batches of ``size`` recipients."""
        update = {"broadcast_batch_size": size}
        return Rt(self.app_pool, self.owner_pool, self.settings.model_copy(update=update), self.orgs)


@pytest.fixture
def rt(app_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, settings: Settings) -> Rt:
    return Rt(app_pool, owner_pool, settings, OrgDirectory(app_pool))


async def add_contact(
    pool: asyncpg.Pool,
    org: UUID,
    *,
    name: str | None = "Wanjiku Kamau",
    window: bool = True,
    tags: tuple[str, ...] = ("fans",),
    consent: bool = True,
) -> tuple[UUID, str]:
    """A contact with a conversation whose last message was an hour ago (inside the window) or two days ago."""
    number = phone()
    last = datetime.now(UTC) - (timedelta(hours=1) if window else timedelta(days=2))
    async with tenant_tx(pool, org) as conn:
        contact = await conn.fetchval(
            """INSERT INTO contacts (organization_id, phone, whatsapp_id, name, tags, opted_in, opted_in_at,
                                     opt_in_source, opt_in_recorded_at)
               VALUES ($1, $2, $2, $3, $4, true, $5, $6, $7) RETURNING id""",
            org,
            number,
            name,
            list(tags),
            last,
            "signup form" if consent else None,
            last if consent else None,
        )
        await conn.execute(
            """INSERT INTO conversations (organization_id, contact_id, current_state, current_module, state_data,
                                          last_user_message_at)
               VALUES ($1, $2, 'q2', 'survey', '{"survey_id": "s1"}', $3)""",
            org,
            contact,
            last,
        )
    return contact, number


async def approved_template(
    pool: asyncpg.Pool,
    org: UUID,
    name: str,
    category: str = "MARKETING",
    params: int = 1,
    status: str = "APPROVED",
) -> None:
    """A template as `chatnation templates sync` stores it: its body with ``params`` positional parameters."""
    body = "Hello " + " ".join("{{" + str(i + 1) + "}}" for i in range(params))
    async with tenant_tx(pool, org) as conn:
        await conn.execute(
            """INSERT INTO message_templates (organization_id, whatsapp_business_id, name, language, category, status,
                                              parameter_format, components)
               VALUES ($1, 'waba', $2, 'en', $3, $4, 'POSITIONAL', $5)""",
            org,
            name,
            category,
            status,
            [{"type": "BODY", "text": body}],
        )


async def new_broadcast(pool: asyncpg.Pool, org: UUID, **fields: Any) -> UUID:
    async with tenant_tx(pool, org) as conn:
        broadcast_id = await create(conn, org, NewBroadcast(**fields))
    assert broadcast_id is not None
    return broadcast_id


async def run_until_done(rt: Rt, org: UUID, broadcast_id: UUID, limit: int = 200) -> dict[str, Any]:
    for _ in range(limit):
        await scheduler.tick(rt)  # type: ignore[arg-type]
        out = await show(rt.app_pool, org, broadcast_id)
        if out["status"] in ("completed", "blocked", "cancelled"):
            return out
        await release_in_flight(rt.app_pool, org, broadcast_id)
    raise AssertionError("the broadcast did not finish")


async def release_in_flight(pool: asyncpg.Pool, org: UUID, broadcast_id: UUID) -> None:
    """What the sender does for each queued message: WhatsApp accepted it (its id recorded, status sent)."""
    async with tenant_tx(pool, org) as conn:
        queued = await conn.fetch(
            "SELECT message_id FROM broadcast_recipients WHERE broadcast_id = $1 AND status = 'queued'",
            broadcast_id,
        )
    for row in queued:
        await pool.execute(
            "SELECT record_reply_sent($1, $2, $3)", org, row["message_id"], f"wamid.{row['message_id']}"
        )


async def show(pool: asyncpg.Pool, org: UUID, broadcast_id: UUID) -> dict[str, Any]:
    async with tenant_tx(pool, org) as conn:
        out = await stats(conn, broadcast_id, datetime.now(UTC), 80.0)
    assert out is not None
    return out


async def ledger(pool: asyncpg.Pool, org: UUID) -> tuple[list[tuple[str, int]], int, int]:
    async with tenant_tx(pool, org) as conn:
        rows = await conn.fetch(
            "SELECT type, amount FROM token_transactions WHERE module = 'broadcasts' ORDER BY created_at, type"
        )
        wallet = await conn.fetchrow("SELECT balance, reserved_balance FROM wallets")
    return [(r["type"], r["amount"]) for r in rows], wallet["balance"], wallet["reserved_balance"]


async def test_text_inside_the_window_opt_outs_skipped_and_the_ledger_exact(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Radio", tokens=1000)
    inside = [await add_contact(app_pool, org) for _ in range(3)]
    nameless = await add_contact(app_pool, org, name=None)
    await add_contact(app_pool, org, window=False)  # outside the window
    stops_before_start = await add_contact(app_pool, org)
    stops_after_start = await add_contact(app_pool, org)
    await add_contact(app_pool, org, tags=("staff",))  # not in the audience
    broadcast_id = await new_broadcast(
        app_pool, org, text="Hi {{name}}, the show starts at 8", audience={"tags": ["fans"]}
    )
    async with tenant_tx(app_pool, org) as conn:  # STOP after the broadcast was created, before it started
        await conn.execute("UPDATE contacts SET opted_in = false WHERE id = $1", stops_before_start[0])
    assert await scheduler.start_due(rt, datetime.now(UTC)) >= 1  # type: ignore[arg-type]  # (others' too)
    assert (await show(app_pool, org, broadcast_id))["status"] == "running"
    async with tenant_tx(app_pool, org) as conn:  # STOP after it started, before its batch
        await conn.execute("UPDATE contacts SET opted_in = false WHERE id = $1", stops_after_start[0])
    out = await run_until_done(rt, org, broadcast_id)

    assert out["status"] == "completed"
    assert out["recipients"] == 6  # 3 inside, nameless, outside, stops_after_start
    assert (out["queued"], out["sent"], out["skipped"]) == (4, 4, 2)
    assert out["skipped_by_reason"] == {"outside_window": 1, "opted_out": 1}
    async with tenant_tx(app_pool, org) as conn:
        sent = await conn.fetch(
            """SELECT c.phone, m.content, c2.current_module, c2.current_state, (SELECT count(*) FROM outbox o
                      WHERE o.message_id = m.id) AS outbox_rows
               FROM messages m JOIN contacts c ON c.id = m.contact_id
               JOIN conversations c2 ON c2.id = m.conversation_id WHERE m.broadcast_id = $1""",
            broadcast_id,
        )
    by_phone = {r["phone"]: r for r in sent}
    assert set(by_phone) == {p for _, p in (*inside, nameless)}
    assert by_phone[inside[0][1]]["content"] == "Hi Wanjiku, the show starts at 8"
    assert by_phone[nameless[1]]["content"] == "Hi friend, the show starts at 8"
    assert all(r["outbox_rows"] == 1 for r in sent)
    # a broadcast does not move a conversation in progress: the survey goes on where it was
    assert {(r["current_module"], r["current_state"]) for r in sent} == {("survey", "q2")}
    rows, balance, reserved = await ledger(app_pool, org)
    assert rows[0] == ("reserve", -6) and rows[-1] == ("release", 2)
    assert sorted(rows[1:-1]) == [("debit", -1)] * 4
    assert (balance, reserved) == (1000 - 4, 0)
    assert (out["tokens_reserved"], out["tokens_spent"], out["tokens_released"]) == (6, 4, 2)


async def test_a_template_outside_the_window_priced_as_its_category(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Church", tokens=100)
    inside = await add_contact(app_pool, org)
    outside = await add_contact(app_pool, org, window=False, name="Otieno Odhiambo")
    no_consent = await add_contact(app_pool, org, window=False, consent=False)
    await approved_template(app_pool, org, "devotional_reminder")
    broadcast_id = await new_broadcast(
        app_pool,
        org,
        text="Devotional today, {{name}}",
        template_name="devotional_reminder",
        template_language="en",
        template_params=["{{name}}"],
    )
    out = await run_until_done(rt, org, broadcast_id)
    assert out["skipped_by_reason"] == {"no_consent": 1}
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch(
            """SELECT c.phone, r.kind, r.tokens, m.payload FROM broadcast_recipients r
               JOIN contacts c ON c.id = r.contact_id LEFT JOIN messages m ON m.id = r.message_id
               WHERE r.broadcast_id = $1""",
            broadcast_id,
        )
    got = {r["phone"]: r for r in rows}
    assert (got[inside[1]]["kind"], got[inside[1]]["tokens"]) == ("text", 1)
    assert (got[outside[1]]["kind"], got[outside[1]]["tokens"]) == ("template", 3)
    template = got[outside[1]]["payload"]["request"]["template"]
    assert template["name"] == "devotional_reminder"
    assert template["components"][0]["parameters"] == [{"type": "text", "text": "Otieno"}]
    assert got[no_consent[1]]["kind"] is None
    rows_, balance, reserved = await ledger(app_pool, org)
    assert rows_[0] == ("reserve", -9) and rows_[-1] == ("release", 5)  # 3 at the dearer price; 1 + 3 spent
    assert (balance, reserved) == (100 - 4, 0)


async def test_a_wallet_that_cannot_cover_it_blocks_it_with_the_reason(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Poor", tokens=2)
    for _ in range(3):
        await add_contact(app_pool, org)
    broadcast_id = await new_broadcast(app_pool, org, text="Hello")
    await scheduler.tick(rt)  # type: ignore[arg-type]
    out = await show(app_pool, org, broadcast_id)
    assert out["status"] == "blocked"
    assert "needs 3 tokens, has 2" in out["status_reason"]
    assert out["recipients"] == 0 and await ledger(app_pool, org) == ([], 2, 0)
    async with tenant_tx(app_pool, org) as conn:  # a top-up, then resume: it starts
        await conn.execute("UPDATE wallets SET balance = 10")
        assert (await control(conn, org, broadcast_id, "resume"))["status"] == "scheduled"
    out = await run_until_done(rt, org, broadcast_id)
    assert (out["status"], out["queued"]) == ("completed", 3)


async def test_pause_holds_resume_goes_on_cancel_releases(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Pause", tokens=100)
    for _ in range(5):
        await add_contact(app_pool, org)
    small = rt.batches(2)
    broadcast_id = await new_broadcast(app_pool, org, text="Hello")
    await scheduler.start_due(small, datetime.now(UTC))  # type: ignore[arg-type]
    assert await scheduler.batch_once(small, org, broadcast_id, datetime.now(UTC)) == 2  # type: ignore[arg-type]
    async with tenant_tx(app_pool, org) as conn:
        assert (await control(conn, org, broadcast_id, "pause"))["status"] == "paused"
    assert await scheduler.batch_once(small, org, broadcast_id, datetime.now(UTC)) == 0  # type: ignore[arg-type]
    assert (await show(app_pool, org, broadcast_id))["queued"] == 2
    async with tenant_tx(app_pool, org) as conn:
        assert (await control(conn, org, broadcast_id, "resume"))["status"] == "running"
    assert await scheduler.batch_once(small, org, broadcast_id, datetime.now(UTC)) == 2  # type: ignore[arg-type]
    async with tenant_tx(app_pool, org) as conn:
        assert (await control(conn, org, broadcast_id, "cancel"))["released"] == 1
        with pytest.raises(BroadcastError, match="cancelled broadcast cannot be resumed"):
            await control(conn, org, broadcast_id, "resume")
    assert await scheduler.batch_once(small, org, broadcast_id, datetime.now(UTC)) == 0  # type: ignore[arg-type]
    out = await show(app_pool, org, broadcast_id)
    assert (out["status"], out["queued"], out["pending"]) == ("cancelled", 4, 1)
    rows, balance, reserved = await ledger(app_pool, org)
    assert rows[0] == ("reserve", -5) and rows[-1] == ("release", 1) and (balance, reserved) == (96, 0)


async def test_concurrent_schedulers_queue_each_recipient_once(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Many", tokens=10_000)
    async with tenant_tx(app_pool, org) as conn:  # 300 contacts, half of them without a conversation yet
        await conn.execute(
            """WITH c AS (INSERT INTO contacts (organization_id, phone, name, tags, opted_in, opted_in_at)
                          SELECT $1, '2549' || lpad(g::text, 8, '0'), 'Fan ' || g, '{fans}', true,
                                 now() FROM generate_series(1, 300) g RETURNING id, name)
               INSERT INTO conversations (organization_id, contact_id, current_state, last_user_message_at)
               SELECT $1, id, 'idle', now() FROM c WHERE right(name, 1) IN ('0', '2', '4', '6', '8')""",
            org,
        )
    fast = rt.batches(15)
    await approved_template(app_pool, org, "hello", category="UTILITY", params=0)
    async with tenant_tx(app_pool, org) as conn:  # the template's 150 users outside the window fit the limit
        await conn.execute("UPDATE organizations SET settings = settings || '{\"messaging_limit\": 2000}'")
    broadcast_id = await new_broadcast(
        app_pool,
        org,
        text="Hi {{name}}",
        template_name="hello",
        template_language="en",
        template_category="utility",
    )

    async def worker() -> None:
        for _ in range(100):
            await scheduler.tick(fast)  # type: ignore[arg-type]
            if (await show(app_pool, org, broadcast_id))["status"] == "completed":
                return

    await asyncio.gather(*(worker() for _ in range(4)))
    out = await show(app_pool, org, broadcast_id)
    assert (out["status"], out["recipients"], out["queued"], out["skipped"]) == ("completed", 300, 300, 0)
    async with tenant_tx(app_pool, org) as conn:
        per_contact = await conn.fetch(
            """SELECT m.contact_id, count(*) AS n, count(DISTINCT o.id) AS outbox FROM messages m
               JOIN outbox o ON o.message_id = m.id WHERE m.broadcast_id = $1 GROUP BY 1""",
            broadcast_id,
        )
        conversations = await conn.fetchval("SELECT count(*) FROM conversations WHERE status = 'active'")
        debits = await conn.fetchval(
            "SELECT count(*) FROM token_transactions WHERE type = 'debit' AND module = 'broadcasts'"
        )
    assert len(per_contact) == 300 and {(r["n"], r["outbox"]) for r in per_contact} == {(1, 1)}
    assert conversations == 300 and debits == 300


async def test_status_webhooks_roll_up_monotonic_with_failures_by_code(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Stats", tokens=100)
    for _ in range(4):
        await add_contact(app_pool, org)
    broadcast_id = await new_broadcast(app_pool, org, text="Hello")
    await run_until_done(rt, org, broadcast_id)
    async with tenant_tx(app_pool, org) as conn:
        wamids = [
            r["wa_message_id"]
            for r in await conn.fetch(
                "SELECT wa_message_id FROM messages WHERE broadcast_id = $1 ORDER BY wa_message_id",
                broadcast_id,
            )
        ]

    def status(wamid: str, value: str, code: int | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"id": wamid, "status": value, "timestamp": "1700000000"}
        if code:
            payload["errors"] = [{"code": code, "title": "Message undeliverable"}]
        return {"payload": payload}

    per_message = [  # each message's webhooks in order, three times over; the messages concurrently
        [status(wamids[0], "delivered"), status(wamids[0], "read"), status(wamids[0], "delivered")],
        [status(wamids[1], "read")],  # delivered skipped, still counted
        [status(wamids[2], "failed", 131026), status(wamids[2], "delivered")],  # after failed: no effect
        [status(wamids[3], "delivered")],
    ]

    async def post(updates: list[dict[str, Any]]) -> None:
        for update in updates * 3:
            await apply_status(app_pool, org, update)  # type: ignore[arg-type]

    await asyncio.gather(*(post(u) for u in per_message))
    out = await show(app_pool, org, broadcast_id)
    assert (out["sent"], out["delivered"], out["read"], out["failed"]) == (4, 3, 2, 1)
    assert out["failed_by_code"] == {"131026": 1}


async def test_audience_filters_combine_and_exclusions_win(  # type: ignore[no-untyped-def]
    make_org, app_pool: asyncpg.Pool
) -> None:
    from engine.broadcast_audience import AudienceError, estimate, normalise

    org, _ = await make_org("Audience", tokens=10)
    await add_contact(app_pool, org, tags=("fans", "nairobi"))
    vip, _ = await add_contact(app_pool, org, tags=("fans", "vip"))
    staff, staff_phone = await add_contact(app_pool, org, tags=("staff",))
    gone, _ = await add_contact(app_pool, org, tags=("fans",))
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute('UPDATE contacts SET profile = \'{"county": "Kisumu"}\' WHERE id = $1', vip)
        await conn.execute("UPDATE contacts SET opted_in = false WHERE id = $1", gone)
        poll = await conn.fetchval(
            """INSERT INTO polls (organization_id, question, options) VALUES ($1, 'Best?', '[]') RETURNING id""",
            org,
        )
        await conn.execute(
            "INSERT INTO poll_options (poll_id, id, organization_id, text) VALUES ($1, 'a', $2, 'A')",
            poll,
            org,
        )
        await conn.execute(
            "INSERT INTO poll_votes (organization_id, poll_id, contact_id, option_id) VALUES ($1, $2, $3, 'a')",
            org,
            poll,
            staff,
        )

        async def count(**audience: Any) -> int:
            return await estimate(conn, org, normalise(audience))

        assert await count() == 3  # every opted-in contact
        assert await count(tags=["fans"]) == 2  # the opted-out one never
        assert await count(tags=["nairobi", "staff"]) == 2  # any of the tags
        assert await count(tags=["fans"], exclude_tags=["vip"]) == 1
        assert await count(profile={"county": "Kisumu"}) == 1
        assert await count(poll_id=str(poll)) == 1 and await count(poll_id=str(poll), tags=["fans"]) == 0
        assert await count(phones=[staff_phone]) == 1
        assert await count(tags=[]) == 3  # an empty filter filters nothing
    with pytest.raises(AudienceError, match="unknown audience filter colour"):
        normalise({"colour": "red"})
    with pytest.raises(AudienceError, match="event_id is not an id"):
        normalise({"event_id": "jazz"})


async def test_only_an_approved_template_within_the_messaging_limit_starts_and_a_paused_one_holds_it(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Templates", tokens=1000)
    for _ in range(3):
        await add_contact(app_pool, org, window=False)
    await approved_template(app_pool, org, "pending_one", status="PENDING")
    await approved_template(app_pool, org, "two_params", params=2)
    await approved_template(app_pool, org, "promo")

    async def started(**fields: Any) -> dict[str, Any]:
        broadcast_id = await new_broadcast(app_pool, org, template_language="en", **fields)
        await scheduler.tick(rt)  # type: ignore[arg-type]
        return await show(app_pool, org, broadcast_id)

    pending = await started(template_name="pending_one", template_params=["{{name}}"])
    assert (
        pending["status"] == "blocked"
        and "is PENDING; only APPROVED templates are sent" in pending["status_reason"]
    )
    wrong = await started(template_name="two_params", template_params=["{{name}}"])
    assert wrong["status"] == "blocked" and "2" in wrong["status_reason"]
    unknown = await started(template_name="nowhere")
    assert unknown["status"] == "blocked" and "no template 'nowhere'" in unknown["status_reason"]
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute("UPDATE organizations SET settings = settings || '{\"messaging_limit\": 250}'")
        await conn.execute(  # 249 users already reached with templates in the last 24 hours
            """WITH c AS (INSERT INTO contacts (organization_id, phone, opted_in)
                          SELECT $1, '2541' || lpad(g::text, 8, '0'), true FROM generate_series(1, 249) g RETURNING id),
                    v AS (INSERT INTO conversations (organization_id, contact_id) SELECT $1, id FROM c RETURNING id, contact_id)
               INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, wa_status)
               SELECT $1, id, contact_id, 'outbound', 'template', 'sent' FROM v""",
            org,
        )
    crossing = await started(template_name="promo", template_params=["{{name}}"], audience={"tags": ["fans"]})
    assert crossing["status"] == "blocked" and crossing["status_reason"].startswith(
        "messaging limit: 3 new users"
    )
    assert (crossing["recipients"], crossing["tokens_reserved"]) == (
        0,
        0,
    )  # nothing resolved, nothing reserved
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute("UPDATE organizations SET settings = settings || '{\"messaging_limit\": 2000}'")
        await conn.execute(
            "UPDATE message_templates SET status = 'PAUSED', status_reason = 'low quality' WHERE name = 'promo'"
        )
        assert (await control(conn, org, crossing["id"], "resume"))["status"] == "scheduled"
    small = rt.batches(1)
    await scheduler.tick(small)  # type: ignore[arg-type]
    held = await show(app_pool, org, crossing["id"])
    assert held["status"] == "blocked" and "is PAUSED: low quality" in held["status_reason"]
    async with tenant_tx(app_pool, org) as conn:  # approved again: it starts; paused while it runs: it waits
        await conn.execute("UPDATE message_templates SET status = 'APPROVED' WHERE name = 'promo'")
        await control(conn, org, crossing["id"], "resume")
    await scheduler.start_due(small, datetime.now(UTC))  # type: ignore[arg-type]
    assert await scheduler.batch_once(small, org, crossing["id"], datetime.now(UTC)) == 1  # type: ignore[arg-type]
    async with tenant_tx(app_pool, org) as conn:
        await conn.execute("UPDATE message_templates SET status = 'DISABLED' WHERE name = 'promo'")
    await scheduler.batch_once(small, org, crossing["id"], datetime.now(UTC))  # type: ignore[arg-type]
    paused = await show(app_pool, org, crossing["id"])
    assert (paused["status"], paused["queued"]) == ("paused", 1)
    assert "is DISABLED" in paused["status_reason"]


async def test_failed_sends_are_refunded_once_whatever_reports_the_failure_and_however_often(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    """A recipient's send that fails for good (the sender's permanent error, a 'failed' status webhook, both,
    redelivered, concurrently, while another batch debits and after the release) gives its tokens back once:
    one 'refund' ledger row per failed recipient, the wallet credited, show counting them."""
    from engine.inbound import advance_status

    org, _ = await make_org("Refunds", tokens=100)
    for _ in range(6):
        await add_contact(app_pool, org)
    small = rt.batches(3)
    broadcast_id = await new_broadcast(app_pool, org, text="Hello")
    await scheduler.start_due(small, datetime.now(UTC))  # type: ignore[arg-type]
    assert await scheduler.batch_once(small, org, broadcast_id, datetime.now(UTC)) == 3  # type: ignore[arg-type]
    async with tenant_tx(app_pool, org) as conn:
        first = [
            r["message_id"]
            for r in await conn.fetch(
                """SELECT message_id FROM broadcast_recipients WHERE broadcast_id = $1 AND status = 'queued'
                   ORDER BY position""",
                broadcast_id,
            )
        ]
    a, b, c = first
    for accepted in (b, c):  # WhatsApp accepted these two; a is refused by the sender's request
        await app_pool.execute("SELECT record_reply_sent($1, $2, $3)", org, accepted, f"wamid.{accepted}")

    async def sender_error(message_id: UUID) -> None:
        async with tenant_tx(app_pool, org) as conn:
            await advance_status(conn, message_id, "failed", error_code=131026, error_title="undeliverable")

    def failed(message_id: UUID) -> dict[str, Any]:
        errors = [{"code": 131026, "title": "Message undeliverable"}]
        return {
            "payload": {
                "id": f"wamid.{message_id}",
                "status": "failed",
                "timestamp": "1700000000",
                "errors": errors,
            }
        }

    await asyncio.gather(
        scheduler.batch_once(small, org, broadcast_id, datetime.now(UTC)),  # type: ignore[arg-type]
        sender_error(a),
        sender_error(a),  # the job run again
        *(apply_status(app_pool, org, failed(b)) for _ in range(4)),  # type: ignore[arg-type]
        sender_error(c),
        apply_status(app_pool, org, failed(c)),  # type: ignore[arg-type]
    )
    out = await run_until_done(small, org, broadcast_id)
    assert (out["status"], out["queued"], out["tokens_released"]) == ("completed", 6, 0)
    await release_in_flight(app_pool, org, broadcast_id)
    async with tenant_tx(app_pool, org) as conn:
        d = await conn.fetchval(
            """SELECT r.message_id FROM broadcast_recipients r WHERE r.broadcast_id = $1 AND r.status = 'sent'
               ORDER BY r.position LIMIT 1""",
            broadcast_id,
        )
    for _ in range(2):  # a failure reported after the broadcast completed (and released) is refunded too
        await apply_status(app_pool, org, failed(d))  # type: ignore[arg-type]

    out = await show(app_pool, org, broadcast_id)
    assert (out["failed"], out["refunded"], out["tokens_refunded"]) == (4, 4, 4)
    assert out["failed_by_code"] == {"131026": 4}
    assert (out["tokens_reserved"], out["tokens_spent"], out["tokens_released"]) == (6, 6, 0)
    async with tenant_tx(app_pool, org) as conn:
        refunds = await conn.fetch(
            """SELECT reference_id, amount, balance_before, balance_after FROM token_transactions
               WHERE type = 'refund' ORDER BY created_at"""
        )
    assert sorted(r["reference_id"] for r in refunds) == sorted([a, b, c, d])
    assert {r["amount"] for r in refunds} == {1}
    assert all(r["balance_after"] == r["balance_before"] + 1 for r in refunds)
    rows, balance, reserved = await ledger(app_pool, org)
    assert sorted(rows) == sorted([("reserve", -6)] + [("debit", -1)] * 6 + [("refund", 1)] * 4)
    assert (balance, reserved) == (100 - 6 + 4, 0)


async def test_media_inside_the_window_with_its_caption_and_the_template_outside_it(
    rt: Rt,
    make_org,  # type: ignore[no-untyped-def]
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("Media", tokens=100)
    inside = await add_contact(app_pool, org)
    outside = await add_contact(app_pool, org, window=False, name="Otieno Odhiambo")
    await approved_template(app_pool, org, "poster_out")
    image = await new_broadcast(
        app_pool,
        org,
        text="Tonight, {{name}}!",
        media_url="https://cdn.example.org/shows/poster.JPG",  # an image by its extension
        template_name="poster_out",
        template_language="en",
        template_params=["{{name}}"],
    )
    document = await new_broadcast(
        app_pool, org, media_url="https://cdn.example.org/programme%20notes.pdf", media_type="document"
    )
    by_id = await new_broadcast(
        app_pool, org, text="From the upload", media_url="1234567890", media_type="video"
    )
    for broadcast_id in (image, document, by_id):
        await run_until_done(rt, org, broadcast_id)
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch(
            """SELECT b.id AS broadcast_id, b.message_type, c.phone, r.kind, r.tokens, r.skip_reason, m.type,
                      m.content, m.payload
               FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id
               JOIN contacts c ON c.id = r.contact_id LEFT JOIN messages m ON m.id = r.message_id"""
        )
    got = {(r["broadcast_id"], r["phone"]): r for r in rows}
    sent = got[image, inside[1]]
    assert (sent["message_type"], sent["type"], sent["kind"], sent["tokens"]) == (
        "image_or_template",
        "image",
        "text",
        1,
    )
    assert sent["payload"]["request"]["image"] == {
        "link": "https://cdn.example.org/shows/poster.JPG",
        "caption": "Tonight, Wanjiku!",
    }
    assert sent["content"] == "[image https://cdn.example.org/shows/poster.JPG] Tonight, Wanjiku!"
    templated = got[image, outside[1]]
    assert (templated["type"], templated["kind"], templated["tokens"]) == ("template", "template", 3)
    pdf = got[document, inside[1]]
    assert pdf["payload"]["request"]["document"] == {
        "link": "https://cdn.example.org/programme%20notes.pdf",
        "filename": "programme notes.pdf",
    }
    assert got[document, outside[1]]["skip_reason"] == "outside_window"  # media is free-form: the window only
    assert got[by_id, inside[1]]["payload"]["request"]["video"] == {
        "id": "1234567890",
        "caption": "From the upload",
    }


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"media_url": "http://cdn.example.org/a.jpg"}, "is neither an https:// URL"),
        ({"media_url": "ftp://cdn.example.org/a.jpg", "media_type": "image"}, "is neither an https:// URL"),
        ({"media_url": "https:///a.jpg"}, "is neither an https:// URL"),
        ({"media_url": "https://cdn.example.org/a file.jpg"}, "is neither an https:// URL"),
        ({"media_url": "media-42", "media_type": "video"}, "nor an uploaded media id"),
        ({"media_url": "https://cdn.example.org/page"}, "say whether it is an image, a video or a document"),
        ({"media_url": "https://cdn.example.org/a.mp3", "media_type": "audio"}, "media type 'audio'"),
        ({"media_type": "image"}, "--image needs its URL or media id"),
        (
            {"media_url": "https://x.org/a.png", "text": "x" * 1025},
            "a caption (the --text of a media broadcast)",
        ),
    ],
)
def test_media_is_an_https_link_or_an_uploaded_id(fields: dict[str, Any], error: str) -> None:
    with pytest.raises(BroadcastError, match=re.escape(error)):
        NewBroadcast(**fields).check()
