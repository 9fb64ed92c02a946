"""Status webhooks applied set-based in batches (engine/status_batch.py, sql/077) on the real PostgreSQL: per message
monotonic (sent < delivered < read, failed terminal), a broadcast's counters exact (every stage passed counted
once), nothing moved twice when a batch comes again, concurrent batches over the same messages exact and
without deadlock, and what a batch does not take left to run on its own."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from engine.broker import inbound_ordering, ordering_headers
from engine.consumer import Batcher, RunAlone
from engine.db import tenant_tx
from engine.gateway_app import part_body
from engine.inbound import apply_status
from engine.orgs import OrgDirectory
from engine.status_batch import Status, apply_statuses, handle_statuses, is_status
from engine.whatsapp.webhook import parse_envelope, split_envelope
from simulators.whatsapp import build_status_envelope, build_text_envelope, status_update
from tests.test_broadcasts import Rt, add_contact, new_broadcast, rt, run_until_done, show  # noqa: F401
from tests.test_consumer import FakeMessage

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


async def sent_broadcast(rt: Rt, app_pool: asyncpg.Pool, org: UUID, contacts: int) -> tuple[UUID, list[str]]:  # noqa: F811
    """A text broadcast to ``contacts`` contacts, every message accepted by WhatsApp (status sent): its id and the
    messages' WhatsApp ids."""
    for _ in range(contacts):
        await add_contact(app_pool, org)
    broadcast_id = await new_broadcast(app_pool, org, text="Hello")
    await run_until_done(rt, org, broadcast_id)
    async with tenant_tx(app_pool, org) as conn:
        wamids = await conn.fetch(
            "SELECT wa_message_id FROM messages WHERE broadcast_id = $1 ORDER BY wa_message_id", broadcast_id
        )
    return broadcast_id, [r["wa_message_id"] for r in wamids]


async def statuses_of(app_pool: asyncpg.Pool, org: UUID, broadcast_id: UUID) -> dict[str, tuple[str, str]]:
    """Each message's status and its recipient's, by WhatsApp id."""
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch(
            """SELECT m.wa_message_id, m.wa_status, r.status FROM messages m
               JOIN broadcast_recipients r ON r.message_id = m.id WHERE m.broadcast_id = $1""",
            broadcast_id,
        )
    return {r["wa_message_id"]: (r["wa_status"], r["status"]) for r in rows}


def one(wamid: str, status: str) -> Status:
    return wamid, status, AT, None, None


async def test_a_batch_moves_each_message_forward_once_and_counts_every_stage(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("StatusBatch", tokens=100)
    broadcast_id, w = await sent_broadcast(rt, app_pool, org, 6)
    first = [one(w[0], "delivered"), one(w[1], "delivered"), one(w[2], "read"), one(w[3], "sent")]
    first += [one("wamid.nobody", "read")]
    assert await apply_statuses(app_pool, org, first) == [True, True, True, False, None]
    assert await apply_statuses(app_pool, org, first) == [False, False, False, False, None]  # again: stale
    out = await show(app_pool, org, broadcast_id)
    assert (out["sent"], out["delivered"], out["read"], out["failed"]) == (
        6,
        3,
        1,
        0,
    )  # read counts delivered
    await apply_status(  # a failed one stays failed (failed goes one at a time, with its refund)
        app_pool,  # type: ignore[arg-type]
        org,
        {"payload": {"id": w[4], "status": "failed", "errors": [{"code": 131026, "title": "undeliverable"}]}},
    )
    second = [one(w[0], "read"), one(w[2], "delivered"), one(w[4], "delivered"), one(w[5], "read")]
    assert await apply_statuses(app_pool, org, second) == [True, False, False, True]
    out = await show(app_pool, org, broadcast_id)
    assert (out["sent"], out["delivered"], out["read"], out["failed"]) == (6, 4, 3, 1)
    assert await statuses_of(app_pool, org, broadcast_id) == {
        w[0]: ("read", "read"),
        w[1]: ("delivered", "delivered"),
        w[2]: ("read", "read"),
        w[3]: ("sent", "sent"),
        w[4]: ("failed", "failed"),
        w[5]: ("read", "read"),
    }
    async with tenant_tx(app_pool, org) as conn:
        times = await conn.fetchrow(
            "SELECT delivered_at, read_at FROM messages WHERE wa_message_id = $1", w[0]
        )
    assert times["delivered_at"] == times["read_at"] == AT
    with pytest.raises(asyncpg.exceptions.InvalidParameterValueError):  # two for one message: refused whole
        await apply_statuses(app_pool, org, [one(w[1], "read"), one(w[1], "delivered")])
    with pytest.raises(
        asyncpg.exceptions.InvalidParameterValueError
    ):  # failed: one at a time, with its refund
        await apply_statuses(app_pool, org, [one(w[1], "failed")])
    assert (await show(app_pool, org, broadcast_id))["read"] == 3  # nothing of the refused batches moved


async def test_concurrent_batches_over_the_same_messages_count_exactly(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    org, _ = await make_org("StatusRace", tokens=100)
    broadcast_id, w = await sent_broadcast(rt, app_pool, org, 30)
    rng = random.Random(15)

    def batch() -> list[Status]:
        """Every message once, delivered or read, in an order of its own."""
        out = [one(x, rng.choice(("delivered", "read"))) for x in w]
        rng.shuffle(out)
        return out

    batches = [batch() for _ in range(12)]
    singles = [{"payload": {"id": x, "status": "read"}} for x in w[:10]]  # and some one at a time
    results = await asyncio.gather(
        *(apply_statuses(app_pool, org, b) for b in batches),
        *(apply_status(app_pool, org, s) for s in singles),  # type: ignore[arg-type]
    )
    moves = sum(sum(1 for m in r if m) for r in results[: len(batches)])
    moves += sum(1 for r in results[len(batches) :] if r == "processed")
    assert moves <= 2 * len(w) and moves >= len(w)  # each message moved once or twice (delivered, then read)
    read_somewhere = {x for b in batches for x, s, *_ in b if s == "read"} | set(w[:10])
    out = await show(app_pool, org, broadcast_id)
    assert (out["sent"], out["delivered"], out["read"]) == (30, 30, len(read_somewhere))
    final = await statuses_of(app_pool, org, broadcast_id)
    assert {x for x, (m, r) in final.items() if m == r == "read"} == read_somewhere
    assert all(m == r == "delivered" for x, (m, r) in final.items() if x not in read_somewhere)


@dataclass
class StatusRt:
    """What handle_statuses uses of a Runtime."""

    app_pool: asyncpg.Pool
    orgs: OrgDirectory


def queued(envelope: dict[str, Any]) -> FakeMessage:
    """Each part of a webhook envelope as the gateway queues it (the first here)."""
    body = part_body(split_envelope(parse_envelope(envelope))[0], time.time())
    return FakeMessage(
        json.dumps(body).encode(),
        str(body["external_id"]),
        ordering_headers(*inbound_ordering(body, str(body["external_id"])), kind=str(body["kind"])),
    )


async def test_the_handler_takes_sent_delivered_and_read_and_leaves_the_rest_alone(  # type: ignore[no-untyped-def]
    rt: Rt,  # noqa: F811
    make_org,
    app_pool: asyncpg.Pool,
) -> None:
    org, new = await make_org("StatusHandler", tokens=100)
    broadcast_id, w = await sent_broadcast(rt, app_pool, org, 3)
    pnid = new.phone_number_id

    def status(wamid: str, value: str) -> FakeMessage:
        return queued(build_status_envelope(pnid, [status_update(wamid, "254700000001", value)]))

    messages = [
        status(w[0], "delivered"),
        status(w[1], "read"),
        status(w[0], "read"),  # a second one for a message in the batch: after the first, alone
        status(w[2], "failed"),  # its refund: alone
        status("wamid.not-yet", "delivered"),  # not recorded yet: alone, it looks again later
        status(w[2], "played"),  # not a status this engine keeps: alone, where it is ignored
        queued(build_status_envelope("pn-unknown", [status_update(w[1], "254700000001", "read")])),
        queued(build_text_envelope(pnid, "254700000000", "254700000001", "Amani", "hi")),
        FakeMessage(b"not json", "broken"),
    ]
    assert [is_status(m) for m in messages] == [True] * 7 + [False, False]  # type: ignore[arg-type]
    # without the gateway's kind header (queued by an older gateway): by the body
    bare = [FakeMessage(m.body, m.message_id, ordering_headers("c", "t")) for m in messages]
    assert [is_status(m) for m in bare] == [True] * 7 + [False, False]  # type: ignore[arg-type]
    outcomes = await handle_statuses(StatusRt(app_pool, OrgDirectory(app_pool)), messages)  # type: ignore[arg-type]
    assert [o is None for o in outcomes[:2]] == [True, True]
    assert all(isinstance(o, RunAlone) for o in outcomes[2:8])
    assert type(outcomes[8]).__name__ == "Park"
    out = await show(app_pool, org, broadcast_id)
    assert (out["sent"], out["delivered"], out["read"], out["failed"]) == (3, 2, 1, 0)


async def test_a_batcher_takes_what_it_accepts_and_hands_the_rest_on() -> None:
    took: dict[str, list[str]] = {"statuses": [], "events": []}

    def runner(name: str):  # type: ignore[no-untyped-def]
        async def run(batch: list[FakeMessage]) -> list[BaseException | None]:
            took[name].extend(m.message_id for m in batch)
            return [None] * len(batch)

        return run

    events = Batcher(runner("events"), size=8, window=0.005)  # type: ignore[arg-type]
    statuses = Batcher(
        runner("statuses"),  # type: ignore[arg-type]
        size=8,
        window=0.005,
        accepts=lambda m: str(m.message_id).startswith("s"),
        otherwise=events,
    )
    alone = Batcher(runner("events"), size=8, window=0.005, accepts=lambda m: False)  # type: ignore[arg-type]
    names = ["s1", "e1", "s2", "e2"]
    outcomes = await asyncio.gather(
        *(statuses.submit("t", n, FakeMessage(b"{}", n)) for n in names)  # type: ignore[arg-type]
    )
    assert outcomes == [None] * 4
    assert took == {"statuses": ["s1", "s2"], "events": ["e1", "e2"]}
    assert isinstance(await alone.submit("t", "x", FakeMessage(b"{}", "x")), RunAlone)  # type: ignore[arg-type]
