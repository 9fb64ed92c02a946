"""ChatNation worker: ``python worker.py --role inbound|relay|sender|cards|scheduler|all [--concurrency N] [--processes N]``.

settings -> runtime (pools, broker, HTTP clients) -> roles consume -> route -> one transaction -> ack.
SIGTERM: stop taking work, finish what runs (or leave it unacked for redelivery), close within the grace.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer

from engine.logging import configure_logging, get_logger
from engine.settings import Settings, get_settings

if TYPE_CHECKING:
    from engine.runtime import Runtime

ROLES = {
    "inbound": {"inbound"},
    "relay": {"relay"},
    "sender": {"sender"},
    "cards": {"cards"},
    "scheduler": {"scheduler"},
    "all": {"inbound", "relay", "sender", "cards", "scheduler"},
}
cli = typer.Typer(add_completion=False)


async def run(role: str, concurrency: int, metrics_port: int) -> None:
    from engine.roles import run_roles
    from engine.worker_http import create_app, serve

    settings = get_settings()
    log = get_logger("worker").bind(role=role, pid=os.getpid())
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    rt = await _start_runtime(settings, stop, log)
    if rt is None:
        return

    async def ready() -> bool:
        try:
            return not rt.connection.is_closed and await rt.app_pool.fetchval("SELECT true")
        except Exception:
            return False

    # What start-up built (modules, settings, pools) lives as long as the process: out of the collector's reach,
    # so that its full collections scan only what the work creates. A full collection of it took 130-460 ms in a
    # sender as a broadcast began (every send of those moments late, and the number's later slots moved).
    gc.collect()
    gc.freeze()
    http = asyncio.create_task(serve(create_app(ready), settings.metrics_host, metrics_port, stop))
    log.info("worker started", roles=sorted(ROLES[role]), concurrency=concurrency, metrics_port=metrics_port)
    try:
        await run_roles(rt, ROLES[role], concurrency, stop)
    finally:
        stop.set()
        await http
        await rt.close()
        log.info("worker stopped")


async def _start_runtime(settings: Settings, stop: asyncio.Event, log: Any) -> Runtime | None:
    """Connect, waiting out a database or broker that is not up yet (an orchestrator may start us first)."""
    from engine.runtime import Runtime

    delay = 0.5
    while not stop.is_set():
        try:
            return await Runtime.start(settings)
        except Exception as err:
            log.warning("waiting for the database and the broker", error=repr(err), retry_in=delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, 10)
    return None


def _child(role: str, concurrency: int, metrics_port: int) -> None:
    configure_logging(get_settings())
    asyncio.run(run(role, concurrency, metrics_port))


@cli.command()
def main(
    role: str = typer.Option("all", help="inbound | relay | sender | cards | scheduler | all"),
    concurrency: int = typer.Option(
        32, min=1, help="Events handled at once per process (different contacts)"
    ),
    processes: int = typer.Option(1, min=1, help="Processes of this role under one supervisor"),
    metrics_port: int | None = typer.Option(None, help="Default METRICS_PORT (+i for the i-th process)"),
) -> None:
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}")
    settings = get_settings()
    configure_logging(settings)
    port = settings.metrics_port if metrics_port is None else metrics_port
    if processes == 1:
        asyncio.run(run(role, concurrency, port))
        return
    supervise(role, concurrency, processes, port)


@dataclass
class RestartBackoff:
    """When to restart a child that died: at once after a good run, then ever longer while it keeps dying soon
    after starting (a bad setting, a port taken), so that a crash loop does not spin the machine."""

    first: float = 0.5
    most: float = 60.0
    healthy_after: float = 60.0  # a child that lived this long starts the sequence again
    failures: int = 0

    def delay(self, lived: float) -> float:
        self.failures = 0 if lived >= self.healthy_after else self.failures + 1
        return 0.0 if self.failures == 0 else min(self.most, self.first * 2 ** (self.failures - 1))


def supervise(role: str, concurrency: int, processes: int, port: int) -> None:
    """N children; a child that dies is restarted (backing off while it keeps dying); SIGTERM is passed on and
    waited for."""
    ctx = multiprocessing.get_context("spawn")
    log = get_logger("supervisor")
    children = {i: ctx.Process(target=_child, args=(role, concurrency, port + i)) for i in range(processes)}
    started = dict.fromkeys(children, time.monotonic())
    backoff = {i: RestartBackoff() for i in children}
    restart_at: dict[int, float] = {}
    for child in children.values():
        child.start()
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for child in children.values():
            if child.is_alive():
                os.kill(child.pid or 0, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        for i, child in list(children.items()):
            child.join(timeout=0.5 / processes)
            if child.is_alive() or stopping:
                continue
            now = time.monotonic()
            if i not in restart_at:
                delay = backoff[i].delay(now - started[i])
                restart_at[i] = now + delay
                log.warning(
                    "worker process died; restarting", index=i, exitcode=child.exitcode, in_seconds=delay
                )
            if now >= restart_at[i]:
                del restart_at[i]
                children[i] = ctx.Process(target=_child, args=(role, concurrency, port + i))
                children[i].start()
                started[i] = now
        if stopping and not any(c.is_alive() for c in children.values()):
            break
    sys.exit(0)


if __name__ == "__main__":
    cli()
