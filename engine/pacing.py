"""Send pacing: one authority per business number, in PostgreSQL, shared by every sender process and both lanes.

A number's throughput (80 messages/s by default, ``send_rate_per_second`` in the organisation's settings up to
1,000) is a row in ``send_pacing``: the next free slot. ``take_send_slots`` (sql/026) hands out evenly spaced
slots, so no second ever holds more sends than the rate, however many processes ask. Slots are spaced a little
wider than 1/rate (``MARGIN``): a send that leaves up to ``MARGIN`` seconds late still keeps every second
within the limit, and a send that would leave later than ``LATE`` takes a fresh slot instead.

A send whose answer comes back later than its slot plus that margin, beyond the fastest recent round trip, may
have arrived that late; it is reported (``report_late_send``), and the number's next free slot moves by one
interval (sql/076: a late send left its own slot empty and adds one send to the windows it arrived in, so one
slot removed from all of them restores the limit), or, when the answer came back too late for that, so that the
send one rate after it still arrives more than a second after it: the limit holds through the delays a round
trip shows, and costs a round trip and a slot only when they happen.
Slot times are the database's clock, turned into this host's with an offset measured on the fastest round trips
(as NTP does), so a process that reads an answer late does not shift its slots onto another's.

Replies go first: a reply takes slots up to ``REPLY_HORIZON`` ahead; bulk takes only slots due within
``BULK_HORIZON`` from now, so a broadcast never books the time a chatting person's reply needs (a reply waits
at most that long behind bulk). Replies book no further than half a second either: a late send's correction
then always finds fewer than a second's slots handed out after it, so it can still move the one that matters
(booked a second ahead, a burst of replies left no slot to move, and one second held 26 sends against 25).
In a process, the jobs waiting on one number and lane share one round trip.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg

from engine.logging import get_logger

log = get_logger(__name__)
# Slots 3% wider than 1/rate: 30 ms of lateness a send absorbed without a report; beyond it the late send is
# reported and the later slots move by one (what keeps the limit is that correction, not the margin, which only
# sets how often it costs a round trip). The rate reached is 1/1.03 of the limit, less a slot per late send.
MARGIN = 0.03
# A send woken this late past its slot takes a new one: later, its answer cannot come back within the margin, so
# it would cost a report and a slot anyway. Woken less late it goes: a report costs one slot (sql/076) only
# when its answer is late, where giving the slot up always cost one (at 15 ms, a loaded machine's waiters gave up
# 11% of the slots).
LATE = MARGIN
BULK_HORIZON = 0.1  # bulk books at most this far ahead: what a reply may wait behind a broadcast
REPLY_HORIZON = 0.5  # replies book at most this far ahead: a late send's correction always has slots to move
MAX_BATCH = 100
MAX_RATE = 1000.0


def rate_of(org_settings: dict[str, Any] | None, default: float) -> float:
    """The number's configured throughput (messages per second), within Meta's tiers' bounds."""
    configured = (org_settings or {}).get("send_rate_per_second")
    try:
        rate = float(configured) if configured is not None else default
    except (TypeError, ValueError):
        rate = default
    return max(0.1, min(rate, MAX_RATE))


@dataclass
class _Lane:
    waiting: deque[asyncio.Future[float]] = field(default_factory=deque)
    taker: asyncio.Task[None] | None = None


@dataclass
class _LeastRtt:
    """The fastest send round trip of the last half minute or so (two overlapping windows)."""

    least: float = 0.0
    _current: float = math.inf
    _previous: float = math.inf
    _since: float = 0.0

    def observe(self, rtt: float, now: float) -> None:
        if now - self._since > 15.0:
            self._previous, self._current, self._since = self._current, math.inf, now
        self._current = min(self._current, rtt)
        least = min(self._current, self._previous)
        self.least = least if least != math.inf else 0.0


@dataclass
class _Clock:
    """The database's clock minus this host's, from the round trip with the least delay in the last minute."""

    offset: float = 0.0
    best_rtt: float = math.inf
    measured_at: float = -math.inf

    def observe(self, db_now: float, sent: float, received: float) -> None:
        rtt = received - sent
        if rtt <= self.best_rtt or received - self.measured_at > 60.0:
            self.offset, self.best_rtt, self.measured_at = db_now - (sent + received) / 2, rtt, received


class Pacer:
    """Slots for the numbers this process sends from. ``slot = await pacer.wait(org, number, rate, lane)``
    returns when the send may leave; ``await pacer.sent(org, number, rate, slot)`` once its answer is back."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._clock = _Clock()
        self._rtt = _LeastRtt()
        self.late_retakes = 0
        self.late_reports = 0

    async def wait(self, org_id: UUID, number: str, rate: float, lane: str) -> float:
        interval = (1.0 + MARGIN) / rate
        while True:
            at = await self._slot(org_id, number, interval, lane)  # this host's time.time() of the slot
            delay = at - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.time() - at <= LATE:
                return at
            self.late_retakes += 1  # too late for its slot: sending now could crowd the next second

    async def sent(self, org_id: UUID, number: str, rate: float, slot: float, departed: float) -> None:
        """The send's answer is back. Delay beyond the fastest recent round trip may have been on the way there:
        past the margin, the slots a second after it move (one round trip, only then). A steady latency (the
        Cloud API's hundreds of milliseconds) delays every send alike and moves nothing."""
        answered = time.time()
        self._rtt.observe(answered - departed, answered)
        if answered - slot - self._rtt.least <= MARGIN:
            return
        self.late_reports += 1
        offset = self._clock.offset
        moved = await self.pool.fetchval(
            """SELECT report_late_send($1, $2, to_timestamp($3), to_timestamp($4), $5, $6)""",
            org_id,
            number,
            slot + offset,
            answered + offset,
            (1.0 + MARGIN) / rate,
            max(1, math.floor(rate)),
        )
        if moved is not None and moved < 0:
            log.warning("a send answered too late to keep its second within the rate", number=number)

    async def hold(self, org_id: UUID, number: str, seconds: float) -> None:
        """No slot for anyone before ``seconds`` from now (Meta said the throughput was reached)."""
        await self.pool.execute("SELECT hold_send_slots($1, $2, $3)", org_id, number, seconds)

    async def _slot(self, org_id: UUID, number: str, interval: float, lane: str) -> float:
        key = (number, lane)
        state = self._lanes.setdefault(key, _Lane())
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        state.waiting.append(future)
        if state.taker is None or state.taker.done():
            state.taker = asyncio.create_task(self._take(org_id, number, interval, lane, state))
        return await future

    async def _take(self, org_id: UUID, number: str, interval: float, lane: str, state: _Lane) -> None:
        """Slots for everyone waiting on this number and lane, one round trip per batch."""
        horizon = REPLY_HORIZON if lane == "reply" else BULK_HORIZON
        try:
            while state.waiting:
                while state.waiting and state.waiting[0].done():  # cancelled waiters need no slot
                    state.waiting.popleft()
                if not state.waiting:
                    return
                wanted = min(len(state.waiting), MAX_BATCH)
                asked = time.time()
                row = await self.pool.fetchrow(
                    "SELECT * FROM take_send_slots($1, $2, $3, $4, $5)",
                    org_id,
                    number,
                    wanted,
                    interval,
                    horizon,
                )
                self._clock.observe(row["now_at"].timestamp(), asked, time.time())
                first = row["first_at"].timestamp() - self._clock.offset  # on this host's clock
                if row["granted"] == 0:  # the next slots are booked beyond the horizon: wait until in range
                    await asyncio.sleep(max(0.001, first - time.time() - horizon))
                    continue
                for k in range(row["granted"]):
                    while state.waiting and state.waiting[0].done():
                        state.waiting.popleft()
                    if not state.waiting:
                        break  # a slot nobody waits for any more: a gap in the sending, never an excess
                    state.waiting.popleft().set_result(first + k * interval)
                if state.waiting:  # more waiting: ask again once half the horizon is free
                    after_last = first + row["granted"] * interval
                    await asyncio.sleep(max(0.0, after_last - time.time() - horizon / 2))
        except BaseException as err:
            for future in state.waiting:
                if not future.done():
                    future.set_exception(err if isinstance(err, Exception) else asyncio.CancelledError())
            state.waiting.clear()
            if not isinstance(err, Exception):
                raise
