"""Content import: validation with paths, one transaction, re-import by natural key, the CLI."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.content_import import ContentError, import_content, load_content, parse_content
from engine.db import tenant_tx
from engine.settings import PROJECT_ROOT
from tests.helpers import run_cli

BASE: dict[str, Any] = {
    "organization": {"timezone": "Africa/Nairobi", "prices": {"survey_completed": 3}},
    "surveys": [
        {
            "title": "Feedback",
            "questions": [
                {"id": "like", "type": "yes_no", "text": "Did you like it?", "branches": {"no": "why"}},
                {"id": "stars", "type": "rating", "text": "Stars?", "next": "end"},
                {
                    "id": "why",
                    "type": "single_choice",
                    "text": "Why not?",
                    "options": [{"id": "loud", "text": "Too loud"}, {"id": "long", "text": "Too long"}],
                },
            ],
        }
    ],
    "events": [
        {
            "name": "Gala",
            "starts_at": datetime(2030, 5, 1, 18, 0),
            "ends_at": "+3650d",
            "venue_name": "KICC",
            "ticket_types": [
                {"name": "VIP", "price": 2500, "quantity_total": 50},
                {"name": "Free", "price": 0, "quantity_total": 100, "max_per_order": 1},
            ],
        }
    ],
    "polls": [
        {
            "question": "Which day?",
            "options": [{"id": "fri", "text": "Friday"}, {"id": "sat", "text": "Saturday"}],
        }
    ],
    "staff": [{"event": "Gala", "phone": "0712 345 678", "name": "Door 1"}],
}


def changed(path: str, value: Any) -> dict[str, Any]:
    """BASE with one field set, the path given like the error messages name it (a.b[0].c)."""
    content = copy.deepcopy(BASE)
    keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")]
    target: Any = content
    for key in keys[:-1]:
        target = target[key]
    if value is KeyError:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return content


def test_the_demo_content_is_valid() -> None:
    content = load_content(PROJECT_ROOT / "demo" / "content.yaml")
    spec = content.spec
    assert (len(spec.surveys), len(spec.events), len(spec.polls), len(spec.staff)) == (1, 1, 1, 1)
    assert {q.type.value for q in content.questions[0]} >= {"yes_no", "rating", "single_choice", "number"}
    prices = sorted(tt.price for tt in spec.events[0].ticket_types)
    assert prices[0] == 0 and prices[-1] == 1500
    assert spec.staff[0].phone == "254700000001"


def test_times_relative_and_local() -> None:
    spec = parse_content(BASE).spec
    assert spec.events[0].starts_at.utcoffset() == timedelta(hours=3)  # naive = the organisation's zone
    assert spec.events[0].ends_at - datetime.now(UTC) > timedelta(days=3649)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            changed("surveys[0].questions[2].options", [{"id": "x", "text": "X"}]),
            "surveys[0].questions[2].options: single_choice needs at least 2 options",
        ),
        (
            changed("surveys[0].questions[0].branches", {"no": "nope"}),
            "surveys[0].questions[0].branches.no: unknown question id 'nope'",
        ),
        (changed("surveys[0].title", KeyError), "surveys[0].title: Field required"),
        (
            changed("events[0].ticket_types[1].price", -5),
            "events[0].ticket_types[1].price: Input should be greater than or equal to 0",
        ),
        (changed("events[0].ends_at", datetime(2029, 1, 1)), "events[0]: ends before it starts"),
        (
            changed("polls[0].options", [{"id": "fri", "text": "Friday"}]),
            "polls[0].options: List should have at least 2 items",
        ),
        (
            changed("polls[0].options[1].id", "fri"),
            "polls[0].options: Value error, option ids must be unique",
        ),
        (changed("staff[0].event", "Other"), "staff[0].event: no event named 'Other' in this file"),
        (changed("staff[0].phone", "12345"), "staff[0].phone: Value error, not a Kenyan phone number"),
        (
            changed("organization.timezone", "Mars/Olympus"),
            "organization.timezone: Value error, unknown time zone",
        ),
        (changed("surprise", 1), "surprise: Extra inputs are not permitted"),
        ({**BASE, "surveys": BASE["surveys"] * 2}, "surveys[1].title: duplicate title 'Feedback'"),
    ],
)
def test_errors_name_the_path(content: dict[str, Any], expected: str) -> None:
    with pytest.raises(ContentError) as err:
        parse_content(content)
    assert any(e.startswith(expected) for e in err.value.errors), err.value.errors


def test_every_error_is_reported_at_once() -> None:
    content = changed("surveys[0].title", KeyError)
    content["polls"][0]["options"] = []
    content["staff"][0]["phone"] = "x"
    with pytest.raises(ContentError) as err:
        parse_content(content)
    assert [e.split(":")[0] for e in err.value.errors] == [
        "surveys[0].title",
        "polls[0].options",
        "staff[0].phone",
    ]


async def counts(app_pool, org) -> dict[str, int]:  # type: ignore[no-untyped-def]
    tables = (
        "surveys",
        "questions",
        "question_options",
        "events",
        "ticket_types",
        "polls",
        "poll_options",
        "participants",
    )
    async with tenant_tx(app_pool, org) as conn:
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


async def test_import_writes_everything_and_reimport_updates(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Import")
    first = await import_content(app_pool, org, parse_content(BASE))
    expected = {
        "surveys": 1,
        "questions": 3,
        "question_options": 2,
        "events": 1,
        "ticket_types": 2,
        "polls": 1,
        "poll_options": 2,
        "participants": 1,
    }
    assert await counts(app_pool, org) == expected
    assert first.created == {"surveys": 1, "events": 1, "ticket_types": 2, "polls": 1, "staff": 1}
    async with tenant_tx(app_pool, org) as conn:
        poll = await conn.fetchrow("SELECT options, status FROM polls")
        staff = await conn.fetchrow("SELECT phone, role FROM participants")
        settings = await conn.fetchval("SELECT settings FROM organizations")
        await conn.execute("UPDATE ticket_types SET quantity_sold = 7 WHERE name = 'VIP'")
    assert poll["options"] == [
        {"id": "fri", "text": "Friday", "votes": 0},
        {"id": "sat", "text": "Saturday", "votes": 0},
    ]
    assert (staff["phone"], staff["role"]) == ("254712345678", "staff")
    assert settings["prices"] == {"survey_completed": 3} and settings["timezone"] == "Africa/Nairobi"

    edited = changed("events[0].ticket_types", [{"name": "VIP", "price": 3000, "quantity_total": 40}])
    edited["polls"][0]["options"] = [{"id": "sat", "text": "Sat"}, {"id": "sun", "text": "Sunday"}]
    second = await import_content(app_pool, org, parse_content(edited))
    assert second.created == {}
    assert second.updated == {"surveys": 1, "events": 1, "ticket_types": 1, "polls": 1, "staff": 1}
    assert await counts(app_pool, org) == expected  # nothing duplicated; a poll option replaced
    async with tenant_tx(app_pool, org) as conn:
        types = {
            r["name"]: dict(r)
            for r in await conn.fetch(
                "SELECT name, price, quantity_total, quantity_sold, is_active FROM ticket_types"
            )
        }
        poll = await conn.fetchrow("SELECT options FROM polls")
    assert (types["VIP"]["price"], types["VIP"]["quantity_total"], types["VIP"]["quantity_sold"]) == (
        3000,
        40,
        7,
    )
    assert types["Free"]["is_active"] is False  # no longer in the file
    assert [o["id"] for o in poll["options"]] == ["sat", "sun"]


async def test_a_refused_import_writes_nothing(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Refused")
    summary = await import_content(app_pool, org, parse_content(BASE))
    poll_id = uuid.UUID(summary.ids["polls"]["Which day?"])
    async with tenant_tx(app_pool, org) as conn:
        contact = await conn.fetchval(
            "INSERT INTO contacts (organization_id, phone) VALUES ($1, '254799000111') RETURNING id", org
        )
        await conn.execute("UPDATE poll_options SET votes = 1 WHERE poll_id = $1 AND id = 'fri'", poll_id)
        await conn.execute(
            "INSERT INTO poll_votes (organization_id, poll_id, contact_id, option_id) "
            "VALUES ($1, $2, $3, 'fri')",
            org,
            poll_id,
            contact,
        )
    edited = changed("surveys[0].description", "Changed")
    edited["polls"][0]["options"] = [{"id": "sat", "text": "Saturday"}, {"id": "sun", "text": "Sunday"}]
    with pytest.raises(ContentError) as err:
        await import_content(app_pool, org, parse_content(edited))
    assert err.value.errors == ["polls[0].options: option(s) 'fri' have votes and cannot be removed"]
    async with tenant_tx(app_pool, org) as conn:
        assert (
            await conn.fetchval("SELECT description FROM surveys") is None
        )  # the survey came first: rolled back
        assert await conn.fetchval("SELECT count(*) FROM poll_options") == 2


async def test_cli_imports_and_refuses_bad_files(make_org, app_pool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Cli")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(changed("polls[0].options", [{"id": "only", "text": "One"}]) | {"extra": 1})
    )
    refused = run_cli("import", str(bad), "--org", new.phone_number_id)
    assert refused.returncode == 1
    assert "error: polls[0].options: List should have at least 2 items" in refused.stderr
    assert "error: extra: Extra inputs are not permitted" in refused.stderr
    assert (await counts(app_pool, org))["surveys"] == 0  # validated before anything was written

    done = run_cli(
        "import", str(PROJECT_ROOT / "demo" / "content.yaml"), "--org", new.phone_number_id, "--json"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # a mapping: kind -> name -> id, not one "Title=uuid, ..." string
    assert result["created"]["ticket_types"] == 2
    demo = yaml.safe_load((PROJECT_ROOT / "demo" / "content.yaml").read_text())
    event = demo["events"][0]["name"]
    assert uuid.UUID(result["ids"]["events"][event])
    assert set(result["ids"]["ticket_types"]) == {
        f"{event}/{t['name']}" for t in demo["events"][0]["ticket_types"]
    }

    listed = run_cli("content", "list", "--org", new.phone_number_id, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {(r["kind"], r["name"]): r for r in json.loads(listed.stdout)}
    assert rows[("event", event)]["id"] == result["ids"]["events"][event]
    assert {kind for kind, _ in rows} == {"survey", "event", "poll", "programme"}  # the demo has a programme
    table = run_cli("content", "list", "--org", new.phone_number_id)
    assert table.returncode == 0 and event in table.stdout


YAML_BOOLEANS = """
polls:
  - question: Are you coming?
    allow_multiple: no
    options:
      - {id: y, text: Yes}
      - {id: n, text: No}
      - {id: m, text: Maybe}
surveys:
  - title: Quick
    questions:
      - {id: q1, type: yes_no, text: Coming, branches: {no: end}}
      - {id: q2, type: single_choice, text: How, options: [{id: on, text: On foot}, {id: off, text: By car}]}
"""


def test_yaml_yes_and_no_are_text_where_text_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "booleans.yaml"
    path.write_text(YAML_BOOLEANS)
    spec = load_content(path).spec
    assert [o.text for o in spec.polls[0].options] == ["Yes", "No", "Maybe"]
    assert spec.polls[0].allow_multiple is False  # a yes/no field still reads no as false
    assert load_content(path).questions[0][0].branches == {"no": "end"}
    assert [o.id for o in load_content(path).questions[0][1].options] == ["on", "off"]


def test_true_and_false_where_text_is_expected_say_to_quote_them(tmp_path: Path) -> None:
    path = tmp_path / "true.yaml"
    path.write_text(
        YAML_BOOLEANS.replace("text: Maybe", "text: true").replace("text: On foot", "text: false")
    )
    with pytest.raises(ContentError) as err:
        load_content(path)
    assert err.value.errors == [
        'polls[0].options[2].text: YAML read true as a yes/no value where text is expected: put it in quotes ("true")',
        "surveys[0].questions[1].options[0].text: YAML read false as a yes/no value where text is expected: "
        'put it in quotes ("false")',
    ]


def test_errors_inside_questions_come_with_the_files_other_errors() -> None:
    content = changed("polls[0].options", [])
    content["surveys"][0]["questions"][2]["options"] = [{"id": "x", "text": "X"}]
    content["events"][0]["ticket_types"][0]["price"] = -1
    with pytest.raises(ContentError) as err:
        parse_content(content)
    assert [e.split(":")[0] for e in err.value.errors] == [
        "events[0].ticket_types[0].price",
        "polls[0].options",
        "surveys[0].questions[2].options",
    ]


async def test_relative_dates_count_from_the_first_import(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Anchor")
    content = changed("events[0].starts_at", "+10d")
    content["events"][0]["ends_at"] = "+11d"
    content["events"][0]["ticket_types"][0]["sales_end_at"] = "+9d"
    await import_content(app_pool, org, parse_content(content))
    async with tenant_tx(app_pool, org) as conn:
        first = await conn.fetchrow("SELECT starts_at, created_at FROM events")
        sales_end = await conn.fetchval("SELECT sales_end_at FROM ticket_types WHERE name = 'VIP'")
        # as if the first import had been two days ago
        await conn.execute("UPDATE events SET created_at = created_at - interval '2 days'")
    assert first["starts_at"] - first["created_at"].replace(second=0, microsecond=0) == timedelta(days=10)
    await import_content(app_pool, org, parse_content(content))
    async with tenant_tx(app_pool, org) as conn:
        again = await conn.fetchval("SELECT starts_at FROM events")
        sales_again = await conn.fetchval("SELECT sales_end_at FROM ticket_types WHERE name = 'VIP'")
    assert again == first["starts_at"] - timedelta(days=2)  # from the first import, not from now
    assert sales_again == sales_end - timedelta(days=2)


async def test_the_files_language_does_not_silently_replace_the_organisations(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Lang", language="sw")
    content = changed("organization.language", "en")
    kept = await import_content(app_pool, org, parse_content(content))
    assert kept.notes == [
        "organization.language: kept the organisation's 'sw' (the file says 'en'; import --set-language changes it)"
    ]
    async with tenant_tx(app_pool, org) as conn:
        assert (await conn.fetchval("SELECT settings FROM organizations"))["language"] == "sw"
    changed_language = await import_content(app_pool, org, parse_content(content), set_language=True)
    assert changed_language.notes == []
    async with tenant_tx(app_pool, org) as conn:
        assert (await conn.fetchval("SELECT settings FROM organizations"))["language"] == "en"
