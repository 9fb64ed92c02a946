"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from state_machines.base import Button, Buttons, Context, Document, Image, Reply


def shared_dir() -> Path:
    """The team's shared material (schema design, WhatsApp payloads): ``../shared`` beside the checkout, as CI
    lays it out, else the workplace's copy, so that a clone made anywhere on these machines finds it too."""
    beside = Path(__file__).resolve().parents[1].parent / "shared"
    return beside if beside.is_dir() else Path("/work/shared")


def phone() -> str:
    """A fresh Kenyan mobile number, so that tests never share a contact."""
    return "2547" + str(uuid.uuid4().int)[:8]


async def wait_until(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05
) -> Any:
    """Poll until ``predicate`` returns something truthy, and return it; fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := await predicate()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
    return value


def context(now: datetime, **fields: Any) -> Context:
    """A state machine's Context for a unit test: one contact, in English, unless ``fields`` say otherwise."""
    return Context(
        **{"now": now, "language": "en", "contact_id": "c1", "contact_phone": "254700000001", **fields}
    )


def run_cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """``chatnation ARGS`` as a person runs it: a subprocess, warnings-only logs, a wide terminal."""
    from engine.settings import PROJECT_ROOT

    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "LOG_LEVEL": "warning", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        timeout=timeout,
    )


def body_of(reply: Reply) -> str:
    """The text of a reply that has one; an image (whose caption is not its body) fails the test."""
    assert not isinstance(reply, (Image, Document)), f"expected a reply with a body, got {reply!r}"
    return reply.body


def buttons_of(reply: Reply) -> tuple[Button, ...]:
    """The buttons of a reply that must be a buttons message."""
    assert isinstance(reply, Buttons), f"expected buttons, got {reply!r}"
    return reply.buttons


def rgb(image: Any, xy: tuple[int, int]) -> tuple[int, ...]:
    """One pixel of an RGB(A) Pillow image as a tuple (getpixel's type also admits single-band values)."""
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple), f"not a multi-band pixel: {pixel!r}"
    return pixel
