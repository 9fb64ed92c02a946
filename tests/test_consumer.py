"""The ordered consumer's scheduling: one key at a time and in order, keys in parallel, slots shared fairly
between tenants, retries in place and parking, and batches of different keys' heads. Messages are plain objects
here: the broker is exercised elsewhere."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aio_pika

from engine.consumer import Batcher, Limits, OrderedConsumer, Park, RunAlone


@dataclass
class FakeMessage:  # duck-typed for AbstractIncomingMessage (hence the arg-type ignores)
    body: bytes
    message_id: str
    headers: dict = field(default_factory=dict)
    acked: bool = False

    async def ack(self) -> None:
        self.acked = True


def msg(key: str, tenant: str, n: int) -> FakeMessage:
    return FakeMessage(json.dumps({"key": key, "tenant": tenant, "n": n}).encode(), f"{key}-{n}")


def key_of(m: FakeMessage) -> tuple[str, str]:
    body = json.loads(m.body)
    return body["key"], body["tenant"]


async def drain(consumer: OrderedConsumer, total: int) -> None:
    for _ in range(500):
        if consumer.processed == total:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"processed {consumer.processed} of {total}")


async def test_one_key_in_order_many_keys_in_parallel() -> None:
    seen: dict[str, list[int]] = {}
    running: set[str] = set()
    overlap = []

    async def handler(m: FakeMessage) -> None:
        key = key_of(m)[0]
        if key in running:
            overlap.append(key)
        running.add(key)
        await asyncio.sleep(0.001)
        seen.setdefault(key, []).append(json.loads(m.body)["n"])
        running.discard(key)

    consumer = OrderedConsumer(handler=handler, key_of=key_of, park=None, limits=Limits(8), attempts=3)  # type: ignore[arg-type]
    messages = [msg(f"k{k}", "t", n) for n in range(30) for k in range(5)]
    for m in messages:
        await consumer.on_message(m)  # type: ignore[arg-type]
    await drain(consumer, len(messages))
    assert overlap == []
    assert all(seen[f"k{k}"] == list(range(30)) for k in range(5))
    assert all(m.acked for m in messages)


def fair_consumer(handler: object, slots: int) -> OrderedConsumer:
    return OrderedConsumer(
        handler=handler,  # type: ignore[arg-type]
        key_of=key_of,  # type: ignore[arg-type]
        park=None,  # type: ignore[arg-type]
        limits=Limits(slots),
        attempts=3,
    )


async def test_a_lone_tenant_uses_every_slot() -> None:
    running, most = 0, 0
    release = asyncio.Event()

    async def handler(m: FakeMessage) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    consumer = fair_consumer(handler, 8)
    for i in range(50):  # a radio poll: many contacts of one organisation
        await consumer.on_message(msg(f"fan{i}", "radio", 0))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert most == 8  # no slot left idle for lack of a second organisation
    release.set()
    await drain(consumer, 50)
    assert most == 8


async def test_a_flooding_tenant_cannot_take_the_slots_others_need() -> None:
    started: list[str] = []
    finish: dict[str, asyncio.Event] = {}

    async def handler(m: FakeMessage) -> None:
        key, tenant = key_of(m)
        started.append(tenant)
        finish[key] = asyncio.Event()
        await finish[key].wait()

    consumer = fair_consumer(handler, 8)
    for i in range(50):  # a flood of different contacts of one organisation takes the idle slots
        await consumer.on_message(msg(f"fan{i}", "radio", 0))  # type: ignore[arg-type]
    for i in range(5):  # then another organisation has work
        await consumer.on_message(msg(f"member{i}", "church", 0))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert started == ["radio"] * 8  # running events are not interrupted
    for i in range(6):  # as the flood's events finish, the freed slots go to the other organisation ...
        finish[f"fan{i}"].set()
        await asyncio.sleep(0.01)
    assert started[8:] == ["church"] * 4 + ["radio"] * 2  # ... until both run equal shares (4 and 4)
    for _ in range(100):  # the rest, as they start
        if consumer.processed == 55:
            break
        for event in list(finish.values()):
            event.set()
        await asyncio.sleep(0.01)
    assert consumer.processed == 55


async def test_failures_retry_in_place_then_park_and_park_errors_are_not_retried() -> None:
    parked: list[tuple[str, str]] = []
    calls: dict[str, int] = {}

    async def handler(m: FakeMessage) -> None:
        calls[m.message_id] = calls.get(m.message_id, 0) + 1
        if m.message_id.startswith("bad"):
            raise ValueError("always fails")
        if m.message_id.startswith("poison"):
            raise Park("unknown number")

    async def park(m: FakeMessage, error: str) -> None:
        parked.append((m.message_id, error))

    consumer = OrderedConsumer(handler=handler, key_of=key_of, park=park, limits=Limits(4), attempts=2)  # type: ignore[arg-type]
    bad, poison, good = msg("bad", "t", 0), msg("poison", "t", 0), msg("bad", "t", 1)
    poison.message_id = "poison-0"
    good.message_id = "good-after-bad"
    for m in (bad, poison, good):
        await consumer.on_message(m)  # type: ignore[arg-type]
    await drain(consumer, 3)
    assert calls == {"bad-0": 2, "poison-0": 1, "good-after-bad": 1}
    assert [p[0] for p in parked] == ["bad-0", "poison-0"] or [p[0] for p in parked] == ["poison-0", "bad-0"]
    assert "always fails" in dict(parked)["bad-0"]
    assert all(m.acked for m in (bad, poison, good))


async def test_a_broker_outage_is_waited_out_never_counted_as_a_failure() -> None:
    """A reply published after the commit while RabbitMQ restarts raises what a closed robust channel raises;
    with one attempt allowed, counting that as the handler's failure would park a message that had committed."""
    outage = [
        aio_pika.exceptions.ChannelInvalidStateError("<RobustChannel> closed"),  # seen under a broker restart
        aio_pika.exceptions.AMQPConnectionError("connection refused"),
    ]
    parked: list[str] = []

    async def handler(m: FakeMessage) -> None:
        if outage:
            raise outage.pop(0)

    async def park(m: FakeMessage, error: str) -> None:
        parked.append(m.message_id)

    consumer = OrderedConsumer(handler=handler, key_of=key_of, park=park, limits=Limits(4), attempts=1)  # type: ignore[arg-type]
    m = msg("k", "t", 0)
    await consumer.on_message(m)  # type: ignore[arg-type]
    await drain(consumer, 1)
    assert (outage, parked, m.acked) == ([], [], True)


async def test_parking_waits_out_a_broker_outage_and_the_lane_goes_on() -> None:
    """The parking publish itself may meet the outage: the message is parked once the broker is back, acked,
    and the messages behind it in its lane run (an escaping error had stopped the lane with them unacked)."""
    down = [aio_pika.exceptions.ChannelInvalidStateError("<RobustChannel> closed")] * 2
    parked: list[str] = []
    done: list[str] = []

    async def handler(m: FakeMessage) -> None:
        if m.message_id == "k-0":
            raise Park("unknown number")
        done.append(m.message_id)

    async def park(m: FakeMessage, error: str) -> None:
        if down:
            raise down.pop()
        parked.append(m.message_id)

    consumer = OrderedConsumer(handler=handler, key_of=key_of, park=park, limits=Limits(4), attempts=1)  # type: ignore[arg-type]
    first, second = msg("k", "t", 0), msg("k", "t", 1)
    for m in (first, second):
        await consumer.on_message(m)  # type: ignore[arg-type]
    await drain(consumer, 2)
    assert (parked, done, first.acked, second.acked) == (["k-0"], ["k-1"], True, True)


async def test_stop_finishes_running_work_and_starts_nothing_new() -> None:
    gate = asyncio.Event()
    done: list[str] = []

    async def handler(m: FakeMessage) -> None:
        await gate.wait()
        done.append(m.message_id)

    consumer = OrderedConsumer(handler=handler, key_of=key_of, park=None, limits=Limits(4), attempts=1)  # type: ignore[arg-type]
    first, second = msg("k", "t", 0), msg("k", "t", 1)
    await consumer.on_message(first)  # type: ignore[arg-type]
    await consumer.on_message(second)  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    stopping = asyncio.create_task(consumer.stop(timeout=5))
    await asyncio.sleep(0.01)
    gate.set()
    assert await stopping is True
    assert done == ["k-0"] and first.acked and not second.acked  # the second goes back to the queue unacked


def test_ordering_keys_come_from_headers_without_a_decode_and_agree_with_the_body() -> None:
    from engine.broker import inbound_ordering, ordering_headers, outbound_ordering
    from engine.inbound import key_of as inbound_key
    from engine.roles import _outbound_key

    event = {"kind": "message", "wa_id": "254700000001", "phone_number_id": "pn1", "external_id": "wamid.A"}
    with_headers = FakeMessage(b"not json", "wamid.A", ordering_headers(*inbound_ordering(event, "wamid.A")))
    assert inbound_key(with_headers) == ("254700000001", "pn1")  # type: ignore[arg-type]  # the body is never read
    assert inbound_key(FakeMessage(json.dumps(event).encode(), "wamid.A")) == ("254700000001", "pn1")  # type: ignore[arg-type]
    assert inbound_key(FakeMessage(b"not json", "m-1")) == ("m-1", "?")  # type: ignore[arg-type]  # its own lane; the handler parks it
    job = {"to": "254700000002", "phone_number_id": "pn1", "message_id": "x"}
    assert _outbound_key(FakeMessage(b"", "x", ordering_headers(*outbound_ordering(job)))) == (  # type: ignore[arg-type]
        "254700000002",
        "pn1",
    )
    assert _outbound_key(FakeMessage(json.dumps(job).encode(), "x")) == ("254700000002", "pn1")  # type: ignore[arg-type]


async def test_a_cancelled_wait_neither_keeps_nor_loses_a_slot() -> None:
    limits = Limits(1)
    await limits.enter("radio")
    waiting = asyncio.create_task(limits.enter("church"))
    await asyncio.sleep(0)
    waiting.cancel()  # e.g. a consumer stopped while its lane waited
    await asyncio.gather(waiting, return_exceptions=True)
    limits.leave("radio")
    assert limits.total == 0 and not limits.running
    await asyncio.wait_for(limits.enter("church"), 1)  # the slot is free again
    assert limits.running == {"church": 1}


def batched_consumer(
    run: Callable[[list[FakeMessage]], Awaitable[list[BaseException | None]]],
    handler: Callable[[FakeMessage], Awaitable[None]],
    park: Callable[[FakeMessage, str], Awaitable[None]] | None = None,
    attempts: int = 3,
) -> OrderedConsumer:
    """A consumer whose first attempts go to ``run`` in batches of up to 8 heads gathered for 5 ms."""
    return OrderedConsumer(
        handler=handler,  # type: ignore[arg-type]
        key_of=key_of,  # type: ignore[arg-type]
        park=park,  # type: ignore[arg-type]
        limits=Limits(16),
        attempts=attempts,
        batcher=Batcher(run, size=8, window=0.005),  # type: ignore[arg-type]
    )


async def test_a_batch_takes_heads_of_different_lanes_and_keeps_each_keys_order() -> None:
    batches: list[list[str]] = []
    seen: dict[str, list[int]] = {}

    async def run(batch: list[FakeMessage]) -> list[BaseException | None]:
        batches.append([key_of(m)[0] for m in batch])
        await asyncio.sleep(0.002)
        for m in batch:
            seen.setdefault(key_of(m)[0], []).append(json.loads(m.body)["n"])
        return [None] * len(batch)

    async def alone(m: FakeMessage) -> None:
        seen.setdefault(key_of(m)[0], []).append(json.loads(m.body)["n"])

    consumer = batched_consumer(run, alone, attempts=3)
    messages = [msg(f"k{k}", "t", n) for n in range(10) for k in range(6)]
    for m in messages:
        await consumer.on_message(m)  # type: ignore[arg-type]
    await drain(consumer, len(messages))
    assert all(len(set(b)) == len(b) for b in batches)  # never two of one contact in a batch
    assert max(map(len, batches)) == 6  # the six contacts' heads went together
    assert all(seen[f"k{k}"] == list(range(10)) for k in range(6))
    assert all(m.acked for m in messages)


async def test_one_failing_event_of_a_batch_is_retried_on_its_own_and_parked_as_before() -> None:
    parked: list[str] = []
    alone: list[str] = []
    committed: list[str] = []

    async def run(batch: list[FakeMessage]) -> list[BaseException | None]:
        outcomes: list[BaseException | None] = []
        for m in batch:
            if m.message_id.startswith("bad"):
                outcomes.append(ValueError("its own part failed"))  # its savepoint rolled back
            elif m.message_id.startswith("later"):
                outcomes.append(RunAlone())  # not taken (another organisation, or a refused commit)
            else:
                committed.append(m.message_id)
                outcomes.append(None)
        return outcomes

    async def handler(m: FakeMessage) -> None:
        alone.append(m.message_id)
        if m.message_id.startswith("bad"):
            raise ValueError("always fails")

    async def park(m: FakeMessage, error: str) -> None:
        parked.append(m.message_id)

    consumer = batched_consumer(run, handler, park, attempts=2)
    messages = [msg("bad", "t", 0), msg("a", "t", 0), msg("b", "t", 0), msg("later", "t", 0)]
    for m in messages:
        await consumer.on_message(m)  # type: ignore[arg-type]
    await drain(consumer, len(messages))
    assert sorted(committed) == ["a-0", "b-0"]  # the others' work stands and is not done again
    assert alone == ["later-0", "bad-0"] or alone == ["bad-0", "later-0"]  # one attempt alone each
    assert parked == ["bad-0"]  # the failure in the batch counted: attempts=2 is the batch's and one alone
    assert all(m.acked for m in messages)


async def test_a_gathering_of_one_runs_exactly_as_without_batches() -> None:
    batched: list[int] = []
    alone: list[str] = []

    async def run(batch: list[FakeMessage]) -> list[BaseException | None]:
        batched.append(len(batch))
        return [None] * len(batch)

    async def handler(m: FakeMessage) -> None:
        alone.append(m.message_id)

    consumer = batched_consumer(run, handler, attempts=1)
    for n in range(3):  # one contact: never two in a batch, so each runs alone
        await consumer.on_message(msg("solo", "t", n))  # type: ignore[arg-type]
    await drain(consumer, 3)
    assert batched == [] and alone == ["solo-0", "solo-1", "solo-2"]
