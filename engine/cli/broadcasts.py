"""`chatnation broadcast create|list|show|cancel|pause|resume|recipients` (docs/broadcasts.md)."""

from __future__ import annotations

import asyncio
import csv
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import asyncpg
import typer

from engine.cli.common import console, emit, org_tx, pools, run, settings
from engine.cli.errors import NotFound, Refused
from engine.db import DatabaseUrls

app = typer.Typer(
    help="Broadcasts: messages an organisation sends first, to many contacts.", no_args_is_help=True
)
FINAL = ("completed", "cancelled", "blocked")


def _uuid(value: str, what: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise NotFound(f"{what} {value!r} is not an id") from None


def parse_at(value: str | None, zone_name: str) -> datetime | None:
    """ISO 8601; without an offset, in the organisation's time zone."""
    from state_machines.formatting import zone

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(f"--at {value!r} is not an ISO 8601 time (e.g. 2026-12-24T18:00)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone(zone_name))


async def _org_of(urls: DatabaseUrls, broadcast: str) -> tuple[UUID, UUID]:
    """Whose broadcast this is: a cross-tenant read, the owner's (as the scheduler's discovery is)."""
    broadcast_id = _uuid(broadcast, "broadcast")
    conn = await asyncpg.connect(urls.owner)
    try:
        org_id = await conn.fetchval("SELECT organization_id FROM broadcasts WHERE id = $1", broadcast_id)
    finally:
        await conn.close()
    if org_id is None:
        raise NotFound(f"no broadcast {broadcast}")
    return org_id, broadcast_id


@app.command("create")
def create(
    org: str = typer.Option(..., "--org", help="Organisation id or WhatsApp phone_number_id"),
    text: str | None = typer.Option(
        None, "--text", help="Free-form text, sent inside the 24-hour window (with media: its caption)"
    ),
    image: str | None = typer.Option(None, "--image", help="An image: https URL or uploaded media id"),
    video: str | None = typer.Option(None, "--video", help="A video: https URL or uploaded media id"),
    document: str | None = typer.Option(
        None, "--document", help="A document (PDF...): https URL or uploaded media id"
    ),
    template: str | None = typer.Option(None, "--template", help="An approved template's name"),
    language: str | None = typer.Option(None, "--language", help="The template's language code"),
    param: list[str] = typer.Option([], "--param", help="A template body parameter (repeat, in order)"),
    category: str | None = typer.Option(None, "--category", help="marketing | utility | authentication"),
    tag: list[str] = typer.Option([], "--tag", help="Contacts with this tag (repeat: any of them)"),
    exclude_tag: list[str] = typer.Option([], "--exclude-tag", help="Leave out contacts with this tag"),
    event: str | None = typer.Option(
        None, "--event", help="Event id: its ticket holders, {{event}} variables"
    ),
    program: str | None = typer.Option(None, "--program", help="Programme id: its subscribers"),
    ticket_type: str | None = typer.Option(None, "--ticket-type", help="Ticket type id: its holders"),
    survey: str | None = typer.Option(None, "--survey", help="Survey id: who completed it"),
    poll: str | None = typer.Option(None, "--poll", help="Poll id: who voted"),
    profile: list[str] = typer.Option([], "--profile", help="FIELD=VALUE of the contact's profile (repeat)"),
    at: str | None = typer.Option(None, "--at", help="ISO 8601 start; no offset: the organisation's zone"),
    name: str | None = typer.Option(None, "--name"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create a broadcast, due now or --at; prints its id. Text (or media, the text its caption) and template
    together: the free-form message inside a contact's 24-hour window, the template outside it."""
    from engine.broadcast_audience import AudienceError, estimate, normalise
    from engine.broadcasts import BroadcastError, NewBroadcast
    from engine.broadcasts import create as create_broadcast

    media = {k: v for k, v in (("image", image), ("video", video), ("document", document)) if v is not None}
    if len(media) > 1:
        raise Refused("one of --image, --video, --document at most")
    media_type, media_url = next(iter(media.items()), (None, None))
    s = settings()

    async def body() -> dict[str, Any]:
        async with org_tx(s, org) as (conn, org_id):
            org_settings = await conn.fetchval("SELECT settings FROM organizations WHERE id = $1", org_id)
            zone_name = (org_settings or {}).get("timezone") or "Africa/Nairobi"
            audience = {
                "tags": tag,
                "exclude_tags": exclude_tag,
                "program_id": program,
                "ticket_type_id": ticket_type,
                "survey_id": survey,
                "poll_id": poll,
                "profile": _profile(profile),
            }
            new = NewBroadcast(
                name=name,
                text=text,
                media_url=media_url,
                media_type=media_type,
                template_name=template,
                template_language=language,
                template_params=list(param),
                template_category=category,
                audience=audience,
                event_id=_uuid(event, "event") if event else None,
                at=parse_at(at, zone_name),
                created_by="cli",
            )
            try:
                broadcast_id = await create_broadcast(conn, org_id, new)
                matching = await estimate(conn, org_id, normalise(audience | _event(event)))
            except (BroadcastError, AudienceError) as err:
                raise Refused(str(err)) from None
            row = await conn.fetchrow(
                "SELECT status, scheduled_at FROM broadcasts WHERE id = $1", broadcast_id
            )
        return {
            "id": str(broadcast_id),
            "status": row["status"],
            "scheduled_at": row["scheduled_at"],
            "matching_contacts": matching,
        }

    out = run(body)
    if as_json:
        emit([out], as_json=True)
        return
    print(out["id"])
    console.print(
        f"scheduled for {out['scheduled_at']:%Y-%m-%d %H:%M %Z}; {out['matching_contacts']} contacts match now "
        "(resolved when it starts)",
        highlight=False,
        style="dim",
    )


def _profile(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise Refused(f"--profile {pair!r} is not FIELD=VALUE")
        out[field] = value
    return out


def _event(event: str | None) -> dict[str, Any]:
    return {"event_id": event} if event else {}


@app.command("list")
def list_(
    org: str = typer.Option(..., "--org"),
    limit: int = typer.Option(50, min=1),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The organisation's broadcasts, newest first."""
    from engine.broadcast_stats import listing

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            return await listing(conn, limit)

    emit(run(body), as_json=as_json, title=f"broadcasts of {org}", empty=f"no broadcasts for {org}")


async def _stats(urls: DatabaseUrls, pool: asyncpg.Pool, broadcast: str, rate: float) -> dict[str, Any]:
    from engine.broadcast_stats import stats
    from engine.db import tenant_tx

    org_id, broadcast_id = await _org_of(urls, broadcast)
    async with tenant_tx(pool, org_id) as conn:
        out = await stats(conn, broadcast_id, datetime.now(UTC), rate)
    assert out is not None
    return out


@app.command("show")
def show(
    broadcast: str,
    watch: bool = typer.Option(False, "--watch", help="A live progress bar until it ends"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Status, recipients, queued, sent, delivered, read, failed and skipped (with reasons), tokens reserved,
    spent, released and refunded (sends that failed for good), estimated finish."""
    s = settings()
    if watch:
        _watch(s, broadcast)
        return

    async def body() -> dict[str, Any]:
        async with pools(s) as (urls, pool):
            return await _stats(urls, pool, broadcast, s.send_rate_per_second)

    out = run(body)
    if as_json:
        emit([out], as_json=True)
        return
    skipped, failed = out.pop("skipped_by_reason"), out.pop("failed_by_code")
    emit([{"field": k, "value": v} for k, v in out.items()], as_json=False, title=f"broadcast {broadcast}")
    if skipped:
        console.print("skipped: " + ", ".join(f"{k} {v}" for k, v in skipped.items()), highlight=False)
    if failed:
        console.print(
            "failed by error code: " + ", ".join(f"{k} {v}" for k, v in failed.items()), highlight=False
        )


def _watch(s: Any, broadcast: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    async def body() -> None:
        async with pools(s) as (urls, pool):
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=console,
            ) as progress:
                task = progress.add_task("sent", total=None, detail="")
                while True:
                    out = await _stats(urls, pool, broadcast, s.send_rate_per_second)
                    done = out["sent"] + out["skipped"] + _failed_unsent(out)
                    progress.update(
                        task,
                        total=max(out["recipients"], 1),
                        completed=done,
                        description=out["status"],
                        detail=f"delivered {out['delivered']} read {out['read']} failed {out['failed']} "
                        f"skipped {out['skipped']}",
                    )
                    if out["status"] in FINAL:
                        return
                    await asyncio.sleep(1.0)

    run(body)


def _failed_unsent(out: dict[str, Any]) -> int:
    return max(0, out["queued"] - out["sent"] - out["in_flight"])


def _control(action: str, broadcast: str, as_json: bool) -> None:
    from engine.broadcasts import BroadcastError, control
    from engine.db import tenant_tx

    s = settings()

    async def body() -> dict[str, Any]:
        async with pools(s) as (urls, pool):
            org_id, broadcast_id = await _org_of(urls, broadcast)
            try:
                async with tenant_tx(pool, org_id) as conn:
                    return await control(conn, org_id, broadcast_id, action)
            except BroadcastError as err:
                raise Refused(str(err)) from None

    emit([run(body)], as_json=as_json)


@app.command("cancel")
def cancel(broadcast: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Stop sending; what was reserved and not spent goes back to the wallet."""
    _control("cancel", broadcast, as_json)


@app.command("pause")
def pause(broadcast: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Hold the fan-out (sends already queued go out); the reservation stays."""
    _control("pause", broadcast, as_json)


@app.command("resume")
def resume(broadcast: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """Go on after a pause; a blocked broadcast (e.g. after a top-up) is tried again."""
    _control("resume", broadcast, as_json)


@app.command("recipients")
def recipients(
    broadcast: str,
    csv_file: Path = typer.Option(..., "--csv", help="Where to write the recipients"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Every recipient with their status, skip reason or error code and timestamps, as CSV."""
    from engine.broadcast_stats import RECIPIENT_FIELDS
    from engine.broadcast_stats import recipients as recipient_rows
    from engine.db import tenant_tx

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with pools(s) as (urls, pool):
            org_id, broadcast_id = await _org_of(urls, broadcast)
            async with tenant_tx(pool, org_id) as conn:
                return await recipient_rows(conn, broadcast_id)

    started = time.monotonic()
    rows = run(body)
    with csv_file.open("w", newline="") as f:
        fields = list(RECIPIENT_FIELDS)
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in fields})
    summary = {
        "file": str(csv_file),
        "recipients": len(rows),
        "seconds": round(time.monotonic() - started, 2),
    }
    emit([summary], as_json=as_json)
