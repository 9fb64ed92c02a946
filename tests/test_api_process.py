"""`chatnation keys` and `chatnation api` as an operator runs them: a key printed once (only its hash stored),
listed by prefix, used against the API process on its own port, revoked."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from engine.api_keys import key_hash
from engine.settings import PROJECT_ROOT
from tests.helpers import run_cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_api(**env_extra: str) -> Iterator[str]:
    """`chatnation api` on a free port, as long as the block runs; its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "LOG_LEVEL": "warning",
        "API_PORT": str(port),
        "API_RATE_PER_MINUTE": "100000",
        "API_RATE_BURST": "10000",
        **env_extra,
    }
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "api"], env=env, cwd=PROJECT_ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                if httpx.get(f"{base}/v1/openapi.json", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "chatnation api exited"
            assert time.monotonic() < deadline, "chatnation api did not start"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture(scope="module")
def api_process(test_env) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with running_api() as base:
        yield base


async def test_keys_cli_and_the_api_process(make_org, owner_pool, api_process) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Keys")
    made = run_cli(
        "keys",
        "create",
        "--org",
        new.phone_number_id,
        "--scope",
        "contacts",
        "--scope",
        "wallet:read",
        "--expires",
        "2099-01-01",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert key["scopes"] == ["contacts:read", "contacts:write", "wallet:read"]
    async with owner_pool.acquire() as conn:
        stored = await conn.fetchrow(
            "SELECT * FROM api_keys WHERE id = $1", __import__("uuid").UUID(key["id"])
        )
    assert stored["key_hash"] == key_hash(key["key"]) and key["key"] not in json.dumps(
        dict(stored), default=str
    )
    assert stored["key_prefix"] == key["key"][:12]

    auth = {"Authorization": f"Bearer {key['key']}"}
    async with httpx.AsyncClient(base_url=api_process) as client:
        document = (await client.get("/v1/openapi.json")).json()
        assert document["openapi"].startswith("3.1") and "/v1/contacts" in document["paths"]
        assert (await client.get("/v1/wallet", headers=auth)).json()["balance"] == 1000
        assert (await client.get("/")).status_code == 404

        listed = run_cli("keys", "list", "--org", str(org), "--json")
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [r["prefix"] for r in rows] == [key["prefix"]] and rows[0]["last_used_at"]
        assert key["key"] not in listed.stdout and "key_hash" not in listed.stdout

        revoked = run_cli("keys", "revoke", key["prefix"], "--org", str(org))
        assert revoked.returncode == 0, revoked.stderr
        refused = await client.get("/v1/wallet", headers=auth)
        assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"

    bad = run_cli("keys", "create", "--org", str(org), "--scope", "everything")
    assert bad.returncode != 0 and "unknown scope" in bad.stderr
    missing = run_cli("keys", "revoke", "cn_live_nope", "--org", str(org))
    assert missing.returncode == 1 and "not found" in missing.stderr


@pytest.fixture(scope="module")
def api_key(api_process) -> str:  # type: ignore[no-untyped-def]
    """A key with every scope, of an organisation made by the CLI."""
    from uuid import uuid4

    tag = uuid4().hex[:8]
    made = run_cli(
        "org",
        "create",
        "--name",
        f"Schema {tag}",
        "--phone-number-id",
        f"pn{tag}",
        "--access-token",
        f"tok{tag}",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    org = json.loads(made.stdout)[0]["id"]
    key = run_cli("keys", "create", "--org", org, "--scope", "*", "--json")
    assert key.returncode == 0, key.stderr
    return str(json.loads(key.stdout)["key"])


EXAMPLES = 10  # per operation: about 150 requests in all, a few seconds


def test_api_against_its_openapi_document(api_process, api_key) -> None:  # type: ignore[no-untyped-def]
    """schemathesis, bounded: for every operation, generated requests get no 5xx, and every status, content type
    and body is the one the document declares. (Its pytest plugin does not run on pytest 9: driven directly.)"""
    import hypothesis
    import schemathesis
    from schemathesis import checks

    schema = schemathesis.openapi.from_url(f"{api_process}/v1/openapi.json")
    chosen = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_schema_conformance,
    ]
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 14
    for operation in operations:

        @hypothesis.given(case=operation.as_strategy())
        @hypothesis.settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
        def run(case):  # type: ignore[no-untyped-def]
            case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=chosen)

        run()


def test_refused_keys_are_counted_across_api_processes(api_key) -> None:  # type: ignore[no-untyped-def]
    """Two API processes behind one balancer (which forwards the client's address): refused keys sent to
    either count against one limit (sql/039), so the address is stopped at the limit, not at twice it; another
    address is not."""
    limit = 4
    with (
        running_api(API_AUTH_FAILURES_PER_MINUTE=str(limit)) as a,
        running_api(API_AUTH_FAILURES_PER_MINUTE=str(limit)) as b,
    ):
        address = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"
        forwarded = {"X-Forwarded-For": address}
        good = {"Authorization": f"Bearer {api_key}", **forwarded}
        assert httpx.get(f"{a}/v1/wallet", headers=good).status_code == 200
        for base in (a, b, a, b):  # two refusals in each process
            bad = {"Authorization": f"Bearer cn_live_{uuid.uuid4().hex}", **forwarded}
            assert httpx.get(f"{base}/v1/wallet", headers=bad).status_code == 401
        for base in (a, b):
            blocked = httpx.get(f"{base}/v1/wallet", headers=good)
            assert blocked.status_code == 429, blocked.text
            assert blocked.json()["type"].endswith("too-many-failures")
            assert 1 <= int(blocked.headers["retry-after"]) <= 60
        elsewhere = {"Authorization": f"Bearer {api_key}", "X-Forwarded-For": "198.19.0.1"}
        assert httpx.get(f"{b}/v1/wallet", headers=elsewhere).status_code == 200
