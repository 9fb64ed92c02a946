"""The JSON format of ``surveys.questions``: pydantic models plus the checks pydantic cannot express
(unique ids, branch keys and targets, no cycles). ``validate_questions`` is the one entry point; its errors
name the bad path, e.g. ``questions[2].options: single_choice needs at least 2 options``.

Format (documented with an example in docs/conversations.md)::

    [{"id": "q1", "type": "single_choice", "text": {"en": "...", "sw": "..."} | "...",
      "required": true, "options": [{"id": "radio", "text": "Radio"}, ...],
      "next": "q3" | "end", "branches": {"radio": "q4", "tv": "end"}}, ...]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

END = "end"  # a ``next`` / branch target that ends the survey
RATING_VALUES = ("1", "2", "3", "4", "5")
YES_NO_VALUES = ("yes", "no")


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    RATING = "rating"
    YES_NO = "yes_no"
    EMAIL = "email"
    PHONE = "phone"
    DATE = "date"
    IMAGE = "image"  # a photo: stored as {"media_id", "mime_type", "caption"}
    LOCATION = "location"  # a shared location: stored as {"latitude", "longitude", "name", "address"}


CHOICE_KINDS = frozenset({Kind.SINGLE_CHOICE, Kind.MULTIPLE_CHOICE})
BRANCHING_KINDS = CHOICE_KINDS | {Kind.YES_NO, Kind.RATING}
MEDIA_KINDS = {Kind.IMAGE: "image", Kind.LOCATION: "location"}  # question type -> the message type it takes


class SurveyFormatError(ValueError):
    """A survey definition that cannot be run; the message names the offending path."""


def _per_language(value: object) -> object:
    # A single string is the text for every language.
    return {"en": value} if isinstance(value, str) else value


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
LocalText = Annotated[
    dict[Literal["en", "sw"], NonEmpty], BeforeValidator(_per_language), Field(min_length=1)
]


def _label(text: Mapping[Any, str], language: str) -> str:
    return text.get(language) or text.get("en") or next(iter(text.values()))


class Option(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
    text: LocalText

    def label(self, language: str) -> str:
        return _label(self.text, language)


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")
    type: Kind
    text: LocalText
    required: bool = True
    options: tuple[Option, ...] = ()  # single_choice / multiple_choice
    min: float | None = None  # number
    max: float | None = None  # number
    integer: bool = False  # number: whole numbers only
    max_length: int = Field(default=1000, ge=1, le=4096)  # text
    next: str | None = None  # default: the following question (or the end after the last)
    branches: dict[str, str] = Field(
        default_factory=dict
    )  # answer (option id, yes/no, 1-5) -> question id | end

    def label(self, language: str) -> str:
        return _label(self.text, language)

    def answer_keys(self) -> tuple[str, ...]:
        """The answers a branch may be keyed on."""
        if self.type in CHOICE_KINDS:
            return tuple(o.id for o in self.options)
        return {Kind.YES_NO: YES_NO_VALUES, Kind.RATING: RATING_VALUES}.get(self.type, ())


_QUESTIONS = TypeAdapter(list[Question])


def validate_questions(raw: Any) -> list[Question]:
    """Parse and check a ``surveys.questions`` value; raises ``SurveyFormatError`` naming every bad path."""
    try:
        questions = _QUESTIONS.validate_python(raw)
    except ValidationError as exc:
        raise SurveyFormatError("; ".join(_describe(e) for e in exc.errors())) from None
    problems = _check(questions)
    if problems:
        raise SurveyFormatError("; ".join(problems))
    return questions


def _describe(error: Mapping[str, Any]) -> str:
    path = "questions" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
    if isinstance(error.get("input"), bool) and error["type"] in ("string_type", "dict_type"):
        # YAML and JSON read an unquoted true/false as a yes/no value: say what to write instead
        word = "true" if error["input"] else "false"
        return (
            f'{path}: YAML read {word} as a yes/no value where text is expected: put it in quotes ("{word}")'
        )
    return f"{path}: {error['msg']}"


def _check(questions: Sequence[Question]) -> list[str]:
    if not questions:
        return ["questions: a survey needs at least one question"]
    problems: list[str] = []
    seen: set[str] = set()
    for i, q in enumerate(questions):
        if q.id == END:
            problems.append(f"questions[{i}].id: '{END}' is reserved")
        elif q.id in seen:
            problems.append(f"questions[{i}].id: duplicate question id '{q.id}'")
        seen.add(q.id)
        problems += [f"questions[{i}].{p}" for p in _check_fields(q)]
    if problems:
        return problems
    ids = {q.id for q in questions}
    for i, q in enumerate(questions):
        targets = ([("next", q.next)] if q.next else []) + [
            (f"branches.{k}", v) for k, v in q.branches.items()
        ]
        problems += [
            f"questions[{i}].{where}: unknown question id '{target}'"
            for where, target in targets
            if target != END and target not in ids
        ]
    return problems or _find_cycle(questions)


def _check_fields(q: Question) -> list[str]:
    problems: list[str] = []
    if q.type in CHOICE_KINDS:
        if len(q.options) < 2:
            problems.append(f"options: {q.type} needs at least 2 options")
        option_ids = [o.id for o in q.options]
        problems += [
            f"options: duplicate option id '{d}'"
            for d in sorted({x for x in option_ids if option_ids.count(x) > 1})
        ]
    elif q.options:
        problems.append(f"options: {q.type} questions have no options")
    if q.type != Kind.NUMBER and (q.min is not None or q.max is not None or q.integer):
        problems.append("min: only number questions have min, max and integer")
    if q.min is not None and q.max is not None and q.min > q.max:
        problems.append(f"max: {q.max:g} is below min {q.min:g}")
    if q.branches and q.type not in BRANCHING_KINDS:
        problems.append(f"branches: {q.type} questions cannot branch")
    elif q.branches:
        keys = q.answer_keys()
        problems += [
            f"branches.{k}: not an answer of this question (expected one of: {', '.join(keys)})"
            for k in q.branches
            if k not in keys
        ]
    return problems


def _find_cycle(questions: Sequence[Question]) -> list[str]:
    """Depth-first search over every way to go on from a question; a back edge is a cycle."""
    index = {q.id: i for i, q in enumerate(questions)}
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(qid: str, path: list[str]) -> str | None:
        state[qid] = "open"
        i = index[qid]
        for where, target in _edges(questions, i):
            if target == END or state.get(target) == "done":
                continue
            if state.get(target) == "open":
                trail = path + [qid]
                loop = trail[trail.index(target) :] + [target]
                return f"questions[{i}].{where}: branching makes a cycle {' -> '.join(loop)}"
            found = visit(target, path + [qid])
            if found:
                return found
        state[qid] = "done"
        return None

    for q in questions:
        if q.id not in state:
            found = visit(q.id, [])
            if found:
                return [found]
    return []


def _edges(questions: Sequence[Question], i: int) -> list[tuple[str, str]]:
    q = questions[i]
    default = q.next or (questions[i + 1].id if i + 1 < len(questions) else END)
    return [("next", default)] + [(f"branches.{k}", v) for k, v in q.branches.items()]


def branch_key(q: Question, value: Any) -> str | None:
    """The branch an accepted answer takes (None: no branch applies, e.g. a skipped question)."""
    if value is None:
        return None
    if q.type == Kind.YES_NO:
        return "yes" if value else "no"
    if q.type == Kind.MULTIPLE_CHOICE:
        # Several answers: the first chosen option, in the question's order, that has a branch.
        return next((o.id for o in q.options if o.id in value and o.id in q.branches), None)
    return str(value)


def next_question_id(questions: Sequence[Question], q: Question, value: Any) -> str | None:
    """The id of the question after ``q`` given its answer; None at the end of the survey."""
    target = q.branches.get(branch_key(q, value) or "")
    if target is None:
        i = next(i for i, x in enumerate(questions) if x.id == q.id)
        target = q.next or (questions[i + 1].id if i + 1 < len(questions) else END)
    return None if target == END else target


def _possible_targets(questions: Sequence[Question], i: int) -> set[str]:
    """Where an answer to ``questions[i]`` can lead: its branches, and its default ``next`` unless every
    possible answer of a required question branches away."""
    q = questions[i]
    default = q.next or (questions[i + 1].id if i + 1 < len(questions) else END)
    targets = set(q.branches.values())
    keys = q.answer_keys()
    if not q.required or not keys or any(k not in q.branches for k in keys):
        targets.add(default)
    return targets


def remaining_range(questions: Sequence[Question], question_id: str) -> tuple[int, int]:
    """(fewest, most) questions still to be asked from ``question_id`` to the end, that one included, over every
    path branching allows (the graph has no cycles: ``validate_questions`` refuses them)."""
    index = {q.id: i for i, q in enumerate(questions)}
    memo: dict[str, tuple[int, int]] = {}

    def walk(qid: str) -> tuple[int, int]:
        if qid == END:
            return 0, 0
        if qid not in memo:
            ranges = [walk(target) for target in _possible_targets(questions, index[qid])]
            memo[qid] = (1 + min(r[0] for r in ranges), 1 + max(r[1] for r in ranges))
        return memo[qid]

    return walk(question_id)
