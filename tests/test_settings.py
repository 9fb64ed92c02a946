"""Settings: read from the environment; a bad value stops start-up with one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INBOUND_SHARDS", "zero"),
        ("RABBITMQ_URL", "not a url"),
        ("DATABASE_URL", "mysql://x"),
        ("GATEWAY_PORT", "70000"),
        ("ENVIRONMENT", "staging"),
    ],
)
def test_bad_value_is_one_clear_line_naming_the_variable(name: str, value: str) -> None:
    env = {**os.environ, name: value}
    proc = subprocess.run(
        [sys.executable, "-m", "engine.cli", "db", "url"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"configuration error: {name}:"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.settings import Settings

    monkeypatch.setenv("INBOUND_SHARDS", "16")
    monkeypatch.setenv("WHATSAPP_APP_SECRET", "s3cret")
    s = Settings()
    assert s.inbound_shards == 16 and s.whatsapp_app_secret == "s3cret"
    assert Settings(environment="production").json_logs and not Settings(environment="development").json_logs
