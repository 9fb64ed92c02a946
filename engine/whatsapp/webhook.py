"""The Cloud API webhook envelope: typed models, splitting into queueable parts, and what a user said.

Parsing is strict only about the envelope's skeleton (object, entry[], changes[{field, value}]): anything
else is kept as given (``extra="allow"``). A message whose content does not match its type's model becomes an
``UnknownMessage`` instead of failing the whole POST, because Meta retries rejected deliveries for 7 days and
the worker, not the gateway, decides what to do with odd messages.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    WrapValidator,
)


class _Open(BaseModel):
    """Base of every wire model: unknown keys are kept, aliases (``from``) and names both accepted."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)


# ---------------------------------------------------------------- shared pieces


class ErrorDetail(_Open):
    code: int | None = None
    title: str | None = None
    message: str | None = None
    details: str | None = None
    error_data: dict[str, Any] | None = None
    href: str | None = None


class Profile(_Open):
    name: str | None = None
    username: str | None = None


class Contact(_Open):
    profile: Profile | None = None
    wa_id: str = ""  # "" or absent for business-scoped users (user_id only)
    user_id: str | None = None
    username: str | None = None


class Metadata(_Open):
    display_phone_number: str = ""
    phone_number_id: str = ""


class MessageContext(_Open):
    from_: str | None = Field(None, alias="from")
    id: str | None = None
    forwarded: bool | None = None
    frequently_forwarded: bool | None = None
    referred_product: dict[str, Any] | None = None


class Referral(_Open):
    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    body: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


# ---------------------------------------------------------------- message bodies


class TextBody(_Open):
    body: str


class Media(_Open):
    id: str | None = None
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    url: str | None = None


class DocumentMedia(Media):
    filename: str | None = None


class AudioMedia(Media):
    voice: bool | None = None


class StickerMedia(Media):
    animated: bool | None = None


class Location(_Open):
    latitude: float | str | None = None  # documentation samples carry placeholder strings
    longitude: float | str | None = None
    name: str | None = None
    address: str | None = None
    url: str | None = None


class ButtonReply(_Open):
    id: str
    title: str


class ListReply(_Open):
    id: str
    title: str
    description: str | None = None


class NfmReply(_Open):
    name: str | None = None
    body: str | None = None
    response_json: str | None = None  # a JSON document in a string


class Interactive(_Open):
    type: str
    button_reply: ButtonReply | None = None
    list_reply: ListReply | None = None
    nfm_reply: NfmReply | None = None


class TemplateButton(_Open):
    payload: str | None = None
    text: str | None = None


class Reaction(_Open):
    message_id: str | None = None
    emoji: str | None = None  # "" or absent: the reaction was removed


class Order(_Open):
    catalog_id: str | None = None
    text: str | None = None
    product_items: list[dict[str, Any]] = []


class SystemBody(_Open):
    body: str | None = None
    wa_id: str | None = None
    type: str | None = None


class Edit(_Open):
    original_message_id: str | None = None
    message: dict[str, Any] | None = None


class Revoke(_Open):
    original_message_id: str | None = None


# ---------------------------------------------------------------- messages


class BaseMessage(_Open):
    from_: str = Field("", alias="from")  # absent for business-scoped users (from_user_id)
    from_user_id: str | None = None
    id: str = ""
    timestamp: int | str | None = None
    type: str = ""
    context: MessageContext | None = None
    referral: Referral | None = None
    errors: list[ErrorDetail] = []


class TextMessage(BaseMessage):
    type: Literal["text"]
    text: TextBody


class InteractiveMessage(BaseMessage):
    type: Literal["interactive"]
    interactive: Interactive | None = None  # absent when Meta could not render it (see errors)


class ButtonMessage(BaseMessage):
    type: Literal["button"]
    button: TemplateButton


class ImageMessage(BaseMessage):
    type: Literal["image"]
    image: Media


class VideoMessage(BaseMessage):
    type: Literal["video"]
    video: Media


class AudioMessage(BaseMessage):
    type: Literal["audio"]
    audio: AudioMedia


class DocumentMessage(BaseMessage):
    type: Literal["document"]
    document: DocumentMedia


class StickerMessage(BaseMessage):
    type: Literal["sticker"]
    sticker: StickerMedia


class LocationMessage(BaseMessage):
    type: Literal["location"]
    location: Location


class ContactsMessage(BaseMessage):
    type: Literal["contacts"]
    contacts: list[dict[str, Any]]


class ReactionMessage(BaseMessage):
    type: Literal["reaction"]
    reaction: Reaction


class OrderMessage(BaseMessage):
    type: Literal["order"]
    order: Order


class SystemMessage(BaseMessage):
    type: Literal["system"]
    system: SystemBody


class EditMessage(BaseMessage):
    type: Literal["edit"]
    edit: Edit


class RevokeMessage(BaseMessage):
    type: Literal["revoke"]
    revoke: Revoke


class UnsupportedMessage(BaseMessage):
    type: Literal["unsupported", "unknown"]  # older payloads say "unknown"
    unsupported: dict[str, Any] | None = None


class UnknownMessage(BaseMessage):
    """Any other type, or a known type whose content did not match its model."""


_MESSAGE_MODELS: dict[str, type[BaseMessage]] = {
    "text": TextMessage,
    "interactive": InteractiveMessage,
    "button": ButtonMessage,
    "image": ImageMessage,
    "video": VideoMessage,
    "audio": AudioMessage,
    "document": DocumentMessage,
    "sticker": StickerMessage,
    "location": LocationMessage,
    "contacts": ContactsMessage,
    "reaction": ReactionMessage,
    "order": OrderMessage,
    "system": SystemMessage,
    "edit": EditMessage,
    "revoke": RevokeMessage,
    "unsupported": UnsupportedMessage,
}


def _message_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    if kind == "unknown":
        return "unsupported"
    return kind if kind in _MESSAGE_MODELS else "other"


def _unknown_on_mismatch(value: Any, handler: Any) -> Any:
    try:
        return handler(value)
    except ValidationError:
        if not isinstance(value, dict):
            raise
        return UnknownMessage.model_validate(value)


_TypedMessage = Annotated[
    Annotated[TextMessage, Tag("text")]
    | Annotated[InteractiveMessage, Tag("interactive")]
    | Annotated[ButtonMessage, Tag("button")]
    | Annotated[ImageMessage, Tag("image")]
    | Annotated[VideoMessage, Tag("video")]
    | Annotated[AudioMessage, Tag("audio")]
    | Annotated[DocumentMessage, Tag("document")]
    | Annotated[StickerMessage, Tag("sticker")]
    | Annotated[LocationMessage, Tag("location")]
    | Annotated[ContactsMessage, Tag("contacts")]
    | Annotated[ReactionMessage, Tag("reaction")]
    | Annotated[OrderMessage, Tag("order")]
    | Annotated[SystemMessage, Tag("system")]
    | Annotated[EditMessage, Tag("edit")]
    | Annotated[RevokeMessage, Tag("revoke")]
    | Annotated[UnsupportedMessage, Tag("unsupported")]
    | Annotated[UnknownMessage, Tag("other")],
    Discriminator(_message_tag),
]
InboundMessage = Annotated[_TypedMessage, WrapValidator(_unknown_on_mismatch)]


# ---------------------------------------------------------------- statuses and the envelope


class Status(_Open):
    id: str = ""
    status: str = ""  # sent | delivered | read | failed | played; others tolerated
    timestamp: int | str | None = None
    recipient_id: str = ""
    errors: list[ErrorDetail] = []
    pricing: dict[str, Any] | None = None
    conversation: dict[str, Any] | None = None
    biz_opaque_callback_data: str | None = None


class ChangeValue(_Open):
    messaging_product: str | None = None
    metadata: Metadata | None = None
    contacts: list[Contact] = []
    messages: list[InboundMessage] = []
    statuses: list[Status] = []
    errors: list[ErrorDetail] = []


class Change(_Open):
    field: str = Field(strict=True)
    value: ChangeValue


class Entry(_Open):
    id: str = ""
    changes: list[Change]


class WebhookEnvelope(_Open):
    object: str = Field(strict=True)  # no number coercion here: a number means this is not an envelope
    entry: list[Entry]
    _raw: dict[str, Any] | None = PrivateAttr(default=None)


def parse_envelope(raw: dict[str, Any]) -> WebhookEnvelope:
    """Validate a decoded webhook body; raises ``pydantic.ValidationError`` if it is not a Cloud API envelope."""
    env = WebhookEnvelope.model_validate(raw)
    env._raw = raw
    return env


# ---------------------------------------------------------------- splitting into queueable parts


PartKind = Literal["message", "status", "error", "other"]


@dataclass(frozen=True)
class InboundPart:
    """One unit of work for the inbound queue: a message, a status, or a whole non-message change."""

    kind: PartKind
    field: str
    phone_number_id: str
    display_phone_number: str
    wa_id: str
    contact_name: str | None
    external_id: str
    payload: dict[str, Any]
    timestamp: int | None
    user_id: str | None = None  # business-scoped user id, when Meta sends one
    business_account_id: str = ""  # the entry's id: the WhatsApp Business Account (template webhooks need it)


def split_envelope(env: WebhookEnvelope) -> list[InboundPart]:
    """One part per message and per status, in envelope order; other changes become one part each."""
    raw = env._raw if env._raw is not None else env.model_dump(by_alias=True, exclude_unset=True)
    parts: list[InboundPart] = []
    for entry, raw_entry in zip(env.entry, raw["entry"], strict=True):
        for change, raw_change in zip(entry.changes, raw_entry["changes"], strict=True):
            parts.extend(_split_change(change, raw_change, entry.id))
    return parts


def _split_change(change: Change, raw_change: dict[str, Any], entry_id: str) -> Iterator[InboundPart]:
    value, raw_value = change.value, raw_change["value"]
    meta = value.metadata or Metadata()
    common = {
        "field": change.field,
        "business_account_id": entry_id,
        "phone_number_id": meta.phone_number_id,
        "display_phone_number": meta.display_phone_number,
    }
    if change.field != "messages" or not (value.messages or value.statuses):
        kind: PartKind = "error" if value.errors else "other"
        yield InboundPart(
            kind=kind,
            wa_id="",
            contact_name=None,
            payload=raw_value,
            timestamp=None,
            external_id=_stable_id({"field": change.field, "value": raw_value}),
            **common,
        )
        return
    for message, raw_message in zip(value.messages, raw_value.get("messages", []), strict=True):
        contact = _contact_for(value.contacts, message.from_, message.from_user_id)
        yield InboundPart(
            kind="message",
            payload=raw_message,
            timestamp=_seconds(message.timestamp),
            wa_id=message.from_ or (contact.wa_id if contact else ""),
            contact_name=contact.profile.name if contact and contact.profile else None,
            user_id=message.from_user_id or (contact.user_id if contact else None),
            external_id=message.id or _stable_id(raw_message),
            **common,
        )
    for status, raw_status in zip(value.statuses, raw_value.get("statuses", []), strict=True):
        yield InboundPart(
            kind="status",
            payload=raw_status,
            timestamp=_seconds(status.timestamp),
            wa_id=status.recipient_id,
            contact_name=None,
            external_id=f"{status.id}:{status.status}" if status.id else _stable_id(raw_status),
            **common,
        )


def _contact_for(contacts: list[Contact], wa_id: str, user_id: str | None) -> Contact | None:
    for contact in contacts:
        if (wa_id and contact.wa_id == wa_id) or (user_id and contact.user_id == user_id):
            return contact
    # One message, one contact: Meta may format ``from`` and ``wa_id`` differently (e.g. Brazilian numbers).
    return contacts[0] if len(contacts) == 1 else None


def _seconds(timestamp: int | str | None) -> int | None:
    try:
        return int(timestamp) if timestamp is not None else None
    except ValueError:
        return None  # placeholder text in documentation samples


def _stable_id(obj: Any) -> str:
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------- what the user said


def inbound_to_event_fields(message: dict[str, Any]) -> tuple[str, str, str | None]:
    """``(kind, text, choice_id)``: the typed text or caption, or the title and id of a tapped choice."""
    kind = str(message.get("type") or "unknown")
    body = message.get(kind)
    body = body if isinstance(body, dict) else {}
    if kind == "text":
        return kind, str(body.get("body") or ""), None
    if kind == "interactive":
        reply = body.get(str(body.get("type")))
        if body.get("type") in ("button_reply", "list_reply") and isinstance(reply, dict):
            return kind, str(reply.get("title") or ""), _str_or_none(reply.get("id"))
        return kind, "", None
    if kind == "button":
        return kind, str(body.get("text") or ""), _str_or_none(body.get("payload"))
    if kind in ("image", "video", "document"):
        return kind, str(body.get("caption") or ""), None
    return kind, "", None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)
