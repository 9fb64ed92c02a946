"""Answering a contact's question from the organisation's knowledge base, and classifying free text.

Both run inside the message's transaction, so the model gets a share of the message's budget
(``AI.budget``, OPENAI_TIMEOUT_SECONDS): classification ``CLASSIFY_SHARE``, the question's embedding
``EMBED_SHARE``, the answer the rest; together never more than the budget. Past it, the caller falls back
(keywords for the intent; the best passage itself for the answer), so a conversation never waits on the model.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

import asyncpg

from engine.ai import AI, AIUnavailable
from engine.knowledge.retrieval import MAX_DISTANCE, Passage, retrieve
from engine.logging import get_logger
from state_machines.knowledge import ANSWER_MAX, IntentChoice, KnowledgeAnswer, ModelUsage

log = get_logger(__name__)

CLASSIFY_SHARE = 0.3
EMBED_SHARE = 0.2
ANSWER_SHARE = 0.5
NOT_IN_KB = "NOT_IN_KB"
LANGUAGE_NAMES = {"en": "English", "sw": "Swahili"}
INTENT_SCHEMA = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["item", "knowledge", "unknown"]},
        "item_id": {"type": ["string", "null"]},
    },
    "required": ["intent", "item_id"],
    "additionalProperties": False,
}


def answer_messages(
    question: str, language: str, passages: Sequence[Passage], org_name: str
) -> list[dict[str, str]]:
    numbered = "\n".join(f"[{i}] {p.content}" for i, p in enumerate(passages, 1))
    system = (
        f"You answer WhatsApp questions for {org_name or 'an organisation'}. Use ONLY the numbered passages; "
        f"never add facts that are not in them. Reply in {LANGUAGE_NAMES.get(language, 'English')}, in plain text, "
        f"in at most {ANSWER_MAX} characters. If the passages do not contain the answer, reply exactly {NOT_IN_KB}."
    )
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Passages:\n{numbered}\n\nQuestion: {question}"},
    ]


async def answer(
    conn: asyncpg.Connection,
    ai: AI | None,
    question: str,
    language: str,
    *,
    org_name: str = "",
    max_distance: float = MAX_DISTANCE,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> KnowledgeAnswer:
    """The answer from the passages retrieved for ``question`` (RLS: the connection's organisation only)."""
    started = time.monotonic()
    embedding = None
    if ai is not None:
        try:
            (embedding,) = await ai.embed([question], budget=ai.budget * EMBED_SHARE)
        except AIUnavailable as exc:
            log.warning("question not embedded; full-text search instead", error=str(exc))
    passages = await retrieve(conn, question, embedding, max_distance=max_distance, synonyms=synonyms)
    found = tuple(p.content for p in passages)
    if not passages:
        return KnowledgeAnswer("", found=False)
    best = _passage_answer(passages[0])
    if ai is None:
        return KnowledgeAnswer(best, found=True, passages=found, from_passage=True)
    remaining = ai.budget * (EMBED_SHARE + ANSWER_SHARE) - (time.monotonic() - started)
    try:
        completion = await ai.chat(
            answer_messages(question, language, passages, org_name),
            budget=max(0.5, remaining),
            max_tokens=300,
        )
    except AIUnavailable as exc:
        log.warning("model did not answer in time; the best passage instead", error=str(exc))
        return KnowledgeAnswer(best, found=True, passages=found, from_passage=True)
    usage = completion.usage
    if NOT_IN_KB in completion.text:
        return KnowledgeAnswer("", found=False, passages=found, usage=usage)
    return KnowledgeAnswer(completion.text, found=True, passages=found, usage=usage)


def _passage_answer(passage: Passage) -> str:
    return f"*{passage.heading}*\n{passage.text}" if passage.heading else passage.text


async def classify(
    ai: AI, question: str, choices: Sequence[IntentChoice], *, org_name: str = ""
) -> tuple[str, str | None, ModelUsage]:
    """(intent, item, usage): "item" with a menu item id of ``choices``, "knowledge" or "unknown"."""
    options = [{"id": c.item, "kind": c.item.partition(":")[0], "title": c.title} for c in choices]
    system = (
        f"You route WhatsApp messages sent to {org_name or 'an organisation'}. The user message is JSON with the "
        "message and the options on offer (kind survey: take it; event: buy tickets; poll: vote). Answer "
        '"item" with the option\'s id when the message asks to take part in one option; "knowledge" when it asks '
        'for information (opening times, prices, directions, rules ...); "unknown" for anything else.'
    )
    user = json.dumps({"message": question, "options": options}, ensure_ascii=False)
    result, completion = await ai.chat_json(
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        INTENT_SCHEMA,
        budget=ai.budget * CLASSIFY_SHARE,
    )
    intent, item = str(result.get("intent")), result.get("item_id")
    if intent == "item" and item not in {c.item for c in choices}:
        intent, item = "knowledge", None  # an id the model made up is no route
    if intent not in ("item", "knowledge", "unknown"):
        intent = "knowledge"
    return intent, item if intent == "item" else None, completion.usage
