"""Applier of the poll module's vote. Votes on one poll are serialised on the poll's row, so tallies are exact
under any number of concurrent voters, and ``polls.options`` is rewritten from ``poll_options`` in the
same transaction, so the two always agree. Rule: a contact's new vote replaces their previous one."""

from __future__ import annotations

from uuid import UUID

import asyncpg

from engine.turn import Turn
from state_machines.poll import CastVote, VoteRecorded, VoteRejected


async def cast_vote(turn: Turn, effect: CastVote) -> VoteRecorded | VoteRejected:
    conn, pid = turn.conn, UUID(effect.poll_id)
    poll = await conn.fetchrow("SELECT status, ends_at, voter_count FROM polls WHERE id = $1 FOR UPDATE", pid)
    if poll is None or poll["status"] != "active" or (poll["ends_at"] and poll["ends_at"] <= turn.now):
        return VoteRejected(effect.poll_id, "closed")
    await _ensure_options(conn, turn.org.id, pid)
    new = set(effect.option_ids)
    known = {r["id"] for r in await conn.fetch("SELECT id FROM poll_options WHERE poll_id = $1", pid)}
    if not new or not new <= known:
        return VoteRejected(effect.poll_id, "invalid_option")
    old = {r["option_id"] for r in await conn.fetch(
        "SELECT option_id FROM poll_votes WHERE poll_id = $1 AND contact_id = $2", pid, turn.contact.id)}
    if new != old:
        removed, added = sorted(old - new), sorted(new - old)
        await conn.execute("DELETE FROM poll_votes WHERE poll_id = $1 AND contact_id = $2 AND option_id = ANY($3)",
                           pid, turn.contact.id, removed)
        await conn.executemany(
            "INSERT INTO poll_votes (organization_id, poll_id, contact_id, option_id) VALUES ($1, $2, $3, $4)",
            [(turn.org.id, pid, turn.contact.id, o) for o in added])
        await conn.execute("UPDATE poll_options SET votes = votes - 1 WHERE poll_id = $1 AND id = ANY($2)", pid, removed)
        await conn.execute("UPDATE poll_options SET votes = votes + 1 WHERE poll_id = $1 AND id = ANY($2)", pid, added)
        await conn.execute(
            """UPDATE polls SET options = (SELECT jsonb_agg(jsonb_build_object('id', id, 'text', text, 'votes', votes)
                                                            ORDER BY sort_order, id)
                                           FROM poll_options WHERE poll_id = $1),
                                voter_count = voter_count + $2 WHERE id = $1""", pid, 0 if old else 1)
    tallies = {r["id"]: r["votes"] for r in await conn.fetch("SELECT id, votes FROM poll_options WHERE poll_id = $1", pid)}
    voters = poll["voter_count"] + (0 if old else 1)
    return VoteRecorded(effect.poll_id, tallies, voters, changed=bool(old) and new != old)


async def _ensure_options(conn: asyncpg.Connection, org_id: UUID, pid: UUID) -> None:
    """A poll written with only its JSON options gets its relational rows on the first vote."""
    await conn.execute(
        """INSERT INTO poll_options (poll_id, id, organization_id, text, votes, sort_order)
           SELECT $1, o->>'id', $2, o->>'text', COALESCE((o->>'votes')::int, 0), ord
           FROM polls, jsonb_array_elements(options) WITH ORDINALITY AS x(o, ord)
           WHERE polls.id = $1 AND NOT EXISTS (SELECT 1 FROM poll_options WHERE poll_id = $1)""", pid, org_id)
