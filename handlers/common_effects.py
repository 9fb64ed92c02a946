"""Appliers of the effects every module shares: language, opt-in/out, charges, timers."""

from __future__ import annotations

from engine.logging import get_logger
from engine.turn import Turn
from state_machines.base import CancelTimers, Charge, OptIn, OptOut, SetLanguage, StartTimer

log = get_logger(__name__)


async def set_language(turn: Turn, effect: SetLanguage) -> None:
    await turn.conn.execute(
        "UPDATE contacts SET language = $2 WHERE id = $1", turn.contact.id, effect.language
    )
    turn.contact.language = effect.language


async def opt_out(turn: Turn, effect: OptOut) -> None:
    await turn.conn.execute(
        "UPDATE contacts SET opted_in = false, opted_out_at = $2 WHERE id = $1", turn.contact.id, turn.now
    )
    turn.contact.opted_in = False


async def opt_in(turn: Turn, effect: OptIn) -> None:
    await turn.conn.execute(
        "UPDATE contacts SET opted_in = true, opted_in_at = $2 WHERE id = $1", turn.contact.id, turn.now
    )
    turn.contact.opted_in = True


async def charge(turn: Turn, effect: Charge) -> None:
    """Made when the turn finishes, after its replies: the wallet row is locked only at the very end."""
    turn.charges.append(effect)


async def start_timer(turn: Turn, effect: StartTimer) -> None:
    turn.new_timers.append(effect)  # inserted with the state the event ends in (Turn.finish)


async def cancel_timers(turn: Turn, effect: CancelTimers) -> None:
    # Timers started earlier in this event are not in the table yet: they are cancelled here.
    turn.new_timers = [t for t in turn.new_timers if effect.kind is not None and t.kind != effect.kind]
    await turn.conn.execute(
        """UPDATE conversation_timers SET status = 'cancelled'
           WHERE conversation_id = $1 AND status = 'pending' AND ($2::text IS NULL OR kind = $2)""",
        turn.conversation.id,
        effect.kind,
    )
