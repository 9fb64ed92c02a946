"""`chatnation queues [--watch] [--interval S] [--max-ready N] [--max-parked N] [--json]`: the engine's queues
(inbound shards, payments, outbound shards, parking) with ready, unacked, consumers and rates.

Exit code 3 when a threshold given on the command line is crossed (with --watch: by the last sample shown
when you stop it), so that the command can serve as a check in scripts and cron jobs.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import typer
from rich.live import Live
from rich.table import Table

from engine.broker import Topology, connect
from engine.broker_admin import QueueInspector, QueueStats, queue_kind
from engine.cli.common import console, emit, run, settings
from engine.settings import Settings

THRESHOLD_CROSSED = 3


@dataclass(frozen=True)
class Thresholds:
    max_ready: int | None = None  # for every queue but parking
    max_parked: int | None = None

    def crossed(self, kind: str, stats: QueueStats) -> bool:
        limit = self.max_parked if kind == "parking" else self.max_ready
        if limit is None or stats.ready is None:
            return False
        waiting = stats.ready + ((stats.unacked or 0) if kind == "parking" else 0)
        return waiting > limit


def rows_of(
    topology: Topology, stats: list[QueueStats], thresholds: Thresholds, source: str
) -> list[dict[str, Any]]:
    rows = []
    for s in stats:
        kind = queue_kind(topology, s.name)
        rows.append(
            {
                "queue": s.name,
                "kind": kind,
                "exists": s.exists,
                "ready": s.ready,
                "unacked": s.unacked,
                "consumers": s.consumers,
                "publish_rate": _round(s.publish_rate),
                "deliver_rate": _round(s.deliver_rate),
                "growth_rate": _round(s.growth_rate),
                "over_threshold": thresholds.crossed(kind, s),
                "source": source,
            }
        )
    return rows


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render(rows: list[dict[str, Any]], source: str) -> Table:
    table = Table(
        title=f"queues (figures: {'AMQP + management API' if source == 'management' else 'AMQP only'})"
    )
    for column in ("queue", "ready", "unacked", "consumers", "in/s", "out/s", "growth/s"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for r in rows:
        if not r["exists"]:
            table.add_row(r["queue"], "missing", "", "", "", "", "", style="yellow")
            continue
        table.add_row(
            r["queue"],
            *(
                _cell(r[k])
                for k in ("ready", "unacked", "consumers", "publish_rate", "deliver_rate", "growth_rate")
            ),
            style="bold red" if r["over_threshold"] else None,
        )
    return table


async def _sample(
    inspector: QueueInspector, topology: Topology, thresholds: Thresholds
) -> list[dict[str, Any]]:
    stats = await inspector.sample(topology.all_queues())
    return rows_of(topology, stats, thresholds, inspector.source)


async def _show(
    s: Settings,
    thresholds: Thresholds,
    watch: bool,
    interval: float,
    as_json: bool,
    last: list[list[dict[str, Any]]],
) -> None:
    """Shows one sample, or samples until interrupted; ``last`` holds the latest rows for the exit code."""
    topology = Topology.from_settings(s)
    connection = await connect(s)
    inspector = QueueInspector(s, connection)
    try:
        rows = await _sample(inspector, topology, thresholds)
        last[:] = [rows]
        if not watch:
            if as_json:
                emit(rows, as_json=True)
            else:
                console.print(render(rows, inspector.source))
            return
        if as_json:  # one JSON document per line and sample
            while True:
                print(json.dumps(rows), flush=True)
                await asyncio.sleep(interval)
                last[:] = [rows := await _sample(inspector, topology, thresholds)]
        with Live(render(rows, inspector.source), console=console, auto_refresh=False) as live:
            while True:
                await asyncio.sleep(interval)
                last[:] = [rows := await _sample(inspector, topology, thresholds)]
                live.update(render(rows, inspector.source), refresh=True)
    finally:
        await inspector.aclose()
        await connection.close()


def queues(
    watch: bool = typer.Option(False, "--watch", help="Refresh until interrupted"),
    interval: float = typer.Option(2.0, "--interval", min=0.5, help="Seconds between samples with --watch"),
    max_ready: int | None = typer.Option(
        None, "--max-ready", min=0, help="Exit 3 when a work queue has more ready"
    ),
    max_parked: int | None = typer.Option(None, "--max-parked", min=0, help="Exit 3 when parking holds more"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Depth, consumers and rates of every queue of the engine."""
    s = settings()
    thresholds = Thresholds(max_ready, max_parked)
    last: list[list[dict[str, Any]]] = []
    try:
        run(lambda: _show(s, thresholds, watch, interval, as_json, last))
    except KeyboardInterrupt:
        pass
    if last and any(r["over_threshold"] for r in last[-1]):
        raise typer.Exit(THRESHOLD_CROSSED)
