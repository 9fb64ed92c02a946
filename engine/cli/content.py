"""`chatnation import FILE.yaml --org ORG` and `chatnation results survey|poll ID`."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.common import console, emit, pools, run, settings

results_app = typer.Typer(help="Results of surveys and polls.", no_args_is_help=True)
errors = Console(stderr=True)


def import_command(
    file: Path = typer.Argument(
        ..., help="The content file (format: engine/content_import.py, demo/content.yaml)"
    ),
    org: str = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import surveys, events with ticket types, polls and staff; a re-import updates by name."""
    from engine.cli.wallet import resolve_org
    from engine.content_import import ContentError, import_content, load_content

    try:
        content = load_content(file)  # validated whole before anything is written
    except ContentError as err:
        _fail(err.errors)
    s = settings()

    async def body() -> Any:
        async with pools(s) as (_, pool):
            return await import_content(pool, await resolve_org(pool, org), content)

    try:
        summary = run(body)
    except ContentError as err:
        _fail(err.errors)
    kinds = sorted(set(summary.created) | set(summary.updated))
    emit(
        [
            {
                "kind": k,
                "created": summary.created.get(k, 0),
                "updated": summary.updated.get(k, 0),
                "ids": ", ".join(f"{name}={i}" for name, i in summary.ids.get(k, {}).items()),
            }
            for k in kinds
        ],
        as_json=as_json,
        title=f"imported {file}",
    )


def _fail(messages: list[str]) -> None:
    for message in messages:
        errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


async def _tenant_of(owner_url: str, table: str, item_id: UUID) -> UUID:
    """Whose item this is: a cross-tenant lookup, so the owner's job; the reading itself runs confined."""
    import asyncpg

    conn = await asyncpg.connect(owner_url)
    try:
        org_id = await conn.fetchval(f"SELECT organization_id FROM {table} WHERE id = $1", item_id)
    finally:
        await conn.close()
    if org_id is None:
        raise typer.BadParameter(f"no {table[:-1]} {item_id}")
    return org_id


def _read(table: str, item_id: str, reader: Any) -> Any:
    from engine.db import tenant_tx

    try:
        uid = UUID(item_id)
    except ValueError:
        raise typer.BadParameter(f"{item_id!r} is not an id") from None
    s = settings()

    async def body() -> Any:
        async with pools(s) as (urls, pool):
            async with tenant_tx(pool, await _tenant_of(urls.owner, table, uid)) as conn:
                return await reader(conn, uid)

    return run(body)


@results_app.command("survey")
def survey(
    survey_id: str = typer.Argument(..., metavar="ID"),
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write one row per response here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per question: answer counts (choices), values (text), numbers' range; response completion counts."""
    from engine.results import export_survey_csv, survey_results

    async def read(conn: Any, uid: UUID) -> tuple[dict[str, Any], int | None]:
        exported = await export_survey_csv(conn, uid, csv_file) if csv_file else None
        return await survey_results(conn, uid), exported

    result, exported = _read("surveys", survey_id, read)
    if as_json:
        emit([result], as_json=True)
        return
    info = result["survey"]
    table = Table(
        title=f"{info['title']} — {info['completed']} completed, {info['in_progress']} in progress, "
        f"{info['abandoned']} abandoned",
        show_lines=True,
    )
    for column in ("question", "type", "answered", "skipped", "results"):
        table.add_column(column, overflow="fold")
    for q in result["questions"]:
        table.add_row(
            f"{q['id']}: {q['text']}", q["type"], str(q["answered"]), str(q["skipped"]), q["summary"]
        )
    console.print(table)
    if exported is not None:
        console.print(f"{exported} response(s) written to {csv_file}")


@results_app.command("poll")
def poll(
    poll_id: str = typer.Argument(..., metavar="ID"), as_json: bool = typer.Option(False, "--json")
) -> None:
    """Tallies and percentages of voters; exit 1 when poll_options, poll_votes and polls.options disagree."""
    from engine.results import poll_results

    result = _read("polls", poll_id, poll_results)
    info = result["poll"]
    if as_json:
        emit([result], as_json=True)
    else:
        emit(
            [
                {
                    "option": f"{o['id']}: {o['text']}",
                    "votes": o["votes"],
                    "percent": f"{o['percent']}%",
                    "in poll_votes": o["counted_votes"],
                    "in polls.options": o["json_votes"],
                }
                for o in result["options"]
            ],
            as_json=False,
            title=f"{info['question']} — {info['voters']} voter(s)",
        )
    if not info["consistent"]:
        errors.print("[red]error:[/red] the tallies disagree (poll_options vs poll_votes vs polls.options)")
        raise typer.Exit(1)
