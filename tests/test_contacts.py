"""Contacts import and tags (engine/contacts.py, `chatnation contacts`) and the messaging limit
(engine/messaging_limit.py). Real PostgreSQL as the application role; the CLI as a subprocess."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from engine.contacts import BadPhone, import_contacts, normalize_phone, parse_csv, tag_contacts
from engine.db import tenant_tx
from engine.inbound import arrive
from engine.messaging_limit import check_messaging_limit, limit_of, parse_limit
from tests.helpers import run_cli

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)

CSV = """phone,name,tags,consent,consent_source,consent_date
0712 345 678,Akinyi,vip; Nairobi,yes,website form,2026-11-01
+254 733 000 111,Baraka,nairobi|choir,,,
254720000222,Chebet,,no,,
12345,Nobody,,,,
0712345678,Akinyi again,,,,
0722000333,Dede,,maybe,,
0722000444,Eko,,yes,,2026-11-01
0722000555,Fumo,,yes,sms,2027-01-01
0722000666,Gathoni,,yes,sms,yesterday

0722000777,Hadija,bad#tag,,,
"""


def test_phones_are_normalised_to_wa_ids() -> None:
    assert normalize_phone("0712 345 678") == "254712345678"
    assert normalize_phone("+254-712-345-678") == "254712345678"
    assert normalize_phone("254712345678") == "254712345678"
    assert normalize_phone("+44 20 7946 0958") == "442079460958"
    assert normalize_phone("07911 123456", "GB") == "447911123456"
    for bad in ("", "12345", "hello", "+999 123"):
        with pytest.raises(BadPhone):
            normalize_phone(bad)


def test_each_bad_row_is_named_with_its_line() -> None:
    rows, rejected = parse_csv(CSV, now=NOW)
    assert [(r.line, r.phone) for r in rows] == [
        (2, "254712345678"),
        (3, "254733000111"),
        (4, "254720000222"),
    ]
    assert rows[0].tags == ("vip", "nairobi") and rows[0].consent is True
    assert rows[0].consent_source == "website form" and rows[0].consent_at == datetime(
        2026, 11, 1, tzinfo=UTC
    )
    assert rows[1].tags == ("nairobi", "choir") and rows[1].consent is None
    assert rows[2].consent is False
    problems = {r.line: (r.value, r.problem) for r in rejected}
    assert problems == {
        5: ("12345", "not a valid phone number"),
        6: ("0712345678", "the same number as line 2"),
        7: ("0722000333", "consent 'maybe': yes or no (or empty to leave it as it is)"),
        8: ("0722000444", "consent yes needs its consent_source"),
        9: ("0722000555", "consent_date '2027-01-01' is in the future"),
        10: ("0722000666", "consent_date 'yesterday' is not a date (YYYY-MM-DD or ISO 8601)"),
        12: ("0722000777", "tag 'bad#tag': letters, digits, spaces and . : / - only, up to 50"),
    }
    with pytest.raises(ValueError, match="needs a header line with a 'phone' column"):
        parse_csv("name,tags\nA,b\n")


async def _contact(app_pool, org, phone: str) -> asyncpg.Record:  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return await conn.fetchrow(
            """SELECT name, tags, opted_in, opted_in_at, opted_out_at, opt_in_source, opt_in_recorded_at
               FROM contacts WHERE phone = $1""",
            phone,
        )


async def test_import_creates_updates_and_records_consent(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Import")
    # Baraka wrote first (a contact from the conversation), then opted out after Akinyi's consent date
    async with tenant_tx(app_pool, org) as conn:
        await arrive(
            conn, org, "wa_message", "message", {"external_id": f"x-{uuid.uuid4()}", "wa_id": "254733000111"}
        )
        await arrive(
            conn, org, "wa_message", "message", {"external_id": f"x-{uuid.uuid4()}", "wa_id": "254712345678"}
        )
        await conn.execute(
            "UPDATE contacts SET opted_in = false, opted_out_at = $1, tags = '{old}' WHERE phone = '254712345678'",
            datetime(2026, 11, 20, tzinfo=UTC),
        )
    rows, _ = parse_csv(CSV, now=NOW)
    result = await import_contacts(app_pool, org, rows, now=NOW)
    assert (result.created, result.updated) == (1, 2)
    akinyi = await _contact(app_pool, org, "254712345678")
    assert akinyi["name"] == "Akinyi" and akinyi["tags"] == ["nairobi", "old", "vip"]
    assert akinyi["opted_in"] is False and akinyi["opt_in_source"] is None  # the later opt-out wins
    baraka = await _contact(app_pool, org, "254733000111")
    assert baraka["tags"] == ["choir", "nairobi"] and baraka["opted_in"] is True
    assert baraka["opt_in_source"] is None  # wrote first: no recorded marketing opt-in
    chebet = await _contact(app_pool, org, "254720000222")
    assert chebet["opted_in"] is False and chebet["opted_out_at"] == NOW
    # a later consent, recorded with its source and date
    again, _ = parse_csv(
        "phone,consent,consent_source,consent_date\n0712345678,yes,event stand,2026-11-25\n", now=NOW
    )
    await import_contacts(app_pool, org, again, now=NOW)
    akinyi = await _contact(app_pool, org, "254712345678")
    assert akinyi["opted_in"] is True and akinyi["opt_in_source"] == "event stand"
    assert akinyi["opt_in_recorded_at"] == datetime(2026, 11, 25, tzinfo=UTC)
    other, _ = await make_org("Other")
    async with tenant_tx(app_pool, other) as conn:
        assert await conn.fetchval("SELECT count(*) FROM contacts") == 0


async def test_tags_are_added_and_removed_by_number(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Tags")
    rows, _ = parse_csv("phone,tags\n0712000001,a\n0712000002,\n", now=NOW)
    await import_contacts(app_pool, org, rows)
    result = await tag_contacts(
        app_pool, org, ["Choir", "youth"], ["0712000001", "+254712000002", "0799999999", "x"]
    )
    assert result.tagged == ["254712000001", "254712000002"]
    assert result.not_found == ["254799999999"] and [r.value for r in result.rejected] == ["x"]
    assert (await _contact(app_pool, org, "254712000001"))["tags"] == ["a", "choir", "youth"]
    await tag_contacts(app_pool, org, ["choir"], ["0712000001"], remove=True)
    assert (await _contact(app_pool, org, "254712000001"))["tags"] == ["a", "youth"]


async def test_cli_import_and_tag(make_org, tmp_path: Path, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("CliContacts")
    good = tmp_path / "good.csv"
    good.write_text(
        "phone,name,tags,consent,consent_source,consent_date\n0712000011,Wanjiru,vip,yes,form,2026-11-01\n"
    )
    done = await asyncio.to_thread(
        run_cli, "contacts", "import", "--org", new.phone_number_id, str(good), "--json"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0] == {"created": 1, "updated": 0, "rejected": []}
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(CSV)
    partly = await asyncio.to_thread(run_cli, "contacts", "import", "--org", str(org), str(mixed))
    assert partly.returncode == 1
    assert "imported 3 contacts" in partly.stdout and "7 rows rejected" in partly.stdout
    assert "not a valid phone number" in partly.stdout and "the same number as line 2" in partly.stdout
    tagged = await asyncio.to_thread(
        run_cli, "contacts", "tag", "--org", str(org), "--tag", "gala", "0712000011", "0712345678", "--json"
    )
    assert tagged.returncode == 0, tagged.stderr
    assert [r["result"] for r in json.loads(tagged.stdout)] == ["tagged", "tagged"]
    unknown = await asyncio.to_thread(
        run_cli, "contacts", "tag", "--org", str(org), "--tag", "gala", "0700000001"
    )
    assert unknown.returncode == 1 and "not a contact" in unknown.stdout
    assert "gala" in (await _contact(app_pool, org, "254712000011"))["tags"]
    no_header = tmp_path / "bad.csv"
    no_header.write_text("0712000011,Wanjiru\n")
    refused = await asyncio.to_thread(run_cli, "contacts", "import", "--org", str(org), str(no_header))
    assert refused.returncode != 0 and "'phone' column" in refused.stdout + refused.stderr


def test_limits_parse_and_default_to_metas_first_tier() -> None:
    assert [parse_limit(v) for v in ("250", "2,000", "10000", "100_000", "unlimited")] == [
        250,
        2000,
        10000,
        100000,
        "unlimited",
    ]
    with pytest.raises(ValueError):
        parse_limit("300")
    assert limit_of({}) == 250 and limit_of({"messaging_limit": "unlimited"}) is None
    assert limit_of({"messaging_limit": 2000}) == 2000 and limit_of({"messaging_limit": "junk"}) == 250


async def test_the_messaging_limit_counts_unique_users_in_a_moving_day(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Limit", settings={"messaging_limit": 250})
    now = datetime.now(UTC)
    async with tenant_tx(app_pool, org) as conn:
        contacts = []
        for i in range(4):
            arrival = await arrive(
                conn,
                org,
                "wa_message",
                "message",
                {"external_id": f"l-{uuid.uuid4()}", "wa_id": f"2547110000{i:02d}"},
            )
            assert arrival is not None and arrival.contact is not None and arrival.conversation is not None
            contacts.append((arrival.contact.id, arrival.conversation.id))
        # templates: two to contact 0 (one user), one failed to 1 (not counted), one to 2 a day and more ago
        for (contact, conversation), status, ago in (
            (contacts[0], "sent", 1),
            (contacts[0], "delivered", 2),
            (contacts[1], "failed", 1),
            (contacts[2], "read", 25),
        ):
            await conn.execute(
                """INSERT INTO messages (organization_id, conversation_id, contact_id, direction, type, content, wa_status,
                                         created_at)
                   VALUES ($1, $2, $3, 'outbound', 'template', 't', $4, $5)""",
                org,
                conversation,
                contact,
                status,
                now - timedelta(hours=ago),
            )
        ids = [c for c, _ in contacts]
        check = await check_messaging_limit(conn, org, ids, now)
        assert (check.limit, check.reached, check.new_users, check.fits) == (250, 1, 3, True)
        tight = await check_messaging_limit(conn, org, ids, now, limit=3)
        assert not tight.fits and tight.remaining == 2
        assert tight.reason == (
            "messaging limit: 3 new users would be reached outside the 24-hour window, 1 of 3 already in the last "
            "24 h (2 left)"
        )
        assert (await check_messaging_limit(conn, org, ids[:3], now, limit=3)).fits  # 0 is already counted
        assert (await check_messaging_limit(conn, org, ids, now, limit=None)).fits
