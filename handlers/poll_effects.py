"""Applier of the poll module's vote. The vote is validated and written by ``cast_poll_vote`` (sql/013) in one
round trip; the tallies, the voter count and ``polls.options`` move at commit (a deferred trigger), so that
concurrent voters queue on the poll's row only while the server commits, and the JSON always agrees with
the votes. Rule: a contact's new vote replaces their previous one."""

from __future__ import annotations

from uuid import UUID

from engine.turn import Turn
from state_machines.poll import CastVote, VoteRecorded, VoteRejected


async def cast_vote(turn: Turn, effect: CastVote) -> VoteRecorded | VoteRejected:
    result = await turn.conn.fetchval(
        "SELECT cast_poll_vote($1, $2, $3, $4::text[], $5)",
        UUID(effect.poll_id),
        turn.org.id,
        turn.contact.id,
        list(effect.option_ids),
        turn.now,
    )
    if "rejected" in result:
        return VoteRejected(effect.poll_id, result["rejected"])
    return VoteRecorded(effect.poll_id, result["tallies"], result["voters"], changed=result["changed"])
