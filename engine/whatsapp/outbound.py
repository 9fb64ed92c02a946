"""What we send to the Cloud API: validated request models, builders from the engine's replies, and how to
read the answer (success, error, and whether to retry).

The limits are Meta's (reference.md, "Sending"); checking them here turns a would-be permanent 400 from
Meta into an error that names the field before anything leaves the process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from state_machines.base import Buttons, Document, Image, ListMenu, Reply, Text

INVALID_PARAMETER = 100  # Cloud API code for a malformed request


class _Strict(BaseModel):
    """Unknown keys are rejected: a misspelt field would otherwise be silently dropped by Meta or refused."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- request envelope and bodies


class ReplyContext(_Strict):
    message_id: str = Field(min_length=1)


class _Request(_Strict):
    messaging_product: Literal["whatsapp"]
    recipient_type: Literal["individual", "group"] = "individual"
    to: str = Field(min_length=1)
    context: ReplyContext | None = None
    biz_opaque_callback_data: str | None = Field(None, max_length=512)


class TextBody(_Strict):
    body: str = Field(min_length=1, max_length=4096)
    preview_url: bool = False


class MediaRef(_Strict):
    """A media object sent by uploaded id or by public link, exactly one of the two."""

    id: str | None = Field(None, min_length=1)
    link: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _id_or_link(self) -> MediaRef:
        if (self.id is None) == (self.link is None):
            raise ValueError("exactly one of id or link is required")
        return self


class CaptionedMedia(MediaRef):
    caption: str | None = Field(None, max_length=1024)


class DocumentMedia(CaptionedMedia):
    filename: str | None = Field(None, max_length=240)


class Header(_Strict):
    type: Literal["text", "image", "video", "document"]
    text: str | None = Field(None, min_length=1, max_length=60)
    image: MediaRef | None = None
    video: MediaRef | None = None
    document: MediaRef | None = None


class Footer(_Strict):
    text: str = Field(min_length=1, max_length=60)


class ButtonBody(_Strict):
    text: str = Field(min_length=1, max_length=1024)


class ListBody(_Strict):
    text: str = Field(min_length=1, max_length=4096)


class ButtonReplyRef(_Strict):
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=20)


class ReplyButton(_Strict):
    type: Literal["reply"]
    reply: ButtonReplyRef


class ButtonAction(_Strict):
    buttons: list[ReplyButton] = Field(min_length=1, max_length=3)

    @model_validator(mode="after")
    def _unique(self) -> ButtonAction:
        _require_unique([b.reply.title for b in self.buttons], "button titles")
        _require_unique([b.reply.id for b in self.buttons], "button ids")
        return self


class ButtonInteractive(_Strict):
    type: Literal["button"]
    body: ButtonBody
    action: ButtonAction
    header: Header | None = None
    footer: Footer | None = None


class ListRow(_Strict):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=24)
    description: str | None = Field(None, max_length=72)


class ListSection(_Strict):
    title: str | None = Field(None, min_length=1, max_length=24)
    rows: list[ListRow] = Field(min_length=1, max_length=10)


class ListAction(_Strict):
    button: str = Field(min_length=1, max_length=20)
    sections: list[ListSection] = Field(min_length=1, max_length=10)

    @model_validator(mode="after")
    def _rows(self) -> ListAction:
        rows = [row for section in self.sections for row in section.rows]
        if len(rows) > 10:
            raise ValueError(f"at most 10 rows in total across sections, got {len(rows)}")
        _require_unique([row.id for row in rows], "row ids")
        if len(self.sections) > 1 and any(not s.title for s in self.sections):
            raise ValueError("every section needs a title when there is more than one section")
        return self


class ListInteractive(_Strict):
    type: Literal["list"]
    body: ListBody
    action: ListAction
    header: Header | None = None
    footer: Footer | None = None


class TemplateLanguage(_Strict):
    code: str = Field(min_length=1)
    policy: Literal["deterministic"] | None = None


class Template(_Strict):
    name: str = Field(min_length=1, max_length=512)
    language: TemplateLanguage
    components: list[dict[str, Any]] = []  # free-form per template; Meta checks them against the template


class ReactionBody(_Strict):
    message_id: str = Field(min_length=1)
    emoji: str = ""  # "" removes the reaction


def _require_unique(values: list[str], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be unique")


# ---------------------------------------------------------------- requests


class TextRequest(_Request):
    type: Literal["text"] = "text"  # Meta's default when absent
    text: TextBody


class ImageRequest(_Request):
    type: Literal["image"]
    image: CaptionedMedia


class VideoRequest(_Request):
    type: Literal["video"]
    video: CaptionedMedia


class AudioRequest(_Request):
    type: Literal["audio"]
    audio: MediaRef


class StickerRequest(_Request):
    type: Literal["sticker"]
    sticker: MediaRef


class DocumentRequest(_Request):
    type: Literal["document"]
    document: DocumentMedia


class ButtonsRequest(_Request):
    type: Literal["interactive"]
    interactive: ButtonInteractive


class ListRequest(_Request):
    type: Literal["interactive"]
    interactive: ListInteractive


class TemplateRequest(_Request):
    type: Literal["template"]
    template: Template


class ReactionRequest(_Request):
    type: Literal["reaction"]
    reaction: ReactionBody


class MarkRead(_Strict):
    messaging_product: Literal["whatsapp"]
    status: Literal["read"]
    message_id: str = Field(min_length=1)
    typing_indicator: dict[str, Any] | None = None


SendRequest = (
    TextRequest
    | ImageRequest
    | VideoRequest
    | AudioRequest
    | StickerRequest
    | DocumentRequest
    | ButtonsRequest
    | ListRequest
    | TemplateRequest
    | ReactionRequest
    | MarkRead
)

_BY_TYPE: dict[str, type[BaseModel]] = {
    "text": TextRequest,
    "image": ImageRequest,
    "video": VideoRequest,
    "audio": AudioRequest,
    "sticker": StickerRequest,
    "document": DocumentRequest,
    "template": TemplateRequest,
    "reaction": ReactionRequest,
}
_BY_INTERACTIVE_TYPE: dict[str, type[BaseModel]] = {"button": ButtonsRequest, "list": ListRequest}


class SendRequestInvalid(ValueError):
    """A request Meta would refuse with code 100; ``field`` is the dotted path of the first offending field."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.code = INVALID_PARAMETER
        self.message = message
        self.field = field


def validate_send_request(body: dict[str, Any]) -> SendRequest:
    """Validate a request body as the Cloud API would; raises ``SendRequestInvalid`` naming the field."""
    model = _model_for(body)
    try:
        return model.model_validate(body)  # type: ignore[return-value]
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        paths = [_dotted(err["loc"]) for err in errors]
        detail = "; ".join(
            f"{path or '(body)'}: {err['msg']}" for path, err in zip(paths, errors, strict=True)
        )
        raise SendRequestInvalid(f"(#100) Invalid parameter {detail}", field=paths[0]) from None


def _model_for(body: Any) -> type[BaseModel]:
    if not isinstance(body, dict):
        raise SendRequestInvalid("(#100) The request body must be a JSON object")
    if "status" in body:
        return MarkRead
    kind = body.get("type", "text")
    if kind == "interactive":
        sub = body.get("interactive", {}).get("type") if isinstance(body.get("interactive"), dict) else None
        if sub not in _BY_INTERACTIVE_TYPE:
            raise SendRequestInvalid(f"(#100) Unsupported interactive.type {sub!r}", field="interactive.type")
        return _BY_INTERACTIVE_TYPE[sub]
    if kind not in _BY_TYPE:
        raise SendRequestInvalid(f"(#100) Unsupported message type {kind!r}", field="type")
    return _BY_TYPE[kind]


def _dotted(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


# ---------------------------------------------------------------- builders from the engine's replies


def build_payload(
    reply: Reply,
    to: str,
    *,
    image_link: str | None = None,
    image_id: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """The exact Cloud API JSON for one reply; ``Image`` needs an uploaded ``image_id`` or an ``image_link``.
    Raises ``SendRequestInvalid`` if the reply breaks a limit."""
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to}
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    payload.update(_body_of(reply, image_link=image_link, image_id=image_id))
    validate_send_request(payload)
    return payload


def _body_of(reply: Reply, *, image_link: str | None, image_id: str | None) -> dict[str, Any]:
    match reply:
        case Text(body=body):
            return {"type": "text", "text": {"body": body, "preview_url": False}}
        case Buttons(body=body, buttons=buttons):
            action = {
                "buttons": [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in buttons]
            }
            return {
                "type": "interactive",
                "interactive": {"type": "button", "body": {"text": body}, "action": action},
            }
        case ListMenu(body=body, button=button, rows=rows):
            section: dict[str, Any] = {"rows": [_row(r.id, r.title, r.description) for r in rows]}
            menu: dict[str, Any] = {"button": button, "sections": [section]}
            return {
                "type": "interactive",
                "interactive": {"type": "list", "body": {"text": body}, "action": menu},
            }
        case Image(caption=caption):
            media: dict[str, Any] = {"id": image_id} if image_id else {"link": image_link}
            if caption:
                media["caption"] = caption
            return {"type": "image", "image": media}
        case Document(link=link, filename=filename, caption=caption):
            document: dict[str, Any] = {"link": link}
            if filename:
                document["filename"] = filename
            if caption:
                document["caption"] = caption
            return {"type": "document", "document": document}
    raise TypeError(f"not a reply: {reply!r}")


def _row(row_id: str, title: str, description: str) -> dict[str, str]:
    row = {"id": row_id, "title": title}
    if description:
        row["description"] = description
    return row


def build_mark_read(message_id: str, *, typing: bool = False) -> dict[str, Any]:
    """Mark an inbound message read (blue ticks); ``typing`` also shows the typing indicator."""
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    if typing:
        payload["typing_indicator"] = {"type": "text"}
    return payload


def build_template(
    to: str, name: str, language: str, components: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A template message: the only kind allowed outside the 24-hour window."""
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = components
    payload = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": template,
    }
    validate_send_request(payload)
    return payload


# ---------------------------------------------------------------- answers


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SentContact(_Open):
    input: str = ""
    wa_id: str = ""


class SentMessage(_Open):
    id: str
    message_status: str | None = None


class SendResult(_Open):
    """A 2xx answer: ``messages[0].id`` for a send (accepted, not yet delivered), ``success`` for mark-as-read."""

    messaging_product: str = "whatsapp"
    contacts: list[SentContact] = []
    messages: list[SentMessage] = []
    success: bool | None = None

    @property
    def wamid(self) -> str | None:
        return self.messages[0].id if self.messages else None


Action = Literal["retry", "permanent", "token_expired"]

RETRY_CODES = frozenset({4, 80007, 130429, 131048, 131053, 131056, 131057, 133016})
PERMANENT_CODES = frozenset({100, 131026, 131047, 131051})
TOKEN_EXPIRED = 190
NETWORK_ERROR = 0  # http_status for timeouts and connection failures (no answer at all)


def classify(code: int, http_status: int, *, is_transient: bool = False) -> Action:
    """What the sender does with an error: decide on Meta's code first, then on the HTTP status."""
    if code == TOKEN_EXPIRED or http_status == 401:
        return "token_expired"
    if code in RETRY_CODES:
        return "retry"
    if code in PERMANENT_CODES:
        return "permanent"
    if http_status == NETWORK_ERROR or http_status >= 500 or http_status in (408, 429) or is_transient:
        return "retry"
    return "permanent"


@dataclass(eq=False)  # identity hashing, as for any exception
class ApiError(Exception):
    """An error answer from the Cloud API (or a transport failure, with ``http_status`` 0)."""

    code: int
    subcode: int | None
    message: str
    http_status: int
    is_transient: bool = False
    details: str | None = None

    def __str__(self) -> str:
        return f"WhatsApp API error {self.code} (HTTP {self.http_status}): {self.message}"

    @property
    def action(self) -> Action:
        return classify(self.code, self.http_status, is_transient=self.is_transient)

    @classmethod
    def from_body(cls, body: Any, http_status: int) -> ApiError:
        """Read ``{"error": {...}}``, a bare error object (as in ``statuses[].errors``), or anything else."""
        err = body.get("error", body) if isinstance(body, dict) else None
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            return cls(code=0, subcode=None, message=str(body)[:500], http_status=http_status)
        error_data = err.get("error_data")
        details = error_data.get("details") if isinstance(error_data, dict) else None
        subcode = err.get("error_subcode")
        return cls(
            code=err["code"],
            subcode=subcode if isinstance(subcode, int) else None,
            message=str(err.get("message") or err.get("title") or ""),
            http_status=http_status,
            is_transient=bool(err.get("is_transient", False)),
            details=details,
        )


def parse_response(http_status: int, body: Any) -> SendResult | ApiError:
    """A send's answer: ``SendResult`` for an accepted request, ``ApiError`` otherwise."""
    if 200 <= http_status < 300 and isinstance(body, dict) and (body.get("messages") or body.get("success")):
        try:
            return SendResult.model_validate(body)
        except ValidationError:
            pass
    return ApiError.from_body(body, http_status)
