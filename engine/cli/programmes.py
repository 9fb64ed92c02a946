"""`chatnation programme list|subscribe|unsubscribe` (docs/broadcasts.md); programmes are written in the content
file (`chatnation import`)."""

from __future__ import annotations

from typing import Any

import typer

from engine.cli.common import emit, org_tx, run, settings
from engine.cli.errors import NotFound

app = typer.Typer(help="Programmes: scheduled items to their subscribers.", no_args_is_help=True)


@app.command("list")
def list_(org: str = typer.Option(..., "--org"), as_json: bool = typer.Option(False, "--json")) -> None:
    """The organisation's programmes: schedule, next occurrence, subscribers, items left."""

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            rows = await conn.fetch(
                """SELECT p.id, p.key, p.name, p.schedule_type AS schedule, p.schedule_config->>'time' AS time,
                          p.timezone, p.is_active AS active, p.next_fire_at,
                          (SELECT count(*) FROM program_subscriptions s
                           WHERE s.program_id = p.id AND s.status = 'subscribed') AS subscribers,
                          (SELECT count(*) FROM content_items i
                           WHERE i.program_id = p.id AND i.status = 'scheduled') AS items_left
                   FROM programs p ORDER BY p.created_at"""
            )
            return [dict(r) for r in rows]

    emit(run(body), as_json=as_json, title=f"programmes of {org}", empty=f"no programmes for {org}")


def _subscribe(org: str, key: str, phones: list[str], on: bool, as_json: bool) -> None:
    from engine.programmes import subscribe

    s = settings()

    async def body() -> dict[str, Any]:
        async with org_tx(s, org) as (conn, org_id):
            program_id = await conn.fetchval("SELECT id FROM programs WHERE key = $1 OR id::text = $1", key)
            if program_id is None:
                raise NotFound(f"no programme {key!r} for {org}")
            contacts = {
                r["phone"]: r["id"]
                for r in await conn.fetch(
                    "SELECT id, phone FROM contacts WHERE phone = ANY($1::text[])", phones
                )
            }
            changed = 0
            for phone in phones:
                if phone in contacts:
                    changed += await subscribe(
                        conn, org_id, program_id, contacts[phone], source="operator", on=on
                    )
        return {
            "programme": key,
            "changed": changed,
            "unknown_phones": [p for p in phones if p not in contacts],
        }

    emit([run(body)], as_json=as_json)


@app.command("subscribe")
def subscribe_command(
    key: str,
    phones: list[str],
    org: str = typer.Option(..., "--org"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Subscribe contacts (by phone, as stored: 2547XXXXXXXX) to the programme KEY."""
    _subscribe(org, key, phones, True, as_json)


@app.command("unsubscribe")
def unsubscribe_command(
    key: str,
    phones: list[str],
    org: str = typer.Option(..., "--org"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Take contacts off the programme KEY."""
    _subscribe(org, key, phones, False, as_json)
