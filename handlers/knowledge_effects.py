"""Appliers of the knowledge module: intent classification, answering from the knowledge base, charging.

They run in the message's tenant transaction (row-level security: the contact's organisation only) and reach
the model through ``turn.runtime.ai`` (None without OPENAI_API_KEY, or when a turn runs without a runtime).
An intent routed to an offer comes back as a tap on that menu item, so the router starts it the way it starts
any tapped item (with fresh offers). Model usage is debited as ``price_of(action) + ceil(tokens / 1000)``:
the classification's where it is made ("ai_intent", no fixed price by default), the answer's when the machine
says so ("ai_answer").
"""

from __future__ import annotations

import math

from engine.ai import AI, AIUnavailable
from engine.knowledge import answering
from engine.knowledge.retrieval import MAX_DISTANCE
from engine.logging import get_logger
from engine.turn import Turn
from engine.wallet import AI_TOKENS_PER_TOKEN, price_of
from state_machines.base import Inbound
from state_machines.knowledge import (
    MODULE,
    AnswerQuestion,
    ChargeAnswer,
    ClassifyIntent,
    IntentClassified,
    KnowledgeAnswer,
    ModelUsage,
)

log = get_logger(__name__)


def _ai(turn: Turn) -> AI | None:
    return getattr(turn.runtime, "ai", None)


async def classify_intent(turn: Turn, effect: ClassifyIntent) -> Inbound | IntentClassified:
    intent, item = ("item", effect.keyword_item) if effect.keyword_item else ("knowledge", None)
    ai = _ai(turn)
    if ai is not None:
        try:
            intent, item, usage = await answering.classify(
                ai, effect.question, effect.choices, org_name=turn.org.name
            )
            await record_usage(turn, "ai_intent", usage)
        except AIUnavailable as exc:
            log.warning("intent not classified by the model; keywords instead", error=str(exc))
    title = next((c.title for c in effect.choices if c.item == item), None)
    if intent == "item" and title is not None:
        return Inbound(text=title, choice_id=item, kind="intent")
    return IntentClassified("unknown" if intent == "unknown" else "knowledge")


async def answer_question(turn: Turn, effect: AnswerQuestion) -> KnowledgeAnswer:
    max_distance = float(turn.org.settings.get("knowledge_max_distance", MAX_DISTANCE))
    return await answering.answer(
        turn.conn,
        _ai(turn),
        effect.question,
        effect.language,
        org_name=turn.org.name,
        max_distance=max_distance,
        synonyms=turn.org.settings.get("knowledge_synonyms"),  # {"vip": ["premium", "gold"]}
    )


async def charge_answer(turn: Turn, effect: ChargeAnswer) -> None:
    await record_usage(turn, "ai_answer", effect.usage)


def usage_price(action: str, usage: ModelUsage, org_settings: dict[str, object]) -> int:
    return price_of(action, org_settings) + math.ceil(usage.total_tokens / AI_TOKENS_PER_TOKEN)


async def record_usage(turn: Turn, action: str, usage: ModelUsage) -> None:
    """Debit the model's usage. With an empty wallet the answer still stands; the charge is not made."""
    await turn.charge(
        usage_price(action, usage, turn.org.settings),
        module=MODULE,
        action=action,
        metadata={
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "model": usage.model,
        },
    )
