"""Routing of each queued event kind to its handler: one explicit table. An unknown kind raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from engine.turn import Turn

Handler = Callable[[Turn, dict[str, Any]], Awaitable[None]]


def _routes() -> dict[str, Handler]:
    from handlers import conversation

    return {
        "message": conversation.on_message,
        "timer": conversation.on_timer,
        "payment": conversation.on_payment,
        "card": conversation.on_card,
    }


ROUTES: dict[str, Handler] = {}


async def route(kind: str, turn: Turn, body: dict[str, Any]) -> None:
    if not ROUTES:
        ROUTES.update(_routes())
    try:
        handler = ROUTES[kind]
    except KeyError:
        raise LookupError(f"no handler for event kind {kind!r}") from None
    await handler(turn, body)
