"""Appliers of the programme subscription effects (state_machines/programme.py)."""

from __future__ import annotations

from uuid import UUID

from engine.programmes import subscribe
from engine.turn import Turn
from state_machines.programme import SetSubscription


async def set_subscription(turn: Turn, effect: SetSubscription) -> None:
    await subscribe(
        turn.conn, turn.org.id, UUID(effect.program_id), turn.contact.id, source=effect.source, on=effect.on
    )
