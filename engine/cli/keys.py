"""`chatnation keys create|list|revoke`: the REST API's keys (engine/api_keys.py, docs/api.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import typer

from engine.cli.common import console, emit, org_tx, run, settings
from engine.cli.errors import NotFound, Refused

app = typer.Typer(help="API keys of the REST API: create (shown once), list, revoke.", no_args_is_help=True)
ORG = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id")


def _expiry(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"not a date: {value!r} (YYYY-MM-DD or an ISO 8601 time)") from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    if when <= datetime.now(UTC):
        raise typer.BadParameter(f"{value} is in the past")
    return when


@app.command("create")
def create(
    org: str = ORG,
    scope: list[str] = typer.Option(
        [], "--scope", help="RESOURCE[:read|write], read, write or * (repeat it); default: read"
    ),
    expires: str | None = typer.Option(None, "--expires", help="Expiry: a date (UTC midnight) or a time"),
    name: str = typer.Option("api", "--name", help="What the key is for"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a key; it is printed once (only its hash is stored)."""
    from engine.api_keys import DEFAULT_SCOPES, ScopeError, create_key, parse_scopes

    try:
        scopes = parse_scopes(scope or DEFAULT_SCOPES)
    except ScopeError as err:
        raise typer.BadParameter(str(err)) from None
    expires_at = _expiry(expires)
    s = settings()

    async def body() -> dict[str, Any]:
        async with org_tx(s, org) as (conn, org_id):
            made = await create_key(conn, org_id, name=name, scopes=scopes, expires_at=expires_at)
            return {
                "id": str(made.id),
                "organization_id": str(org_id),
                "key": made.key,
                "prefix": made.prefix,
                "scopes": made.scopes,
                "expires_at": made.expires_at.isoformat() if made.expires_at else None,
            }

    made = run(body)
    if as_json:
        print(json.dumps(made, indent=2))
        return
    console.print(f"key {made['id']} ({', '.join(made['scopes'])})", highlight=False)
    console.print(made["key"], highlight=False, soft_wrap=True)
    console.print("[yellow]shown once: only its hash is stored[/yellow]")


@app.command("list")
def list_command(org: str = ORG, as_json: bool = typer.Option(False, "--json")) -> None:
    """The organisation's keys: prefix, scopes, expiry, last use, revocation (never the key)."""
    from engine.api_keys import list_keys

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            return await list_keys(conn)

    rows = run(body)
    if not as_json:
        rows = [{**r, "scopes": " ".join(r["scopes"] or [])} for r in rows]
    emit(rows, as_json=as_json, title=f"API keys of {org}", empty=f"no API keys for {org}")


@app.command("revoke")
def revoke(
    key: str = typer.Argument(..., help="The key's id or its prefix"),
    org: str = ORG,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Revoke a key: every request with it is refused from now on."""
    from engine.api_keys import revoke_key

    if key.startswith("cn_live_") and len(key) > 12:
        raise Refused("give the key's id or prefix (`chatnation keys list`), not the key")
    s = settings()

    async def body() -> dict[str, Any] | None:
        async with org_tx(s, org) as (conn, org_id):
            return await revoke_key(conn, key)

    row = run(body)
    if row is None:
        raise NotFound(f"no API key {key!r} of {org}")
    emit([row], as_json=as_json)
