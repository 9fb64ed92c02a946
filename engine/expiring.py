"""A dictionary whose entries expire: the hot path's short-lived caches (organisations, routing, the menu's
offers, door staff) all keep their entries this way."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """At most ``max_entries`` entries: past that, the expired ones go, then the least recently loaded, so that a
    flood of distinct keys (numbers, contacts) cannot grow a process's memory without end."""

    def __init__(self, seconds: float, max_entries: int = 100_000) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    async def get(
        self, key: K, load: Callable[[], Awaitable[V]], seconds: Callable[[V], float] | None = None
    ) -> V:
        """The cached value, or ``load()``'s, kept for ``seconds`` (or ``seconds(value)``, when it depends on it)."""
        hit = self._entries.get(key)
        now = time.monotonic()
        if hit is not None and now < hit[0]:
            return hit[1]
        value = await load()
        self._entries.pop(key, None)  # re-inserted at the end: the dict's order is the loading order
        self._entries[key] = (now + (seconds(value) if seconds else self.seconds), value)
        if len(self._entries) > self.max_entries:
            self._shrink(now)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def _shrink(self, now: float) -> None:
        for key in [k for k, (until, _) in self._entries.items() if until <= now]:
            del self._entries[key]
        excess = len(self._entries) - self.max_entries
        if excess > 0:  # drop a tenth more than needed, so that the scan above is not made on every insert
            for key in list(self._entries)[: excess + self.max_entries // 10]:
                del self._entries[key]

    def clear(self) -> None:
        self._entries.clear()
