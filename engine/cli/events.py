"""`chatnation event qr --event ID --booth K12 --out k12.png` and `chatnation leads export --event ID [--booth K12]`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import typer

from engine.cli.common import console, pools, resolve_org, run, settings
from engine.cli.errors import NotFound, Refused

event_app = typer.Typer(help="Events: booth QR codes.", no_args_is_help=True)
leads_app = typer.Typer(help="Exhibitors' leads.", no_args_is_help=True)


async def _event_org(urls: Any, pool: asyncpg.Pool, event: str, org: str | None) -> tuple[UUID, UUID]:
    """(organisation, event): the event by id; its organisation from ``--org`` or, without it, looked up by
    the database owner (an event id names one organisation)."""

    try:
        event_id = UUID(event)
    except ValueError:
        raise NotFound(f"not an event id: {event!r}") from None
    if org is not None:
        return await resolve_org(pool, org), event_id
    conn = await asyncpg.connect(urls.owner)
    try:
        org_id = await conn.fetchval("SELECT organization_id FROM events WHERE id = $1", event_id)
    finally:
        await conn.close()
    if org_id is None:
        raise NotFound(f"no event {event}")
    return org_id, event_id


@event_app.command("qr")
def qr(
    event: str = typer.Option(..., "--event", help="The event's id"),
    booth: str = typer.Option(..., "--booth", help="The booth code, e.g. K12"),
    out: Path = typer.Option(..., "--out", help="Where to write the PNG"),
    org: str | None = typer.Option(
        None, "--org", help="The organisation: id or phone_number_id (default: the event's)"
    ),
    number: str | None = typer.Option(
        None, "--number", help="The WhatsApp number (default: the organisation's phone)"
    ),
) -> None:
    """The booth's QR code: a wa.me link to the organisation's number with "BOOTH K12" prefilled."""
    from engine.db import tenant_tx
    from engine.leads import LeadsError, booth_exhibitor, booth_link, qr_png

    s = settings()

    async def body() -> tuple[str, str]:
        async with pools(s) as (urls, pool):
            org_id, event_id = await _event_org(urls, pool, event, org)
            async with tenant_tx(pool, org_id) as conn:
                if await conn.fetchval("SELECT id FROM events WHERE id = $1", event_id) is None:
                    raise NotFound(f"no event {event} in that organisation")
                exhibitor = await booth_exhibitor(conn, event_id, booth)
                if exhibitor is None:
                    raise NotFound(f"no exhibitor at booth {booth.upper()} in that event")
                phone = number or await conn.fetchval("SELECT phone FROM organizations WHERE id = $1", org_id)
            if not phone:
                raise Refused("the organisation has no WhatsApp number on record: pass --number 2547XXXXXXXX")
            try:
                return booth_link(phone, booth), exhibitor["name"]
            except LeadsError as err:
                raise Refused(str(err)) from None

    link, name = run(body)
    out.write_bytes(qr_png(link))
    console.print(f"{out}: {name}, booth {booth.upper()} → {link}", highlight=False, soft_wrap=True)


@leads_app.command("export")
def export(
    event: str = typer.Option(..., "--event", help="The event's id"),
    booth: str | None = typer.Option(None, "--booth", help="One exhibitor's leads: its booth code"),
    out: Path | None = typer.Option(None, "--out", help="Write the CSV here (default: standard output)"),
    org: str | None = typer.Option(
        None, "--org", help="The organisation: id or phone_number_id (default: the event's)"
    ),
) -> None:
    """Leads as CSV, with the consent each visitor gave (when and the words they agreed to)."""
    from engine.db import tenant_tx
    from engine.leads import booth_exhibitor, lead_rows, to_csv

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with pools(s) as (urls, pool):
            org_id, event_id = await _event_org(urls, pool, event, org)
            async with tenant_tx(pool, org_id) as conn:
                if await conn.fetchval("SELECT id FROM events WHERE id = $1", event_id) is None:
                    raise NotFound(f"no event {event} in that organisation")
                if booth is not None and await booth_exhibitor(conn, event_id, booth) is None:
                    raise NotFound(f"no exhibitor at booth {booth.upper()} in that event")
                return await lead_rows(conn, event_id, booth)

    text = to_csv(run(body))
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"{out}: {text.count(chr(10)) - 1} leads", highlight=False)
