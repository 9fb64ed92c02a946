"""`chatnation chat`: the whole local stack in one process, driven from stdin."""

from __future__ import annotations

import os
import subprocess
import sys

from engine.settings import PROJECT_ROOT


def test_piped_conversation_prints_the_menu(db_urls) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "chat", "--phone", "254711000222"],
        input="hi\n/quit\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr
    assert "254711000222 → hi\nbot → Welcome to Kilele FM! What would you like to do?" in done.stdout
    assert "Listener survey" in done.stdout  # the demo organisation's content was loaded


def test_a_bad_phone_is_refused() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "chat", "--phone", "hello"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        cwd=PROJECT_ROOT,
        timeout=60,
    )
    assert done.returncode == 2 and "--phone" in done.stderr
