"""Expected failures of every command — duplicates, things not found, the database or the broker down — end
with one line on stderr and exit status 1, never a traceback (engine/cli/errors.py).

Commands run in this process through the console script's entry point (fast enough to try every command),
and one runs as a real subprocess, where a traceback would otherwise be printed by the interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from engine.cli import main
from engine.resources import resource_dir
from engine.settings import PROJECT_ROOT, get_settings

DATABASE_DOWN = "postgresql://chatnation:secret@127.0.0.1:1/chatnation"  # nothing listens on port 1
BROKER_DOWN = "amqp://guest:guest@127.0.0.1:1/"
DEMO = str(resource_dir("demo") / "content.yaml")


@contextmanager
def environment(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def chatnation(capsys: pytest.CaptureFixture[str], *args: str, **env: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``chatnation ARGS`` with ``env`` set."""
    argv = sys.argv
    sys.argv = ["chatnation", *args]
    try:
        with environment(**env), pytest.raises(SystemExit) as exited:
            main()
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture
def org(db_urls: object, capsys: pytest.CaptureFixture[str]) -> str:
    """A new organisation's phone_number_id, made with the command itself."""
    pnid = f"pn{uuid.uuid4().hex[:10]}"
    code, _, err = chatnation(
        capsys, "org", "create", "--name", f"Errors {pnid}", "--phone-number-id", pnid, "--access-token", "t"
    )
    assert code == 0, err
    return pnid


# ------------------------------------------------------------------------------------------- duplicates


def test_creating_an_organisation_twice_says_what_exists(
    capsys: pytest.CaptureFixture[str], org: str
) -> None:
    code, out, err = chatnation(
        capsys, "org", "create", "--name", f"Other {org}", "--phone-number-id", org, "--access-token", "t"
    )
    assert code == 1 and out == ""
    assert one_error_line(err) == f"error: already exists: an organisation with phone_number_id {org!r}"
    code, _, err = chatnation(
        capsys,
        "org",
        "create",
        "--name",
        f"Errors {org}",
        "--phone-number-id",
        f"x{org}",
        "--access-token",
        "t",
    )
    assert (
        code == 1
        and one_error_line(err) == f"error: already exists: an organisation with slug 'errors-{org}'"
    )


# -------------------------------------------------------------------------------------------- not found

NOT_FOUND = [
    (["org", "show", "nobody"], "no organisation 'nobody'"),
    (["wallet", "balance", "nobody"], "no organisation with id or phone_number_id 'nobody'"),
    (["wallet", "topup", "nobody", "5"], "no organisation with id or phone_number_id 'nobody'"),
    (["wallet", "ledger", "nobody"], "no organisation with id or phone_number_id 'nobody'"),
    (["import", DEMO, "--org", "nobody"], "no organisation with id or phone_number_id 'nobody'"),
    (["kb", "list", "--org", "nobody"], "no organisation with id or phone_number_id 'nobody'"),
    (
        ["results", "survey", "00000000-0000-0000-0000-000000000001"],
        "no survey '00000000-0000-0000-0000-000000000001'; `chatnation content list --org ORG` lists them",
    ),
    (
        ["results", "poll", "00000000-0000-0000-0000-000000000001"],
        "no poll '00000000-0000-0000-0000-000000000001'; `chatnation content list --org ORG` lists them",
    ),
]


@pytest.mark.parametrize(("args", "message"), NOT_FOUND, ids=[" ".join(a[:2]) for a, _ in NOT_FOUND])
def test_what_does_not_exist_is_one_line(
    capsys: pytest.CaptureFixture[str], db_urls: object, args: list[str], message: str
) -> None:
    code, out, err = chatnation(capsys, *args)
    assert (code, out, one_error_line(err)) == (1, "", f"error: not found: {message}")


def test_a_parked_message_that_is_not_there(capsys: pytest.CaptureFixture[str], broker: object) -> None:
    code, _, err = chatnation(capsys, "parked", "show", "no-such-id")
    assert (code, one_error_line(err)) == (1, "error: not found: no parked message with id 'no-such-id'")


@pytest.mark.parametrize("args", [["parked", "list"], ["parked", "show", "x"], ["parked", "replay", "--all"]])
def test_a_prefix_without_queues_is_one_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    prefix = f"none{uuid.uuid4().hex[:8]}"
    code, _, err = chatnation(capsys, *args, BROKER_PREFIX=prefix)
    assert code == 1
    assert one_error_line(err).startswith(f"error: not found in RabbitMQ: no queue '{prefix}.parking' ")


# ------------------------------------------------------------------------------------------ services down

NEEDS_DATABASE = [
    ["migrate"],
    ["org", "create", "--name", "x", "--phone-number-id", "x", "--access-token", "x"],
    ["org", "list"],
    ["org", "show", "x"],
    ["wallet", "balance", "x"],
    ["wallet", "topup", "x", "1"],
    ["wallet", "ledger", "x"],
    ["import", DEMO, "--org", "x"],
    ["results", "survey", "00000000-0000-0000-0000-000000000001"],
    ["results", "poll", "00000000-0000-0000-0000-000000000001"],
    ["kb", "list", "--org", "x"],
    ["kb", "ask", "hello?", "--org", "x"],
    ["workers"],
    ["demo"],
]


@pytest.mark.parametrize("args", NEEDS_DATABASE, ids=[" ".join(a[:2]) for a in NEEDS_DATABASE])
def test_the_database_down_is_one_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = chatnation(capsys, *args, DATABASE_URL=DATABASE_DOWN)
    assert code == 1
    assert one_error_line(err).startswith("error: cannot reach the database at 127.0.0.1:1: ")


def test_a_database_that_does_not_exist_is_one_line(
    capsys: pytest.CaptureFixture[str], db_urls: object
) -> None:
    missing = db_urls.owner.replace(db_urls.owner.split("?")[0].rsplit("/", 1)[1], "no_such_db", 1)  # type: ignore[attr-defined]
    code, _, err = chatnation(capsys, "org", "list", DATABASE_URL=missing)
    assert code == 1 and one_error_line(err).startswith("error: no such database at ")


NEEDS_BROKER = [
    ["queues"],
    ["parked", "list"],
    ["parked", "show", "x"],
    ["parked", "replay", "--all"],
    ["parked", "purge", "--yes"],
]


@pytest.mark.parametrize("args", NEEDS_BROKER, ids=[" ".join(a) for a in NEEDS_BROKER])
def test_the_broker_down_is_one_line(capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = chatnation(capsys, *args, RABBITMQ_URL=BROKER_DOWN)
    assert code == 1
    assert one_error_line(err).startswith("error: cannot reach RabbitMQ at 127.0.0.1:1: ")


def test_the_console_script_prints_one_line_not_a_traceback(db_urls: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "org", "show", "nobody"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        "error: not found: no organisation 'nobody'\n",
    )
