"""The expiring cache stays within its size; the worker supervisor backs off a child that keeps crashing."""

from __future__ import annotations

import asyncio

from engine.expiring import Expiring
from worker import RestartBackoff


async def test_the_cache_keeps_at_most_its_bound_and_forgets_the_oldest_first() -> None:
    cache: Expiring[int, int] = Expiring(60.0, max_entries=100)
    loads = 0

    async def load(v: int) -> int:
        nonlocal loads
        loads += 1
        return v

    for i in range(1000):
        await cache.get(i, lambda i=i: load(i))  # type: ignore[misc]
    assert len(cache) <= 100
    assert loads == 1000
    await cache.get(999, lambda: load(-1))  # the newest is still there
    assert loads == 1000
    await cache.get(0, lambda: load(0))  # the oldest was forgotten
    assert loads == 1001


async def test_expired_entries_go_before_live_ones() -> None:
    cache: Expiring[str, str] = Expiring(60.0, max_entries=3)

    async def value(v: str) -> str:
        return v

    await cache.get("short", lambda: value("s"), seconds=lambda _: 0.01)
    await cache.get("a", lambda: value("a"))
    await cache.get("b", lambda: value("b"))
    await asyncio.sleep(0.02)
    await cache.get("c", lambda: value("c"))  # over the bound: the expired one goes first
    assert len(cache) <= 3
    assert await cache.get("a", lambda: value("reloaded")) == "a"


def test_a_child_that_keeps_crashing_is_restarted_ever_later_and_at_once_after_a_good_run() -> None:
    backoff = RestartBackoff(first=0.5, most=60.0, healthy_after=60.0)
    delays = [backoff.delay(lived=1.0) for _ in range(10)]
    assert delays[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert delays[-1] == 60.0 and all(b >= a for a, b in zip(delays, delays[1:], strict=False))
    assert backoff.delay(lived=120.0) == 0.0  # it had run well: back at once
    assert backoff.delay(lived=1.0) == 0.5  # and a new crash loop starts from the beginning
