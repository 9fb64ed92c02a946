"""`chatnation import FILE.yaml --org ORG`, `chatnation content list --org ORG` and
`chatnation results survey|poll ID_OR_TITLE`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from engine.cli.common import console, emit, org_pool, org_tx, pools, resolve_org, run, settings
from engine.cli.errors import NotFound

results_app = typer.Typer(help="Results of surveys and polls.", no_args_is_help=True)
content_app = typer.Typer(help="An organisation's surveys, events and polls.", no_args_is_help=True)
errors = Console(stderr=True)


def import_command(
    file: Path = typer.Argument(
        ..., help="The content file (format: engine/content_import.py, demo/content.yaml)"
    ),
    org: str = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id"),
    set_language: bool = typer.Option(
        False, "--set-language", help="Let the file's organization.language replace the organisation's"
    ),
    as_json: bool = typer.Option(
        False, "--json", help="A JSON object: created, updated, ids by kind and name"
    ),
) -> None:
    """Import surveys, events with ticket types, polls and staff; a re-import updates by name."""
    from engine.content_import import ContentError, import_content, load_content

    try:
        content = load_content(file)  # validated whole before anything is written
    except ContentError as err:
        _fail(err.errors)
    s = settings()

    async def body() -> Any:
        async with org_pool(s, org) as (pool, org_id):
            return await import_content(pool, org_id, content, set_language=set_language)

    try:
        summary = run(body)
    except ContentError as err:
        _fail(err.errors)
    if as_json:
        print(
            json.dumps(
                {
                    "created": summary.created,
                    "updated": summary.updated,
                    "ids": summary.ids,
                    "notes": summary.notes,
                },
                indent=2,
            )
        )
        return
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
        as_json=False,
        title=f"imported {file}",
    )
    for note in summary.notes:
        errors.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)


def _fail(messages: list[str]) -> None:
    for message in messages:
        errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


# what names an item when no id is given: its natural key (the content import's)
_NAMES = {"surveys": "title", "polls": "question", "events": "name"}


async def _locate(owner_url: str, table: str, item: str, org: UUID | None) -> tuple[UUID, UUID]:
    """(item id, organisation) of an id, or of a title (question, name) unique among the organisations
    (within ``--org`` when given). A cross-tenant lookup, so the owner's job; the reading itself runs confined."""
    import asyncpg

    try:
        uid: UUID | None = UUID(item)
    except ValueError:
        uid = None
    conn = await asyncpg.connect(owner_url)
    try:
        if uid is not None:
            rows = await conn.fetch(f"SELECT id, organization_id FROM {table} WHERE id = $1", uid)
        else:
            rows = await conn.fetch(
                f"""SELECT id, organization_id FROM {table}
                    WHERE lower({_NAMES[table]}) = lower($1) AND ($2::uuid IS NULL OR organization_id = $2)
                    ORDER BY created_at""",
                item.strip(),
                org,
            )
    finally:
        await conn.close()
    kind = table[:-1]
    if not rows:
        raise NotFound(f"no {kind} {item!r}; `chatnation content list --org ORG` lists them")
    if len(rows) > 1:
        found = ", ".join(str(r["id"]) for r in rows)
        raise typer.BadParameter(f"{len(rows)} {table} are called {item!r} ({found}): give the id, or --org")
    return rows[0]["id"], rows[0]["organization_id"]


def _read(table: str, item: str, org: str | None, reader: Any) -> Any:
    from engine.db import tenant_tx

    s = settings()

    async def body() -> Any:
        async with pools(s) as (urls, pool):
            org_id = await resolve_org(pool, org) if org else None
            uid, tenant = await _locate(urls.owner, table, item, org_id)
            async with tenant_tx(pool, tenant) as conn:
                return await reader(conn, uid)

    return run(body)


ORG_FILTER = typer.Option(None, "--org", help="The organisation (id or phone_number_id), to find a title in")


@content_app.command("list")
def list_content(
    org: str = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Surveys, events, polls and programmes of an organisation with their ids, state and counts."""
    from engine.results import content_list

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            rows = await content_list(conn)
            return [{k: v for k, v in r.items() if k != "created_at"} for r in rows]

    emit(run(body), as_json=as_json, title=f"content of {org}")


@results_app.command("survey")
def survey(
    survey_id: str = typer.Argument(..., metavar="ID_OR_TITLE"),
    org: str | None = ORG_FILTER,
    csv_file: Path | None = typer.Option(None, "--csv", help="Also write one row per response here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Per question: answer counts (choices), values (text), numbers' range; response completion counts."""
    from engine.results import export_survey_csv, survey_results

    async def read(conn: Any, uid: UUID) -> tuple[dict[str, Any], int | None]:
        exported = await export_survey_csv(conn, uid, csv_file) if csv_file else None
        return await survey_results(conn, uid), exported

    result, exported = _read("surveys", survey_id, org, read)
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
    poll_id: str = typer.Argument(..., metavar="ID_OR_QUESTION"),
    org: str | None = ORG_FILTER,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tallies and percentages of voters; exit 1 when poll_options, poll_votes and polls.options disagree."""
    from engine.results import poll_results

    result = _read("polls", poll_id, org, poll_results)
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
