"""Taking a survey over WhatsApp, one question at a time.

start -> BeginSurveyResponse -> the engine answers SurveyResponseReady (new or resumed) or SurveyRefused.
Each accepted answer is saved at once (SaveSurveyAnswer); the last one completes the response and charges
the organisation. Reads ``ctx.data["survey"]`` (the survey being taken, same shape as in the offers; the engine
loads it from ``state.data["survey_id"]``), ``ctx.data["offers"]`` at start, and the optional timer settings
``ctx.data["survey_reminder_seconds"]`` / ``ctx.data["survey_abandon_seconds"]``.

State: module "survey", step "starting" (waiting for the engine) or "question" with data
{survey_id, response_id, question_id, position, failures?}.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from state_machines.base import (
    Charge,
    Context,
    Effect,
    Event,
    Inbound,
    Reply,
    StartTimer,
    State,
    Step,
    Text,
    TimerFired,
)
from state_machines.choices import Option, as_buttons, match, match_many, normalise, offer
from state_machines.i18n import t, tn
from state_machines.menu import back_to_menu, find_offer
from state_machines.survey_format import (
    CHOICE_KINDS,
    MEDIA_KINDS,
    Kind,
    Question,
    SurveyFormatError,
    next_question_id,
    remaining_range,
    validate_questions,
)

MODULE = "survey"
SKIP_ID = "_skip"  # cannot clash with an option id (those start with a letter or digit)
SKIP_WORDS = frozenset({"skip", "ruka"})
YES_WORDS = frozenset({"y", "yes", "yeah", "yep", "ndiyo", "ndio", "eeh"})
NO_WORDS = frozenset({"n", "no", "nope", "hapana", "la"})
REMINDER, ABANDON = "survey_reminder", "survey_abandon"
DEFAULT_REMINDER_SECONDS = 3600
DEFAULT_ABANDON_SECONDS = 86400
NOTICE_ABANDONED = "survey_abandoned"
MEDIA_HINTS = {Kind.IMAGE: "survey.image_hint", Kind.LOCATION: "survey.location_hint"}

# ---------------------------------------------------------------- effects and the engine's follow-up events


@dataclass(frozen=True)
class BeginSurveyResponse(Effect):
    """Start (or find the in-progress) response; answered by SurveyResponseReady or SurveyRefused."""

    survey_id: str


@dataclass(frozen=True)
class SaveSurveyAnswer(Effect):
    response_id: str
    question_id: str
    value: Any  # str | int | float | bool | list[str] | None (skipped)
    next_question_id: str | None  # None: that was the last question


@dataclass(frozen=True)
class CompleteSurvey(Effect):
    survey_id: str
    response_id: str


@dataclass(frozen=True)
class AbandonSurveyResponse(Effect):
    response_id: str


@dataclass(frozen=True)
class SurveyResponseReady:
    survey_id: str
    response_id: str
    answers: Mapping[str, Any] = field(default_factory=dict)
    current_question: str | None = None


@dataclass(frozen=True)
class SurveyRefused:
    survey_id: str
    reason: str  # "already_responded" | "full" | "closed" | "not_started"


REFUSALS = {
    "already_responded": "survey.refused_already_responded",
    "full": "survey.refused_full",
    "closed": "survey.refused_closed",
    "not_started": "survey.refused_not_started",
}

# ---------------------------------------------------------------- the survey definition


@dataclass(frozen=True)
class Survey:
    id: str
    title: str
    description: str
    questions: tuple[Question, ...]

    def question(self, question_id: str | None) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)


def load(raw: Mapping[str, Any] | None) -> Survey | None:
    """The runnable survey, or None when it is missing or its questions are invalid."""
    if not raw:
        return None
    try:
        questions = validate_questions(raw.get("questions"))
    except SurveyFormatError:
        return None
    return Survey(
        str(raw["id"]), str(raw.get("title") or ""), str(raw.get("description") or ""), tuple(questions)
    )


def _current(state: State, ctx: Context) -> Survey | None:
    survey_id = str(state.data.get("survey_id"))
    survey = load(ctx.data.get("survey") or find_offer(ctx, "survey", survey_id))
    return survey if survey and survey.id == survey_id else None


# ---------------------------------------------------------------- module entry points


def _item(survey_id: str) -> str:
    return f"survey:{survey_id}"


def start(survey_id: str, state: State, ctx: Context) -> Step:
    survey = load(find_offer(ctx, "survey", survey_id))
    if survey is None:
        return back_to_menu(ctx, t("survey.unavailable", ctx.language), exclude={_item(survey_id)})
    return Step(
        State(MODULE, "starting", {"survey_id": survey.id}), effects=(BeginSurveyResponse(survey.id),)
    )


def step(state: State, event: Event | SurveyResponseReady | SurveyRefused, ctx: Context) -> Step:
    survey = _current(state, ctx)
    if survey is None:
        # A timer must not start a conversation; anything else answers the user's own message.
        if isinstance(event, TimerFired):
            return Step(State())
        return back_to_menu(
            ctx, t("survey.unavailable", ctx.language), exclude={_item(str(state.data.get("survey_id")))}
        )
    asking = state.step == "question"
    match event:
        case SurveyResponseReady():
            return _ready(survey, event, ctx)
        case SurveyRefused():  # said on top of the menu, which then leaves this survey out
            key = REFUSALS.get(event.reason, "survey.unavailable")
            return back_to_menu(ctx, t(key, ctx.language, title=survey.title), exclude={_item(survey.id)})
        case TimerFired(kind=kind) if asking and kind == REMINDER:
            reminder = Text(t("survey.reminder", ctx.language, title=survey.title))
            return Step(state, (reminder, _render(survey, state, ctx.language)))
        case TimerFired(kind=kind) if asking and kind == ABANDON:
            notice = {"notice": NOTICE_ABANDONED, "survey_title": survey.title}
            return Step(State(data=notice), effects=(AbandonSurveyResponse(state.data["response_id"]),))
        case Inbound() if asking:
            return _answer(survey, state, event, ctx)
    return Step(state)


def takes_media(state: State, event: Inbound, ctx: Context) -> bool:
    """The question being asked wants a message without words (a photo, a location): this one is its answer,
    or the question says what it wants."""
    survey = _current(state, ctx) if state.step == "question" else None
    q = survey.question(state.data.get("question_id")) if survey else None
    return q is not None and q.type in MEDIA_KINDS


def reprompt(state: State, ctx: Context) -> tuple[Reply, ...]:
    """The current question again (after HELP or a language switch); progress and timers unchanged."""
    survey = _current(state, ctx)
    if survey is None or state.step != "question":
        return ()
    return (_render(survey, state, ctx.language),)


def cancel(state: State, ctx: Context) -> Step:
    """CANCEL abandons the response (answers so far are kept as abandoned); choosing it again starts anew."""
    survey = _current(state, ctx)
    response_id = state.data.get("response_id")
    effects = (AbandonSurveyResponse(response_id),) if response_id else ()
    replies = (Text(t("survey.cancelled", ctx.language, title=survey.title)),) if survey else ()
    return Step(State(), replies, effects)


def abandoned_notice(data: Mapping[str, Any], language: str) -> str:
    return t("survey.abandoned_notice", language, title=data.get("survey_title", ""))


# ---------------------------------------------------------------- flow


def _ready(survey: Survey, event: SurveyResponseReady, ctx: Context) -> Step:
    lang = ctx.language
    answers = dict(event.answers)
    if answers:
        lead = Text(t("survey.resume", lang, title=survey.title))
    else:
        header = "\n".join(x for x in (f"*{survey.title}*", survey.description) if x)
        fewest, most = remaining_range(survey.questions, survey.questions[0].id)
        intro = (
            tn("survey.intro", lang, most) if fewest == most else t("survey.intro_up_to", lang, count=most)
        )
        lead = Text(f"{header}\n{intro}")
    question, position = _resume_point(survey, answers, event.current_question)
    if question is None:  # everything was answered already
        done = _complete(survey, event.response_id, ctx, ())
        return Step(done.state, (lead, *done.replies), done.effects)
    return _ask(survey, event.response_id, question, position, ctx, lead=(lead,))


def _resume_point(
    survey: Survey, answers: Mapping[str, Any], current: str | None
) -> tuple[Question | None, int]:
    """The question to ask and its position: follow the answers along the path from the first question."""
    walked: list[str] = []
    q: Question | None = survey.questions[0]
    while q is not None and q.id in answers and q.id not in walked:
        walked.append(q.id)
        q = survey.question(next_question_id(survey.questions, q, answers[q.id]))
    pointer = survey.question(current)  # the engine's saved pointer wins when it names a question
    if pointer is None or pointer == q:
        return q, len(walked) + 1
    return pointer, len(answers) + 1


def _ask(
    survey: Survey, response_id: str, q: Question, position: int, ctx: Context, lead: tuple[Reply, ...] = ()
) -> Step:
    data = {"survey_id": survey.id, "response_id": response_id, "question_id": q.id, "position": position}
    state = State(MODULE, "question", data)
    return Step(state, (*lead, _render(survey, state, ctx.language)), _timers(ctx))


def _timers(ctx: Context) -> tuple[Effect, ...]:
    return (
        StartTimer(REMINDER, int(ctx.data.get("survey_reminder_seconds", DEFAULT_REMINDER_SECONDS))),
        StartTimer(ABANDON, int(ctx.data.get("survey_abandon_seconds", DEFAULT_ABANDON_SECONDS))),
    )


def _answer(survey: Survey, state: State, event: Inbound, ctx: Context) -> Step:
    q = survey.question(state.data.get("question_id"))
    if q is None:  # the survey was edited under us
        return back_to_menu(ctx, t("survey.unavailable", ctx.language))
    value, error = parse_answer(q, event, ctx.language)
    if error is not None:
        failed = State(MODULE, "question", {**state.data, "failures": int(state.data.get("failures", 0)) + 1})
        return Step(failed, (_render(survey, failed, ctx.language, error=error),), _timers(ctx))
    response_id = state.data["response_id"]
    next_id = next_question_id(survey.questions, q, value)
    save = SaveSurveyAnswer(response_id, q.id, value, next_id)
    next_q = survey.question(next_id)
    if next_q is None:
        return _complete(survey, response_id, ctx, (save,))
    asked = _ask(survey, response_id, next_q, int(state.data.get("position", 1)) + 1, ctx)
    return Step(asked.state, asked.replies, (save, *asked.effects))


def _complete(survey: Survey, response_id: str, ctx: Context, effects: tuple[Effect, ...]) -> Step:
    done = (
        CompleteSurvey(survey.id, response_id),
        Charge("survey_completed", "surveys", reference_id=response_id),
    )
    thanks = back_to_menu(
        ctx, t("survey.thanks", ctx.language, title=survey.title), exclude={_item(survey.id)}
    )
    return Step(thanks.state, thanks.replies, (*effects, *done))


# ---------------------------------------------------------------- asking


def progress(survey: Survey, question_id: str, position: int, lang: str) -> str:
    """``(3/8)``, or ``(3 of at most 8)`` while branching ahead can still shorten the way: never a total that
    a later question or an early end contradicts (the most can only fall as answers come in)."""
    fewest, most = remaining_range(survey.questions, question_id)
    if fewest == most:
        return t("survey.progress", lang, position=position, total=position - 1 + most)
    return t("survey.progress_at_most", lang, position=position, total=position - 1 + most)


def _render(survey: Survey, state: State, lang: str, error: str = "") -> Reply:
    """The current question; after a bad answer, the short error first and the question with its choices again."""
    q = survey.question(state.data.get("question_id"))
    assert q is not None, "rendering needs the current question"
    options = _options(q, lang)
    position = int(state.data.get("position", 1))
    lines = [error, ""] if error else []
    lines.append(f"{progress(survey, q.id, position, lang)} {q.label(lang)}")
    if q.type == Kind.MULTIPLE_CHOICE:
        lines.append(t("survey.multi_hint", lang))
    if q.type in MEDIA_HINTS:
        lines.append(t(MEDIA_HINTS[q.type], lang))
    if not q.required:
        lines.append(t("survey.optional_hint", lang))
    body = "\n".join(lines)
    return offer(body, options, list_button=t("common.choose", lang)) if options else Text(body)


def _options(q: Question, lang: str) -> list[Option]:
    """The choices shown for ``q`` (a Skip choice last when the question is optional); [] for typed answers."""
    if q.type in CHOICE_KINDS:
        options = [Option(o.id, o.label(lang)) for o in q.options]
    elif q.type == Kind.RATING:
        options = [Option(str(n), "⭐" * n) for n in range(1, 6)]
    elif q.type == Kind.YES_NO:
        options = [Option("yes", t("survey.yes", lang)), Option("no", t("survey.no", lang))]
    else:
        return []
    return options if q.required else [*options, Option(SKIP_ID, t("survey.skip", lang))]


# ---------------------------------------------------------------- understanding answers

Parsed = tuple[Any, str | None]  # (value, None) when accepted; (None, message saying what is expected) if not


def parse_answer(q: Question, event: Inbound, lang: str) -> Parsed:
    """The value to save for ``q`` (None = skipped), or the re-prompt that names what is expected."""
    options = _options(q, lang)
    picked = match(event, options) if options else None
    if event.choice_id == SKIP_ID or normalise(event.text) in SKIP_WORDS or (picked and picked.id == SKIP_ID):
        return (None, None) if not q.required else (None, t("survey.invalid_required", lang))
    return _PARSERS[q.type](q, event, lang)


def _text(q: Question, event: Inbound, lang: str) -> Parsed:
    text = event.text.strip()
    if not text:  # words typed, said in a voice note, or a photo's caption
        return None, t("survey.invalid_text", lang)
    if len(text) > q.max_length:
        return None, t("survey.invalid_text_too_long", lang, max=q.max_length)
    return text, None


def _plain(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def _number_error(q: Question, lang: str) -> str:
    noun = t("survey.noun_whole_number" if q.integer else "survey.noun_number", lang)
    if q.min is not None and q.max is not None:
        return t("survey.invalid_number_between", lang, noun=noun, min=_plain(q.min), max=_plain(q.max))
    if q.min is not None:
        return t("survey.invalid_number_min", lang, noun=noun, min=_plain(q.min))
    if q.max is not None:
        return t("survey.invalid_number_max", lang, noun=noun, max=_plain(q.max))
    return t("survey.invalid_number", lang, noun=noun)


def _number(q: Question, event: Inbound, lang: str) -> Parsed:
    s = re.sub(r"\s+", "", event.text)
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # 1,500 or 12,000.50: thousands separators
        s = s.replace(",", "")
    elif re.fullmatch(r"-?\d+,\d{1,2}", s):  # 2,5: a decimal comma
        s = s.replace(",", ".")
    if not re.fullmatch(r"-?\d+(\.\d+)?", s):
        return None, _number_error(q, lang)
    value = Decimal(s)
    whole = value == value.to_integral_value()
    too_low = q.min is not None and value < Decimal(str(q.min))
    too_high = q.max is not None and value > Decimal(str(q.max))
    if (q.integer and not whole) or too_low or too_high:
        return None, _number_error(q, lang)
    return (int(value) if whole else float(value)), None


def _single_choice(q: Question, event: Inbound, lang: str) -> Parsed:
    options = _options(q, lang)
    picked = match(event, options)
    if picked is None:
        if as_buttons(options):
            return None, t("common.invalid_tap", lang)
        return None, t("survey.invalid_choice", lang, count=len(options))
    return picked.id, None


def _multiple_choice(q: Question, event: Inbound, lang: str) -> Parsed:
    picked = match_many(event, [Option(o.id, o.label(lang)) for o in q.options])
    if not picked:
        return None, t("survey.invalid_multiple_choice", lang, count=len(q.options))
    chosen = {p.id for p in picked}
    return [o.id for o in q.options if o.id in chosen], None  # in the question's order


def _rating(q: Question, event: Inbound, lang: str) -> Parsed:
    picked = match(event, _options(q, lang))
    if picked is None:
        return None, t("survey.invalid_rating", lang)
    return int(picked.id), None


def _yes_no(q: Question, event: Inbound, lang: str) -> Parsed:
    said = normalise(event.text)
    if event.choice_id is None and said in YES_WORDS | NO_WORDS:
        return said in YES_WORDS, None
    picked = match(event, _options(q, lang))
    if picked is None:
        return None, t("survey.invalid_yes_no", lang)
    return picked.id == "yes", None


_EMAIL = re.compile(r"([^@\s]+)@((?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,})")


def _email(q: Question, event: Inbound, lang: str) -> Parsed:
    found = _EMAIL.fullmatch(event.text.strip())
    if not found:
        return None, t("survey.invalid_email", lang)
    return f"{found[1]}@{found[2].lower()}", None


def _phone(q: Question, event: Inbound, lang: str) -> Parsed:
    """Kenyan numbers: 07XXXXXXXX, 01XXXXXXXX, +2547XXXXXXXX, 2547XXXXXXXX -> 2547XXXXXXXX."""
    found = re.fullmatch(r"(?:\+?254|0)([17]\d{8})", re.sub(r"[\s().-]", "", event.text))
    if not found:
        return None, t("survey.invalid_phone", lang)
    return f"254{found[1]}", None


def _date(q: Question, event: Inbound, lang: str) -> Parsed:
    """YYYY-MM-DD or DD/MM/YYYY -> ISO date."""
    text = event.text.strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, pattern).date().isoformat(), None
        except ValueError:
            continue
    return None, t("survey.invalid_date", lang)


def _image(q: Question, event: Inbound, lang: str) -> Parsed:
    if event.kind != "image" or not event.media_id:
        return None, t("survey.invalid_image", lang)
    return {"media_id": event.media_id, "mime_type": event.mime_type, "caption": event.text.strip()}, None


def _location(q: Question, event: Inbound, lang: str) -> Parsed:
    place = event.place or {}
    try:
        latitude, longitude = float(place["latitude"]), float(place["longitude"])
    except (KeyError, TypeError, ValueError):
        return None, t("survey.invalid_location", lang)
    if event.kind != "location" or not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        return None, t("survey.invalid_location", lang)
    extra = {k: str(place[k]) for k in ("name", "address") if place.get(k)}
    return {"latitude": latitude, "longitude": longitude, **extra}, None


_PARSERS: dict[Kind, Callable[[Question, Inbound, str], Parsed]] = {
    Kind.TEXT: _text,
    Kind.NUMBER: _number,
    Kind.SINGLE_CHOICE: _single_choice,
    Kind.MULTIPLE_CHOICE: _multiple_choice,
    Kind.RATING: _rating,
    Kind.YES_NO: _yes_no,
    Kind.EMAIL: _email,
    Kind.PHONE: _phone,
    Kind.DATE: _date,
    Kind.IMAGE: _image,
    Kind.LOCATION: _location,
}
