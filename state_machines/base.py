"""The contract between the engine and the pure conversation logic.

A state machine is a function ``step(state, event, ctx) -> Step``: no I/O, no clock reads, no randomness
(everything time- or id-dependent comes in through ``ctx``). The engine loads what the step needs into
``ctx``, calls it, applies the returned effects in the message's transaction and writes the replies to the
outbox. An applier may answer with a follow-up event (e.g. ``TicketsHeld`` / ``SoldOut``); the engine feeds
it back into ``step`` in the same transaction, so races (the last tickets, a double scan) are decided by
the database while the conversation logic stays pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

# ---------------------------------------------------------------- replies (what the bot sends)

BUTTON_TITLE_MAX = 20
MAX_BUTTONS = 3
LIST_ROW_TITLE_MAX = 24
LIST_ROW_DESCRIPTION_MAX = 72
LIST_BUTTON_MAX = 20
MAX_LIST_ROWS = 10
TEXT_MAX = 4096
INTERACTIVE_BODY_MAX = 1024


@dataclass(frozen=True)
class Text:
    body: str


@dataclass(frozen=True)
class Button:
    id: str
    title: str


@dataclass(frozen=True)
class Buttons:
    """Up to 3 reply buttons, titles of at most 20 characters."""

    body: str
    buttons: tuple[Button, ...]


@dataclass(frozen=True)
class Row:
    id: str
    title: str
    description: str = ""


@dataclass(frozen=True)
class ListMenu:
    """A list message: up to 10 rows in total."""

    body: str
    button: str
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Image:
    """An image the engine renders and uploads; ``ref`` names what to render, e.g. ``qr:TKT-7Q2M9X``."""

    ref: str
    caption: str = ""


@dataclass(frozen=True)
class Document:
    """A document WhatsApp fetches from ``link`` (an exhibitor's brochure), shown as ``filename``."""

    link: str
    filename: str = ""
    caption: str = ""


IMAGE_LINK = "link:"  # an Image whose ref is ``link:<https URL>`` is sent by link, not rendered and uploaded

Reply = Text | Buttons | ListMenu | Image | Document

# ---------------------------------------------------------------- events (what happened)


@dataclass(frozen=True)
class Inbound:
    """A message the contact sent. ``text`` is the body, or the title of a tapped button / list row;
    ``choice_id`` is the id of the tapped button or row (None when typed); ``media_id`` the WhatsApp id of the
    photo, voice note ... it carries (the engine downloads it: engine/whatsapp/media.py)."""

    text: str = ""
    choice_id: str | None = None
    kind: str = "text"  # the WhatsApp message type: text, interactive, button, image, location, ...
    media_id: str | None = None
    mime_type: str = ""  # the media's, as the webhook gives it
    place: Mapping[str, Any] | None = None  # a shared location: latitude, longitude, name, address


@dataclass(frozen=True)
class PaymentResult:
    """The M-Pesa STK push callback for a payment this conversation started."""

    checkout_request_id: str
    result_code: int  # 0 = paid; 1 = insufficient funds; 1032 = cancelled by user; 1037 = timeout ...
    result_desc: str = ""
    receipt: str | None = None
    amount: Decimal | None = None
    hold_id: str | None = None  # the hold the payment was for (verified results name it)


@dataclass(frozen=True)
class TimerFired:
    """A timer this conversation set (``StartTimer``); ``version`` is the state version it was set at."""

    kind: str
    version: int
    data: Mapping[str, Any] = field(default_factory=dict)


Event = Inbound | PaymentResult | TimerFired  # modules add their own applier follow-up events

# ---------------------------------------------------------------- state and context


@dataclass(frozen=True)
class State:
    """The conversation's position. ``module`` None means idle (at the menu). ``data`` is JSON-serialisable.
    ``version`` increases with every step that changes the state; timers compare it to ignore stale fires."""

    module: str | None = None
    step: str = "idle"
    data: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0


@dataclass(frozen=True)
class Context:
    """Everything a step may know. Loaded by the engine before the call; read-only."""

    now: datetime
    language: str  # "en" | "sw"
    contact_id: str
    contact_phone: str
    contact_name: str | None = None
    opted_in: bool = True
    is_first_message: bool = False
    is_staff: bool = False
    org_name: str = ""
    # Module data the handler loaded for this step (catalogue of offers, a survey's definition,
    # ticket availability ...); each module documents the keys it reads.
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Effect:
    """Base of every effect. Each concrete effect has exactly one applier in ``handlers/``."""


@dataclass(frozen=True)
class Step:
    state: State
    replies: tuple[Reply, ...] = ()
    effects: tuple[Effect, ...] = ()


# ---------------------------------------------------------------- effects shared by all modules


@dataclass(frozen=True)
class SetLanguage(Effect):
    language: str


@dataclass(frozen=True)
class OptOut(Effect):
    pass


@dataclass(frozen=True)
class OptIn(Effect):
    pass


@dataclass(frozen=True)
class Charge(Effect):
    """Debit the organisation's wallet for a billable action (price from the organisation's settings)."""

    action: str  # "survey_completed", "ticket_issued", "ai_answer", ...
    module: str
    reference_id: str | None = None
    quantity: int = 1


@dataclass(frozen=True)
class StartTimer(Effect):
    """Fire ``TimerFired(kind, version=<state version after this step>)`` after ``seconds``."""

    kind: str
    seconds: int
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelTimers(Effect):
    """Cancel pending timers of this conversation (of ``kind``, or all when None)."""

    kind: str | None = None
