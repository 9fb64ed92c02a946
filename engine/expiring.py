"""A dictionary whose entries expire: the hot path's short-lived caches (organisations, routing, the menu's
offers, door staff) all keep their entries this way."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Expiring(Generic[K, V]):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
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
        self._entries[key] = (now + (seconds(value) if seconds else self.seconds), value)
        return value

    def clear(self) -> None:
        self._entries.clear()
