"""What PostgreSQL cannot store, taken out of outside data where it enters the engine.

A ``text`` value cannot hold U+0000 (nor ``jsonb`` the escape ``\\u0000``), and a string holding a lone
surrogate (JSON allows ``"\\ud83d"`` alone) cannot be encoded in UTF-8 at all. One such character in a user's
text or profile name made every event of that user fail and park. ``storable`` drops U+0000 and replaces lone
surrogates with U+FFFD in every string and key of a decoded JSON value; the gateway applies it to what it queues
and the inbound role to every event it takes (engine/inbound.py), so that the user still gets a reply.
"""

from __future__ import annotations

from typing import Any

REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # json.loads has joined every valid pair: what is left is alone
            text = "".join(REPLACEMENT if "\ud800" <= ch <= "\udfff" else ch for ch in text)
    return text


def storable(value: Any) -> Any:
    """``value`` (decoded JSON) with every string made storable; other values as they are."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value
