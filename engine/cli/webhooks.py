"""`chatnation webhooks add|list|remove|deliveries|redeliver`: event webhooks out to the CRM (engine/webhooks.py)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import typer

from engine.cli.common import console, emit, org_tx, run, settings
from engine.cli.errors import NotFound, Refused

app = typer.Typer(help="Event webhooks to the CRM: endpoints and their deliveries.", no_args_is_help=True)
ORG = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id")


def _uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise typer.BadParameter(f"not a {what} id: {value!r}") from None


def _tenant(org: str, work: Any) -> Any:

    s = settings()

    async def body() -> Any:
        async with org_tx(s, org) as (conn, org_id):
            return await work(conn, org_id, s)

    return run(body)


@app.command("add")
def add(
    url: str = typer.Argument(..., help="Where events are POSTed (https; http outside production)"),
    org: str = ORG,
    event: list[str] = typer.Option(..., "--event", help="An event type (repeat it): survey.completed, …"),
    description: str | None = typer.Option(None, "--description"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register an endpoint; its signing secret is printed once."""
    from engine import webhooks

    async def work(conn: Any, org_id: UUID, s: Any) -> dict[str, Any]:
        try:
            return await webhooks.create_endpoint(conn, org_id, url, event, s, description)
        except webhooks.WebhookError as err:
            raise Refused(str(err)) from None

    made = _tenant(org, work)
    if as_json:
        print(json.dumps(made, default=str, indent=2))
        return
    console.print(f"endpoint {made['id']} for {', '.join(made['events'])}", highlight=False)
    console.print(f"signing secret: {made['secret']}", highlight=False, soft_wrap=True)
    console.print("[yellow]shown once: it signs X-ChatNation-Signature (docs/api.md)[/yellow]")


@app.command("list")
def list_command(org: str = ORG, as_json: bool = typer.Option(False, "--json")) -> None:
    """The organisation's endpoints (never their secrets)."""
    from engine import webhooks

    async def work(conn: Any, org_id: UUID, s: Any) -> list[dict[str, Any]]:
        return await webhooks.list_endpoints(conn)

    rows = _tenant(org, work)
    if not as_json:
        rows = [{**r, "events": " ".join(r["events"])} for r in rows]
    emit(rows, as_json=as_json, title=f"webhooks of {org}", empty=f"no webhook endpoints for {org}")


@app.command("remove")
def remove(endpoint: str = typer.Argument(..., help="The endpoint's id"), org: str = ORG) -> None:
    """Stop sending events to an endpoint (its deliveries stay listed)."""
    from engine import webhooks

    endpoint_id = _uuid(endpoint, "webhook endpoint")

    async def work(conn: Any, org_id: UUID, s: Any) -> bool:
        return await webhooks.remove_endpoint(conn, endpoint_id)

    if not _tenant(org, work):
        raise NotFound(f"no active webhook endpoint {endpoint} of {org}")
    console.print(f"endpoint {endpoint} removed", highlight=False)


@app.command("deliveries")
def deliveries(
    org: str = ORG,
    endpoint: str | None = typer.Option(None, "--endpoint", help="Only this endpoint's"),
    status: str | None = typer.Option(None, "--status", help="pending, delivered or failed"),
    limit: int = typer.Option(50, min=1, max=1000),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Deliveries, newest first: event, status, attempts, the last answer or error."""
    from engine import webhooks

    endpoint_id = _uuid(endpoint, "webhook endpoint") if endpoint else None
    if status not in (None, "pending", "delivered", "failed"):
        raise typer.BadParameter("--status is pending, delivered or failed")

    async def work(conn: Any, org_id: UUID, s: Any) -> list[dict[str, Any]]:
        return await webhooks.list_deliveries(conn, endpoint_id=endpoint_id, status=status, limit=limit)

    emit(_tenant(org, work), as_json=as_json, title=f"webhook deliveries of {org}", empty="no deliveries")


@app.command("redeliver")
def redeliver(delivery: str = typer.Argument(..., help="The delivery's id"), org: str = ORG) -> None:
    """Send a delivery again now (a failed one too), its attempts counted afresh."""
    from engine import webhooks

    delivery_id = _uuid(delivery, "delivery")

    async def work(conn: Any, org_id: UUID, s: Any) -> dict[str, Any] | None:
        return await webhooks.redeliver(conn, delivery_id)

    if _tenant(org, work) is None:
        raise NotFound(f"no webhook delivery {delivery} of {org}")
    console.print(f"delivery {delivery} due again", highlight=False)
