"""Appliers of the HypeCard module: recording a card and queueing it (after commit), re-queueing or giving up a
slow one, marking it sent, counting the people a card's code brings. Rendering is not here: it is CPU work,
done by the cards role outside this transaction (engine/hypecards/cards_role.py)."""

from __future__ import annotations

import secrets
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from engine.hypecards.cards_role import enqueue
from engine.logging import get_logger
from engine.turn import Turn
from state_machines.checkin import CODE_ALPHABET
from state_machines.hypecard import (
    CardFailed,
    CardQueued,
    CardRefused,
    CountReferral,
    GiveUpCard,
    MarkCardSent,
    ReferralCounted,
    RequestCard,
    RequeueCard,
)

log = get_logger(__name__)


async def request(turn: Turn, effect: RequestCard) -> CardQueued | CardRefused:
    conn = turn.conn
    template = await conn.fetchrow(
        """SELECT t.id, t.is_active, e.name AS event_name, e.starts_at, e.timezone, e.venue_name
           FROM hypecard_templates t LEFT JOIN events e ON e.id = t.event_id WHERE t.id = $1""",
        UUID(effect.template_id),
    )
    if template is None or not template["is_active"]:
        return CardRefused(effect.template_id)
    code = await _code(turn, template["id"])
    when = template["starts_at"]
    local = when.astimezone(ZoneInfo(template["timezone"] or "Africa/Nairobi")) if when else None
    builtins = {
        "contact_name": turn.contact.name or "",
        "org_name": turn.org.name,
        "event_name": template["event_name"] or "",
        "event_date": f"{local.day} {local:%b %Y}" if local else "",
        "event_venue": template["venue_name"] or "",
        "code": code,
    }
    inputs: dict[str, Any] = {"answers": dict(effect.values), "builtins": builtins}
    if effect.photo_media_id:
        inputs["photo_media_id"] = effect.photo_media_id
    card_id = await conn.fetchval(
        """WITH new AS (SELECT gen_random_uuid() AS id)
           INSERT INTO generated_cards (id, organization_id, template_id, contact_id, conversation_id, input_data,
                                        image_url, code, language)
           SELECT new.id, $1, $2, $3, $4, $5, 'card:' || new.id, $6, $7 FROM new RETURNING id""",
        turn.org.id,
        template["id"],
        turn.contact.id,
        turn.conversation.id,
        inputs,
        code,
        turn.language,
    )
    _queue_after_commit(turn, card_id)
    return CardQueued(str(card_id), effect.template_id)


async def _code(turn: Turn, template_id: UUID) -> str:
    """The contact's code for this template: the one their earlier cards carry (the same inputs then give the
    same image: a cache hit), else a new one no other card of the organisation has."""
    existing = await turn.conn.fetchval(
        """SELECT code FROM generated_cards WHERE template_id = $1 AND contact_id = $2 AND code IS NOT NULL
           ORDER BY created_at LIMIT 1""",
        template_id,
        turn.contact.id,
    )
    while existing is None:
        candidate = "HC-" + "".join(secrets.choice(CODE_ALPHABET) for _ in range(6))
        taken = await turn.conn.fetchval("SELECT 1 FROM generated_cards WHERE code = $1 LIMIT 1", candidate)
        existing = None if taken else candidate
    return str(existing)


def _queue_after_commit(turn: Turn, card_id: UUID) -> None:
    if turn.runtime is None:  # a turn run without the engine around it (unit tests): nothing to queue to
        return
    org_id, pnid, wa_id = turn.org.id, turn.org.phone_number_id, turn.contact.phone

    async def queue() -> None:
        await enqueue(turn.runtime, org_id, card_id, pnid, wa_id)

    turn.after_commit.append(queue)


async def requeue(turn: Turn, effect: RequeueCard) -> None:
    if await turn.conn.fetchval(
        "SELECT 1 FROM generated_cards WHERE id = $1 AND status = 'pending'", UUID(effect.card_id)
    ):
        log.info("card still pending; queued again", card_id=effect.card_id)
        _queue_after_commit(turn, UUID(effect.card_id))


async def give_up(turn: Turn, effect: GiveUpCard) -> CardFailed | None:
    failed = await turn.conn.fetchval(
        """UPDATE generated_cards SET status = 'failed', error = 'not rendered in time'
           WHERE id = $1 AND status = 'pending' RETURNING id""",
        UUID(effect.card_id),
    )
    if failed is None:
        return None  # it was made meanwhile: its ready event is on the way
    log.warning("card given up: not rendered in time", card_id=effect.card_id)
    return CardFailed(effect.card_id, "timeout")


async def mark_sent(turn: Turn, effect: MarkCardSent) -> None:
    await turn.conn.execute(
        "UPDATE generated_cards SET status = 'sent', sent_at = $2 WHERE id = $1 AND status = 'rendered'",
        UUID(effect.card_id),
        turn.now,
    )


async def count_referral(turn: Turn, effect: CountReferral) -> ReferralCounted:
    """A view for every arrival with the code; a share the first time each other person arrives with it."""
    conn = turn.conn
    card = await conn.fetchrow(
        """SELECT c.id, c.contact_id, c.template_id, c.input_data->'answers'->>'name' AS name, k.name AS owner
           FROM generated_cards c LEFT JOIN contacts k ON k.id = c.contact_id
           WHERE c.code = $1 AND c.status = 'sent' ORDER BY c.created_at DESC LIMIT 1""",
        effect.code,
    )
    if card is None:
        return ReferralCounted(None, None)
    first = await conn.fetchval(
        """INSERT INTO hypecard_referrals (organization_id, code, contact_id, card_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT (organization_id, code, contact_id) DO UPDATE SET visits = hypecard_referrals.visits + 1
           RETURNING (xmax = 0)""",
        turn.org.id,
        effect.code,
        turn.contact.id,
        card["id"],
    )
    new_person = bool(first) and card["contact_id"] != turn.contact.id
    await conn.execute(
        "UPDATE generated_cards SET view_count = view_count + 1, share_count = share_count + $2 WHERE id = $1",
        card["id"],
        1 if new_person else 0,
    )
    return ReferralCounted(card["name"] or card["owner"], str(card["template_id"]))
