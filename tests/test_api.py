"""The REST API (engine/api/): keys, scopes, limits, every resource, problem+json errors, cursor pages, and an
organisation's key never reaching another's data, whatever ids it puts in paths and bodies."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from engine.api.app import create_app
from engine.db import tenant_tx
from engine.settings import PROJECT_ROOT
from tests.api_helpers import Tenant, api_client, make_tenant, new_key

PROBLEM = "application/problem+json"


@pytest.fixture
async def tenants(make_org, app_pool) -> tuple[Tenant, Tenant]:  # type: ignore[no-untyped-def]
    return await make_tenant(make_org, app_pool, "Alpha"), await make_tenant(make_org, app_pool, "Beta")


def _problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    return body


async def test_keys_are_required_and_checked(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with api_client(settings, app_pool) as client:
        assert "Bearer" in _problem(await client.get("/v1/contacts"), 401)["detail"]
        _problem(await client.get("/v1/contacts", headers={"Authorization": "Basic eDp5"}), 401)
        unknown = await client.get("/v1/contacts", headers={"Authorization": "Bearer cn_live_" + "x" * 43})
        assert _problem(unknown, 401)["detail"] == "unknown API key"
        assert unknown.headers["www-authenticate"].startswith("Bearer")
        ok = await client.get("/v1/contacts", headers=a.auth)
        assert ok.status_code == 200
    async with tenant_tx(app_pool, a.org_id) as conn:
        used = await conn.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", UUID(a.ids["key_id"]))
    assert used is not None and datetime.now(UTC) - used < timedelta(minutes=1)


async def test_revoked_and_expired_keys_are_refused(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    from engine.api_keys import revoke_key

    a, _ = tenants
    key, key_id = await new_key(app_pool, a.org_id, ["read"])
    expiring, expiring_id = await new_key(
        app_pool, a.org_id, ["read"], datetime.now(UTC) + timedelta(hours=1)
    )
    async with api_client(settings, app_pool) as client:
        assert (await client.get("/v1/wallet", headers={"Authorization": f"Bearer {key}"})).status_code == 200
        assert (
            await client.get("/v1/wallet", headers={"Authorization": f"Bearer {expiring}"})
        ).status_code == 200
        async with tenant_tx(app_pool, a.org_id) as conn:
            assert await revoke_key(conn, str(key_id))
            await conn.execute(
                "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1", expiring_id
            )
        revoked = await client.get("/v1/wallet", headers={"Authorization": f"Bearer {key}"})
        assert _problem(revoked, 401)["detail"] == "this API key was revoked"
        expired = await client.get("/v1/wallet", headers={"Authorization": f"Bearer {expiring}"})
        assert _problem(expired, 401)["detail"] == "this API key has expired"


async def test_scopes_per_resource_and_level(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    key, _ = await new_key(app_pool, a.org_id, ["contacts:read", "wallet"])
    auth = {"Authorization": f"Bearer {key}"}
    contact = a.contacts[0]
    async with api_client(settings, app_pool) as client:
        assert (await client.get("/v1/contacts", headers=auth)).status_code == 200
        assert (await client.get("/v1/wallet/ledger", headers=auth)).status_code == 200
        refused = await client.post(f"/v1/contacts/{contact}/opt-out", headers=auth)
        assert "contacts:write" in _problem(refused, 403)["detail"]
        _problem(await client.get("/v1/content", headers=auth), 403)
        _problem(await client.get(f"/v1/contacts/{contact}/conversation", headers=auth), 403)
    async with tenant_tx(app_pool, a.org_id) as conn:
        assert await conn.fetchval("SELECT opted_in FROM contacts WHERE id = $1", contact) is not False


async def test_rate_limit_per_key(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    async with api_client(settings, app_pool, api_rate_burst=3, api_rate_per_minute=1.0) as client:
        codes = [(await client.get("/v1/wallet", headers=a.auth)).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = await client.get("/v1/wallet", headers=a.auth)
        _problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert (
            await client.get("/v1/wallet", headers=b.auth)
        ).status_code == 200  # another key is not slowed


async def test_failed_authentication_is_rate_limited(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with api_client(settings, app_pool, api_auth_failures_per_minute=5) as client:
        for _ in range(5):
            bad = {"Authorization": f"Bearer cn_live_{uuid4().hex}"}
            _problem(await client.get("/v1/wallet", headers=bad), 401)
        blocked = await client.get("/v1/wallet", headers=a.auth)  # even a good key, from that address, waits
        assert _problem(blocked, 429)["type"].endswith("too-many-failures")
        assert int(blocked.headers["retry-after"]) >= 1


async def test_contacts_list_search_and_pages(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with api_client(settings, app_pool) as client:
        first = await client.get("/v1/contacts", params={"limit": 1}, headers=a.auth)
        assert first.status_code == 200
        page1 = first.json()
        assert [c["id"] for c in page1["data"]] == [str(a.contacts[0])] and page1["next_cursor"]
        page2 = (
            await client.get(
                "/v1/contacts", params={"limit": 1, "cursor": page1["next_cursor"]}, headers=a.auth
            )
        ).json()
        assert [c["id"] for c in page2["data"]] == [str(a.contacts[1])]
        assert page2["next_cursor"] is None
        by_name = (await client.get("/v1/contacts", params={"q": "alice"}, headers=a.auth)).json()["data"]
        assert [c["name"] for c in by_name] == ["Alpha Alice"]
        phone = by_name[0]["phone"]
        by_phone = (await client.get("/v1/contacts", params={"q": "+" + phone[:8]}, headers=a.auth)).json()[
            "data"
        ]
        assert phone in [c["phone"] for c in by_phone]
        bad = await client.get("/v1/contacts", params={"cursor": "bm90LWEtY3Vyc29y"}, headers=a.auth)
        assert _problem(bad, 400)["type"].endswith("bad-cursor")
        invalid = await client.get("/v1/contacts", params={"limit": 0}, headers=a.auth)
        assert _problem(invalid, 422)["errors"][0]["loc"] == ["query", "limit"]


async def test_one_contact_tags_and_opt_out(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    contact = a.contacts[0]
    async with api_client(settings, app_pool) as client:
        one = (await client.get(f"/v1/contacts/{contact}", headers=a.auth)).json()
        assert [m["content"] for m in one["recent_messages"]] == ["Alpha says hi", "hello"]
        assert one["conversation"]["module"] == "survey" and one["conversation"]["pending_timers"] == 1
        tagged = await client.post(
            f"/v1/contacts/{contact}/tags", json={"add": ["vip", "jazz", "vip"]}, headers=a.auth
        )
        assert tagged.json()["tags"] == ["jazz", "vip"]
        untagged = await client.post(
            f"/v1/contacts/{contact}/tags", json={"remove": ["jazz"]}, headers=a.auth
        )
        assert untagged.json()["tags"] == ["vip"]
        vips = (await client.get("/v1/contacts", params={"tag": "vip"}, headers=a.auth)).json()["data"]
        assert [c["id"] for c in vips] == [str(contact)]
        out = (await client.post(f"/v1/contacts/{contact}/opt-out", headers=a.auth)).json()
        assert out["opted_in"] is False and out["opted_out_at"]
        opted_out = (await client.get("/v1/contacts", params={"opted_in": False}, headers=a.auth)).json()[
            "data"
        ]
        assert [c["id"] for c in opted_out] == [str(contact)]
        back = (await client.post(f"/v1/contacts/{contact}/opt-in", headers=a.auth)).json()
        assert back["opted_in"] is True and back["opted_in_at"]
        _problem(await client.get(f"/v1/contacts/{uuid4()}", headers=a.auth), 404)
        _problem(await client.get("/v1/contacts/not-a-uuid", headers=a.auth), 422)


async def test_conversation_state_and_reset(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    contact = a.contacts[0]
    async with api_client(settings, app_pool) as client:
        state = (await client.get(f"/v1/contacts/{contact}/conversation", headers=a.auth)).json()
        assert (state["module"], state["step"], state["version"]) == ("survey", "question", 3)
        reset = (await client.post(f"/v1/contacts/{contact}/conversation/reset", headers=a.auth)).json()
        assert (reset["module"], reset["step"], reset["data"], reset["version"]) == (None, "idle", {}, 4)
        assert reset["pending_timers"] == 0
        _problem(await client.get(f"/v1/contacts/{a.contacts[1]}/conversation", headers=a.auth), 404)


async def test_content_results_and_wallet(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with api_client(settings, app_pool) as client:
        content = (await client.get("/v1/content", headers=a.auth)).json()["data"]
        assert {(c["kind"], c["id"]) for c in content} == {
            ("survey", a.ids["survey"]),
            ("poll", a.ids["poll"]),
            ("event", a.ids["event"]),
        }
        polls = (await client.get("/v1/content", params={"kind": "poll"}, headers=a.auth)).json()["data"]
        assert [p["name"] for p in polls] == ["Alpha poll?"]
        survey = (await client.get(f"/v1/surveys/{a.ids['survey']}/results", headers=a.auth)).json()
        assert survey["survey"]["completed"] == 1 and survey["questions"][0]["values"] == ["fine"]
        exported = await client.get(f"/v1/surveys/{a.ids['survey']}/responses.csv", headers=a.auth)
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [(r["status"], r["q1"]) for r in rows] == [("completed", "fine")]
        poll = (await client.get(f"/v1/polls/{a.ids['poll']}/results", headers=a.auth)).json()
        assert [o["id"] for o in poll["options"]] == ["y", "n"] and poll["poll"]["consistent"]
        tickets = (await client.get(f"/v1/events/{a.ids['event']}/tickets", headers=a.auth)).json()
        assert (tickets["sold"], tickets["checked_in"]) == (1, 1)
        wallet = (await client.get("/v1/wallet", headers=a.auth)).json()
        assert wallet["balance"] == 1000 and wallet["paused"] is None
        ledger = (await client.get("/v1/wallet/ledger", params={"limit": 1}, headers=a.auth)).json()
        assert [e["action"] for e in ledger["data"]] == ["opening_balance"] and ledger["next_cursor"] is None


def _b_paths(b: Tenant) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every route that takes an id, with B's ids."""
    c = b.contacts[0]
    return [
        ("GET", f"/v1/contacts/{c}", None),
        ("POST", f"/v1/contacts/{c}/tags", {"add": ["stolen"]}),
        ("POST", f"/v1/contacts/{c}/opt-out", None),
        ("POST", f"/v1/contacts/{c}/opt-in", None),
        ("GET", f"/v1/contacts/{c}/conversation", None),
        ("POST", f"/v1/contacts/{c}/conversation/reset", None),
        ("GET", f"/v1/surveys/{b.ids['survey']}/results", None),
        ("GET", f"/v1/surveys/{b.ids['survey']}/responses.csv", None),
        ("GET", f"/v1/polls/{b.ids['poll']}/results", None),
        ("GET", f"/v1/events/{b.ids['event']}/tickets", None),
    ]


async def _snapshot(owner_pool: Any, org_id: UUID) -> list[Any]:
    async with owner_pool.acquire() as conn:
        return [
            await conn.fetch(
                "SELECT id, tags, opted_in, opted_out_at FROM contacts WHERE organization_id = $1 ORDER BY id",
                org_id,
            ),
            await conn.fetch(
                """SELECT id, current_state, state_version FROM conversations WHERE organization_id = $1""",
                org_id,
            ),
            await conn.fetch(
                "SELECT id, status FROM conversation_timers WHERE organization_id = $1 ORDER BY id", org_id
            ),
        ]


async def test_one_organisations_key_never_reaches_another(settings, app_pool, owner_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    before = await _snapshot(owner_pool, b.org_id)
    async with api_client(settings, app_pool) as client:
        for method, path, body in _b_paths(b):
            response = await client.request(method, path, json=body, headers=a.auth)
            _problem(response, 404)
            assert "Beta" not in response.text
        for path in ("/v1/contacts", "/v1/content", "/v1/wallet/ledger", "/v1/contacts?q=Beta"):
            listed = await client.get(path, headers=a.auth)
            assert (
                listed.status_code == 200 and "Beta" not in listed.text and str(b.org_id) not in listed.text
            )
            for contact in b.contacts:
                assert str(contact) not in listed.text
        # B's key still sees all of B's
        for method, path, body in _b_paths(b):
            if method == "GET":
                assert (await client.request(method, path, json=body, headers=b.auth)).status_code == 200
    assert await _snapshot(owner_pool, b.org_id) == before


async def test_no_secret_in_responses(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, _ = tenants
    async with tenant_tx(app_pool, a.org_id) as conn:
        token = await conn.fetchval("SELECT whatsapp_access_token FROM organizations")
        hashes = [r["key_hash"] for r in await conn.fetch("SELECT key_hash FROM api_keys")]
    async with api_client(settings, app_pool) as client:
        for method, path, body in _b_paths(a):
            text = (await client.request(method, path, json=body, headers=a.auth)).text
            for secret in (a.key, token, *hashes):
                assert secret not in text


def test_openapi_document_is_committed_and_current(settings) -> None:  # type: ignore[no-untyped-def]
    """docs/openapi.json is what the code serves (refresh: python -m engine.api.openapi > docs/openapi.json)."""
    served = create_app(settings).openapi()
    committed = json.loads((PROJECT_ROOT / "docs" / "openapi.json").read_text())
    assert served["openapi"].startswith("3.1")
    assert committed == json.loads(json.dumps(served)), "docs/openapi.json is stale: regenerate it"
    for path, item in served["paths"].items():
        assert path.startswith("/v1/")
        for operation in item.values():
            assert operation["responses"]["401"]["content"] == {
                PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}
            }


async def test_contacts_csv_and_content_yaml_imports(settings, app_pool, owner_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    csv_text = "phone,name,tags\n0712 345 678,Wanjiku,vip;jazz\nnot-a-number,Nobody,\n"
    yaml_text = (
        "polls:\n  - question: Encore tonight?\n    options: [{id: y, text: Yes please}, {id: n, text: No}]\n"
    )
    async with api_client(settings, app_pool) as client:
        imported = await client.post(
            "/v1/contacts/import", content=csv_text, headers={**a.auth, "Content-Type": "text/csv"}
        )
        assert imported.status_code == 200, imported.text
        result = imported.json()
        assert (result["created"], [r["line"] for r in result["rejected"]]) == (1, [3])
        again = await client.post(
            "/v1/contacts/import", content=csv_text, headers={**a.auth, "Content-Type": "text/csv"}
        )
        assert (again.json()["created"], again.json()["updated"]) == (0, 1)
        found = (await client.get("/v1/contacts", params={"q": "254712345678"}, headers=a.auth)).json()[
            "data"
        ]
        assert [(c["name"], c["tags"]) for c in found] == [("Wanjiku", ["jazz", "vip"])]
        assert (await client.get("/v1/contacts", params={"q": "254712345678"}, headers=b.auth)).json()[
            "data"
        ] == []
        wrong_type = await client.post(
            "/v1/contacts/import", content=csv_text, headers={**a.auth, "Content-Type": "application/json"}
        )
        assert _problem(wrong_type, 415)["type"].endswith("media-type")
        no_phone = await client.post(
            "/v1/contacts/import", content="name\nX\n", headers={**a.auth, "Content-Type": "text/csv"}
        )
        assert "phone" in _problem(no_phone, 422)["detail"]

        content = await client.post(
            "/v1/content/import", content=yaml_text, headers={**a.auth, "Content-Type": "application/yaml"}
        )
        assert content.status_code == 200, content.text
        poll_id = content.json()["ids"]["polls"]["Encore tonight?"]
        assert poll_id in (await client.get("/v1/content?kind=poll", headers=a.auth)).text
        assert poll_id not in (await client.get("/v1/content?kind=poll", headers=b.auth)).text
        bad = await client.post(
            "/v1/content/import",
            content="polls: [{question: 1}]",
            headers={**a.auth, "Content-Type": "application/yaml"},
        )
        assert _problem(bad, 422)["type"].endswith("content")
        pictures = await client.post(
            "/v1/content/import",
            content="organization: {logo: /etc/passwd}",
            headers={**a.auth, "Content-Type": "application/yaml"},
        )
        assert "CLI only" in _problem(pictures, 422)["detail"]
        assert (await client.get("/v1/templates", headers=a.auth)).json() == {"data": [], "next_cursor": None}
    async with owner_pool.acquire() as conn:
        owners = await conn.fetch("SELECT organization_id FROM contacts WHERE phone = '254712345678'")
    assert {r["organization_id"] for r in owners} == {a.org_id}


async def test_knowledge_base_add_list_ask(settings, app_pool, tenants) -> None:  # type: ignore[no-untyped-def]
    a, b = tenants
    doc = {
        "knowledge_base": "faq",
        "title": "Gates",
        "text": "# Gates\n\nThe gates open at 4 pm. Parking is free at the north gate.\n",
    }
    async with api_client(settings, app_pool) as client:
        added = await client.post("/v1/knowledge/documents", json=doc, headers=a.auth)
        assert added.status_code == 200, added.text
        assert (added.json()["status"], added.json()["chunks"] >= 1) == ("ready", True)
        again = await client.post("/v1/knowledge/documents", json=doc, headers=a.auth)
        assert again.json()["status"] == "unchanged"
        bases = (await client.get("/v1/knowledge", headers=a.auth)).json()["data"]
        assert [(k["name"], k["documents"], k["ready"]) for k in bases] == [("faq", 1, 1)]
        docs = (await client.get("/v1/knowledge/documents", headers=a.auth)).json()["data"]
        assert [(d["knowledge_base"], d["title"]) for d in docs] == [("faq", "Gates")]
        asked = (
            await client.post(
                "/v1/knowledge/ask", json={"question": "When do the gates open?"}, headers=a.auth
            )
        ).json()
        assert asked["found"] and "4 pm" in asked["answer"]
        elsewhere = (
            await client.post(
                "/v1/knowledge/ask", json={"question": "When do the gates open?"}, headers=b.auth
            )
        ).json()
        assert not elsewhere["found"] and "4 pm" not in json.dumps(elsewhere)
        assert (await client.get("/v1/knowledge", headers=b.auth)).json()["data"] == []
