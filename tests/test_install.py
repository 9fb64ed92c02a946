"""The package works installed: a wheel built from this checkout, installed into a scratch virtual environment
outside it, runs there as an operator would run it — `chatnation migrate`, `chatnation org create`, and one
message through the installed `chatnation-gateway` and `chatnation-worker` to the WhatsApp simulator and back.

The scratch environment sees the project's dependencies (those of .venv, installed from the lock file) but not
the checkout nor its editable install, so that only what the wheel carries can be found: `pip install
--no-index` resolves the wheel's requirements against them without a network.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from engine.resources import resource_dir
from engine.settings import PROJECT_ROOT
from simulators.whatsapp import SimulatedUser, WebhookPoster, WhatsAppSimulator
from tests.conftest import _drop_database
from tests.helpers import phone, wait_until
from tests.test_ops_cli import free_port

# What of the dev environment the scratch one must not see: this project, installed editable.
OURS = ("chatnation", "__editable__", "_chatnation", "engine", "handlers", "state_machines", "simulators")


@dataclass
class Installed:
    root: Path  # a folder outside the checkout: the working directory and HOME of every command
    bin: Path
    wheel: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}")
        return done


def _source_copy(destination: Path) -> None:
    """The checkout's files as git knows them (tracked, and new ones not ignored): no .venv, .data, build/."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = PROJECT_ROOT / name.decode()
        if source.is_file():
            target = destination / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())


def _dependencies_view(view: Path) -> None:
    """The dev environment's site-packages without this project: a folder of links to everything else."""
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(OURS) and not entry.name.endswith(".pth"):
            (view / entry.name).symlink_to(entry)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("installed")
    source, dist, venv = root / "source", root / "dist", root / "venv"
    _source_copy(source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, source],
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("chatnation-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    view = root / "dependencies"
    _dependencies_view(view)
    purelib = subprocess.run(
        [venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text(f"{view}\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "-q",
            "--no-index",
            wheel,
        ],
        check=True,
        capture_output=True,
    )
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL")}
    env.update(HOME=str(home), LOG_FORMAT="json", LOG_LEVEL="info", ENVIRONMENT="test")
    env.pop("XDG_DATA_HOME", None)
    yield Installed(root, venv / "bin", wheel, env)


def test_the_wheel_carries_every_module_and_the_data(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for package in ("engine", "handlers", "state_machines", "simulators"):
        for path in (PROJECT_ROOT / package).rglob("*.py"):
            assert str(path.relative_to(PROJECT_ROOT)) in names, f"{path} is not in the wheel"
    assert {f"engine/sql/{p.name}" for p in resource_dir("sql").glob("*.sql")} <= names
    assert "engine/demo/content.yaml" in names
    assert {"worker.py", "webhook_gateway.py"} <= names


def test_installed_code_and_data_come_from_the_package_and_data_from_the_user(installed: Installed) -> None:
    probe = installed.run(
        "python",
        "-c",
        "import json, engine; from engine.resources import resource_dir; from engine.settings import Settings;"
        "print(json.dumps([engine.__file__, str(resource_dir('sql')), str(resource_dir('demo')),"
        " str(Settings().data_dir)]))",
    )
    code, sql, demo, data_dir = (Path(p) for p in json.loads(probe.stdout))
    site = code.parent.parent
    assert site.is_relative_to(installed.bin.parent) and not code.is_relative_to(PROJECT_ROOT)
    assert (sql, demo) == (site / "engine" / "sql", site / "engine" / "demo")
    assert data_dir == installed.root / "home" / ".local" / "share" / "chatnation"  # never site-packages


@pytest.fixture(scope="module")
def database(test_env: dict[str, str]) -> Iterator[str]:
    """A database of its own on the session's server, empty: the installed package migrates it."""
    name = f"install_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(test_env["DATABASE_URL"])

    async def create() -> None:
        conn = await asyncpg.connect(test_env["DATABASE_URL"])
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    url = urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    yield url
    _drop_database(url, name)


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    started: list[asyncio.subprocess.Process] = []
    yield started
    for proc in started:  # a test that failed early leaves them running
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_migrate_org_create_and_a_message_round_trip_from_the_wheel(
    installed: Installed, database: str, processes: list[asyncio.subprocess.Process], broker: object
) -> None:
    tag = uuid.uuid4().hex[:8]
    whatsapp = WhatsAppSimulator(accept_any_token=True)
    wa_url = await whatsapp.start()
    gateway_port, metrics_port, gateway_metrics_port = free_port(), free_port(), free_port()
    env = {
        **installed.env,
        "DATABASE_URL": database,
        "BROKER_PREFIX": f"i{tag}",
        "WHATSAPP_API_BASE_URL": wa_url,
        "GATEWAY_PORT": str(gateway_port),
        "METRICS_PORT": str(metrics_port),
        "GATEWAY_METRICS_PORT": str(gateway_metrics_port),
    }
    run = Installed(installed.root, installed.bin, installed.wheel, env)
    try:
        migrated = run.run("chatnation", "migrate")
        assert f"applied {len(list(resource_dir('sql').glob('*.sql')))} migration(s)" in migrated.stdout
        assert "applied 0 migration(s)" in run.run("chatnation", "migrate").stdout
        pnid = f"pn{tag}"
        created = run.run(
            "chatnation", "org", "create", "--name", f"Installed {tag}", "--phone-number-id", pnid,
            "--access-token", f"tok{tag}", "--json",
        )  # fmt: skip
        assert json.loads(created.stdout)[0]["phone_number_id"] == pnid
        for command in (["chatnation-gateway"], ["chatnation-worker", "--role", "all", "--concurrency", "4"]):
            processes.append(
                await asyncio.create_subprocess_exec(
                    str(installed.bin / command[0]),
                    *command[1:],
                    cwd=installed.root,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                for port in (gateway_port, metrics_port):
                    try:
                        if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code != 200:
                            return False
                    except httpx.HTTPError:
                        return False
                return True

            await wait_until(ready, timeout=60, interval=0.2)
            # the gateway's metrics are on their own port, not on the one that faces the internet
            assert (await client.get(f"http://127.0.0.1:{gateway_port}/metrics")).status_code == 404
            exposed = await client.get(f"http://127.0.0.1:{gateway_metrics_port}/metrics")
            assert "chatnation_gateway_requests_total" in exposed.text
        secret = env.get("WHATSAPP_APP_SECRET", "dev-app-secret")
        poster = WebhookPoster(f"http://127.0.0.1:{gateway_port}/webhook", secret)
        user = phone()
        try:
            posted = await SimulatedUser(poster, pnid, "254700000000", user, "Amina").say("hi")
            assert posted.response.status_code == 200
            replies = await whatsapp.wait_for_messages(to=user, count=1, timeout=30)
        finally:
            await poster.aclose()
        assert replies[0]["phone_number_id"] == pnid
        for port in (gateway_port, metrics_port):  # uvicorn's own warning must come out as JSON too
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"NOT HTTP\r\n\r\n")
            await writer.drain()
            writer.close()
    finally:
        await whatsapp.stop()
        for proc in processes:
            proc.send_signal(signal.SIGTERM)
        try:
            outputs = [await asyncio.wait_for(proc.communicate(), timeout=30) for proc in processes]
        finally:
            await _delete_topology(broker, f"i{tag}")  # its quorum queues would stay on the shared broker
        for proc, (_, err) in zip(processes, outputs, strict=True):
            stderr = err.decode()
            # uvicorn re-raises the SIGTERM it handled once it has shut down cleanly
            assert proc.returncode in (0, -signal.SIGTERM), stderr[-3000:]
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert lines, "the process logged nothing"
            records = [json.loads(line) for line in lines]  # LOG_FORMAT=json: every line of the process
            assert any(r.get("logger") == "uvicorn.error" for r in records), stderr[-3000:]


async def _delete_topology(broker: object, prefix: str) -> None:
    from aio_pika.abc import AbstractRobustConnection

    from engine.broker import Topology
    from engine.settings import get_settings

    assert isinstance(broker, AbstractRobustConnection)
    channel = await broker.channel()
    await Topology.from_settings(get_settings().model_copy(update={"broker_prefix": prefix})).delete(channel)
    await channel.close()


def test_finding_no_migrations_is_an_error(tmp_path: Path) -> None:
    from engine.migrate import MigrationsMissing, load_migrations

    with pytest.raises(MigrationsMissing, match="no migrations"):
        load_migrations(tmp_path)
    assert [m.name for m in load_migrations()] == sorted(p.name for p in resource_dir("sql").glob("*.sql"))
