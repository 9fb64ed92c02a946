"""The engine under load while its parts fail. Each scenario posts scripted conversations (surveys and poll votes
over many contacts of two organisations), injects its fault meanwhile, waits for the load to drain and checks:
every accepted message stored exactly once, every reply delivered (duplicates counted), the ledger equal to each
wallet, poll tallies and survey answers equal to what was sent, poison parked. Fast variants (~300 messages) run
in ``make test``; the slow ones (5,000 messages) in ``make faults``."""

from __future__ import annotations

import asyncio
import re
import shutil
import time

import pytest

from tests.faults.conftest import OUTCOMES, RESULTS
from tests.faults.harness import FAST, SLOW, FaultStack, Scenario, Size, run_scenario


def _rounds(size: Size, fast: int, slow: int) -> int:
    return fast if size is FAST else slow


async def kill_inbound_workers(stack: FaultStack, size: Size) -> float:
    """SIGKILL an inbound worker (each in turn) and start a new one, again and again."""
    rounds = _rounds(size, 3, 12)
    for i in range(rounds):
        await asyncio.sleep(size.spread_seconds / (rounds + 1))
        name = f"inbound-{i % 2 + 1}"
        stack.workers.kill(name)
        stack.workers.spawn(name)
    return time.time()


async def kill_relay_and_sender(stack: FaultStack, size: Size) -> float:
    rounds = _rounds(size, 2, 8)
    for _ in range(rounds):
        for name in ("relay", "sender"):
            await asyncio.sleep(size.spread_seconds / (2 * rounds + 1))
            stack.workers.kill(name)
            stack.workers.spawn(name)
    return time.time()


async def restart_rabbitmq(stack: FaultStack, size: Size) -> float:
    for _ in range(_rounds(size, 1, 2)):
        await asyncio.sleep(size.spread_seconds / 3)
        await asyncio.to_thread(stack.rabbit.restart, 2.0)
    return time.time()


async def restart_postgres(stack: FaultStack, size: Size) -> float:
    for _ in range(_rounds(size, 1, 2)):
        await asyncio.sleep(size.spread_seconds / 3)
        await asyncio.to_thread(stack.pg.restart, 2.0)
    return time.time()


def _whatsapp_faults(size: Size) -> list[dict[str, object]]:
    answers: list[tuple[dict[str, object], int]] = [
        ({"status": 429, "code": 130429}, 20),
        ({"status": 500}, 10),
        ({"status": 503, "code": 2}, 10),
        ({"delay": 1.0}, 5),
    ]
    burst = [fault for fault, times in answers for _ in range(times)]
    if size is FAST:
        return burst
    # Requests that outlast the sender's 10 s timeout: refused in the end, or accepted after it gave up.
    return burst * 3 + [{"delay": 11.0, "status": 503}] * 2 + [{"delay": 11.0}] * ACCEPTED_AFTER_TIMEOUT


ACCEPTED_AFTER_TIMEOUT = 1


async def whatsapp_errors(stack: FaultStack, size: Size) -> float:
    """Bursts of 429 and 5xx answers, slow answers and (slow variant) timeouts from the Cloud API."""
    stack.local.whatsapp.add_faults(_whatsapp_faults(size))
    await asyncio.sleep(size.spread_seconds / 2)
    while stack.local.whatsapp.faults:
        await asyncio.sleep(0.2)
    return time.time()


SCENARIOS: dict[str, Scenario] = {
    "inbound workers SIGKILLed": Scenario(kill_inbound_workers),
    # A sender killed between WhatsApp's answer and recording its id sends that reply again on redelivery:
    # the Cloud API has no idempotency key. Counted, and bounded by the replies in flight.
    "relay and sender SIGKILLed": Scenario(
        kill_relay_and_sender, allowed_duplicates=lambda s: s.workers.kills["sender"] * 16
    ),
    "RabbitMQ restarted": Scenario(restart_rabbitmq),
    "PostgreSQL restarted": Scenario(restart_postgres),
    "WhatsApp 429/5xx/slow/timeouts": Scenario(
        whatsapp_errors, allowed_duplicates=lambda s: ACCEPTED_AFTER_TIMEOUT
    ),
    "every webhook twice, out of order": Scenario(dup_share=1.0, out_of_order=True, statuses=True),
    "poison payloads mixed in": Scenario(poison_share=0.05, refused=5),
}


CASES = list(SCENARIOS)


async def _run(fault_stack: FaultStack, name: str, size: Size) -> None:
    outcome = await run_scenario(fault_stack, name, SCENARIOS[name], size)
    OUTCOMES.append(outcome)
    if outcome["problems"]:  # whatever broke must not leak into the next scenario
        kept = RESULTS / f"faults-logs-{size.name}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
        shutil.rmtree(kept, ignore_errors=True)  # the workers' logs, for whoever reads the failure
        shutil.copytree(
            fault_stack.workers.log_dir, kept, ignore=shutil.ignore_patterns("postgres", "rabbitmq")
        )
        for worker in list(fault_stack.workers.procs):
            fault_stack.workers.kill(worker)
            fault_stack.workers.spawn(worker)
    await fault_stack.wait_workers()  # the next scenario starts with every shard owned
    assert outcome["problems"] == []
    assert outcome["lost"] == 0
    assert outcome["duplicates"] <= outcome["allowed_duplicates"]
    if SCENARIOS[name].poison_share:
        assert outcome["parked"] > 0 and outcome["refused"] == SCENARIOS[name].refused


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", CASES)
async def test_fault_fast(fault_stack: FaultStack, name: str) -> None:
    await _run(fault_stack, name, FAST)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("name", CASES)
async def test_fault_under_5000_messages(fault_stack: FaultStack, name: str) -> None:
    await _run(fault_stack, name, SLOW)
