"""The surveys.questions JSON format: what is accepted, and errors that name the bad path."""

from __future__ import annotations

import pytest

from state_machines.survey_format import (
    Kind,
    SurveyFormatError,
    branch_key,
    next_question_id,
    validate_questions,
)


def q(qid: str, kind: str = "text", **extra: object) -> dict:
    return {"id": qid, "type": kind, "text": f"Question {qid}?", **extra}


CHOICES = [{"id": "a", "text": "A"}, {"id": "b", "text": {"en": "B", "sw": "Bee"}}]

EXAMPLE = [
    q(
        "q1",
        "single_choice",
        text={"en": "How did you hear?", "sw": "Ulisikiaje?"},
        options=CHOICES,
        branches={"b": "q3"},
    ),
    q("q2", "number", min=1, max=10, integer=True, next="q4"),
    q("q3", "yes_no", branches={"no": "end"}),
    q("q4", "rating", required=False, branches={"1": "q5"}),
    q("q5", "multiple_choice", options=CHOICES + [{"id": "c", "text": "C"}]),
    q("q6", "email"),
    q("q7", "phone"),
    q("q8", "date"),
]


def test_the_documented_example_is_valid() -> None:
    questions = validate_questions(EXAMPLE)
    assert [x.id for x in questions] == [f"q{i}" for i in range(1, 9)]
    assert questions[0].label("sw") == "Ulisikiaje?"
    assert questions[1].label("sw") == "Question q2?"  # one text for every language
    assert questions[0].options[1].label("sw") == "Bee"
    assert questions[3].required is False and questions[0].required is True


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("nope", "questions: Input should be a valid list"),
        ([], "questions: a survey needs at least one question"),
        (
            [q("q1", "single_choice", options=CHOICES[:1])],
            "questions[0].options: single_choice needs at least 2 options",
        ),
        (
            [q("q1"), q("q2", "multiple_choice")],
            "questions[1].options: multiple_choice needs at least 2 options",
        ),
        (
            [q("q1", "single_choice", options=[CHOICES[0], CHOICES[0]])],
            "questions[0].options: duplicate option id 'a'",
        ),
        ([q("q1", options=CHOICES)], "questions[0].options: text questions have no options"),
        ([q("q1", "yes_no", branches={"yes": "q9"})], "questions[0].branches.yes: unknown question id 'q9'"),
        (
            [q("q1"), q("q2", "yes_no", branches={"maybe": "q1"})],
            "questions[1].branches.maybe: not an answer of this question (expected one of: yes, no)",
        ),
        (
            [q("q1", "rating", branches={"6": "end"})],
            "questions[0].branches.6: not an answer of this question",
        ),
        ([q("q1", branches={"x": "end"})], "questions[0].branches: text questions cannot branch"),
        ([q("q1", next="q7")], "questions[0].next: unknown question id 'q7'"),
        ([q("q1"), q("q1")], "questions[1].id: duplicate question id 'q1'"),
        ([q("end")], "questions[0].id: 'end' is reserved"),
        ([q("q 1")], "questions[0].id: String should match pattern"),
        ([q("q1", "essay")], "questions[0].type: Input should be 'text'"),
        ([q("q1", text="")], "questions[0].text.en: String should have at least 1 character"),
        ([q("q1", text={"fr": "Bonjour"})], "questions[0].text.fr"),
        ([q("q1", colour="red")], "questions[0].colour: Extra inputs are not permitted"),
        ([q("q1", min=3)], "questions[0].min: only number questions have min, max and integer"),
        ([q("q1", "number", min=5, max=1)], "questions[0].max: 1 is below min 5"),
        ([{"id": "q1", "type": "text"}], "questions[0].text: Field required"),
        (
            [q("q1", "yes_no", branches={"yes": "q2"}), q("q2", next="q1")],
            "questions[1].next: branching makes a cycle q1 -> q2 -> q1",
        ),
        (
            [q("q1", "yes_no", branches={"no": "q1"})],
            "questions[0].branches.no: branching makes a cycle q1 -> q1",
        ),
        (
            [q("q1"), q("q2"), q("q3", "rating", branches={"5": "q2"})],
            "questions[2].branches.5: branching makes a cycle q2 -> q3 -> q2",
        ),
    ],
)
def test_invalid_definitions_name_the_bad_path(raw: object, error: str) -> None:
    with pytest.raises(SurveyFormatError) as caught:
        validate_questions(raw)
    assert error in str(caught.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SurveyFormatError) as caught:
        validate_questions([q("q1", "single_choice"), q("q2", "number", min=2, max=1)])
    assert "questions[0].options" in str(caught.value) and "questions[1].max" in str(caught.value)


def test_forward_jumps_are_not_cycles() -> None:
    raw = [
        q("q1", "yes_no", branches={"yes": "q3", "no": "q4"}),
        q("q2"),
        q("q3", next="end"),
        q("q4", next="q2"),
    ]
    assert len(validate_questions(raw)) == 4


@pytest.mark.parametrize(
    ("qid", "value", "expected"),
    [
        ("q1", "b", "q3"),  # branch
        ("q1", "a", "q2"),  # no branch: the following question
        ("q2", 5, "q4"),  # explicit next
        ("q3", False, None),  # branch to the end
        ("q3", True, "q4"),
        ("q4", 1, "q5"),
        ("q4", None, "q5"),  # skipped: default path
        ("q5", ["a", "c"], "q6"),
        ("q8", "2024-01-01", None),  # the last question
    ],
)
def test_next_question_follows_branches(qid: str, value: object, expected: str | None) -> None:
    questions = validate_questions(EXAMPLE)
    current = next(x for x in questions if x.id == qid)
    assert next_question_id(questions, current, value) == expected


def test_multiple_choice_branches_on_the_first_branching_option_in_question_order() -> None:
    questions = validate_questions(
        [
            q(
                "m",
                "multiple_choice",
                options=CHOICES + [{"id": "c", "text": "C"}],
                branches={"c": "z", "b": "y"},
            ),
            q("x"),
            q("y"),
            q("z"),
        ]
    )
    assert branch_key(questions[0], ["c", "b"]) == "b"
    assert next_question_id(questions, questions[0], ["c"]) == "z"
    assert next_question_id(questions, questions[0], ["a"]) == "x"
    assert questions[0].type is Kind.MULTIPLE_CHOICE
