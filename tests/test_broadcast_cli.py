"""`chatnation broadcast ...` as an operator runs it (subprocesses, --json), against real PostgreSQL."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from uuid import UUID

import asyncpg

from engine.db import tenant_tx
from engine.settings import Settings
from tests.helpers import run_cli
from tests.test_broadcasts import Rt, add_contact, run_until_done


async def test_create_list_show_control_and_recipients(  # type: ignore[no-untyped-def]
    make_org, app_pool: asyncpg.Pool, owner_pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    from engine.orgs import OrgDirectory

    org, new = await make_org("Cli", tokens=50)
    fans = [await add_contact(app_pool, org) for _ in range(2)]
    created = run_cli(
        "broadcast", "create", "--org", new.phone_number_id, "--text", "Hi {{name}}", "--tag", "fans",
        "--at", "2099-01-01T06:00", "--name", "New year", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    out = json.loads(created.stdout)[0]
    assert out["status"] == "scheduled" and out["matching_contacts"] == 2
    assert out["scheduled_at"].startswith("2099-01-01 03:00:00+00")  # 06:00 in Nairobi
    broadcast_id = out["id"]

    paused = run_cli("broadcast", "pause", broadcast_id, "--json")
    assert json.loads(paused.stdout)[0]["status"] == "paused", paused.stderr
    refused = run_cli("broadcast", "pause", broadcast_id)
    assert refused.returncode == 1 and "a paused broadcast cannot be paused" in refused.stderr
    bad = run_cli("broadcast", "create", "--org", new.phone_number_id, "--text", "Hi {{nmae}}")
    assert bad.returncode == 1 and "unknown variable {{nmae}}" in bad.stderr

    # due now, resumed: the scheduler sends it
    await owner_pool.execute("UPDATE broadcasts SET scheduled_at = now() WHERE id = $1", broadcast_id)
    resumed = run_cli("broadcast", "resume", broadcast_id, "--json")
    assert json.loads(resumed.stdout)[0]["status"] == "scheduled", resumed.stderr
    await run_until_done(Rt(app_pool, owner_pool, settings, OrgDirectory(app_pool)), org, broadcast_id)  # type: ignore[arg-type]

    shown = run_cli("broadcast", "show", broadcast_id, "--json")
    stats = json.loads(shown.stdout)[0]
    assert (stats["status"], stats["recipients"], stats["sent"], stats["tokens_spent"]) == (
        "completed",
        2,
        2,
        2,
    )
    listed = json.loads(run_cli("broadcast", "list", "--org", str(org), "--json").stdout)
    assert [b["id"] for b in listed] == [broadcast_id]
    target = tmp_path / "recipients.csv"
    written = run_cli("broadcast", "recipients", broadcast_id, "--csv", str(target))
    assert written.returncode == 0, written.stderr
    rows = list(csv.DictReader(target.open()))
    assert sorted(r["phone"] for r in rows) == sorted(p for _, p in fans)
    assert {r["status"] for r in rows} == {"sent"} and all(r["wa_message_id"] for r in rows)
    cancelled = run_cli("broadcast", "cancel", broadcast_id)
    assert cancelled.returncode == 1 and "a completed broadcast cannot be cancelled" in cancelled.stderr


async def test_an_operator_subscribes_imported_contacts_to_a_programme(  # type: ignore[no-untyped-def]
    make_org, app_pool: asyncpg.Pool
) -> None:
    from engine.content_import import import_content, parse_content
    from tests.test_programmes import DEVOTIONAL

    org, new = await make_org("Programme", tokens=10)
    await import_content(app_pool, org, parse_content({"programmes": [DEVOTIONAL]}))
    (_, first), (_, second) = [await add_contact(app_pool, org) for _ in range(2)]
    done = run_cli(
        "programme", "subscribe", "devotional", first, second, "254799999999", "--org", str(org), "--json"
    )
    assert json.loads(done.stdout)[0] == {
        "programme": "devotional",
        "changed": 2,
        "unknown_phones": ["254799999999"],
    }
    [listed] = json.loads(run_cli("programme", "list", "--org", new.phone_number_id, "--json").stdout)
    assert (listed["key"], listed["subscribers"], listed["items_left"]) == ("devotional", 2, 2)


async def test_a_media_broadcast_from_the_command_line(  # type: ignore[no-untyped-def]
    make_org, app_pool: asyncpg.Pool
) -> None:
    org, new = await make_org("CliMedia", tokens=10)
    await add_contact(app_pool, org)
    pn = new.phone_number_id
    created = run_cli(
        "broadcast", "create", "--org", pn, "--document", "https://cdn.example.org/line-up.pdf",
        "--text", "Tonight's line-up, {{name}}", "--at", "2099-01-01T06:00", "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    broadcast_id = json.loads(created.stdout)[0]["id"]
    async with tenant_tx(app_pool, org) as conn:
        row = await conn.fetchrow(
            "SELECT message_type, media_type, media_url, message_content FROM broadcasts WHERE id = $1",
            UUID(broadcast_id),
        )
    assert dict(row) == {
        "message_type": "document",
        "media_type": "document",
        "media_url": "https://cdn.example.org/line-up.pdf",
        "message_content": "Tonight's line-up, {{name}}",
    }
    plain = run_cli("broadcast", "create", "--org", pn, "--image", "http://cdn.example.org/poster.jpg")
    assert plain.returncode == 1
    assert "'http://cdn.example.org/poster.jpg' is neither an https:// URL" in plain.stderr
    assert "nor an uploaded media id" in plain.stderr
    both = run_cli("broadcast", "create", "--org", pn, "--image", "1234", "--video", "5678")
    assert both.returncode == 1 and "one of --image, --video, --document at most" in both.stderr
    by_id = run_cli("broadcast", "create", "--org", pn, "--video", "1234567", "--at", "2099-01-01T06:00")
    assert by_id.returncode == 0, by_id.stderr
