"""A broadcast end to end through real worker processes (scheduler, relay, sender, inbound), the WhatsApp
simulator and its status webhooks, while each role is SIGKILLed in turn mid-broadcast: every recipient gets the
message exactly once (beyond the sends a killed sender had in flight, which the Cloud API's lack of
idempotency forces), the counters reach the recipients exactly, and the ledger is exact."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg
import pytest

from engine.broadcasts import NewBroadcast, create
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.settings import PROJECT_ROOT
from tests.helpers import run_cli, wait_until

RECIPIENTS = 200
SEND_RATE = 50  # messages/s: the broadcast takes about four seconds of sending
SENDER_PREFETCH = 20  # engine/roles.PREFETCH["sender"]: what a killed sender may have had in flight


class Workers:
    def __init__(self, stack: LocalStack, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.env = {
            **stack.worker_env(),
            "SEND_RATE_PER_SECOND": str(SEND_RATE),
            "BROADCAST_BATCH_SIZE": "20",
            "BROADCAST_IN_FLIGHT": "60",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: Counter[str] = Counter()

    def spawn(self, name: str) -> None:
        role = name.split("-")[0]
        log = (self.log_dir / f"{name}.log").open("ab")  # a pipe nobody reads would block a chatty worker
        self.procs[name] = subprocess.Popen(
            [sys.executable, str(PROJECT_ROOT / "worker.py"), "--role", role, "--concurrency", "16"]
            + ["--metrics-port", "0"],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()

    def kill(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait()
        self.kills[name.split("-")[0]] += 1
        self.spawn(name)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings, statuses=("read",)).start(in_process_workers=False)
    yield st
    await st.stop()


async def _seed(pool: asyncpg.Pool, org, count: int = RECIPIENTS) -> None:  # type: ignore[no-untyped-def]
    async with tenant_tx(pool, org) as conn:
        await conn.execute(
            """WITH c AS (INSERT INTO contacts (organization_id, phone, name, tags, opted_in, opted_in_at)
                          SELECT $1, '2548' || lpad(g::text, 8, '0'), 'Listener ' || g, '{radio}', true, now()
                          FROM generate_series(1, $2::int) g RETURNING id)
               INSERT INTO conversations (organization_id, contact_id, current_state, last_user_message_at)
               SELECT $1, id, 'idle', now() - interval '1 hour' FROM c""",
            org,
            count,
        )


async def _counters(pool: asyncpg.Pool, org, broadcast_id):  # type: ignore[no-untyped-def]
    async with tenant_tx(pool, org) as conn:
        return await conn.fetchrow("SELECT * FROM broadcasts WHERE id = $1", broadcast_id)


@pytest.mark.timeout(120)
async def test_exactly_once_per_recipient_while_every_role_is_sigkilled(  # type: ignore[no-untyped-def]
    stack: LocalStack, make_org, app_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, tmp_path: Path
) -> None:
    org, new = await make_org("Radio", tokens=RECIPIENTS * 2)
    await _seed(app_pool, org)
    workers = Workers(stack, tmp_path)
    names = ("scheduler-1", "relay-1", "sender-1", "inbound-1")
    setup = time.monotonic()
    for name in names:
        workers.spawn(name)
    try:
        await wait_until(lambda: _shards_owned(owner_pool, stack), timeout=40, interval=0.2)
        async with tenant_tx(app_pool, org) as conn:
            broadcast_id = await create(
                conn,
                org,
                NewBroadcast(name="Tonight", text="Hi {{name}}, tonight at 8", audience={"tags": ["radio"]}),
            )
        started = time.monotonic()
        print(f"workers ready in {started - setup:.1f} s; broadcast created")
        for name in names:  # each role killed in turn while the broadcast runs
            await asyncio.sleep(0.6)
            workers.kill(name)
        assert (await _counters(app_pool, org, broadcast_id))["status"] == "running", "ended before the kills"

        last: dict[str, object] = {}

        async def finished():  # type: ignore[no-untyped-def]
            b = await _counters(app_pool, org, broadcast_id)
            last.update(b)
            return b["status"] == "completed" and b["sent_count"] == RECIPIENTS and b

        try:
            b = await wait_until(finished, timeout=80, interval=0.3)
        except AssertionError:
            raise AssertionError(f"not finished: {last}") from None
        elapsed = time.monotonic() - started
        print(f"finished {elapsed:.1f} s after it was created")
    finally:
        workers.stop()

    assert (b["recipient_count"], b["queued_count"], b["skipped_count"]) == (RECIPIENTS, RECIPIENTS, 0)
    assert (b["sent_count"], b["failed_count"]) == (RECIPIENTS, 0)
    async with tenant_tx(app_pool, org) as conn:
        per_contact = await conn.fetch(
            "SELECT contact_id, count(*) AS n FROM messages WHERE broadcast_id = $1 GROUP BY 1", broadcast_id
        )
        ledger = await conn.fetch(
            "SELECT type, sum(amount) AS total, count(*) AS n FROM token_transactions GROUP BY 1 ORDER BY 1"
        )
        wallet = await conn.fetchrow("SELECT balance, reserved_balance FROM wallets")
        await asyncio.sleep(1.0)  # the last status webhooks
        states = await conn.fetchrow(
            """SELECT count(*) FILTER (WHERE m.wa_status IN ('delivered', 'read')) AS delivered,
                      count(*) FILTER (WHERE m.wa_status = 'read') AS read,
                      count(*) FILTER (WHERE r.status = m.wa_status) AS in_step, b.delivered_count, b.read_count
               FROM messages m JOIN broadcast_recipients r ON r.message_id = m.id JOIN broadcasts b ON b.id = m.broadcast_id
               WHERE m.broadcast_id = $1 GROUP BY b.delivered_count, b.read_count""",
            broadcast_id,
        )
    # the counters are the messages' states exactly ('read' counts 'delivered' too; the simulator does not post
    # again a status the gateway refused while the broker was slow, so not every message need reach 'read')
    assert (states["delivered_count"], states["read_count"]) == (states["delivered"], states["read"])
    assert states["in_step"] == RECIPIENTS and states["read"] > 0
    assert len(per_contact) == RECIPIENTS and {r["n"] for r in per_contact} == {1}
    rows = {r["type"]: (r["total"], r["n"]) for r in ledger}
    assert rows["reserve"] == (-RECIPIENTS, 1) and rows["debit"] == (-RECIPIENTS, RECIPIENTS)
    assert "release" not in rows  # all of it was spent
    assert (wallet["balance"], wallet["reserved_balance"]) == (RECIPIENTS, 0)
    sent = stack.whatsapp.messages(phone_number_id=new.phone_number_id)
    got = Counter(m["to"] for m in sent)
    assert len(got) == RECIPIENTS  # nobody skipped
    duplicates = sum(n - 1 for n in got.values())
    if duplicates > workers.kills["sender"] * SENDER_PREFETCH:  # what happened, for whoever reads the failure
        first: dict[str, float] = {}
        gaps = [
            m["received_at"] - first[m["to"]]
            for m in sent
            if first.setdefault(m["to"], m["received_at"]) != m["received_at"]
        ]
        logs = {p.name: p.read_text()[-2000:] for p in tmp_path.glob("*.log")}
        raise AssertionError(
            f"{duplicates} duplicates, seconds apart {sorted(gaps)[:: max(1, len(gaps) // 10)]}, {logs}"
        )
    assert elapsed < 80


async def _shards_owned(owner_pool: asyncpg.Pool, stack: LocalStack) -> bool:
    assert stack.settings is not None
    rows = await owner_pool.fetch(
        """SELECT role, sum(cardinality(shards))::int AS n, count(*) AS processes FROM worker_heartbeats
           WHERE heartbeat_at > now() - interval '3 seconds' GROUP BY role"""
    )
    live = {r["role"]: r for r in rows}
    return (
        live.get("inbound") is not None
        and live["inbound"]["n"] == stack.settings.inbound_shards
        and live.get("sender") is not None
        and live["sender"]["n"] == stack.settings.outbound_shards
        and live.get("scheduler") is not None
        and live["scheduler"]["processes"] >= 1
    )


@pytest.fixture
async def live_stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings, statuses=("delivered",)).start()
    yield st
    await st.stop()


@pytest.mark.timeout(90)
async def test_failed_sends_are_refunded_once_at_the_simulator(  # type: ignore[no-untyped-def]
    live_stack: LocalStack, make_org, app_pool: asyncpg.Pool
) -> None:
    """Two sends the Cloud API refuses (a permanent error to the sender) and two it accepts but reports 'failed'
    (the status webhook posted twice): each of the four gets its token back once, and `broadcast show` says so."""
    count = 10
    org, new = await make_org("Refunds", tokens=100)
    await _seed(app_pool, org, count)
    refused = ["254800000001", "254800000002"]
    undeliverable = ["254800000003", "254800000004"]
    live_stack.whatsapp.add_faults(
        {"to": to, "status": 400, "code": 131026, "message": "(#131026) Message undeliverable"}
        for to in refused
    )
    for to in undeliverable:
        live_stack.whatsapp.fail_deliveries(to, code=131026, times=2)
    async with tenant_tx(app_pool, org) as conn:
        broadcast_id = await create(
            conn, org, NewBroadcast(name="Refunds", text="Hi {{name}}", audience={"tags": ["radio"]})
        )

    async def settled():  # type: ignore[no-untyped-def]
        b = await _counters(app_pool, org, broadcast_id)
        return (
            b["status"] == "completed" and b["failed_count"] == 4 and b["delivered_count"] == count - 4 and b
        )

    await wait_until(settled, timeout=60, interval=0.2)
    await asyncio.sleep(1.5)  # the second 'failed' of each undeliverable send, and the inbound role's retry
    shown = run_cli("broadcast", "show", str(broadcast_id), "--json")
    assert shown.returncode == 0, shown.stderr
    out = json.loads(shown.stdout)[0]
    assert (out["failed"], out["refunded"], out["tokens_refunded"]) == (4, 4, 4)
    assert (out["tokens_reserved"], out["tokens_spent"], out["tokens_released"]) == (count, count, 0)
    assert out["failed_by_code"] == {"131026": 4}
    async with tenant_tx(app_pool, org) as conn:
        refunds = await conn.fetch(
            """SELECT c.phone, t.amount FROM token_transactions t JOIN messages m ON m.id = t.reference_id
               JOIN contacts c ON c.id = m.contact_id WHERE t.type = 'refund'"""
        )
        wallet = await conn.fetchrow("SELECT balance, reserved_balance FROM wallets")
    assert sorted((r["phone"], r["amount"]) for r in refunds) == [
        (to, 1) for to in sorted(refused + undeliverable)
    ]
    assert (wallet["balance"], wallet["reserved_balance"]) == (100 - count + 4, 0)
    accepted = {m["to"] for m in live_stack.whatsapp.messages(phone_number_id=new.phone_number_id)}
    assert accepted.isdisjoint(refused) and set(undeliverable) <= accepted


@pytest.mark.timeout(90)
async def test_a_media_broadcast_reaches_whatsapp_as_media_inside_the_window(  # type: ignore[no-untyped-def]
    live_stack: LocalStack, make_org, app_pool: asyncpg.Pool
) -> None:
    """An image with its caption to the contacts inside their 24-hour window, the template to the one outside:
    what the simulated Cloud API received, validated as Meta validates it."""
    from tests.test_broadcasts import add_contact, approved_template

    org, new = await make_org("Poster", tokens=100)
    await _seed(app_pool, org, 3)
    _, away = await add_contact(app_pool, org, window=False, tags=("radio",), name="Achieng Otieno")
    await approved_template(app_pool, org, "show_poster")
    async with tenant_tx(app_pool, org) as conn:
        broadcast_id = await create(
            conn,
            org,
            NewBroadcast(
                text="Tonight at 8, {{name}}",
                media_url="https://cdn.example.org/poster.png",
                template_name="show_poster",
                template_language="en",
                template_params=["{{name}}"],
                audience={"tags": ["radio"]},
            ),
        )
    got = await live_stack.whatsapp.wait_for_messages(4, timeout=30, phone_number_id=new.phone_number_id)
    by_to = {m["to"]: m["payload"] for m in got}
    assert set(by_to) == {"254800000001", "254800000002", "254800000003", away}
    assert by_to["254800000002"]["type"] == "image"
    assert by_to["254800000002"]["image"] == {
        "link": "https://cdn.example.org/poster.png",
        "caption": "Tonight at 8, Listener",
    }
    assert by_to[away]["type"] == "template"
    assert by_to[away]["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Achieng"}]
    b = await _counters(app_pool, org, broadcast_id)
    assert (b["message_type"], b["queued_count"], b["tokens_spent"]) == ("image_or_template", 4, 3 * 1 + 3)
