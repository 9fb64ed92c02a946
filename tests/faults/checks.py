"""What must hold once a scenario's load has drained, checked against the database, the WhatsApp simulator
and the parking queue. Every broken guarantee becomes a line in ``problems``; the counts become the row."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any
from uuid import UUID

import aio_pika

from engine.broker import Topology
from engine.broker_admin import describe_parked
from tests.faults.harness import FaultStack, Load


async def check(
    stack: FaultStack, load: Load, name: str, size: str, started: float, fault_end: float | None
) -> dict[str, Any]:
    problems: list[str] = []
    org_ids = [o.id for o in load.orgs]
    conn = stack.owner_pool
    stored = await inbound_once(conn, org_ids, set(load.accepted) - load.poison, problems)
    delivered, duplicates, sent_at = await replies_once(stack, load, problems)
    await ledger_balances(conn, org_ids, problems)
    await poll_tallies(conn, load, problems)
    await survey_answers(conn, load, problems)
    parked = await poison_parked(stack, load, problems)
    expected = load.expected_replies()
    last_accept = max(load.accepted.values(), default=started)
    after_fault = [t for t in sent_at if fault_end is not None and t >= fault_end]
    return {
        "fault": name,
        "size": size,
        "sent": len(load.steps) + len(load.poison) + load.counts["refused_400"],
        "posts": load.counts["posts"],
        "accepted": len(load.accepted),
        "refused": load.counts["refused_400"],
        "processed": stored + parked,
        "replies": delivered,
        "expected_replies": expected,
        "duplicates": duplicates,
        "lost": (len(set(load.accepted) - load.poison) - stored) + max(0, expected - delivered),
        "parked": parked,
        "recover_s": round(min(after_fault) - fault_end, 2) if after_fault and fault_end else None,
        "drain_s": round(max(sent_at, default=last_accept) - last_accept, 2),
        "seconds": round(time.time() - started, 1),
        "problems": problems,
    }


async def inbound_once(conn: Any, org_ids: list[UUID], wanted: set[str], problems: list[str]) -> int:
    rows = await conn.fetch(
        """SELECT wa_message_id, count(*) AS n FROM messages WHERE organization_id = ANY($1::uuid[])
           AND direction = 'inbound' GROUP BY 1""",
        org_ids,
    )
    stored = {r["wa_message_id"]: r["n"] for r in rows}
    if missing := wanted - stored.keys():
        problems.append(f"{len(missing)} accepted messages not stored, e.g. {sorted(missing)[:3]}")
    if twice := [k for k, n in stored.items() if n > 1]:
        problems.append(f"{len(twice)} messages stored more than once")
    if unexpected := stored.keys() - wanted:
        problems.append(f"{len(unexpected)} stored messages that were never accepted or are poison")
    return len(stored.keys() & wanted)


async def replies_once(stack: FaultStack, load: Load, problems: list[str]) -> tuple[int, int, list[float]]:
    """(replies delivered, duplicate sends, arrival times). A duplicate: a message the simulator accepted that no
    reply row claims (the engine sent one reply twice)."""
    sim = [m for o in load.orgs for m in stack.local.whatsapp.messages(phone_number_id=o.phone_number_id)]
    sim_ids = {m["wamid"] for m in sim}
    rows = await stack.owner_pool.fetch(
        "SELECT wa_message_id, wa_status FROM messages WHERE organization_id = ANY($1::uuid[]) AND direction = 'outbound'",
        [o.id for o in load.orgs],
    )
    delivered = sum(1 for r in rows if r["wa_message_id"] in sim_ids)
    if unsent := [r for r in rows if r["wa_message_id"] is None]:
        problems.append(
            f"{len(unsent)} replies never accepted by WhatsApp: {Counter(r['wa_status'] for r in unsent)}"
        )
    if len(rows) != load.expected_replies():
        problems.append(f"{len(rows)} replies written, {load.expected_replies()} expected")
    return delivered, len(sim) - delivered, [m["received_at"] for m in sim]


async def ledger_balances(conn: Any, org_ids: list[UUID], problems: list[str]) -> None:
    rows = await conn.fetch(
        """SELECT w.organization_id, w.balance,
                  (SELECT coalesce(sum(amount), 0) FROM token_transactions t WHERE t.wallet_id = w.id) AS ledger,
                  (SELECT count(*) FROM token_transactions t WHERE t.wallet_id = w.id
                     AND balance_after <> balance_before + amount) AS broken,
                  (SELECT count(*) FROM token_transactions t WHERE t.wallet_id = w.id AND t.type = 'debit'
                     AND t.action = 'outbound_reply') AS reply_debits,
                  (SELECT count(*) FROM messages m WHERE m.organization_id = w.organization_id
                     AND m.direction = 'outbound') AS replies
           FROM wallets w WHERE w.organization_id = ANY($1::uuid[])""",
        org_ids,
    )
    for r in rows:
        if r["ledger"] != r["balance"] or r["broken"] or r["balance"] < 0:
            problems.append(
                f"wallet {r['organization_id']}: balance {r['balance']}, ledger sum {r['ledger']}, "
                f"{r['broken']} rows whose before + amount != after"
            )
        if r["reply_debits"] != r["replies"]:
            problems.append(
                f"wallet {r['organization_id']}: {r['reply_debits']} reply debits for {r['replies']} replies"
            )


async def poll_tallies(conn: Any, load: Load, problems: list[str]) -> None:
    """poll_options.votes == poll_votes rows == what the contacts voted (those whose vote was accepted)."""
    sent: Counter[tuple[str, str]] = Counter(
        (s.org.poll_id, s.vote)
        for i, s in enumerate(load.scripts)
        if s.vote and load.steps.get((i, len(s.steps) - 1)) in load.accepted
    )
    rows = await conn.fetch(
        """SELECT o.poll_id::text AS poll, o.id, o.votes,
                  (SELECT count(*) FROM poll_votes v WHERE v.poll_id = o.poll_id AND v.option_id = o.id) AS rows
           FROM poll_options o WHERE o.poll_id = ANY($1::uuid[])""",
        [UUID(o.poll_id) for o in load.orgs],
    )
    for r in rows:
        if not r["votes"] == r["rows"] == sent[(r["poll"], r["id"])]:
            problems.append(
                f"poll option {r['id']}: tally {r['votes']}, vote rows {r['rows']}, "
                f"sent {sent[(r['poll'], r['id'])]}"
            )


async def survey_answers(conn: Any, load: Load, problems: list[str]) -> None:
    rows = await conn.fetch(
        """SELECT c.phone, r.status, r.answers FROM survey_responses r JOIN contacts c ON c.id = r.contact_id
           WHERE r.organization_id = ANY($1::uuid[])""",
        [o.id for o in load.orgs],
    )
    got = {r["phone"]: (r["status"], r["answers"]) for r in rows}
    wrong = [s.wa_id for s in load.scripts if s.answers and got.get(s.wa_id) != ("completed", s.answers)]
    if wrong:
        problems.append(f"{len(wrong)} survey responses differ from what was sent, e.g. {got.get(wrong[0])}")
    counts = await conn.fetch(
        "SELECT id::text AS id, response_count FROM surveys WHERE id = ANY($1::uuid[])",
        [UUID(o.survey_id) for o in load.orgs],
    )
    for r in counts:
        completed = sum(1 for s in load.scripts if s.answers and s.org.survey_id == r["id"])
        if r["response_count"] != completed:
            problems.append(f"survey {r['id']}: response_count {r['response_count']}, completed {completed}")


async def poison_parked(stack: FaultStack, load: Load, problems: list[str], wait: float = 20) -> int:
    """Every accepted poison message is in the parking queue; no good message is."""
    wanted = load.poison & load.accepted.keys()
    deadline = time.monotonic() + wait
    while True:
        why = await parked_reasons(stack)
        parked = set(why)
        if wanted <= parked or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    if missing := wanted - parked:
        problems.append(f"{len(missing)} poison messages not parked")
    if wrongly := (load.accepted.keys() - load.poison) & parked:
        reasons = Counter(why[m] for m in wrongly).most_common(3)
        problems.append(f"{len(wrongly)} good messages parked, why: {reasons}")
    return len(wanted & parked)


async def parked_reasons(stack: FaultStack) -> dict[str, str]:
    """Each parked message's id and why it was parked, read without taking them (unacked gets go back when the
    channel closes): the engine's ``x-error``, or the broker's dead-lettering reason (``delivery_limit``: returned
    that many times unacked)."""
    connection = await aio_pika.connect(stack.rabbit.url)
    found: dict[str, str] = {}
    async with connection:
        channel = await connection.channel()
        topology = Topology.from_settings(stack.settings)
        queue = await channel.declare_queue(topology.parking_queue, passive=True)
        for _ in range(queue.declaration_result.message_count or 0):
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            parked = describe_parked(
                message.message_id, message.headers or {}, message.body, topology.delivery_limit
            )
            why = (
                f"engine: {(parked.error or '')[:80]}"
                if parked.reason == "parked"
                else f"broker: {parked.reason}"
            )
            found[str(message.message_id)] = why
    return found
