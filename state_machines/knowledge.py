"""Understanding free text at the menu and answering questions from the organisation's knowledge base.

The router sends here an idle message that is neither a keyword nor a menu choice (not a first message: that
gets the menu). Flow, all within the message's transaction:

1. ``ask``: with offers on the menu, ``ClassifyIntent`` (the engine asks the model; without one, or when it
   fails, it uses ``keyword_item``, computed here); with nothing on offer, straight to ``AnswerQuestion``.
2. The engine answers an intent routed to an offer as a tap on that menu item (the router starts it);
   otherwise ``IntentClassified``: "knowledge" -> ``AnswerQuestion``, "unknown" -> sorry and the menu.
3. ``KnowledgeAnswer``: the model's answer; or, with no model (or a model that failed), the best passage;
   or nothing found -> sorry and the menu. An answer the model wrote is charged (``ChargeAnswer``).

State: module "knowledge", step "classifying" or "answering" {question} while the engine works; idle after.
Reads ``ctx.data["offers"]`` (see menu.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from state_machines import handover, menu
from state_machines.base import Context, Effect, Inbound, State, Step, Text
from state_machines.i18n import t

MODULE = "knowledge"
ANSWER_MAX = 600  # characters: a WhatsApp-sized answer
QUESTION_MAX = 500  # longer messages are cut before they reach the model
# Words that name a kind of offer (English and Swahili); the no-model intent path.
KIND_WORDS: dict[str, frozenset[str]] = {
    "event": frozenset({"ticket", "tickets", "tiketi", "book", "buy", "nunua"}),
    "survey": frozenset({"survey", "surveys", "utafiti", "feedback", "questionnaire", "dodoso"}),
    "poll": frozenset({"vote", "votes", "voting", "kura", "poll", "piga"}),
}
QUESTION_WORDS = frozenset(
    {
        "what",
        "when",
        "where",
        "which",
        "who",
        "how",
        "why",
        "can",
        "is",
        "are",
        "do",
        "does",
        "nini",
        "lini",
        "wapi",
        "vipi",
        "je",
        "gani",
        "ngapi",
        "kwa",
        "nani",
    }
)
STOPWORDS = frozenset(
    {
        "the",
        "a",
        "an",
        "of",
        "and",
        "for",
        "to",
        "in",
        "on",
        "at",
        "my",
        "your",
        "our",
        "na",
        "ya",
        "wa",
        "kwa",
        "la",
        "za",
        "i",
        "want",
        "please",
        "tafadhali",
        "nataka",
    }
)


@dataclass(frozen=True)
class IntentChoice:
    item: str  # a menu item id: "survey:<id>", "event:<id>", "poll:<id>"
    title: str


@dataclass(frozen=True)
class ClassifyIntent(Effect):
    """Which offer (if any) the message asks for. Answered by a tap on the item (``Inbound`` with its id) or
    by ``IntentClassified``. ``keyword_item`` is the answer without a model."""

    question: str
    language: str
    choices: tuple[IntentChoice, ...]
    keyword_item: str | None = None


@dataclass(frozen=True)
class IntentClassified:
    intent: str  # "knowledge" | "unknown"


@dataclass(frozen=True)
class AnswerQuestion(Effect):
    """Retrieve passages of the organisation's knowledge base and answer; answered by ``KnowledgeAnswer``."""

    question: str
    language: str


@dataclass(frozen=True)
class ModelUsage:
    model: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class KnowledgeAnswer:
    """``text``: the model's answer, or the best passage when ``from_passage``; ``found`` False: nothing
    relevant (or the model said the knowledge base does not say). ``usage`` None: no model was called."""

    text: str
    found: bool
    passages: tuple[str, ...] = ()
    usage: ModelUsage | None = None
    from_passage: bool = False

    @property
    def usage_tokens(self) -> int:
        return self.usage.total_tokens if self.usage else 0


@dataclass(frozen=True)
class ChargeAnswer(Effect):
    """Debit the answer: price of "ai_answer" plus the model's tokens (one wallet token per 1,000)."""

    usage: ModelUsage


def can_answer(event: Inbound) -> bool:
    """Typed text with at least one letter (a sticker or a location is not a question)."""
    return event.choice_id is None and any(c.isalpha() for c in event.text)


def is_question(text: str) -> bool:
    """A message that asks something: ends with "?" or starts with a question word and has a few words
    ("What time do gates open", "Saa ngapi milango inafunguliwa?"); "Niaje" or "Hi there" are greetings."""
    said = re.findall(r"\w+", text.casefold())
    return (text.rstrip().endswith("?") and bool(said)) or (len(said) >= 3 and said[0] in QUESTION_WORDS)


def ask(event: Inbound, ctx: Context, *, first: bool = False, misses: int = 0) -> Step:
    """``first``: the contact's first message; the menu follows the answer (they have not seen it yet).
    ``misses``: answers not found just before this question (at ``handover.KNOWLEDGE_MISSES``, people take over)."""
    question = " ".join(event.text.split())[:QUESTION_MAX]
    data = {
        "question": question,
        **({"first": True} if first else {}),
        **({"kb_misses": misses} if misses else {}),
    }
    choices = tuple(IntentChoice(o.id, o.title) for o in menu.items(ctx))
    if not choices:
        return Step(State(MODULE, "answering", data), effects=(AnswerQuestion(question, ctx.language),))
    return Step(
        State(MODULE, "classifying", data),
        effects=(ClassifyIntent(question, ctx.language, choices, keyword_item(question, choices)),),
    )


def step(state: State, event: object, ctx: Context) -> Step:
    question = str(state.data.get("question") or "")
    match event:
        case IntentClassified(intent="knowledge") if question:
            return Step(
                State(MODULE, "answering", dict(state.data)),
                effects=(AnswerQuestion(question, ctx.language),),
            )
        case IntentClassified():
            return _sorry("knowledge.not_understood", ctx)
        case KnowledgeAnswer():
            misses = int(state.data.get("kb_misses", 0))
            return _answered(
                event, ctx, first=bool(state.data.get("first")), misses=misses, question=question
            )
        case Inbound():  # only if a turn ended mid-way: a new question, or the menu
            return ask(event, ctx) if can_answer(event) else Step(State(), menu.menu_replies(ctx))
    return Step(State())


def _answered(
    answer: KnowledgeAnswer, ctx: Context, *, first: bool = False, misses: int = 0, question: str = ""
) -> Step:
    charge = (ChargeAnswer(answer.usage),) if answer.usage is not None else ()
    if not answer.found or not answer.text.strip():
        if (
            misses + 1 >= handover.KNOWLEDGE_MISSES
        ):  # the second answer in a row we do not have: people take over
            to_people = handover.request(ctx, "knowledge", question)
            return Step(to_people.state, to_people.replies, (*charge, *to_people.effects))
        return Step(State(data={"kb_misses": misses + 1}), _sorry("knowledge.not_found", ctx).replies, charge)
    if answer.from_passage:
        key = "knowledge.found_passage" if first else "knowledge.from_passage"
        body = t(key, ctx.language, passage=clip(answer.text, ANSWER_MAX - 60))
    else:
        body = clip(answer.text, ANSWER_MAX)
    if first:  # the answer on top of the menu they have not seen yet
        return Step(State(), menu.menu_replies(ctx, body), charge)
    return Step(State(), (Text(body),), charge)


def _sorry(key: str, ctx: Context) -> Step:
    return Step(State(), menu.menu_replies(ctx, t(key, ctx.language)))


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, cut after a sentence (or a word) with an ellipsis."""
    text = text.strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "), cut.rfind("\n"))
    if end >= limit // 2:
        return cut[: end + 1].rstrip()
    return cut[: cut.rfind(" ")].rstrip() + "…" if " " in cut else cut + "…"


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def keyword_item(question: str, choices: tuple[IntentChoice, ...]) -> str | None:
    """The offer a message asks for without a model: a word naming its kind ("tickets", "kura") picks it when
    it is the only one of that kind or its title words decide; title words alone pick an offer only in a
    message that is not a question (a question about the event goes to the knowledge base)."""
    said = _words(question)
    asking = question.rstrip().endswith("?") or bool(said & QUESTION_WORDS)
    scored: list[tuple[int, str]] = []
    for choice in choices:
        kind = choice.item.partition(":")[0]
        kind_hits = len(said & KIND_WORDS.get(kind, frozenset()))
        title_hits = len(said & (_words(choice.title) - STOPWORDS))
        if kind_hits or (title_hits and not asking):
            scored.append((2 * kind_hits + title_hits, choice.item))
    scored.sort(reverse=True)
    if scored and (len(scored) == 1 or scored[0][0] > scored[1][0]):
        return scored[0][1]
    return None
