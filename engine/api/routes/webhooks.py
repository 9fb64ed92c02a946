"""Event webhooks: endpoints (register with the event types wanted, list, show, remove) and their deliveries
(outcomes, redeliver). The signing secret is in the registration's response only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

from engine import webhooks
from engine.api import paging
from engine.api.auth import Caller, scope
from engine.api.idempotency import REPLAYABLE, IdempotencyKey, create_once
from engine.api.problems import ApiProblem, not_found

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
EventType = Literal[
    "survey.completed",
    "ticket.issued",
    "ticket.checked_in",
    "payment.confirmed",
    "payment.refund_due",
    "poll.voted",
    "contact.opted_out",
    "contact.opted_in",
    "broadcast.finished",
    "handover.requested",
]
assert set(EventType.__args__) == set(webhooks.EVENT_TYPES)  # type: ignore[attr-defined]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class NewEndpoint(BaseModel):
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")
    events: list[EventType] = Field(min_length=1, max_length=len(webhooks.EVENT_TYPES))
    description: str | None = Field(None, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")


class Endpoint(BaseModel):
    id: UUID
    url: str
    events: list[str]
    description: str | None
    active: bool
    created_at: datetime


class CreatedEndpoint(Endpoint):
    secret: str = Field(description="The HMAC-SHA256 key of X-ChatNation-Signature: shown here only")


class EndpointList(BaseModel):
    data: list[Endpoint]
    next_cursor: str | None = None


class Delivery(BaseModel):
    id: UUID
    event_id: UUID
    event_type: str
    endpoint_id: UUID
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime


@router.post(
    "",
    status_code=201,
    response_model=CreatedEndpoint,
    summary="Register an endpoint for event types",
    responses=REPLAYABLE,
)
async def create_endpoint(
    new: NewEndpoint,
    request: Request,
    caller: Caller = Depends(scope("webhooks", "write")),
    idempotency_key: str | None = IdempotencyKey,
) -> JSONResponse:
    settings = request.app.state.settings

    async def create(conn: Any) -> dict[str, Any]:
        try:
            return await webhooks.create_endpoint(
                conn, caller.organization_id, new.url, list(new.events), settings, new.description
            )
        except webhooks.WebhookError as err:
            raise ApiProblem(422, "webhook", str(err)) from None

    return await create_once(
        caller, idempotency_key, "POST", request.url.path, new.model_dump(), create, status_code=201
    )


@router.get("", response_model=EndpointList, summary="The organisation's endpoints")
async def list_endpoints(caller: Caller = Depends(scope("webhooks", "read"))) -> dict[str, Any]:
    async with caller.tx() as conn:
        return {"data": await webhooks.list_endpoints(conn), "next_cursor": None}


@router.get("/deliveries", response_model=paging.Page[Delivery], summary="Deliveries of every endpoint")
async def all_deliveries(
    caller: Caller = Depends(scope("webhooks", "read")),
    status: DeliveryStatus | None = Query(None),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    return await _deliveries(caller, None, status, limit, cursor)


@router.post(
    "/deliveries/{delivery_id}/redeliver", response_model=Delivery, summary="Send a delivery again now"
)
async def redeliver(
    delivery_id: UUID, caller: Caller = Depends(scope("webhooks", "write"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        found = await webhooks.redeliver(conn, delivery_id)
    if found is None:
        raise not_found(f"delivery {delivery_id}")
    return found


@router.get("/{endpoint_id}", response_model=Endpoint, summary="One endpoint")
async def get_endpoint(
    endpoint_id: UUID, caller: Caller = Depends(scope("webhooks", "read"))
) -> dict[str, Any]:
    async with caller.tx() as conn:
        found = await webhooks.get_endpoint(conn, endpoint_id)
    if found is None:
        raise not_found(f"webhook endpoint {endpoint_id}")
    return found


@router.delete("/{endpoint_id}", status_code=204, summary="Remove an endpoint (no more events)")
async def remove_endpoint(
    endpoint_id: UUID, caller: Caller = Depends(scope("webhooks", "write"))
) -> Response:
    async with caller.tx() as conn:
        removed = await webhooks.remove_endpoint(conn, endpoint_id)
    if not removed:
        raise not_found(f"active webhook endpoint {endpoint_id}")
    return Response(status_code=204)


@router.get(
    "/{endpoint_id}/deliveries", response_model=paging.Page[Delivery], summary="An endpoint's deliveries"
)
async def endpoint_deliveries(
    endpoint_id: UUID,
    caller: Caller = Depends(scope("webhooks", "read")),
    status: DeliveryStatus | None = Query(None),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    async with caller.tx() as conn:
        if await webhooks.get_endpoint(conn, endpoint_id) is None:
            raise not_found(f"webhook endpoint {endpoint_id}")
    return await _deliveries(caller, endpoint_id, status, limit, cursor)


async def _deliveries(
    caller: Caller, endpoint_id: UUID | None, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    before = paging.decode(cursor)
    async with caller.tx() as conn:
        rows = await webhooks.list_deliveries(
            conn, endpoint_id=endpoint_id, status=status, before=before, limit=limit + 1
        )
    data, next_cursor = paging.page(rows, limit)
    return {"data": data, "next_cursor": next_cursor}
