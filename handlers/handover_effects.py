"""Applier of the handover to people (state_machines/handover.py): the handover row agents see in the API."""

from __future__ import annotations

from engine.turn import Turn
from state_machines.handover import RequestHandover


async def request(turn: Turn, effect: RequestHandover) -> None:
    """One open handover per conversation: asking again while one is open changes nothing."""
    await turn.conn.execute(
        """INSERT INTO handovers (organization_id, conversation_id, contact_id, reason, request_text)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (conversation_id) WHERE status <> 'closed' DO NOTHING""",
        turn.org.id,
        turn.conversation.id,
        turn.contact.id,
        effect.reason,
        effect.text or None,
    )
