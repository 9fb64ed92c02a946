"""Shared by the end-to-end benchmark and the fault-injection suite: the traffic model (organisations with a
survey and a poll, contacts who take the survey or vote), a scratch database, process CPU and memory meters,
a lean keep-alive HTTP client for the load generator, and a WhatsApp simulator process that lets the load
generator fetch what it recorded incrementally.

    python bench/common.py simulator --port 8090     # the simulator process the benchmark starts
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import asyncpg
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulators.whatsapp import (  # noqa: E402
    build_button_reply_envelope,
    build_status_envelope,
    build_text_envelope,
    serialise,
    sign,
    status_update,
)

RESULTS = ROOT / "bench" / "results"
DISPLAY_PHONE = "254711000000"
SURVEY_TITLE = "Bench feedback"
POLL_QUESTION = "Best snack?"
POLL_OPTIONS = ("samosa", "mandazi", "chapati")
CONTENT = {
    "surveys": [
        {
            "title": SURVEY_TITLE,
            "description": "Three quick questions",
            "questions": [
                {
                    "id": "kids",
                    "type": "number",
                    "text": "How many children do you have?",
                    "min": 0,
                    "max": 20,
                    "integer": True,
                },
                {"id": "again", "type": "yes_no", "text": "Would you come again?"},
                {"id": "comment", "type": "text", "text": "Any comment?", "required": False},
            ],
        }
    ],
    "polls": [{"question": POLL_QUESTION, "options": [{"id": o, "text": o.title()} for o in POLL_OPTIONS]}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of ``values`` (0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


# ---------------------------------------------------------------- organisations and the traffic model


@dataclass(frozen=True)
class BenchOrg:
    id: UUID
    phone_number_id: str
    survey_id: str
    poll_id: str


@dataclass(frozen=True)
class Step:
    """One message a contact sends, and how many replies the engine answers it with."""

    text: str
    choice_id: str | None
    replies: int


@dataclass
class Script:
    """A contact's conversation: the survey (hi, pick, three answers) or the poll (hi, pick, vote)."""

    org: BenchOrg
    wa_id: str
    steps: list[Step]
    answers: dict[str, Any] = field(default_factory=dict)  # survey: question id -> saved value
    vote: str | None = None  # poll: the option voted

    def envelope(self, index: int, msg_id: str, phone_number_id: str | None = None) -> dict[str, Any]:
        step = self.steps[index]
        pnid = phone_number_id or self.org.phone_number_id
        if step.choice_id is None:
            return build_text_envelope(pnid, DISPLAY_PHONE, self.wa_id, "Bench", step.text, msg_id)
        return build_button_reply_envelope(
            pnid, DISPLAY_PHONE, self.wa_id, "Bench", step.choice_id, step.text, msg_id
        )


def survey_script(org: BenchOrg, wa_id: str, rng: random.Random) -> Script:
    kids, again = rng.randint(0, 20), rng.random() < 0.7
    comment = f"Great show {rng.randint(1, 10**6)}"
    steps = [
        Step("hi", None, 1),
        Step(SURVEY_TITLE, f"survey:{org.survey_id}", 2),
        Step(str(kids), None, 1),
        Step("yes" if again else "no", None, 1),
        Step(comment, None, 1),
    ]
    return Script(org, wa_id, steps, answers={"kids": kids, "again": again, "comment": comment})


def poll_script(org: BenchOrg, wa_id: str, rng: random.Random) -> Script:
    vote = rng.choice(POLL_OPTIONS)
    steps = [Step("hi", None, 1), Step(POLL_QUESTION, f"poll:{org.poll_id}", 1), Step(vote.title(), vote, 1)]
    return Script(org, wa_id, steps, vote=vote)


def make_scripts(orgs: list[BenchOrg], messages: int, rng: random.Random, prefix: str) -> list[Script]:
    """Scripts totalling at least ``messages`` steps, half surveys and half polls, over distinct contacts."""
    scripts: list[Script] = []
    total = 0
    while total < messages:
        org = orgs[len(scripts) % len(orgs)]
        make = survey_script if len(scripts) % 2 == 0 else poll_script
        scripts.append(make(org, f"{prefix}{len(scripts):07d}", rng))
        total += len(scripts[-1].steps)
    return scripts


def signed(envelope: dict[str, Any], secret: str) -> tuple[bytes, str]:
    body = serialise(envelope)
    return body, sign(body, secret)


def status_envelope(phone_number_id: str, wamid: str, to: str, status: str) -> dict[str, Any]:
    return build_status_envelope(phone_number_id, [status_update(wamid, to, status)], DISPLAY_PHONE)


async def create_bench_orgs(app_pool: asyncpg.Pool, count: int, tag: str, tokens: int) -> list[BenchOrg]:
    """Organisations with a funded wallet, each with the survey and the poll imported as content."""
    from engine.content_import import import_content, parse_content
    from engine.orgs import NewOrganization, create_organization

    orgs = []
    for i in range(count):
        pnid = f"pn{tag}{i}"
        org_id = await create_organization(
            app_pool,
            NewOrganization(
                name=f"Bench {tag} {i}",
                slug=f"bench-{tag}-{i}",
                phone_number_id=pnid,
                access_token=f"tok{tag}{i}",
                tokens=tokens,
            ),
        )
        summary = await import_content(app_pool, org_id, parse_content(CONTENT))
        orgs.append(
            BenchOrg(org_id, pnid, summary.ids["surveys"][SURVEY_TITLE], summary.ids["polls"][POLL_QUESTION])
        )
    return orgs


# ---------------------------------------------------------------- scratch database


def database_url(owner_url: str, name: str) -> str:
    parts = urlsplit(owner_url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def create_database(owner_url: str, name: str) -> str:
    conn = await asyncpg.connect(owner_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return database_url(owner_url, name)


async def drop_database(owner_url: str, name: str) -> None:
    conn = await asyncpg.connect(database_url(owner_url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# ---------------------------------------------------------------- processes, CPU and memory


def python_process(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20) -> None:
    procs = [p for p in procs if p.poll() is None]
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def postgres_processes(owner_url: str) -> list[psutil.Process]:
    """The server's postmaster and all its children (found through one backend's parent)."""
    conn = await asyncpg.connect(owner_url)
    try:  # while the backend lives
        postmaster = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()")).parent()
    finally:
        await conn.close()
    return [postmaster, *postmaster.children()] if postmaster else []


def broker_processes(port: int) -> list[psutil.Process]:
    """beam.smp processes listening on the broker's AMQP port."""
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] != "beam.smp":
            continue
        try:
            if any(
                c.laddr.port == port and c.status == psutil.CONN_LISTEN for c in proc.net_connections("tcp")
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


class CpuMeter:
    """CPU seconds per named group of processes over a window; ``refresh`` re-lists a group whose children come
    and go (PostgreSQL backends). A process first seen mid-window counts from its start."""

    def __init__(self) -> None:
        self.groups: dict[str, list[psutil.Process]] = {}
        self._base: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._group_of: dict[int, str] = {}
        self._started = 0.0

    def add(self, name: str, procs: Iterable[psutil.Process | int]) -> None:
        self.groups[name] = [p if isinstance(p, psutil.Process) else psutil.Process(p) for p in procs]

    def _cpu(self, proc: psutil.Process) -> float | None:
        try:
            t = proc.cpu_times()
            return float(t.user + t.system)
        except psutil.Error:
            return None

    def start(self) -> None:
        self._started = time.monotonic()
        self._base.clear()
        self._last.clear()
        for name, procs in self.groups.items():
            for proc in procs:
                if (cpu := self._cpu(proc)) is not None:
                    self._base[proc.pid], self._last[proc.pid], self._group_of[proc.pid] = cpu, cpu, name

    def sample(self, refresh: dict[str, list[psutil.Process]] | None = None) -> None:
        for name, procs in (refresh or {}).items():
            self.groups[name] = procs
        for name, procs in self.groups.items():
            for proc in procs:
                if (cpu := self._cpu(proc)) is not None:
                    self._base.setdefault(proc.pid, 0.0)
                    self._last[proc.pid], self._group_of[proc.pid] = cpu, name

    def percent(self) -> dict[str, float]:
        """Per group: CPU seconds / wall seconds since ``start``, in percent of one core."""
        self.sample()
        wall = max(1e-9, time.monotonic() - self._started)
        out = {name: 0.0 for name in self.groups}
        for pid, last in self._last.items():
            out[self._group_of[pid]] += (last - self._base[pid]) / wall * 100
        return {k: round(v, 1) for k, v in out.items()}


@dataclass
class RssMeter:
    """Resident memory of some processes, sampled every few seconds."""

    procs: dict[str, psutil.Process]
    samples: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    def sample(self, t: float) -> None:
        for name, proc in self.procs.items():
            try:
                self.samples.setdefault(name, []).append((t, proc.memory_info().rss))
            except psutil.Error:
                continue

    def summary(self) -> dict[str, dict[str, Any]]:
        mib = 1024 * 1024
        return {
            name: {
                "first_mib": round(s[0][1] / mib, 1),
                "last_mib": round(s[-1][1] / mib, 1),
                "max_mib": round(max(r for _, r in s) / mib, 1),
                "samples": len(s),
                # the last sample of each minute: flat memory shows as a flat tail
                "by_minute_mib": [round(r / mib, 1) for _, r in _last_per_minute(s)],
            }
            for name, s in self.samples.items()
            if s
        }


def _last_per_minute(samples: list[tuple[float, int]]) -> list[tuple[float, int]]:
    start = samples[0][0]
    by_minute: dict[int, tuple[float, int]] = {}
    for t, rss in samples:
        by_minute[int((t - start) // 60)] = (t, rss)
    return [by_minute[m] for m in sorted(by_minute)]


# ---------------------------------------------------------------- the load generator's HTTP client


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection that POSTs pre-signed bodies and reads the status code.

    Deliberately minimal: on a 2-core machine the load generator shares the cores with the system under
    test, and a general client (httpx) costs several times the CPU per request of this one."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, signature: str, timeout: float = 30) -> int:
        async with asyncio.timeout(timeout):
            if self._writer is None or self._writer.is_closing():
                self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            assert self._reader is not None
            head = (
                f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"X-Hub-Signature-256: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            self._writer.write(head + body)
            try:
                return await self._read_response(self._reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.close()
                raise

    async def _read_response(self, reader: asyncio.StreamReader) -> int:
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and "close" in value.lower():
                close = True
        await reader.readexactly(length)
        if close:
            await self.close()
        return status

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


# ---------------------------------------------------------------- the simulator process


def _simulator_app(port: int) -> Any:
    """The WhatsApp simulator plus ``GET /_bench/recorded?after=N``: [to, wamid, received_at, phone_number_id]
    of the messages recorded after the first N (cheap to poll, unlike ``/_sim/messages``)."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from simulators.whatsapp import WhatsAppSimulator

    sim = WhatsAppSimulator(accept_any_token=True)

    async def recorded(request: Request) -> Response:
        after = int(request.query_params.get("after", 0))
        rows = [[m["to"], m["wamid"], m["received_at"], m["phone_number_id"]] for m in sim.recorded[after:]]
        return Response(json.dumps(rows), media_type="application/json")

    # first: the Cloud API's GET /{version}/{media_id} would take /_bench/recorded for a media id
    sim.app.router.routes.insert(0, Route("/_bench/recorded", recorded, methods=["GET"]))  # type: ignore[attr-defined]  # a Starlette app
    return sim


async def _serve_simulator(port: int) -> None:
    import signal

    sim = _simulator_app(port)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await sim.start("127.0.0.1", port)
    await stop.wait()
    await sim.stop()


def start_simulator(port: int) -> subprocess.Popen[bytes]:
    return python_process([str(Path(__file__)), "simulator", "--port", str(port)], dict(os.environ))


def new_tag() -> str:
    return uuid.uuid4().hex[:8]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["simulator"])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve_simulator(parser.parse_args().port))
