"""The operator console in a real browser: Debian's chromium driven by chromedriver (the W3C WebDriver protocol,
spoken with httpx), against `chatnation api` as an operator runs it. Signing in with the operator key; queues,
workers, organisations with balances and a pause, a broadcast's progress, a handover waiting, a parked
message shown and replayed; a wrong key refused. The screenshot is kept as docs/console.png."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import aio_pika
import httpx
import pytest

from engine.broker import Topology
from engine.db import tenant_tx
from engine.settings import PROJECT_ROOT
from tests.api_helpers import make_tenant
from tests.test_api_process import free_port

OPERATOR_KEY = "op-" + uuid4().hex
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, f"{what} exited"
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def console_api(test_env) -> Iterator[str]:  # type: ignore[no-untyped-def]
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(PROJECT_ROOT),
        "LOG_LEVEL": "warning",
        "API_PORT": str(port),
        "API_OPERATOR_KEY": OPERATOR_KEY,
    }
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "api"], env=env, cwd=PROJECT_ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/v1/openapi.json", proc, "chatnation api")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


class Browser:
    """A chromium session through chromedriver's W3C WebDriver endpoint."""

    def __init__(self, driver: str) -> None:
        self.http = httpx.Client(base_url=driver, timeout=60)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": shutil.which("chromium") or "/usr/bin/chromium",
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            "--window-size=1400,1600",
                        ],
                    },
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, path, json=body)
        assert response.status_code == 200, response.text
        return response.json()["value"]

    def go(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def find(self, css: str) -> str:
        return str(
            self._call("POST", f"/session/{self.session}/element", {"using": "css selector", "value": css})[
                ELEMENT
            ]
        )

    def wait_for(self, css: str, timeout: float = 15.0) -> str:
        """The element once the page shows it (a click that navigates returns before the next page loads)."""
        self._call("POST", f"/session/{self.session}/timeouts", {"implicit": int(timeout * 1000)})
        try:
            return self.find(css)
        finally:
            self._call("POST", f"/session/{self.session}/timeouts", {"implicit": 0})

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"/session/{self.session}/element/{self.find(css)}/value", {"text": text})

    def click(self, css: str) -> None:
        self._call("POST", f"/session/{self.session}/element/{self.find(css)}/click", {})

    def text(self, css: str) -> str:
        return str(self._call("GET", f"/session/{self.session}/element/{self.find(css)}/text"))

    def source(self) -> str:
        return str(self._call("GET", f"/session/{self.session}/source"))

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))

    def quit(self) -> None:
        self.http.delete(f"/session/{self.session}")
        self.http.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    found = subprocess.run(
        ["bash", str(PROJECT_ROOT / "scripts" / "ensure_chromium.sh")], capture_output=True, text=True
    )
    assert found.returncode == 0, found.stderr
    driver_path = found.stdout.split()[-1]
    port = free_port()
    proc = subprocess.Popen(
        [driver_path, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/status", proc, "chromedriver")
        b = Browser(f"http://127.0.0.1:{port}")
        try:
            yield b
        finally:
            b.quit()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def _seed(make_org: Any, app_pool: Any, settings: Any, broker: Any) -> dict[str, Any]:
    tenant = await make_tenant(make_org, app_pool, "Console")
    async with tenant_tx(app_pool, tenant.org_id) as conn:
        await conn.execute(
            """INSERT INTO broadcasts (organization_id, name, message_type, recipient_count, sent_count, started_at,
                                       status)
               VALUES ($1, 'Jazz reminder', 'template', 10, 4, now(), 'running')""",
            tenant.org_id,
        )
        await conn.execute(
            """INSERT INTO handovers (organization_id, conversation_id, contact_id, reason, request_text)
               VALUES ($1, $2, $3, 'keyword', 'agent please')""",
            tenant.org_id,
            UUID(tenant.ids["conversation"]),
            tenant.contacts[0],
        )
        await conn.execute(
            "INSERT INTO wallet_pauses (organization_id, started_at) VALUES ($1, now())", tenant.org_id
        )
    topology = Topology.from_settings(settings)
    target = f"{settings.broker_prefix}.console-test-{uuid4().hex[:6]}"
    channel = await broker.channel()
    queue = await channel.declare_queue(target, durable=True)
    exchange = await channel.get_exchange(topology.dead_letter_exchange)
    message_id = f"console-{uuid4().hex[:8]}"
    await exchange.publish(
        aio_pika.Message(
            json.dumps({"kind": "message", "text": "poison"}).encode(),
            message_id=message_id,
            headers={
                "x-error": "ValueError: the console test's poison",
                "x-original-queue": target,
                "x-original-exchange": "",
                "x-original-routing-key": target,
                "x-attempts": 3,
            },
        ),
        routing_key="",
    )
    return {"tenant": tenant, "message_id": message_id, "queue": queue, "channel": channel}


async def test_console_in_a_real_browser(
    console_api, browser, make_org, app_pool, settings, broker, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    seeded = await _seed(make_org, app_pool, settings, broker)
    tenant = seeded["tenant"]
    async with httpx.AsyncClient() as anonymous:  # nothing without the key
        assert (await anonymous.get(f"{console_api}/console/parked/x")).status_code == 303

    browser.go(f"{console_api}/console")
    browser.type("#key", "not-the-key")
    browser.click("#sign-in")
    browser.wait_for("#error")
    assert "not the operator key" in browser.text("#error")

    browser.type("#key", OPERATOR_KEY)
    browser.click("#sign-in")
    browser.wait_for("#parked")
    page = browser.source()
    assert OPERATOR_KEY not in page
    assert settings.broker_prefix in browser.text("#queues")  # the engine's queues with their figures
    orgs = browser.text("#organisations")
    assert str(tenant.org_id) in orgs and "paused since" in orgs
    assert "Jazz reminder" in browser.text("#broadcasts") and "4/10" in browser.text("#broadcasts")
    assert 'title="40%"' in page
    assert "keyword" in browser.text("#handovers")
    assert seeded["message_id"] in browser.text("#parked")
    browser.screenshot(tmp_path / "console.png")
    if os.environ.get("UPDATE_CONSOLE_SCREENSHOT"):
        shutil.copy(tmp_path / "console.png", PROJECT_ROOT / "docs" / "console.png")
    assert (tmp_path / "console.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    browser.click(f'a[href="/console/parked/{seeded["message_id"]}"]')
    browser.wait_for("#message")
    assert "the console test's poison" in browser.text("#message")
    browser.click("#replay")
    replayed = None
    for _ in range(50):  # back on the queue it came from
        if (replayed := await seeded["queue"].get(fail=False, no_ack=True)) is not None:
            break
        await asyncio.sleep(0.2)
    assert replayed is not None and replayed.message_id == seeded["message_id"]
    browser.wait_for("#parked")
    assert seeded["message_id"] not in browser.source()  # back on the overview: no longer parked
    await seeded["queue"].delete(if_unused=False, if_empty=False)
    await seeded["channel"].close()
