"""Token top-ups by M-Pesa, end to end: `chatnation wallet buy` (a real subprocess) pushes to the M-Pesa
simulator, the callback comes through the gateway and the payments router, M-Pesa's query confirms, and the
wallet gets exactly one `purchase` row; automatic refills start once below the threshold, never two at once,
and stop after a failure until an operator resumes them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from engine import wallet
from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.topups import bonus_for, refill_sweep
from handlers.payments import reconcile_once
from simulators.chat import ChatDriver
from tests.helpers import phone, run_cli, wait_until


@pytest.fixture(scope="module")
async def stack(settings, broker, db_urls) -> AsyncIterator[LocalStack]:  # type: ignore[no-untyped-def]
    st = await LocalStack(settings.model_copy(update={"mpesa_query_backoff_seconds": 0.2})).start()
    yield st
    await st.stop()


@pytest.fixture
def cli_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Commands talk to the stack's M-Pesa simulator and give its gateway as the callback."""
    assert stack.settings is not None
    monkeypatch.setenv("MPESA_BASE_URL", str(stack.settings.mpesa_base_url))
    monkeypatch.setenv("MPESA_CALLBACK_URL", str(stack.settings.mpesa_callback_url))
    yield


async def cli(*args: str) -> Any:
    done = await asyncio.to_thread(run_cli, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if "--json" in args else done.stdout


async def fetch(app_pool, org, sql: str, *args):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return [dict(r) for r in await conn.fetch(sql, *args)]


async def purchases(app_pool, org) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    return await fetch(
        app_pool,
        org,
        "SELECT amount, type, reference_id FROM token_transactions WHERE type = 'purchase' AND action = 'mpesa_topup'",
    )


def test_bonus_tiers() -> None:
    assert [bonus_for(n) for n in (100, 5_000, 10_000, 50_000)] == [0, 250, 1_000, 7_500]
    assert bonus_for(1_000, {"token_bonus_tiers": [[1_000, 20]]}) == 200


async def test_wallet_buy_credits_exactly_once(stack, make_org, app_pool, cli_env) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Topup", tokens=50)
    payer = phone()
    [row] = await cli(
        "wallet",
        "buy",
        "--org",
        new.phone_number_id,
        "--tokens",
        "10000",
        "--phone",
        payer,
        "--wait",
        "20",
        "--json",
    )
    assert (row["status"], row["tokens"], row["bonus_tokens"], row["amount_kes"]) == (
        "completed",
        10_000,
        1_000,
        "10000",
    )
    [credit] = await purchases(app_pool, org)
    assert credit["amount"] == 11_000 and str(credit["reference_id"]) == row["purchase_id"]
    [balance] = await fetch(app_pool, org, "SELECT balance FROM wallets")
    assert balance["balance"] == 11_050
    # the callback again (twice), and the reconciler: nothing more
    checkout = row["checkout_request_id"]
    for _ in range(2):
        await stack.mpesa._deliver(stack.mpesa._find(checkout))
    await reconcile_once(stack._runtimes[0], min_age=timedelta(0))
    await asyncio.sleep(1)
    assert len(await purchases(app_pool, org)) == 1
    [tp] = await fetch(app_pool, org, "SELECT payment_status, payment_reference FROM token_purchases")
    assert tp["payment_status"] == "completed" and tp["payment_reference"].startswith("SIM")
    [pr] = await fetch(app_pool, org, "SELECT status, purpose, settlement FROM payment_requests")
    assert (pr["status"], pr["purpose"], pr["settlement"]) == ("paid", "tokens", "credited")


async def test_wallet_buy_not_paid_credits_nothing(stack, make_org, app_pool, cli_env) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("TopupFail", tokens=50)
    payer = phone()
    stack.mpesa.set_outcomes({payer: "insufficient_funds"})
    [row] = await cli(
        "wallet",
        "buy",
        "--org",
        new.phone_number_id,
        "--tokens",
        "500",
        "--phone",
        payer,
        "--wait",
        "20",
        "--json",
    )
    assert row["status"] == "failed"
    assert await purchases(app_pool, org) == []
    [balance] = await fetch(app_pool, org, "SELECT balance FROM wallets")
    assert balance["balance"] == 50


async def test_auto_refill_once_at_the_threshold_and_stopped_by_a_failure(
    stack, make_org, app_pool, cli_env
) -> None:  # type: ignore[no-untyped-def]
    payer = phone()
    org, new = await make_org("Refill", tokens=102, settings={"billing_phone": payer})
    pnid = new.phone_number_id
    await cli("wallet", "auto-refill", pnid, "--enable", "--amount", "500", "--threshold", "100", "--json")
    stack.mpesa.set_outcomes({payer: "no_callback"})  # the first refill waits for its PIN
    user = ChatDriver(stack.whatsapp, stack.user(pnid, phone(), "Wanjiku"), quiet=0.3)
    for text in ("hi", "menu", "hello", "menu"):  # each reply costs a token: 102 -> 98
        await user.say(text)

    def pushes() -> list[dict[str, Any]]:
        return [r for r in stack.mpesa.requests if r["phone"] == payer]

    async def one_push() -> bool:
        return len(pushes()) == 1

    await wait_until(one_push, timeout=10)
    await refill_sweep(stack._runtimes[0])  # the sweep finds the refill running: never two at once
    await user.say("menu")
    await asyncio.sleep(0.5)
    assert len(pushes()) == 1
    [pending] = await fetch(app_pool, org, "SELECT auto_refill_pending FROM wallets")
    assert pending["auto_refill_pending"] is not None

    # the payer answers: the refill is paid and credited once
    checkout = pushes()[0]["checkout_request_id"]
    async with httpx.AsyncClient() as http:
        await http.post(f"{stack.mpesa.base_url}/_sim/callback/{checkout}", json={"outcome": "success"})

    async def credited() -> list[dict[str, Any]]:
        return await purchases(app_pool, org)

    [credit] = await wait_until(credited, timeout=15)
    assert credit["amount"] == 500
    [w] = await fetch(
        app_pool, org, "SELECT balance, auto_refill_pending, auto_refill_stopped_at FROM wallets"
    )
    assert w["auto_refill_pending"] is None and w["auto_refill_stopped_at"] is None and w["balance"] > 500

    # below the threshold again; this refill fails: refills stop until an operator resumes them
    stack.mpesa.set_outcomes({payer: "cancelled"})
    async with tenant_tx(app_pool, org) as conn:
        await wallet.debit(conn, org, w["balance"] - 50, module="test", action="spend")
    assert await refill_sweep(stack._runtimes[0]) == 1

    async def stopped() -> dict[str, Any] | None:
        [row] = await fetch(
            app_pool, org, "SELECT auto_refill_stopped_at, auto_refill_stopped_reason FROM wallets"
        )
        return row if row["auto_refill_stopped_at"] is not None else None

    why = await wait_until(stopped, timeout=15)
    assert "M-Pesa" in why["auto_refill_stopped_reason"]
    assert await refill_sweep(stack._runtimes[0]) == 0 and len(pushes()) == 2
    assert len(await purchases(app_pool, org)) == 1
    [resumed] = await cli("wallet", "auto-refill", pnid, "--resume", "--json")
    assert resumed["auto_refill_stopped_at"] is None
    stack.mpesa.set_outcomes({payer: "success"})
    assert await refill_sweep(stack._runtimes[0]) == 1

    async def two() -> bool:
        return len(await purchases(app_pool, org)) == 2

    await wait_until(two, timeout=15)
