"""Runs the conversation's state machine for one event and applies what it returns, in the event's
transaction. An applier may answer with a follow-up event (``TicketsHeld``, ``VoteRecorded`` ...), which is
fed straight back into the machine, so that races are decided by the database and the logic stays pure."""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any

from engine.logging import get_logger
from engine.turn import Turn
from handlers.appliers import apply
from handlers.context import load_context
from state_machines import conversation
from state_machines.base import Inbound, PaymentResult, TimerFired
from state_machines.hypecard import CardFailed, CardReady
from state_machines.tickets import PaymentRequested, PaymentRequestFailed, PaymentUnconfirmed

log = get_logger(__name__)
MAX_STEPS = 10  # one event and its follow-ups; more means two effects feed each other forever


async def run(turn: Turn, event: object) -> None:
    state = turn.conversation.state
    events: deque[object] = deque([event])
    steps = 0
    while events:
        steps += 1
        if steps > MAX_STEPS:
            raise RuntimeError(f"follow-up events did not settle after {MAX_STEPS} steps")
        current = events.popleft()
        ctx = await load_context(turn, state, current)
        result = conversation.step(state, current, ctx)
        state = result.state
        turn.conversation.state = state  # appliers (timers) record the version they were set at
        turn.replies.extend(result.replies)
        for effect in result.effects:
            follow_up = await apply(turn, effect)
            if follow_up is not None:
                events.append(follow_up)


async def on_message(turn: Turn, body: dict[str, Any]) -> None:
    from engine.whatsapp.media import inbound_media
    from engine.whatsapp.webhook import inbound_to_event_fields

    payload = body.get("payload") or {}
    kind, text, choice_id = inbound_to_event_fields(payload)
    media = inbound_media(payload)
    location = payload.get("location") if kind == "location" else None
    event = Inbound(
        text=text,
        choice_id=choice_id,
        kind="voice" if media and media.kind == "audio" and media.voice else kind,
        media_id=media.media_id if media else None,
        mime_type=media.mime_type if media else "",
        place=location if isinstance(location, dict) else None,
    )
    await run(turn, event)


async def on_timer(turn: Turn, body: dict[str, Any]) -> None:
    timer = body["timer"]
    await run(
        turn, TimerFired(kind=timer["kind"], version=int(timer["version"]), data=timer.get("data") or {})
    )


async def on_payment(turn: Turn, body: dict[str, Any]) -> None:
    from handlers import payments

    if await payments.record_result(turn, body):  # M-Pesa's verified word, recorded in this transaction
        await run(turn, payment_event(body))


async def on_card(turn: Turn, body: dict[str, Any]) -> None:
    """The cards role's word on a card: rendered (``ready``) or not drawable (``failed``)."""
    await run(turn, card_event(body))


def card_event(body: dict[str, Any]) -> object:
    if body.get("type") == "ready":
        return CardReady(
            card_id=body["card_id"],
            template_id=body["template_id"],
            values=body.get("values") or {},
            caption=body.get("caption") or {},
            share=body.get("share") or {},
            photo_failed=bool(body.get("photo_failed")),
        )
    return CardFailed(body["card_id"], str(body.get("reason") or ""))


def payment_event(body: dict[str, Any]) -> object:
    kind = body.get("type")
    if kind == "requested":
        return PaymentRequested(body["hold_id"], body["checkout_request_id"])
    if kind == "request_failed":
        return PaymentRequestFailed(body["hold_id"], body.get("reason", ""))
    if kind == "unconfirmed":
        return PaymentUnconfirmed(body["hold_id"], str(body.get("verified")), int(body.get("attempt") or 1))
    meta = body.get("metadata") or {}
    amount = meta.get("Amount")
    return PaymentResult(
        checkout_request_id=body["checkout_request_id"],
        result_code=int(body["result_code"]),
        result_desc=body.get("result_desc", ""),
        receipt=meta.get("MpesaReceiptNumber"),
        amount=Decimal(str(amount)) if amount is not None else None,
        hold_id=body.get("hold_id"),
    )
