"""Appliers of the effects every module shares: language, opt-in/out, charges, timers."""

from __future__ import annotations

from datetime import timedelta

from engine.logging import get_logger
from engine.turn import Turn
from state_machines.base import CancelTimers, Charge, OptIn, OptOut, SetLanguage, StartTimer

log = get_logger(__name__)


async def set_language(turn: Turn, effect: SetLanguage) -> None:
    await turn.conn.execute("UPDATE contacts SET language = $2 WHERE id = $1", turn.contact.id, effect.language)
    turn.contact.language = effect.language


async def opt_out(turn: Turn, effect: OptOut) -> None:
    await turn.conn.execute(
        "UPDATE contacts SET opted_in = false, opted_out_at = $2 WHERE id = $1", turn.contact.id, turn.now)
    turn.contact.opted_in = False


async def opt_in(turn: Turn, effect: OptIn) -> None:
    await turn.conn.execute(
        "UPDATE contacts SET opted_in = true, opted_in_at = $2 WHERE id = $1", turn.contact.id, turn.now)
    turn.contact.opted_in = True


async def charge(turn: Turn, effect: Charge) -> None:
    """Made when the turn finishes, after its replies: the wallet row is locked only at the very end."""
    turn.charges.append(effect)


async def start_timer(turn: Turn, effect: StartTimer) -> None:
    timer_id = await turn.conn.fetchval(
        """INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                            data, due_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
        turn.org.id, turn.conversation.id, turn.contact.id, effect.kind, turn.conversation.state.version,
        dict(effect.data), turn.now + timedelta(seconds=effect.seconds))
    turn.new_timers.append(timer_id)


async def cancel_timers(turn: Turn, effect: CancelTimers) -> None:
    await turn.conn.execute(
        """UPDATE conversation_timers SET status = 'cancelled'
           WHERE conversation_id = $1 AND status = 'pending' AND ($2::text IS NULL OR kind = $2)""",
        turn.conversation.id, effect.kind)
