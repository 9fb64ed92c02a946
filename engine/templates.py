"""Message templates: what may be sent outside the 24-hour window.

An organisation's templates live in its WhatsApp Business Account (``organizations.whatsapp_business_id``).
``sync_templates`` copies them into ``message_templates`` (``GET /{waba_id}/message_templates``, every page);
the ``message_template_status_update`` and ``message_template_quality_update`` webhooks keep them current
(``apply_template_webhook``, called by the inbound role). ``template_send`` builds the Cloud API payload of
one send after checking what Meta would refuse: only APPROVED templates, PAUSED and DISABLED ones held with
that reason, and the parameters against the template's components (count and type), each problem named.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID

import asyncpg

from engine.db import tenant_tx
from engine.logging import get_logger
from engine.whatsapp.outbound import SendRequestInvalid, build_template

log = get_logger(__name__)

Reason = Literal["not_found", "not_approved", "held", "parameters"]
HELD_STATUSES = frozenset({"PAUSED", "DISABLED"})
STATUS_FIELD = "message_template_status_update"
QUALITY_FIELD = "message_template_quality_update"
TEMPLATE_FIELDS = frozenset({STATUS_FIELD, QUALITY_FIELD})
# Webhook events that are not a status of their own: REINSTATED means approved again; FLAGGED warns that the
# quality fell (the template can still be sent, and is paused if it does not recover).
_EVENT_STATUS = {"REINSTATED": "APPROVED", "FLAGGED": None}
# What the Cloud API answers a send of a template that is paused or disabled: the status it tells of.
TEMPLATE_HELD_CODES = {132015: "PAUSED", 132016: "DISABLED"}
MARKETING_LIMIT_CODE = 131049  # a user's marketing limit: try that user again later, in growing steps
MARKETING_RETRY_FIRST = timedelta(hours=24)
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_BODY_TYPES = frozenset({"text", "currency", "date_time"})
_MEDIA_FORMATS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document", "LOCATION": "location"}


class TemplateError(Exception):
    """A template send that would not go out: ``reason`` is not_found, not_approved, held or parameters."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message


@dataclass(frozen=True)
class Template:
    name: str
    language: str
    category: str | None
    status: str
    status_reason: str | None
    quality: str | None
    parameter_format: str | None
    components: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return f"template {self.name!r} ({self.language})"


# ---------------------------------------------------------------- sending


async def template_send(
    conn: asyncpg.Connection,
    org_id: UUID,
    name: str,
    language: str,
    params: Sequence[Any] | Mapping[str, Any] | None,
    *,
    to: str,
) -> dict[str, Any]:
    """The Cloud API message payload of the organisation's template ``name`` in ``language`` to ``to``.

    ``params``: a list (the body's parameters, in order), or a mapping with ``header`` (a list, or one value),
    ``body`` (a list; a mapping of names for a NAMED template) and ``buttons`` (a mapping or list of the
    parameters of each button by its index). A value is text, or a Cloud API parameter object such as
    ``{"type": "image", "image": {"link": URL}}``. Raises ``TemplateError``. ``conn`` is in a transaction of
    ``org_id`` (row-level security)."""
    template = await load_template(conn, org_id, name, language)
    if template.status in HELD_STATUSES:
        why = f": {template.status_reason}" if template.status_reason else ""
        raise TemplateError("held", f"{template.label} is {template.status}{why}; its sends are held")
    if template.status != "APPROVED":
        raise TemplateError(
            "not_approved", f"{template.label} is {template.status}; only APPROVED templates are sent"
        )
    components = build_components(template, params)
    try:
        return build_template(to, template.name, template.language, components)
    except SendRequestInvalid as err:
        raise TemplateError("parameters", f"{template.label}: {err}") from None


async def load_template(conn: asyncpg.Connection, org_id: UUID, name: str, language: str) -> Template:
    row = await conn.fetchrow(
        """SELECT name, language, category, status, status_reason, quality, parameter_format, components
           FROM message_templates WHERE organization_id = $1 AND name = $2 AND language = $3""",
        org_id,
        name,
        language,
    )
    if row is None:
        others = await conn.fetch(
            "SELECT language FROM message_templates WHERE organization_id = $1 AND name = $2 ORDER BY 1",
            org_id,
            name,
        )
        hint = (
            f"; it exists in {', '.join(r['language'] for r in others)}"
            if others
            else "; `chatnation templates sync --org ORG` fetches the account's templates"
        )
        raise TemplateError("not_found", f"no template {name!r} in language {language!r}{hint}")
    return Template(**{**dict(row), "components": list(row["components"] or [])})


def placeholders(text: str | None) -> list[str]:
    """The distinct placeholders of a template text, in order: ["1", "2"] or ["first_name"]."""
    seen: list[str] = []
    for found in _PLACEHOLDER.findall(text or ""):
        if found not in seen:
            seen.append(found)
    return seen


def build_components(
    template: Template, params: Sequence[Any] | Mapping[str, Any] | None
) -> list[dict[str, Any]]:
    """The send's ``components``, each checked against the template's; TemplateError("parameters") names the
    first problem."""
    given = _split_params(template, params)
    out: list[dict[str, Any]] = []
    expected_parts = {"header", "body", "buttons"}
    for component in template.components:
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            header = _header(template, component, given.pop("header", None))
            out.extend(header)
        elif kind == "BODY":
            out.extend(_body(template, component, given.pop("body", None)))
        elif kind == "BUTTONS":
            out.extend(_buttons(template, component, given.pop("buttons", None)))
    for part, values in given.items():
        if values not in (None, [], {}):
            what = part if part in expected_parts else f"{part!r} (expected header, body or buttons)"
            raise TemplateError("parameters", f"{template.label} has no {what} that takes parameters")
    return out


def _split_params(template: Template, params: Sequence[Any] | Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return dict(params)
    if isinstance(params, str | bytes):
        raise TemplateError("parameters", f"{template.label}: parameters are a list, not one string")
    return {"body": list(params)}


def _parameter(template: Template, where: str, value: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        param: dict[str, Any] = {"type": "text", "text": str(value)}
    elif isinstance(value, Mapping) and isinstance(value.get("type"), str):
        param = dict(value)
    else:
        raise TemplateError(
            "parameters", f"{template.label}: {where} must be text or a parameter object, not {value!r}"
        )
    kind = param["type"]
    if kind not in allowed:
        raise TemplateError(
            "parameters", f"{template.label}: {where} must be {' or '.join(sorted(allowed))}, not {kind}"
        )
    if kind == "text":
        _check_text(template, where, param.get("text"))
    elif kind not in param:
        raise TemplateError("parameters", f"{template.label}: {where} of type {kind} has no {kind!r} field")
    return param


def _check_text(template: Template, where: str, text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("parameters", f"{template.label}: {where} is empty")
    if "\n" in text or "\t" in text or "     " in text:
        raise TemplateError(
            "parameters",
            f"{template.label}: {where} has a new line, a tab or more than 4 spaces in a row "
            "(WhatsApp refuses them in parameters)",
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _count_check(template: Template, where: str, names: list[str], given: list[Any]) -> None:
    if len(given) != len(names):
        marks = ", ".join("{{" + n + "}}" for n in names) or "none"
        raise TemplateError(
            "parameters",
            f"{template.label}: the {where} takes {len(names)} parameter{'s' * (len(names) != 1)} "
            f"({marks}), {len(given)} given",
        )


def _header(template: Template, component: dict[str, Any], value: Any) -> list[dict[str, Any]]:
    fmt = str(component.get("format") or "TEXT").upper()
    if fmt in _MEDIA_FORMATS:
        kind = _MEDIA_FORMATS[fmt]
        given = _as_list(value)
        if len(given) != 1:
            raise TemplateError(
                "parameters",
                f"{template.label}: the header is {kind.upper()} and takes one {kind} parameter "
                f'({{"type": "{kind}", "{kind}": {{"link": URL}}}}), {len(given)} given',
            )
        return [
            {
                "type": "header",
                "parameters": [_parameter(template, "the header", given[0], frozenset({kind}))],
            }
        ]
    names = placeholders(component.get("text"))
    given = _as_list(value)
    _count_check(template, "header", names, given)
    if not names:
        return []
    return [
        {
            "type": "header",
            "parameters": [_parameter(template, "the header parameter", given[0], frozenset({"text"}))],
        }
    ]


def _body(template: Template, component: dict[str, Any], value: Any) -> list[dict[str, Any]]:
    names = placeholders(component.get("text"))
    named = (template.parameter_format or "").upper() == "NAMED" or any(not n.isdigit() for n in names)
    if named:
        if value is not None and not isinstance(value, Mapping):
            raise TemplateError(
                "parameters",
                f"{template.label}: the body's parameters are named ({', '.join(names)}): give them by name",
            )
        by_name = dict(value or {})
        missing = [n for n in names if n not in by_name]
        unknown = [n for n in by_name if n not in names]
        if missing or unknown:
            problem = (
                f"missing {', '.join(missing)}" if missing else f"no parameter called {', '.join(unknown)}"
            )
            raise TemplateError(
                "parameters", f"{template.label}: the body takes {', '.join(names)}; {problem}"
            )
        params = []
        for n in names:
            param = _parameter(template, f"body parameter {n!r}", by_name[n], _BODY_TYPES)
            params.append({**param, "parameter_name": n})
    else:
        if isinstance(value, Mapping):
            raise TemplateError(
                "parameters", f"{template.label}: the body's parameters are positional: give a list"
            )
        given = _as_list(value)
        _count_check(template, "body", names, given)
        params = [_parameter(template, f"body parameter {i}", v, _BODY_TYPES) for i, v in enumerate(given, 1)]
    return [{"type": "body", "parameters": params}] if params else []


def _buttons(template: Template, component: dict[str, Any], value: Any) -> list[dict[str, Any]]:
    buttons = component.get("buttons") or []
    if isinstance(value, Mapping):
        by_index = {int(k): v for k, v in value.items()}
    else:
        by_index = dict(enumerate(_as_list(value)))
    out = []
    for index, button in enumerate(buttons):
        kind = str(button.get("type", "")).upper()
        given = _as_list(by_index.pop(index, None))
        where = f"button {index} ({kind.lower()})"
        if kind == "URL" and placeholders(button.get("url")):
            if len(given) != 1:
                raise TemplateError(
                    "parameters", f"{template.label}: {where} takes one text parameter for its URL"
                )
            param = _parameter(template, where, given[0], frozenset({"text"}))
            out.append(_button("url", index, [param]))
        elif kind in ("COPY_CODE", "OTP"):
            if len(given) != 1:
                raise TemplateError("parameters", f"{template.label}: {where} takes the code, once")
            code = given[0]
            if kind == "COPY_CODE":
                param = {"type": "coupon_code", "coupon_code": str(code)}
                out.append(_button("copy_code", index, [param]))
            else:
                out.append(_button("url", index, [_parameter(template, where, code, frozenset({"text"}))]))
        elif kind == "QUICK_REPLY" and given:
            payload = (
                given[0] if isinstance(given[0], Mapping) else {"type": "payload", "payload": str(given[0])}
            )
            out.append(_button("quick_reply", index, [dict(payload)]))
        elif given:
            raise TemplateError("parameters", f"{template.label}: {where} takes no parameters")
    if by_index:
        raise TemplateError(
            "parameters", f"{template.label}: no button {', '.join(map(str, sorted(by_index)))}"
        )
    return out


def _button(sub_type: str, index: int, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "button", "sub_type": sub_type, "index": str(index), "parameters": parameters}


# ---------------------------------------------------------------- reading


async def list_templates(conn: asyncpg.Connection, org_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT name, language, category, status, quality, status_reason, components, synced_at
           FROM message_templates WHERE organization_id = $1 ORDER BY name, language""",
        org_id,
    )
    return [dict(r) for r in rows]


async def hold_reason(conn: asyncpg.Connection, org_id: UUID, name: str, language: str) -> str | None:
    """Why a queued send of this template must wait (PAUSED, DISABLED, or no longer approved), else None."""
    row = await conn.fetchrow(
        """SELECT status, status_reason FROM message_templates
           WHERE organization_id = $1 AND name = $2 AND language = $3""",
        org_id,
        name,
        language,
    )
    if row is None or row["status"] == "APPROVED":
        return None  # unknown here: Meta decides (a template never synced is not ours to hold)
    why = f": {row['status_reason']}" if row["status_reason"] else ""
    return f"template {name!r} ({language}) is {row['status']}{why}"


async def mark_held(
    pool: asyncpg.Pool, org_id: UUID, request: dict[str, Any], code: int, message: str
) -> str:
    """The Cloud API refused a send because the template is paused or disabled: record that status (the
    webhook saying so may still be on its way) and return the reason the send is held with."""
    template = request.get("template") or {}
    name, language = str(template.get("name")), str((template.get("language") or {}).get("code"))
    status = TEMPLATE_HELD_CODES[code]
    async with tenant_tx(pool, org_id) as conn:
        await conn.execute(
            """UPDATE message_templates SET status = $4, status_reason = $5
               WHERE organization_id = $1 AND name = $2 AND language = $3 AND status <> $4""",
            org_id,
            name,
            language,
            status,
            f"the Cloud API answered {code}: {message}"[:1000],
        )
    return f"template {name!r} ({language}) is {status} (the Cloud API answered {code})"


async def marketing_deferred_until(
    conn: asyncpg.Connection, org_id: UUID, contact_id: UUID
) -> datetime | None:
    """When a marketing template may be tried again for a contact whose last ones failed with 131049 (the
    user's marketing limit), as Meta asks: not at once, then in growing steps (24 h, 48 h, 96 h ... after the
    last failure, by the number of such failures in a row). None: no such failure since the last success."""
    rows = await conn.fetch(
        """SELECT error_code, COALESCE(failed_at, created_at) AS at FROM messages
           WHERE organization_id = $1 AND contact_id = $2 AND direction = 'outbound' AND type = 'template'
             AND wa_status IS NOT NULL AND wa_status <> 'queued'
           ORDER BY created_at DESC LIMIT 8""",
        org_id,
        contact_id,
    )
    streak = 0
    for row in rows:
        if row["error_code"] != MARKETING_LIMIT_CODE:
            break
        streak += 1
    if not streak:
        return None
    at: datetime = rows[0]["at"]
    return at + MARKETING_RETRY_FIRST * 2 ** (streak - 1)


# ---------------------------------------------------------------- syncing from the Cloud API


@dataclass(frozen=True)
class SyncResult:
    added: int
    updated: int
    removed: int
    total: int


async def fetch_all_templates(
    client: Any, waba_id: str, token: str, page_size: int = 100
) -> list[dict[str, Any]]:
    """Every template of the business account, following ``paging.cursors.after`` while there is a next page."""
    found: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(10_000):  # a bound, not a limit anyone reaches: Meta caps an account's templates
        page = await client.list_templates(waba_id, token, after=after, limit=page_size)
        found.extend(t for t in page["data"] if isinstance(t, dict))
        paging = page.get("paging") or {}
        after = (paging.get("cursors") or {}).get("after")
        if not paging.get("next") or not after:
            break
    return found


async def sync_templates(pool: asyncpg.Pool, org_id: UUID, client: Any) -> SyncResult:
    """Copy the organisation's templates from its business account; templates gone from it are removed."""
    async with tenant_tx(pool, org_id) as conn:
        org = await conn.fetchrow(
            "SELECT whatsapp_business_id, whatsapp_access_token FROM organizations WHERE id = $1", org_id
        )
    if org is None or not org["whatsapp_business_id"]:
        raise LookupError(
            "the organisation has no WhatsApp Business Account id: "
            "`chatnation org update ORG --business-account-id ID`"
        )
    waba_id = org["whatsapp_business_id"]
    remote = await fetch_all_templates(client, waba_id, org["whatsapp_access_token"] or "")
    now = datetime.now(UTC)
    async with tenant_tx(pool, org_id) as conn:
        before = {
            (r["name"], r["language"]): r["id"]
            for r in await conn.fetch(
                "SELECT id, name, language FROM message_templates WHERE organization_id = $1", org_id
            )
        }
        seen: set[tuple[str, str]] = set()
        for t in remote:
            key = (str(t.get("name")), str(t.get("language")))
            if key in seen or not t.get("name") or not t.get("language"):
                continue
            seen.add(key)
            await _upsert(conn, org_id, waba_id, t, now)
        gone = [before[k] for k in before.keys() - seen]
        if gone:
            await conn.execute("DELETE FROM message_templates WHERE id = ANY($1::uuid[])", gone)
    added = len(seen - before.keys())
    log.info("templates synced", waba_id=waba_id, total=len(seen), added=added, removed=len(gone))
    return SyncResult(added=added, updated=len(seen) - added, removed=len(gone), total=len(seen))


async def _upsert(
    conn: asyncpg.Connection, org_id: UUID, waba_id: str, t: dict[str, Any], now: datetime
) -> None:
    quality = t.get("quality_score")
    score = quality.get("score") if isinstance(quality, dict) else quality
    await conn.execute(
        """INSERT INTO message_templates (organization_id, whatsapp_business_id, wa_template_id, name, language,
                                          category, status, status_reason, quality, parameter_format,
                                          components, synced_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
           ON CONFLICT (organization_id, name, language) DO UPDATE SET
               whatsapp_business_id = EXCLUDED.whatsapp_business_id, wa_template_id = EXCLUDED.wa_template_id,
               category = EXCLUDED.category, status = EXCLUDED.status, status_reason = EXCLUDED.status_reason,
               quality = EXCLUDED.quality, parameter_format = EXCLUDED.parameter_format,
               components = EXCLUDED.components, synced_at = EXCLUDED.synced_at""",
        org_id,
        waba_id,
        str(t["id"]) if t.get("id") is not None else None,
        str(t["name"]),
        str(t["language"]),
        str(t.get("category") or "").upper() or None,
        str(t.get("status") or "PENDING").upper(),
        _reason(t.get("rejected_reason")),
        str(score).upper() if score else None,
        str(t.get("parameter_format") or "").upper() or None,
        [c for c in (t.get("components") or []) if isinstance(c, dict)],
        now,
    )


def _reason(value: Any) -> str | None:
    text = str(value or "").strip()
    return None if text in ("", "NONE") else text[:1000]


TEMPLATE_SYNC_LOCK = 0x54504C53  # "TPLS": one process syncs at a time


async def templates_sync_forever(rt: Any, stop: asyncio.Event) -> None:
    """The relay role's periodic sync: every ``template_sync_seconds``, the templates of every organisation with
    a business account, by one process at a time (an advisory lock); an account that fails is logged and tried
    again next round."""
    every = rt.settings.template_sync_seconds
    if every <= 0:
        return
    from engine.whatsapp.client import CloudApiClient

    client = CloudApiClient(
        rt.whatsapp_http, str(rt.settings.whatsapp_api_base_url), rt.settings.whatsapp_api_version
    )
    while not stop.is_set():
        try:  # the first round one interval after start: a restart is not a burst of syncs
            await asyncio.wait_for(stop.wait(), timeout=every)
            return
        except TimeoutError:
            pass
        try:
            await sync_all_once(rt.owner_pool, rt.app_pool, client)
        except (asyncpg.PostgresError, OSError) as err:
            log.warning("template sync interrupted; next round", error=repr(err))


async def sync_all_once(owner_pool: asyncpg.Pool, app_pool: asyncpg.Pool, client: Any) -> int | None:
    """Sync every organisation that has a business account; None when another process holds the round."""
    async with owner_pool.acquire() as conn:
        if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", TEMPLATE_SYNC_LOCK):
            return None
        try:
            org_ids = [
                r["id"]
                for r in await conn.fetch(
                    """SELECT id FROM organizations WHERE whatsapp_business_id IS NOT NULL AND status <> 'suspended'
                       ORDER BY created_at"""
                )
            ]
            synced = 0
            for org_id in org_ids:
                try:
                    await sync_templates(app_pool, org_id, client)
                    synced += 1
                except Exception as err:  # one account's outage or refusal never stops the others
                    log.warning("template sync failed", organization_id=str(org_id), error=repr(err))
            return synced
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", TEMPLATE_SYNC_LOCK)


# ---------------------------------------------------------------- webhooks


async def apply_template_webhook(pool: asyncpg.Pool, body: dict[str, Any]) -> str:
    """A queued ``message_template_status_update`` or ``message_template_quality_update`` part: the new
    status (with Meta's reason) or quality, for every organisation on that business account. Idempotent (it
    sets, never counts), so a duplicate webhook changes nothing further."""
    value = body.get("payload") or {}
    name, language = value.get("message_template_name"), value.get("message_template_language")
    template_id = value.get("message_template_id")
    waba_id = body.get("business_account_id")
    if not name or not language or not waba_id:
        log.warning("template webhook without a template or an account", field=body.get("field"))
        return "ignored"
    org_ids = await pool.fetchval("SELECT orgs_by_business_account_id($1)", str(waba_id))
    if not org_ids:
        log.info("template webhook for an account no organisation uses", waba_id=waba_id)
        return "ignored"
    if body.get("field") == STATUS_FIELD:
        event = str(value.get("event") or "").upper()
        status = _EVENT_STATUS.get(event, event)
        sets, args = (
            "status = COALESCE($5, status), status_reason = $6",
            [status, _reason(value.get("reason"))],
        )
    else:
        quality = value.get("new_quality_score")
        sets, args = "quality = $5", [str(quality).upper() if quality else None]
    changed = 0
    for org_id in org_ids:
        async with tenant_tx(pool, org_id) as conn:
            result = await conn.execute(
                f"""UPDATE message_templates SET {sets}
                    WHERE organization_id = $1 AND (wa_template_id = $2 OR (name = $3 AND language = $4))""",
                org_id,
                str(template_id) if template_id is not None else None,
                str(name),
                str(language),
                *args,
            )
        changed += int(result.split()[-1])
    if not changed:
        log.info("template webhook for a template not synced yet", template=name, language=language)
        return "ignored"
    log.info(
        "template updated", template=name, language=language, field=body.get("field"), **{"value": args[0]}
    )
    return "processed"
