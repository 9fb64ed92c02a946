"""The fault suite's session: a private RabbitMQ node and a private PostgreSQL server (restarting them disturbs
nothing else), the engine on them (gateway and WhatsApp simulator in this process, workers as real processes),
and the summary table printed at the end of the session and written to bench/results/faults*.json."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bench.common import RESULTS, create_database, new_tag
from tests.faults.report import table
from tests.faults.services import PrivatePostgres, PrivateRabbit, rabbit_scripts

OUTCOMES: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
async def fault_stack() -> AsyncIterator[Any]:
    from tests.faults.harness import ROLES, FaultStack, Workers, start_engine

    if rabbit_scripts() is None:
        pytest.skip("rabbitmq-server is not installed: the fault suite needs a private RabbitMQ node")
    # A session ended by SIGTERM (e.g. `timeout`) still runs the clean-up below: no orphaned node or server.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    tag = new_tag()
    # Not under pytest's basetemp: another pytest session on the machine deletes all but its 3 newest
    # basetemps, and once took a running suite's PostgreSQL directory with it.
    base = Path(tempfile.mkdtemp(prefix="chatnation-faults-"))
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, base, True)
        cleanup.callback(signal.signal, signal.SIGTERM, previous)
        pg = PrivatePostgres.create(base / "postgres")
        cleanup.callback(pg.destroy)
        rabbit = PrivateRabbit.create(base / "rabbitmq", tag)
        cleanup.callback(rabbit.destroy)
        rabbit.start()
        db_url = await create_database(pg.uri("postgres"), "faults")
        settings, local, app_pool, owner_pool, env = await start_engine(
            cleanup, db_url, rabbit.url, f"faults{tag}"
        )
        workers = Workers(env, base)
        cleanup.callback(workers.stop_all)
        for name in ROLES:
            workers.spawn(name)
        stack = FaultStack(settings, local, workers, app_pool, owner_pool, rabbit, pg)
        await stack.wait_workers()
        yield stack


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not OUTCOMES:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    text = "\nFault injection summary\n" + table(OUTCOMES)
    if reporter is not None:
        reporter.write_line(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "faults.json" if any(o["size"] == "slow" for o in OUTCOMES) else "faults-fast.json"
    Path(RESULTS / name).write_text(json.dumps({"outcomes": OUTCOMES}, indent=1))
