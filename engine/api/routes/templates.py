"""The organisation's WhatsApp message templates (docs/templates.md): as last synced, and a sync from its business
account now. The same functions as `chatnation templates list|sync` (engine/templates.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from engine import templates
from engine.api.auth import Caller, scope
from engine.api.problems import ApiProblem

router = APIRouter(prefix="/templates", tags=["templates"])


class Template(BaseModel):
    name: str
    language: str
    category: str | None
    status: str
    quality: str | None
    status_reason: str | None
    components: list[dict[str, Any]]
    synced_at: datetime | None


class TemplateList(BaseModel):
    data: list[Template]
    next_cursor: str | None = None


class Synced(BaseModel):
    added: int
    updated: int
    removed: int
    total: int


@router.get("", response_model=TemplateList, summary="Message templates as last synced from the Cloud API")
async def list_templates(caller: Caller = Depends(scope("templates", "read"))) -> dict[str, Any]:
    """Every template of the organisation (one page: an account holds a few hundred at most)."""
    async with caller.tx() as conn:
        rows = await templates.list_templates(conn, caller.organization_id)
    return {"data": rows, "next_cursor": None}


@router.post(
    "/sync",
    response_model=Synced,
    summary="Fetch the templates of the organisation's business account from the Cloud API now",
    responses={
        409: {"description": "The organisation has no WhatsApp Business Account id"},
        502: {"description": "The Cloud API refused or did not answer"},
    },
)
async def sync(request: Request, caller: Caller = Depends(scope("templates", "write"))) -> dict[str, Any]:
    """Every page of the account's templates; those gone from it are removed (the relay role also syncs every
    TEMPLATE_SYNC_SECONDS)."""
    from engine.whatsapp.client import CloudApiClient, new_session
    from engine.whatsapp.outbound import ApiError

    settings = request.app.state.settings
    async with new_session() as session:
        client = CloudApiClient(session, str(settings.whatsapp_api_base_url), settings.whatsapp_api_version)
        try:
            result = await templates.sync_templates(caller.pool, caller.organization_id, client)
        except LookupError as err:
            raise ApiProblem(409, "no-business-account", str(err)) from None
        except ApiError as err:
            raise ApiProblem(
                502, "cloud-api", f"the Cloud API refused the template list: {err.message}"
            ) from None
    return dict(vars(result))
