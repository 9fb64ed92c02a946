"""Broadcasts (docs/broadcasts.md): list, create (Idempotency-Key), show with its figures, pause, resume,
cancel, and the recipients as cursor pages or CSV. The same functions as `chatnation broadcast`
(engine/broadcasts.py, engine/broadcast_stats.py); the scheduler starts what is due."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from starlette.responses import JSONResponse, Response

from engine import broadcast_audience, broadcasts
from engine.api import paging
from engine.api.auth import Caller, scope
from engine.api.idempotency import REPLAYABLE, IdempotencyKey, create_once
from engine.api.problems import ApiProblem, not_found
from engine.broadcast_content import CAPTION_LIMIT, MediaInvalid, check_media
from engine.broadcast_stats import RECIPIENT_FIELDS, listing, recipients, stats

router = APIRouter(prefix="/broadcasts", tags=["broadcasts"])
Word = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]+$")]
Phone = Annotated[str, StringConstraints(pattern=r"^\+?[0-9]{7,15}$")]
Status = Literal["draft", "scheduled", "running", "paused", "completed", "cancelled", "blocked"]
EARLIEST, LATEST = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)


class Audience(BaseModel):
    """Who it goes to: opted-in contacts matching every filter given (none: every opted-in contact)."""

    model_config = ConfigDict(extra="forbid")
    tags: list[Word] = Field(default_factory=list, max_length=50, description="Any of these tags")
    exclude_tags: list[Word] = Field(default_factory=list, max_length=50, description="None of these tags")
    profile: dict[Word, Word] = Field(default_factory=dict, max_length=20, description="Profile fields equal")
    event_id: UUID | None = Field(None, description="Holders of a valid ticket of the event")
    ticket_type_id: UUID | None = None
    survey_id: UUID | None = Field(None, description="Who completed the survey")
    poll_id: UUID | None = Field(None, description="Who voted")
    program_id: UUID | None = Field(None, description="The programme's subscribers")
    phones: list[Phone] = Field(default_factory=list, max_length=1000, description="Only these numbers")


class TemplateChoice(BaseModel):
    name: str = Field(min_length=1, max_length=255, pattern=r"^[a-z0-9_]+$")
    language: str = Field(min_length=2, max_length=10, pattern=r"^[A-Za-z_]+$")
    params: list[Annotated[str, StringConstraints(max_length=1000, pattern=r"^[^\x00]*$")]] = Field(
        default_factory=list,
        max_length=20,
        description="Body parameters in order; {{name}}, {{event}}… allowed",
    )
    category: Literal["marketing", "utility", "authentication"] | None = None


class Media(BaseModel):
    """An image, a video or a document, by an https link WhatsApp fetches or by an uploaded media id; the
    broadcast's `text` is its caption (at most 1024 characters)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["image", "video", "document"]
    url: str | None = Field(None, max_length=2000, description="https:// link to the file")
    id: str | None = Field(None, max_length=64, description="A media id from POST /{phone_number_id}/media")

    @model_validator(mode="after")
    def _one_reference(self) -> Media:
        if (self.url is None) == (self.id is None):
            raise ValueError("media needs exactly one of url (an https:// link) or id (an uploaded media id)")
        ref, label = (self.url, "media.url") if self.url is not None else (self.id, "media.id")
        assert ref is not None
        if self.id is not None and not ref.isdigit():
            raise ValueError(f"media.id {ref!r} is not an uploaded media id (digits)")
        try:
            check_media(self.type, ref, label)
        except MediaInvalid as err:
            raise ValueError(str(err)) from None
        return self

    @property
    def ref(self) -> str:
        return self.url if self.url is not None else str(self.id)


class NewBroadcast(BaseModel):
    """Text, media (the text its caption), a template, or free-form and a template (the free-form message inside a
    contact's 24-hour window, the template outside it)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=255, pattern=r"^[^\x00-\x1f\x7f]*$")
    text: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\x00]*$")
    media: Media | None = None
    template: TemplateChoice | None = None
    audience: Audience = Field(default_factory=Audience)
    event_id: UUID | None = Field(None, description="{{event}} variables; alone: the event's ticket holders")
    at: AwareDatetime | None = Field(None, description="When it starts (with its offset); none: now")

    @field_validator("at")
    @classmethod
    def _sane(cls, at: datetime | None) -> datetime | None:
        if at is not None and not EARLIEST <= at <= LATEST:
            raise ValueError("a start time between 2000 and 2100")
        return at

    @model_validator(mode="after")
    def _caption(self) -> NewBroadcast:
        if self.media is not None and self.text is not None and len(self.text) > CAPTION_LIMIT:
            raise ValueError(f"text is the media's caption here: at most {CAPTION_LIMIT} characters")
        return self


class Summary(BaseModel):
    id: UUID
    name: str | None
    status: Status
    source: str
    recipients: int | None
    queued: int
    sent: int | None
    delivered: int | None
    read: int | None
    failed: int | None
    skipped: int
    scheduled_at: datetime | None
    completed_at: datetime | None
    created_at: datetime | None


class Broadcast(BaseModel):
    id: UUID
    name: str | None
    status: Status
    status_reason: str | None
    source: str
    message_type: str
    media_type: str | None = Field(description="image, video or document; none for text and templates")
    media_url: str | None = Field(description="The media's link or uploaded id")
    template_name: str | None
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    created_at: datetime | None
    recipients: int | None
    pending: int | None
    queued: int
    in_flight: int
    sent: int | None
    delivered: int | None
    read: int | None
    failed: int | None
    skipped: int
    skipped_by_reason: dict[str, int]
    failed_by_code: dict[str, int]
    tokens_reserved: int
    tokens_spent: int
    tokens_released: int
    tokens_refunded: int = Field(
        description="Tokens given back for sends that failed for good (one refund each)"
    )
    refunded: int = Field(description="Recipients whose failed send was refunded")
    estimated_finish: datetime | None


class CreatedBroadcast(Broadcast):
    matching_contacts: int = Field(description="Contacts the audience matches now (resolved when it starts)")


class Control(BaseModel):
    id: UUID
    status: Status
    released: int = Field(description="Tokens given back to the wallet (cancel)")


class Recipient(BaseModel):
    id: UUID
    position: int
    contact_id: UUID
    phone: str
    name: str | None
    status: str
    kind: str | None
    skip_reason: str | None
    error_code: int | None
    tokens: int
    refunded_at: datetime | None
    queued_at: datetime | None
    wa_message_id: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    read_at: datetime | None
    failed_at: datetime | None


async def _shown(conn: Any, request: Request, broadcast_id: UUID) -> dict[str, Any]:
    out = await stats(conn, broadcast_id, datetime.now(UTC), request.app.state.settings.send_rate_per_second)
    if out is None:
        raise not_found(f"broadcast {broadcast_id}")
    return out


@router.get("", response_model=paging.Page[Summary], summary="The organisation's broadcasts, newest first")
async def list_broadcasts(
    caller: Caller = Depends(scope("broadcasts", "read")),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    before = paging.decode(cursor)
    async with caller.tx() as conn:
        rows = await listing(conn, limit + 1, before)
    data, next_cursor = paging.page(rows, limit)
    return {"data": data, "next_cursor": next_cursor}


@router.post(
    "",
    status_code=201,
    response_model=CreatedBroadcast,
    summary="Create a broadcast, due now or at a time (the scheduler starts it)",
    responses=REPLAYABLE,
)
async def create_broadcast(
    new: NewBroadcast,
    request: Request,
    caller: Caller = Depends(scope("broadcasts", "write")),
    idempotency_key: str | None = IdempotencyKey,
) -> JSONResponse:
    """Ids in the audience or `event_id` of anything the organisation does not have are a 404; a broadcast
    the engine refuses (no text, media nor template, an unknown {{variable}}, media neither an https link nor
    an uploaded id, a caption over 1024 characters) a 422."""

    async def create(conn: Any) -> dict[str, Any]:
        audience = new.audience.model_dump(mode="json")
        template = new.template
        draft = broadcasts.NewBroadcast(
            name=new.name,
            text=new.text,
            template_name=template.name if template else None,
            template_language=template.language if template else None,
            template_params=list(template.params) if template else [],
            template_category=template.category if template else None,
            audience=audience,
            event_id=new.event_id,
            at=new.at,
            media_url=new.media.ref if new.media else None,
            media_type=new.media.type if new.media else None,
            created_by="api",
        )
        try:
            normal = broadcast_audience.normalise(audience)
            if new.event_id is not None and not {"event_id", "ticket_type_id", "program_id", "phones"} & set(
                normal
            ):
                normal["event_id"] = str(new.event_id)
            named = {"event_id": str(new.event_id)} if new.event_id else {}
            missing = await broadcast_audience.missing_ids(conn, normal)
            missing += [m for m in await broadcast_audience.missing_ids(conn, named) if m not in missing]
            if missing:
                raise not_found(", ".join(missing))
            broadcast_id = await broadcasts.create(conn, caller.organization_id, draft)
            matching = await broadcast_audience.estimate(conn, caller.organization_id, normal)
        except (broadcasts.BroadcastError, broadcast_audience.AudienceError) as err:
            raise ApiProblem(422, "broadcast", str(err).replace("--", "")) from None
        assert broadcast_id is not None  # no source_key: never a duplicate
        return {**await _shown(conn, request, broadcast_id), "matching_contacts": matching}

    return await create_once(
        caller,
        idempotency_key,
        "POST",
        request.url.path,
        new.model_dump(mode="json"),
        create,
        status_code=201,
    )


@router.get("/{broadcast_id}", response_model=Broadcast, summary="One broadcast with its figures")
async def get_broadcast(
    broadcast_id: UUID, request: Request, caller: Caller = Depends(scope("broadcasts", "read"))
) -> dict[str, Any]:
    """Status, recipients, queued, sent, delivered, read, failed and skipped (with reasons), tokens reserved,
    spent and released, and the estimated finish of a running one."""
    async with caller.tx() as conn:
        return await _shown(conn, request, broadcast_id)


async def _control(caller: Caller, broadcast_id: UUID, action: str) -> dict[str, Any]:
    async with caller.tx() as conn:
        try:
            return await broadcasts.control(conn, caller.organization_id, broadcast_id, action)
        except LookupError:
            raise not_found(f"broadcast {broadcast_id}") from None
        except broadcasts.BroadcastError as err:
            raise ApiProblem(409, "broadcast-status", str(err)) from None


CONTROLS = {
    "pause": "Hold the fan-out (sends already queued go out); the reservation stays",
    "resume": "Go on after a pause; a blocked broadcast is tried again",
    "cancel": "Stop sending; what was reserved and not spent goes back to the wallet",
}


def _control_route(action: str) -> None:
    async def endpoint(
        broadcast_id: UUID, caller: Caller = Depends(scope("broadcasts", "write"))
    ) -> dict[str, Any]:
        return await _control(caller, broadcast_id, action)

    endpoint.__name__ = action
    router.add_api_route(
        f"/{{broadcast_id}}/{action}",
        endpoint,
        methods=["POST"],
        response_model=Control,
        responses={409: {"description": "The broadcast's status does not allow it"}},
        summary=CONTROLS[action],
    )


for _action in CONTROLS:
    _control_route(_action)


async def _exists(conn: Any, broadcast_id: UUID) -> None:
    if not await conn.fetchval("SELECT true FROM broadcasts WHERE id = $1", broadcast_id):
        raise not_found(f"broadcast {broadcast_id}")


@router.get(
    "/{broadcast_id}/recipients",
    response_model=paging.Page[Recipient],
    summary="Recipients in fan-out order with their status, skip reason or error code",
)
async def list_recipients(
    broadcast_id: UUID,
    caller: Caller = Depends(scope("broadcasts", "read")),
    limit: int = paging.Limit,
    cursor: str | None = paging.Cursor,
) -> dict[str, Any]:
    after = paging.decode_position(cursor)
    async with caller.tx() as conn:
        await _exists(conn, broadcast_id)
        rows = await recipients(conn, broadcast_id, after, limit + 1)
    data, next_cursor = paging.page(rows, limit, at="position")
    return {"data": data, "next_cursor": next_cursor}


@router.get(
    "/{broadcast_id}/recipients.csv",
    summary="Every recipient as CSV (the columns of `chatnation broadcast recipients`)",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def recipients_csv(
    broadcast_id: UUID, caller: Caller = Depends(scope("broadcasts", "read"))
) -> Response:
    async with caller.tx() as conn:
        await _exists(conn, broadcast_id)
        rows = await recipients(conn, broadcast_id)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(RECIPIENT_FIELDS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in RECIPIENT_FIELDS})
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="broadcast-{broadcast_id}-recipients.csv"'},
    )
