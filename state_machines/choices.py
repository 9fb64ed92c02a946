"""Offering choices and understanding the answer, whatever way the user gives it.

WhatsApp shows up to 3 reply buttons or a list of up to 10 rows; anything else falls back to numbered text.
The user may tap, type the number, or type the option's title, in any case and with stray spaces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from state_machines.base import (
    BUTTON_TITLE_MAX,
    LIST_BUTTON_MAX,
    LIST_ROW_DESCRIPTION_MAX,
    LIST_ROW_TITLE_MAX,
    MAX_BUTTONS,
    MAX_LIST_ROWS,
    Button,
    Buttons,
    Inbound,
    ListMenu,
    Reply,
    Row,
    Text,
)


@dataclass(frozen=True)
class Option:
    id: str
    title: str
    description: str = ""


def normalise(text: str) -> str:
    """Lower case, single spaces, no surrounding spaces or trailing punctuation."""
    return re.sub(r"\s+", " ", text).strip().strip(".!?").casefold()


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def as_buttons(options: Sequence[Option]) -> bool:
    """Whether ``offer`` shows these options as reply buttons (then "tap a button" is what to ask for)."""
    titles = [o.title for o in options]
    return (
        0 < len(options) <= MAX_BUTTONS
        and all(len(t) <= BUTTON_TITLE_MAX for t in titles)
        and len(set(titles)) == len(titles)
    )


def offer(body: str, options: Sequence[Option], list_button: str = "Choose") -> Reply:
    """Buttons when they fit, else a list, else numbered text (always numbered so typing a number works)."""
    if as_buttons(options):
        return Buttons(body=body, buttons=tuple(Button(o.id, o.title) for o in options))
    if 0 < len(options) <= MAX_LIST_ROWS:
        rows = tuple(
            Row(
                id=o.id,
                title=_clip(f"{i}. {o.title}", LIST_ROW_TITLE_MAX),
                description=_clip(
                    o.description or ("" if len(f"{i}. {o.title}") <= LIST_ROW_TITLE_MAX else o.title),
                    LIST_ROW_DESCRIPTION_MAX,
                ),
            )
            for i, o in enumerate(options, 1)
        )
        return ListMenu(body=body, button=_clip(list_button, LIST_BUTTON_MAX), rows=rows)
    lines = [body, ""] + [f"{i}. {o.title}" for i, o in enumerate(options, 1)]
    return Text("\n".join(lines))


def match(event: Inbound, options: Sequence[Option]) -> Option | None:
    """The option the user meant: the tapped id, the typed number, or the typed title (exact, then prefix)."""
    if event.choice_id is not None:
        for o in options:
            if o.id == event.choice_id:
                return o
    said = normalise(event.text)
    if not said:
        return None
    said = re.sub(r"^(\d+)[.)]?$", r"\1", said)
    if said.isdigit():
        n = int(said)
        return options[n - 1] if 1 <= n <= len(options) else None
    # A tapped list row's title carries its number ("2. VIP"); strip it before comparing.
    said = re.sub(r"^\d+[.)]\s*", "", said)
    exact = [o for o in options if normalise(o.title) == said]
    if len(exact) == 1:
        return exact[0]
    prefixed = [o for o in options if normalise(o.title).startswith(said)] if len(said) >= 3 else []
    return prefixed[0] if len(prefixed) == 1 else None


def match_many(event: Inbound, options: Sequence[Option]) -> list[Option] | None:
    """Several choices at once ("1, 3" or "1 3" or "red, blue"); None when any part is not an option."""
    if event.choice_id is not None:
        one = match(event, options)
        return [one] if one else None
    parts = [p for p in re.split(r"[,;]|\s+and\s+|\s+na\s+", event.text) if p.strip()]
    if len(parts) == 1 and re.fullmatch(r"\s*\d+(\s+\d+)+\s*", parts[0]):
        parts = parts[0].split()
    chosen: list[Option] = []
    for part in parts:
        o = match(Inbound(text=part), options)
        if o is None:
            return None
        if o not in chosen:
            chosen.append(o)
    return chosen or None
