"""What PostgreSQL cannot store never parks a user (engine/pg_text.py): end to end, and at the inbound role alone."""

from __future__ import annotations

import asyncpg
import pytest

from engine.db import tenant_tx
from engine.local_stack import LocalStack
from engine.pg_text import storable
from tests.helpers import phone


def test_storable_drops_nul_and_replaces_lone_surrogates() -> None:
    value = {
        "a\x00": ["hi\x00", {"n": "Wanjiku\x00"}, 1, None, True],
        "s": "\ud83d x \U0001f600",
        "ok": "caf\u00e9",
    }
    assert storable(value) == {
        "a": ["hi", {"n": "Wanjiku"}, 1, None, True],
        "s": "\ufffd x \U0001f600",
        "ok": "caf\u00e9",
    }
    "\ufffd x \U0001f600".encode()  # storable: encodes


@pytest.fixture
async def stack(settings, broker, db_urls):  # type: ignore[no-untyped-def]
    st = await LocalStack(settings).start()
    yield st
    await st.stop()


async def stored(app_pool: asyncpg.Pool, org: object, wa_id: str) -> tuple[str | None, list[str | None]]:
    async with tenant_tx(app_pool, org) as conn:  # type: ignore[arg-type]
        name = await conn.fetchval("SELECT name FROM contacts WHERE phone = $1", wa_id)
        texts = await conn.fetch(
            """SELECT m.content FROM messages m JOIN contacts c ON c.id = m.contact_id
               WHERE c.phone = $1 AND m.direction = 'inbound' ORDER BY m.created_at""",
            wa_id,
        )
    return name, [r["content"] for r in texts]


@pytest.mark.parametrize(
    ("name", "text", "want_name", "want_text"),
    [
        ("Wanjiku\x00", "hi\x00", "Wanjiku", "hi"),
        ("\x00Otieno\ud83d", "h\x00i \ud83d", "Otieno\ufffd", "hi \ufffd"),
    ],
    ids=["nul", "nul-and-lone-surrogate"],
)
async def test_a_user_writing_what_postgres_cannot_store_gets_a_reply(
    stack: LocalStack, make_org, app_pool: asyncpg.Pool, name: str, text: str, want_name: str, want_text: str
) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Nul", tokens=100)
    user = stack.user(new.phone_number_id, phone(), name=name)
    assert (await user.say(text)).response.status_code == 200
    await stack.whatsapp.wait_for_messages(1, to=user.wa_id, timeout=15)
    assert await stored(app_pool, org, user.wa_id) == (want_name, [want_text])


async def test_the_inbound_role_cleans_what_reaches_it_by_another_way(
    stack: LocalStack, make_org, app_pool: asyncpg.Pool
) -> None:  # type: ignore[no-untyped-def]
    """An event queued without the gateway's cleaning (by an older gateway, say) is cleaned by the worker."""
    org, new = await make_org("NulQ", tokens=100)
    wa_id = phone()
    mid = f"wamid.NUL{wa_id}"
    body = {
        "v": 1,
        "kind": "message",
        "field": "messages",
        "phone_number_id": new.phone_number_id,
        "display_phone_number": "254700000000",
        "wa_id": wa_id,
        "user_id": None,
        "contact_name": "Wanjiku\x00",
        "external_id": mid,
        "timestamp": 1700000000,
        "payload": {
            "from": wa_id,
            "id": mid,
            "timestamp": "1700000000",
            "type": "text",
            "text": {"body": "hi\x00"},
        },
        "received_at": 1700000000.0,
    }
    await stack._runtimes[0].publish_inbound(wa_id, body, message_id=mid)
    await stack.whatsapp.wait_for_messages(1, to=wa_id, timeout=15)
    assert await stored(app_pool, org, wa_id) == ("Wanjiku", ["hi"])
