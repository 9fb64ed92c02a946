"""`chatnation contacts import --org ORG FILE.csv` and `chatnation contacts tag --org ORG --tag T PHONE...`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from engine.cli.common import console, emit, org_pool, run, settings

app = typer.Typer(help="Contacts to reach: import them from a CSV, tag them.", no_args_is_help=True)
ORG = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id")
REGION = typer.Option("KE", "--region", help="Where numbers written without a country code are (ISO code)")


@app.command("import")
def import_(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, readable=True, help="CSV with a header line"
    ),
    org: str = ORG,
    region: str = REGION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Columns: phone (required), name, tags (separated by ; or |), consent (yes/no), consent_source,
    consent_date, language. Good rows are imported, bad ones listed with their line; exit 1 if any was bad."""
    from engine.contacts import import_contacts, parse_csv

    try:
        rows, rejected = parse_csv(file.read_text(encoding="utf-8-sig"), region=region.upper())
    except (ValueError, UnicodeDecodeError) as err:
        raise typer.BadParameter(str(err), param_hint="FILE") from None
    s = settings()

    async def body() -> Any:
        async with org_pool(s, org) as (pool, org_id):
            return await import_contacts(pool, org_id, rows)

    result = run(body)
    bad = [{"line": r.line, "phone": r.value, "problem": r.problem} for r in rejected]
    if as_json:
        emit([{"created": result.created, "updated": result.updated, "rejected": bad}], as_json=True)
    else:
        console.print(
            f"imported {result.imported} contacts ({result.created} new, {result.updated} updated)"
            + (f"; {len(bad)} rows rejected:" if bad else ""),
            highlight=False,
        )
        if bad:
            emit(bad, as_json=False)
    if bad:
        raise typer.Exit(1)


@app.command("tag")
def tag(
    phones: list[str] = typer.Argument(..., help="Phone numbers"),
    org: str = ORG,
    tags: list[str] = typer.Option(..., "--tag", help="A tag (repeat for more)"),
    remove: bool = typer.Option(False, "--remove", help="Take the tags away instead"),
    region: str = REGION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Tag contacts by phone number; numbers that are not contacts (or not numbers) are listed, exit 1."""
    from engine.contacts import tag_contacts

    s = settings()

    async def body() -> Any:
        async with org_pool(s, org) as (pool, org_id):
            try:
                return await tag_contacts(pool, org_id, tags, phones, remove=remove, region=region.upper())
            except ValueError as err:
                raise typer.BadParameter(str(err), param_hint="--tag") from None

    result = run(body)
    rows = (
        [{"phone": p, "result": "untagged" if remove else "tagged"} for p in result.tagged]
        + [{"phone": p, "result": "not a contact (import it first)"} for p in result.not_found]
        + [{"phone": r.value, "result": r.problem} for r in result.rejected]
    )
    emit(rows, as_json=as_json, title=", ".join(tags))
    if result.not_found or result.rejected:
        raise typer.Exit(1)
