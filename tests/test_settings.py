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


# Production refuses development secrets (issue 13; docs/operations.md, "Secrets production requires").
PRODUCTION_SECRETS = {
    "WHATSAPP_APP_SECRET": "wa-app-secret-0f3c",
    "WHATSAPP_VERIFY_TOKEN": "wa-verify-7d21",
    "APP_DB_PASSWORD": "app-db-pw-93ab",
    "MPESA_CONSUMER_KEY": "mpesa-key-51c0",
    "MPESA_CONSUMER_SECRET": "mpesa-secret-a8e2",
    "MPESA_PASSKEY": "mpesa-passkey-6b7d",
    "MPESA_CALLBACK_SECRET": "mpesa-callback-secret-4e19-0123456789abcdef",
    "RABBITMQ_URL": "amqp://chatnation:broker-pw-22c8@127.0.0.1:1/",
}
ENTRY_POINTS = {
    "command": ["-m", "engine.cli", "db", "url"],
    "worker": ["worker.py", "--role", "relay"],
    "gateway": ["webhook_gateway.py"],
}


def _production_env(**overrides: str) -> dict[str, str]:
    """The environment of this process without any of the secrets (nor a test session's settings), in production."""
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_SECRETS and k != "ENVIRONMENT"}
    env.update(ENVIRONMENT="production", DATABASE_URL="postgresql://owner:pw@127.0.0.1:1/chatnation")
    env.update(overrides)
    return env


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_production_with_nothing_set_stops_in_one_line_naming_each_secret(entry: str) -> None:
    proc = subprocess.run(
        [sys.executable, *ENTRY_POINTS[entry]],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("configuration error: ENVIRONMENT=production"), proc.stderr
    for name in PRODUCTION_SECRETS:
        assert name in lines[0], (name, lines[0])
    assert "WHATSAPP_APP_SECRET has its development default" in lines[0]
    assert "MPESA_CALLBACK_SECRET has its development default" in lines[0]
    assert "Traceback" not in proc.stderr


def test_production_names_only_what_is_still_wrong_and_refuses_the_example_placeholders() -> None:
    env = _production_env(
        **{**PRODUCTION_SECRETS, "MPESA_PASSKEY": "dev-passkey", "APP_DB_PASSWORD": "change-me-too"}
    )
    proc = subprocess.run(
        [sys.executable, *ENTRY_POINTS["command"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    line = proc.stderr.strip()
    assert line == (
        "configuration error: ENVIRONMENT=production refuses: APP_DB_PASSWORD has the example's placeholder; "
        "MPESA_PASSKEY has its development default"
    ), line


def test_production_with_every_secret_set_starts() -> None:
    proc = subprocess.run(
        [sys.executable, *ENTRY_POINTS["command"]],
        cwd=ROOT,
        env=_production_env(**PRODUCTION_SECRETS),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "postgresql://owner:pw@127.0.0.1:1/chatnation"


def test_development_and_test_need_no_settings() -> None:
    from engine.settings import Settings, production_problems

    for environment in ("development", "test"):
        assert production_problems(Settings(environment=environment)) == []
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_SECRETS and k != "ENVIRONMENT"}
    env["DATABASE_URL"] = "postgresql://owner:pw@127.0.0.1:1/chatnation"
    proc = subprocess.run(
        [sys.executable, *ENTRY_POINTS["command"]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    problems = production_problems(Settings(environment="production"))
    assert [p.split()[0] for p in problems] == [*PRODUCTION_SECRETS][:7] + ["RABBITMQ_URL"]


def test_production_needs_an_mpesa_callback_secret_of_32_characters() -> None:
    from engine.settings import Settings, production_problems

    short = production_problems(Settings(environment="production", mpesa_callback_secret="short-secret"))
    assert "MPESA_CALLBACK_SECRET is shorter than 32 characters" in short
    long_enough = Settings(environment="production", mpesa_callback_secret="s" * 32)
    assert not [p for p in production_problems(long_enough) if "MPESA_CALLBACK_SECRET" in p]


def test_callback_networks_are_checked_at_start_up() -> None:
    from pydantic import ValidationError

    from engine.settings import Settings

    with pytest.raises(ValidationError):
        Settings(mpesa_callback_allowed_cidrs="196.201.214.0/24, not-a-network")
    assert Settings(trusted_proxy_cidrs="10.0.0.0/8,::1/128").trusted_proxy_cidrs
