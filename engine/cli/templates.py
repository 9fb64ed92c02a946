"""`chatnation templates sync|list --org ORG`: an organisation's WhatsApp message templates."""

from __future__ import annotations

from typing import Any

import typer

from engine.cli.common import emit, org_pool, org_tx, run, settings
from engine.cli.errors import NotFound

app = typer.Typer(
    help="WhatsApp message templates (what may be sent outside the 24-hour window).", no_args_is_help=True
)
ORG = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id")


@app.command("sync")
def sync(org: str = ORG, as_json: bool = typer.Option(False, "--json")) -> None:
    """Fetch the templates of the organisation's business account from the Cloud API (every page)."""
    from engine.templates import sync_templates
    from engine.whatsapp.client import CloudApiClient, new_session
    from engine.whatsapp.outbound import ApiError

    s = settings()

    async def body() -> dict[str, Any]:
        async with org_pool(s, org) as (pool, org_id), new_session() as session:
            client = CloudApiClient(session, str(s.whatsapp_api_base_url), s.whatsapp_api_version)
            try:
                result = await sync_templates(pool, org_id, client)
            except LookupError as err:
                raise NotFound(str(err)) from None
            except ApiError as err:
                raise NotFound(f"the Cloud API refused the template list: {err}") from None
            return {"organization_id": str(org_id), **result.__dict__}

    emit([run(body)], as_json=as_json)


@app.command("list")
def list_(org: str = ORG, as_json: bool = typer.Option(False, "--json")) -> None:
    """The organisation's templates as last synced: name, language, category, status, quality, parameters."""
    from engine.templates import list_templates, placeholders

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            return await list_templates(conn, org_id)

    rows = run(body)
    if as_json:
        emit(rows, as_json=True)
        return
    table = [
        {
            "name": r["name"],
            "language": r["language"],
            "category": r["category"],
            "status": r["status"] + (f" ({r['status_reason']})" if r["status_reason"] else ""),
            "quality": r["quality"],
            "body parameters": sum(
                len(placeholders(c.get("text")))
                for c in r["components"]
                if str(c.get("type", "")).upper() == "BODY"
            ),
        }
        for r in rows
    ]
    emit(
        table,
        as_json=False,
        title=f"templates of {org}",
        empty="no templates; `chatnation templates sync --org ORG`",
    )
