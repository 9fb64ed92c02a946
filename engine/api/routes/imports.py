"""Bringing things in: contacts from CSV (engine/contacts.py) and content from YAML (engine/content_import.py).
The same functions as `chatnation contacts import` and `chatnation import`."""

from __future__ import annotations

import csv
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Query, Request

from engine import contacts as contact_import
from engine import content_import
from engine.api.auth import Caller, scope
from engine.api.problems import ApiProblem

router = APIRouter()
MAX_BYTES = 5 * 1024 * 1024


async def _text(request: Request, kinds: tuple[str, ...]) -> str:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in kinds:
        raise ApiProblem(415, "media-type", f"send the file as {' or '.join(kinds)}")
    body = await request.body()
    if len(body) > MAX_BYTES:
        raise ApiProblem(422, "too-large", f"at most {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiProblem(422, "encoding", "the file is not UTF-8") from None
    if "\x00" in text:
        raise ApiProblem(422, "bad-text", "the file holds NUL characters")
    return text


def _body(media: str, example: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {media: {"schema": {"type": "string"}, "example": example}},
        }
    }


@router.post(
    "/contacts/import",
    tags=["contacts"],
    summary="Import contacts from CSV (phone, name, tags, consent, consent_source, consent_date, language)",
    openapi_extra=_body("text/csv", "phone,name,tags\n0712345678,Wanjiku,vip;jazz\n"),
    responses={415: {"description": "Not text/csv"}},
)
async def import_contacts(
    request: Request,
    caller: Caller = Depends(scope("contacts", "write")),
    region: str = Query("KE", pattern=r"^[A-Z]{2}$", description="Where national numbers are read"),
) -> dict[str, Any]:
    """Each row on its own: the good ones in one transaction, the rejected ones returned with their line. An
    upsert by phone: sending the file again changes nothing."""
    text = await _text(request, ("text/csv",))
    try:
        rows, rejected = contact_import.parse_csv(text, region=region)
    except (ValueError, csv.Error) as err:
        raise ApiProblem(422, "csv", str(err)) from None
    result = await contact_import.import_contacts(caller.pool, caller.organization_id, rows)
    return {
        "created": result.created,
        "updated": result.updated,
        "rejected": [vars(r) for r in [*rejected, *result.rejected]],
    }


@router.post(
    "/content/import",
    tags=["content"],
    summary="Import surveys, events with ticket types, polls and staff from YAML (a re-import updates by name)",
    openapi_extra=_body(
        "application/yaml", "polls:\n  - question: Best act?\n    options: [{id: a, text: Alpha}]\n"
    ),
    responses={415: {"description": "Not application/yaml"}},
)
async def import_content(
    request: Request, caller: Caller = Depends(scope("content", "write"))
) -> dict[str, Any]:
    text = await _text(request, ("application/yaml", "application/x-yaml", "text/yaml"))
    try:
        raw = content_import.read_yaml(text)
    except yaml.YAMLError as err:
        raise ApiProblem(422, "yaml", f"not YAML: {str(err).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ApiProblem(422, "content", "the file is a mapping (surveys:, events:, polls:, staff:)")
    organization = raw.get("organization")
    if raw.get("hypecards") or (isinstance(organization, dict) and organization.get("logo")):
        raise ApiProblem(
            422, "content", "pictures (hypecards, organization.logo) are imported with the CLI only"
        )
    try:
        content = content_import.parse_content(raw)
        summary = await content_import.import_content(caller.pool, caller.organization_id, content)
    except content_import.ContentError as err:
        raise ApiProblem(422, "content", "; ".join(err.errors)[:4000]) from None
    return {
        "created": summary.created,
        "updated": summary.updated,
        "ids": summary.ids,
        "notes": summary.notes,
    }
