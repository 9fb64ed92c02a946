"""The operator console: one server-rendered page in the API process, behind the operator key (API_OPERATOR_KEY;
unset: no console). Queues (ready, unacked, consumers, rates), workers and their shards, parked messages (list,
show, replay), organisations with their balances and paused state, broadcasts in progress, handovers waiting.

Cross-tenant and the broker's: the operator's view, so it reads with the owner's connection and the broker's
management figures, like the CLI's `queues`, `workers`, `parked` and `org list`. Signing in posts the key once;
the page keeps an HttpOnly cookie holding an HMAC of it (never the key), refreshed every 10 seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qs, quote

import asyncpg
from fastapi import APIRouter, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from engine.settings import Settings

router = APIRouter(prefix="/console", include_in_schema=False)
COOKIE = "cn_console"
REFRESH_SECONDS = 10
REPLAY_TRIES = 20


@dataclass
class ConsoleState:
    settings: Settings
    owner: asyncpg.Pool | None = None
    connection: Any = None
    inspector: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    async def pool(self) -> asyncpg.Pool:
        if self.owner is None:
            from engine.db import create_pool, database_urls

            self.owner = await create_pool((await database_urls(self.settings)).owner, max_size=2)
        return self.owner

    async def broker(self) -> Any:
        if self.connection is None:
            from engine.broker import connect
            from engine.broker_admin import QueueInspector

            self.connection = await connect(self.settings)
            self.inspector = QueueInspector(self.settings, self.connection)
        return self.connection

    async def close(self) -> None:
        if self.inspector is not None:
            await self.inspector.aclose()
        if self.connection is not None:
            await self.connection.close()
        if self.owner is not None:
            await self.owner.close()


def _token(key: str) -> str:
    return hmac.new(key.encode(), b"chatnation-console", hashlib.sha256).hexdigest()


def _signed_in(request: Request) -> bool:
    key = request.app.state.settings.api_operator_key
    cookie = request.cookies.get(COOKIE, "")
    return bool(key) and hmac.compare_digest(cookie, _token(key))


def _page(title: str, body: str, *, refresh: bool = False) -> str:
    meta = f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">' if refresh else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}
<title>{escape(title)} · ChatNation console</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2733; background: #f6f8fa; }}
h1 {{ font-size: 20px; margin: 0 0 16px; }} h2 {{ font-size: 16px; margin: 24px 0 8px; }}
table {{ border-collapse: collapse; background: #fff; min-width: 480px; }}
th, td {{ border: 1px solid #d8dee4; padding: 4px 8px; text-align: left; vertical-align: top; }}
th {{ background: #eef2f6; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.bar {{ background: #d8dee4; width: 160px; height: 12px; border-radius: 6px; overflow: hidden; }}
.bar > div {{ background: #2da44e; height: 12px; }}
.warn {{ color: #b35900; font-weight: 600; }} .muted {{ color: #6e7781; }}
pre {{ background: #fff; border: 1px solid #d8dee4; padding: 8px; overflow: auto; max-width: 1000px; }}
form.inline {{ display: inline; }} button {{ cursor: pointer; }}
</style></head><body><h1>ChatNation console</h1>{body}</body></html>"""


def _table(rows: list[dict[str, Any]], columns: list[str], empty: str, table_id: str) -> str:
    if not rows:
        return f'<p class="muted" id="{table_id}">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            if isinstance(v, str) and v.startswith("<raw>"):
                cells.append(f"<td>{v[5:]}</td>")
            else:
                cls = ' class="n"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
                cells.append(f"<td{cls}>{escape('' if v is None else str(v))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


def _bar(done: int, total: int) -> str:
    percent = 0 if total <= 0 else min(100, round(100 * done / total))
    return (
        f'<raw><div class="bar" title="{percent}%"><div style="width:{percent}%"></div></div> {done}/{total}'
    )


async def _queues(state: ConsoleState) -> str:
    from engine.broker import Topology

    try:
        await state.broker()
        topology = Topology.from_settings(state.settings)
        stats = await state.inspector.sample(topology.all_queues())
    except Exception as err:  # the broker down: the rest of the page still helps
        return f'<p class="warn" id="queues">RabbitMQ does not answer: {escape(type(err).__name__)}</p>'
    rows = [
        {
            "queue": s.name,
            "ready": s.ready,
            "unacked": s.unacked,
            "consumers": s.consumers,
            "in/s": None if s.publish_rate is None else round(s.publish_rate, 2),
            "out/s": None if s.deliver_rate is None else round(s.deliver_rate, 2),
        }
        for s in stats
    ]
    return _table(rows, ["queue", "ready", "unacked", "consumers", "in/s", "out/s"], "no queues", "queues")


async def _parked(state: ConsoleState) -> str:
    from engine.broker_admin import ParkingLot

    try:
        connection = await state.broker()
        lot = ParkingLot.of(connection, state.settings)
        parked = await lot.peek(50)
    except Exception as err:
        return f'<p class="warn" id="parked">parking cannot be read: {escape(type(err).__name__)}</p>'
    rows = []
    for p in parked:
        link = f'<a href="/console/parked/{quote(p.id, safe="")}">{escape(p.id)}</a>'
        replay = (
            f'<form class="inline" method="post" action="/console/parked/{quote(p.id, safe="")}/replay">'
            '<button type="submit">replay</button></form>'
        )
        rows.append(
            {
                "id": "<raw>" + link,
                "reason": p.reason,
                "queue": p.original_queue,
                "attempts": p.attempts,
                "error": (p.error or "")[:120],
                "": "<raw>" + replay,
            }
        )
    return _table(rows, ["id", "reason", "queue", "attempts", "error", ""], "no parked messages", "parked")


async def _database_sections(state: ConsoleState) -> str:
    from engine.shards import LIVE_SECONDS

    pool = await state.pool()
    async with pool.acquire() as conn:
        workers = await conn.fetch(
            f"""SELECT role, host, pid, shards, in_flight, processed,
                       round(extract(epoch FROM now() - heartbeat_at)::numeric, 1)::float AS heartbeat_age_s
                FROM worker_heartbeats WHERE heartbeat_at > now() - interval '{LIVE_SECONDS} seconds'
                ORDER BY role, started_at, worker_id"""
        )
        orgs = await conn.fetch(
            """SELECT o.name, o.id::text AS id, o.status, w.balance,
                      (SELECT p.started_at FROM wallet_pauses p
                       WHERE p.organization_id = o.id AND p.ended_at IS NULL LIMIT 1) AS paused_since,
                      (SELECT count(*) FROM handovers h WHERE h.organization_id = o.id AND h.status = 'waiting')
                          AS handovers_waiting
               FROM organizations o LEFT JOIN wallets w ON w.organization_id = o.id
               ORDER BY o.created_at DESC LIMIT 200"""
        )
        broadcasts = await conn.fetch(
            """SELECT b.name, o.name AS organisation, b.status, b.recipient_count, b.sent_count, b.failed_count,
                      b.started_at
               FROM broadcasts b JOIN organizations o ON o.id = b.organization_id
               WHERE b.started_at IS NOT NULL AND b.completed_at IS NULL ORDER BY b.started_at LIMIT 50"""
        )
        handovers = await conn.fetch(
            """SELECT o.name AS organisation, c.phone, h.reason, h.status, h.created_at,
                      round(extract(epoch FROM now() - h.created_at)::numeric / 60, 1)::float AS waiting_min
               FROM handovers h JOIN organizations o ON o.id = h.organization_id
               JOIN contacts c ON c.id = h.contact_id
               WHERE h.status = 'waiting' ORDER BY h.created_at LIMIT 100"""
        )
    worker_rows = [{**dict(r), "shards": " ".join(str(s) for s in r["shards"] or [])} for r in workers]
    org_rows = [
        {
            **dict(r),
            "paused_since": f'<raw><span class="warn">paused since {escape(str(r["paused_since"]))}</span>'
            if r["paused_since"]
            else "",
        }
        for r in orgs
    ]
    cast_rows = [
        {
            **dict(r),
            "progress": _bar(
                int(r["sent_count"] or 0) + int(r["failed_count"] or 0), int(r["recipient_count"] or 0)
            ),
        }
        for r in broadcasts
    ]
    return "".join(
        (
            "<h2>Workers</h2>",
            _table(
                worker_rows,
                ["role", "host", "pid", "shards", "in_flight", "processed", "heartbeat_age_s"],
                "no live worker processes",
                "workers",
            ),
            "<h2>Organisations</h2>",
            _table(
                org_rows,
                ["name", "id", "status", "balance", "paused_since", "handovers_waiting"],
                "no organisations",
                "organisations",
            ),
            "<h2>Broadcasts in progress</h2>",
            _table(
                cast_rows,
                ["name", "organisation", "status", "progress", "started_at"],
                "no broadcast in progress",
                "broadcasts",
            ),
            "<h2>Handovers waiting</h2>",
            _table(
                [dict(r) for r in handovers],
                ["organisation", "phone", "reason", "created_at", "waiting_min"],
                "no handover waiting",
                "handovers",
            ),
        )
    )


def _login(error: str = "", status: int = 200) -> HTMLResponse:
    message = f'<p class="warn" id="error">{escape(error)}</p>' if error else ""
    form = f"""{message}<form method="post" action="/console/login" id="login">
<label>Operator key <input type="password" name="key" id="key" autocomplete="off" size="50"></label>
<button type="submit" id="sign-in">Sign in</button></form>"""
    return HTMLResponse(_page("sign in", form), status_code=status)


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _enabled(request: Request) -> bool:
    return bool(request.app.state.settings.api_operator_key)


@router.get("")
async def console(request: Request) -> Response:
    if not _enabled(request):
        return HTMLResponse(_page("off", "<p>The console is off: set API_OPERATOR_KEY.</p>"), status_code=404)
    if not _signed_in(request):
        return _login()
    state = _state(request)
    body = (
        '<p class="muted">Refreshed every 10 s · <a href="/console/logout">sign out</a></p>'
        "<h2>Queues</h2>"
        + await _queues(state)
        + await _database_sections(state)
        + "<h2>Parked messages</h2>"
        + await _parked(state)
    )
    return HTMLResponse(_page("overview", body, refresh=True))


@router.post("/login")
async def login(request: Request) -> Response:
    from engine.api.auth import Guard

    if not _enabled(request):
        return HTMLResponse(_page("off", "<p>The console is off.</p>"), status_code=404)
    guard: Guard = request.app.state.guard
    client = request.client.host if request.client else "unknown"
    assert guard.pool is not None, "the API's pool is opened by its lifespan"
    if await guard.failures.blocked_for(guard.pool, client):
        return _login("Too many wrong keys from this address: wait a minute.", 429)
    form = parse_qs((await request.body())[:4096].decode(errors="replace"))
    given = (form.get("key") or [""])[0]
    key = request.app.state.settings.api_operator_key
    if not hmac.compare_digest(given.encode(), key.encode()):
        await guard.failures.failed(guard.pool, client)
        return _login("That is not the operator key.", 401)
    response = RedirectResponse("/console", status_code=303)
    response.set_cookie(COOKIE, _token(key), httponly=True, samesite="strict", path="/console")
    return response


@router.get("/logout")
async def logout() -> Response:
    response = RedirectResponse("/console", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


@router.get("/parked/{message_id}")
async def parked_one(message_id: str, request: Request) -> Response:
    from engine.broker_admin import ParkingLot

    if not (_enabled(request) and _signed_in(request)):
        return RedirectResponse("/console", status_code=303)
    state = _state(request)
    lot = ParkingLot.of(await state.broker(), state.settings)
    found = await lot.find(message_id)
    if found is None:
        return HTMLResponse(
            _page("not found", f"<p>No parked message {escape(message_id)}.</p>"), status_code=404
        )
    try:
        body: Any = json.loads(found.body)
    except ValueError:
        body = found.body.decode(errors="replace")
    doc = {**found.summary(), "headers": found.headers, "body": body}
    replay = (
        f'<form method="post" action="/console/parked/{quote(message_id, safe="")}/replay">'
        '<button type="submit" id="replay">replay</button></form>'
    )
    text = escape(json.dumps(doc, default=str, indent=2))
    return HTMLResponse(
        _page(message_id, f'<p><a href="/console">back</a></p><pre id="message">{text}</pre>{replay}')
    )


@router.post("/parked/{message_id}/replay")
async def parked_replay(message_id: str, request: Request) -> Response:
    from engine.broker_admin import ParkingLot

    if not (_enabled(request) and _signed_in(request)):
        return RedirectResponse("/console", status_code=303)
    state = _state(request)
    lot = ParkingLot.of(await state.broker(), state.settings)
    # a message the show page just read and gave back is counted in the queue again a moment later
    for _ in range(REPLAY_TRIES):
        replayed, failed = await lot.replay({message_id})
        if replayed or failed:
            break
        await asyncio.sleep(0.3)
    return RedirectResponse("/console", status_code=303)
