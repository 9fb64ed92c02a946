"""Reading what the bot sent as a person would see it on WhatsApp (used by the demo and `chatnation chat`)."""

from __future__ import annotations

from typing import Any


def render(payload: dict[str, Any]) -> str:
    """A Cloud API send request as plain text: body, then buttons or list rows on their own lines."""
    kind = payload.get("type", "text")
    if kind == "text":
        return str(payload["text"]["body"])
    if kind == "image":
        image = payload["image"]
        return f"[image] {image.get('caption', '')}".strip()
    if kind == "interactive":
        inter = payload["interactive"]
        lines = [inter["body"]["text"]]
        if inter["type"] == "button":
            lines += [f"  [ {b['reply']['title']} ]" for b in inter["action"]["buttons"]]
        elif inter["type"] == "list":
            lines.append(f"  ≡ {inter['action']['button']}")
            for section in inter["action"]["sections"]:
                lines += [f"    • {r['title']}" + (f" — {r['description']}" if r.get("description") else "")
                          for r in section["rows"]]
        return "\n".join(lines)
    if kind == "template":
        return f"[template {payload['template']['name']}]"
    return f"[{kind}]"
