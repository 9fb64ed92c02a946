"""`chatnation results survey|poll`: counts per question, the CSV export, poll tallies and their check."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path

import pytest

from engine.content_import import import_content, parse_content
from engine.db import tenant_tx
from engine.results import summarise
from state_machines.survey_format import validate_questions
from tests.helpers import run_cli

QUESTIONS = [
    {"id": "like", "type": "yes_no", "text": "Did you like it?"},
    {
        "id": "acts",
        "type": "multiple_choice",
        "text": "Best acts?",
        "options": [{"id": "a", "text": "Alpha"}, {"id": "b", "text": "Beta"}, {"id": "c", "text": "Gamma"}],
    },
    {"id": "age", "type": "number", "text": "Age?"},
    {"id": "note", "type": "text", "text": "Anything else?", "required": False},
]
RESPONSES = [  # (status, answers)
    ("completed", {"like": True, "acts": ["a", "b"], "age": 20, "note": "Great"}),
    ("completed", {"like": False, "acts": ["b"], "age": 40, "note": None}),
    ("in_progress", {"like": True}),
]


@pytest.mark.parametrize(
    ("question", "answers", "expected"),
    [
        (
            0,
            [{"like": True}, {"like": False}, {"like": True}, {}],
            {"answered": 3, "counts": {"yes": 2, "no": 1}},
        ),
        (1, [{"acts": ["a", "c"]}, {"acts": ["c"]}], {"answered": 2, "counts": {"a": 1, "b": 0, "c": 2}}),
        (2, [{"age": 18}, {"age": 30}], {"answered": 2, "stats": {"min": 18.0, "mean": 24.0, "max": 30.0}}),
        (3, [{"note": "x"}, {"note": None}, {}], {"answered": 1, "skipped": 1, "values": ["x"]}),
    ],
)
def test_summarise(question: int, answers: list[dict], expected: dict) -> None:  # type: ignore[type-arg]
    summary = vars(summarise(validate_questions(QUESTIONS)[question], answers))
    assert {k: summary[k] for k in expected} == expected


async def seeded(make_org, app_pool):  # type: ignore[no-untyped-def]
    org, _ = await make_org("Results")
    summary = await import_content(
        app_pool,
        org,
        parse_content(
            {
                "surveys": [{"title": "Gig", "questions": QUESTIONS}],
                "polls": [
                    {
                        "question": "Encore?",
                        "options": [{"id": "y", "text": "Yes"}, {"id": "n", "text": "No"}],
                    }
                ],
            }
        ),
    )
    survey_id, poll_id = uuid.UUID(summary.ids["surveys"]["Gig"]), uuid.UUID(summary.ids["polls"]["Encore?"])
    async with tenant_tx(app_pool, org) as conn:
        for i, (status, answers) in enumerate(RESPONSES):
            contact = await conn.fetchval(
                "INSERT INTO contacts (organization_id, phone) VALUES ($1, $2) RETURNING id",
                org,
                f"25479900{i:04d}",
            )
            await conn.execute(
                "INSERT INTO survey_responses (organization_id, survey_id, contact_id, status, answers) "
                "VALUES ($1, $2, $3, $4, $5)",
                org,
                survey_id,
                contact,
                status,
                answers,
            )
            option = "y" if i < 2 else "n"
            # the tallies, the voter count and polls.options move at commit (sql/013)
            await conn.execute(
                "INSERT INTO poll_votes (organization_id, poll_id, contact_id, option_id, counts_voter) "
                "VALUES ($1, $2, $3, $4, true)",
                org,
                poll_id,
                contact,
                option,
            )
    return org, survey_id, poll_id


async def test_survey_results_and_csv(make_org, app_pool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, survey_id, _ = await seeded(make_org, app_pool)
    out = tmp_path / "responses.csv"
    done = run_cli("results", "survey", str(survey_id), "--csv", str(out), "--json")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert {k: result["survey"][k] for k in ("responses", "completed", "in_progress")} == {
        "responses": 3,
        "completed": 2,
        "in_progress": 1,
    }
    by_id = {q["id"]: q for q in result["questions"]}
    assert by_id["like"]["counts"] == {"yes": 2, "no": 1}
    assert by_id["acts"]["summary"] == "Alpha 1 (50%) · Beta 2 (100%) · Gamma 0 (0%)"
    assert (by_id["note"]["answered"], by_id["note"]["skipped"]) == (1, 1)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3
    assert sorted((r["like"], r["acts"], r["age"]) for r in rows) == [
        ("no", "b", "40"),
        ("yes", "", ""),
        ("yes", "a;b", "20"),
    ]
    table = run_cli("results", "survey", str(survey_id))
    assert table.returncode == 0 and "Gig — 2 completed, 1 in progress" in table.stdout


async def test_poll_results_checked_against_the_votes(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _, poll_id = await seeded(make_org, app_pool)
    done = run_cli("results", "poll", str(poll_id), "--json")
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["poll"]["voters"] == 3 and result["poll"]["consistent"]
    assert [(o["id"], o["votes"], o["percent"]) for o in result["options"]] == [("y", 2, 67), ("n", 1, 33)]
    async with tenant_tx(app_pool, org) as conn:  # a tally that disagrees with the votes is reported
        await conn.execute("UPDATE poll_options SET votes = 5 WHERE poll_id = $1 AND id = 'n'", poll_id)
    broken = run_cli("results", "poll", str(poll_id))
    assert broken.returncode == 1 and "tallies disagree" in broken.stderr


def test_unknown_id_is_refused(db_urls) -> None:  # type: ignore[no-untyped-def]
    unknown = uuid.uuid4()
    done = run_cli("results", "poll", str(unknown))
    assert done.returncode == 1 and done.stderr.startswith(f"error: not found: no poll '{unknown}'")
    assert len(done.stderr.splitlines()) == 1


async def test_results_by_a_unique_title_or_question(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, survey_id, poll_id = await seeded(make_org, app_pool)
    async with tenant_tx(app_pool, org) as conn:
        title = await conn.fetchval("SELECT title FROM surveys WHERE id = $1", survey_id)
        question = await conn.fetchval("SELECT question FROM polls WHERE id = $1", poll_id)
        pnid = await conn.fetchval("SELECT whatsapp_phone_id FROM organizations")
    # another organisation's survey of the same title: the title alone is ambiguous, --org decides
    other, _, _ = await seeded(make_org, app_pool)
    ambiguous = run_cli("results", "survey", title)
    assert ambiguous.returncode == 2 and "give the id, or --org" in ambiguous.stderr
    by_title = run_cli("results", "survey", title.upper(), "--org", pnid, "--json")
    assert by_title.returncode == 0, by_title.stderr
    assert json.loads(by_title.stdout)[0]["survey"]["completed"] == 2
    by_question = run_cli("results", "poll", question, "--org", str(org), "--json")
    assert by_question.returncode == 0 and json.loads(by_question.stdout)[0]["poll"]["voters"] == 3
    missing = run_cli("results", "survey", "No such survey", "--org", pnid)
    assert missing.returncode == 1 and "content list" in missing.stderr
    assert other != org
