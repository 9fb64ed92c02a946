"""`chatnation parked list|show ID|replay [ID...|--all]|purge [--yes]`: the messages in the parking queue.

A message is parked by a worker (a permanent error, or retries exhausted: its error in ``x-error``) or by
the broker (delivered ``DELIVERY_LIMIT`` times without an ack: it crashed its worker). Fix the cause, then
replay: the message goes back to the exchange and routing key it came from, and the exactly-once receipt
makes a message that had in fact taken effect a no-op.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

from engine.broker import connect
from engine.broker_admin import ParkedMessage, ParkingLot
from engine.cli.common import console, emit, run, settings
from engine.cli.errors import NotFound

app = typer.Typer(help="Parked (dead-lettered) messages: list, show, replay, purge.", no_args_is_help=True)
T = TypeVar("T")


def _with_lot(body: Callable[[ParkingLot], Awaitable[T]]) -> T:
    s = settings()

    async def go() -> T:
        connection = await connect(s)
        try:
            return await body(ParkingLot.of(connection, s))
        finally:
            await connection.close()

    return run(go)


def _body_text(parked: ParkedMessage) -> Any:
    try:
        return json.loads(parked.body)
    except ValueError:
        return parked.body.decode(errors="replace")


@app.command("list")
def list_parked(
    limit: int = typer.Option(100, min=1, help="At most this many, oldest first"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Parked messages with their error, original queue and number of attempts."""
    parked = _with_lot(lambda lot: lot.peek(limit))
    rows = [p.summary() for p in parked]
    if not as_json:
        rows = [{**r, "error": (r["error"] or "")[:80]} for r in rows]
    emit(rows, as_json=as_json, title=f"{len(rows)} parked message(s)", empty="no parked messages")


@app.command("show")
def show(
    message_id: str = typer.Argument(..., metavar="ID"), as_json: bool = typer.Option(False, "--json")
) -> None:
    """One parked message in full: error, headers and body."""
    parked = _with_lot(lambda lot: lot.find(message_id))  # reads the queue up to it, not beyond
    if parked is None:
        raise NotFound(f"no parked message with id {message_id!r}")
    found = [parked]
    docs = [{**p.summary(), "headers": p.headers, "body": _body_text(p)} for p in found]
    if as_json:
        print(json.dumps(docs, default=str, indent=2))
        return
    for doc in docs:
        console.print_json(json.dumps(doc, default=str))


@app.command("replay")
def replay(
    message_ids: list[str] = typer.Argument(None, metavar="[ID]...", help="Ids from `parked list`"),
    replay_all: bool = typer.Option(False, "--all", help="Every message parked now"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Publish parked messages back where they came from; each leaves parking once the broker confirmed it."""
    if bool(message_ids) == replay_all:
        raise typer.BadParameter("give message ids or --all (not both)")
    ids = None if replay_all else set(message_ids)
    replayed, failed = _with_lot(lambda lot: lot.replay(ids))
    rows = [{**p.summary(), "replayed": True} for p in replayed]
    rows += [{**p.summary(), "replayed": False, "error": error} for p, error in failed]
    emit(rows, as_json=as_json, title=f"{len(replayed)} replayed, {len(failed)} failed")
    missing = (ids or set()) - {p.id for p in replayed} - {p.id for p, _ in failed}
    if missing:
        console.print(f"not in parking: {', '.join(sorted(missing))}", style="yellow")
    if failed or missing:
        raise typer.Exit(1)


@app.command("purge")
def purge(yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation")) -> None:
    """Delete every parked message (they are gone for good)."""
    if not yes:
        count = _with_lot(lambda lot: lot.count())
        typer.confirm(f"Delete {count} parked message(s) for good?", abort=True)
    purged = _with_lot(lambda lot: lot.purge())
    console.print(f"purged {purged} parked message(s)")
