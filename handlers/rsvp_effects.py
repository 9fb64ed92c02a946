"""Appliers of RSVPs (state_machines/rsvp.py): the database decides places and the queue (engine/registrations.py)."""

from __future__ import annotations

from uuid import UUID

from engine import registrations
from engine.turn import Turn
from state_machines.rsvp import CancelRegistration, Register, Registered, RegistrationCancelled


def _uuid(text: str | None) -> UUID | None:
    try:
        return UUID(text) if text else None
    except ValueError:
        return None


async def register(turn: Turn, effect: Register) -> Registered:
    target = await registrations.lock_target(turn.conn, _uuid(effect.event_id), _uuid(effect.session_id))
    if target is None:
        return Registered("unknown")
    outcome, rid, position = await registrations.register(
        turn.conn, turn.org.id, target, turn.contact.id, turn.conversation.id
    )
    survey = target.survey_id if outcome in ("confirmed", "waiting") else None  # new: its questions follow
    return Registered(outcome, target.title, str(rid or ""), position, survey)


async def cancel(turn: Turn, effect: CancelRegistration) -> RegistrationCancelled:
    rid = _uuid(effect.registration_id)
    if rid is None:
        return RegistrationCancelled("unknown")
    outcome, title = await registrations.cancel(turn.conn, turn.org.id, rid, turn.contact.id)
    return RegistrationCancelled(outcome, title)
