"""Applier of the handover to people (state_machines/handover.py): the handover row agents see in the API, and
the notice to the agents' WhatsApp numbers (engine/handovers.notify_agents) when one opens."""

from __future__ import annotations

from engine.handovers import Requested, notify_agents
from engine.turn import Turn
from state_machines.handover import RequestHandover


async def request(turn: Turn, effect: RequestHandover) -> None:
    """One open handover per conversation: asking again while one is open changes nothing (and tells the
    agents nothing again)."""
    opened = await turn.conn.fetchval(
        """INSERT INTO handovers (organization_id, conversation_id, contact_id, reason, request_text)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (conversation_id) WHERE status <> 'closed' DO NOTHING RETURNING id""",
        turn.org.id,
        turn.conversation.id,
        turn.contact.id,
        effect.reason,
        effect.text or None,
    )
    if opened is not None and turn.org.settings.get("handover_agents"):
        await notify_agents(
            turn.conn,
            turn.org.id,
            turn.org.phone_number_id,
            turn.org.settings,
            Requested(opened, turn.contact.phone, turn.contact.name, effect.text or None),
            turn.now,
        )
