"""Reading what the bot sent as a person would see it on WhatsApp (used by the demo and `chatnation chat`)."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.whatsapp import SimulatedUser, WhatsAppSimulator


def render(payload: dict[str, Any]) -> str:
    """A Cloud API send request as plain text: body, then buttons or list rows on their own lines."""
    kind = payload.get("type", "text")
    if kind == "text":
        return str(payload["text"]["body"])
    if kind == "image":
        image = payload["image"]
        return f"[image] {image.get('caption', '')}".strip()
    if kind == "document":
        document = payload["document"]
        return f"[document] {document.get('filename') or document.get('link', '')}".strip()
    if kind == "interactive":
        inter = payload["interactive"]
        lines = [inter["body"]["text"]]
        if inter["type"] == "button":
            lines += [f"  [ {b['reply']['title']} ]" for b in inter["action"]["buttons"]]
        elif inter["type"] == "list":
            lines.append(f"  ≡ {inter['action']['button']}")
            for section in inter["action"]["sections"]:
                lines += [
                    f"    • {r['title']}" + (f" — {r['description']}" if r.get("description") else "")
                    for r in section["rows"]
                ]
        return "\n".join(lines)
    if kind == "template":
        return f"[template {payload['template']['name']}]"
    return f"[{kind}]"


def choices(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The (id, title) of every button or list row of an interactive message; [] for anything else."""
    if payload.get("type") != "interactive":
        return []
    inter = payload["interactive"]
    if inter["type"] == "button":
        return [(b["reply"]["id"], b["reply"]["title"]) for b in inter["action"]["buttons"]]
    if inter["type"] == "list":
        return [(r["id"], r["title"]) for s in inter["action"]["sections"] for r in s["rows"]]
    return []


def _same_title(title: str, wanted: str) -> bool:
    """A list row's title carries its number ("2. Regular"); either form names it."""
    plain = re.sub(r"^\d+[.)]\s*", "", title).casefold()
    wanted = wanted.casefold()
    if plain.endswith("…"):  # clipped to WhatsApp's row title limit
        return wanted.startswith(plain[:-1])
    return wanted in (title.casefold(), plain)


class ChatDriver:
    """One simulated user in a scripted conversation: send, then wait until the bot's replies settle.

    ``settle`` waits for at least ``expect`` new replies (or ``timeout``), then until none arrived for
    ``quiet`` seconds, so a script never sleeps a fixed long time and never misses a late reply.
    """

    def __init__(
        self, whatsapp: WhatsAppSimulator, user: SimulatedUser, *, quiet: float = 0.5, timeout: float = 20.0
    ) -> None:
        self.whatsapp, self.user = whatsapp, user
        self.quiet, self.timeout = quiet, timeout
        self.seen = len(whatsapp.messages(to=user.wa_id))
        self.last: list[dict[str, Any]] = []

    async def say(self, text: str, expect: int = 1) -> list[dict[str, Any]]:
        await self.user.say(text)
        return await self.settle(expect)

    async def send_photo(
        self, data: bytes, mime_type: str = "image/jpeg", expect: int = 1
    ) -> list[dict[str, Any]]:
        """Send a photo: its bytes go to the simulator's media store, its id in the image webhook."""
        media_id = self.whatsapp.add_media(data, mime_type)
        await self.user.send_media("image", media_id, mime_type, hashlib.sha256(data).hexdigest())
        return await self.settle(expect)

    async def tap(self, title: str, expect: int = 1) -> list[dict[str, Any]]:
        """Tap the button or list row titled ``title`` in the latest interactive reply."""
        for message in reversed(self.whatsapp.messages(to=self.user.wa_id)):
            found = [(i, t) for i, t in choices(message["payload"]) if _same_title(t, title)]
            if found:
                choice_id, full_title = found[0]
                if message["payload"]["interactive"]["type"] == "list":
                    await self.user.pick_row(choice_id, full_title, context_id=message["wamid"])
                else:
                    await self.user.tap_button(choice_id, full_title, context_id=message["wamid"])
                return await self.settle(expect)
        raise LookupError(f"no button or row titled {title!r} in the replies to {self.user.wa_id}")

    async def settle(self, expect: int = 1, timeout: float | None = None) -> list[dict[str, Any]]:
        """The replies that arrived since the last call: at least ``expect`` of them, then quiet."""
        to = self.user.wa_id
        try:
            await self.whatsapp.wait_for_messages(self.seen + expect, to=to, timeout=timeout or self.timeout)
        except TimeoutError:
            pass  # the caller sees fewer replies than it expected and decides
        while True:
            try:
                await self.whatsapp.wait_for_messages(
                    len(self.whatsapp.messages(to=to)) + 1, to=to, timeout=self.quiet
                )
            except TimeoutError:
                break
        received = self.whatsapp.messages(to=to)
        self.last, self.seen = received[self.seen :], len(received)
        return self.last

    def texts(self, messages: list[dict[str, Any]] | None = None) -> list[str]:
        return [render(m["payload"]) for m in (self.last if messages is None else messages)]
