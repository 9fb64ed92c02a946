"""Exhibitors' booths and leads outside the chat: the booth's QR code (a wa.me link whose prefilled text,
"BOOTH K12", the conversation takes for a scan: state_machines/exhibitors.py) and the leads export, CSV with
the consent each visitor gave. The CLI (``chatnation event qr``, ``chatnation leads export``) calls these;
an API would call the same."""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import quote
from uuid import UUID

import asyncpg
import qrcode

COLUMNS = (
    "created_at",
    "exhibitor",
    "booth",
    "visitor_name",
    "visitor_phone",
    "interest",
    "product",
    "note",
    "consent_at",
    "consent_text",
    "follow_up_status",
    "followed_up_at",
    "followed_up_by",
)


class LeadsError(ValueError):
    pass


def booth_text(booth: str) -> str:
    return f"BOOTH {booth.upper()}"


def booth_link(display_phone: str, booth: str) -> str:
    """``https://wa.me/254711000111?text=BOOTH%20K12``: opens a chat with the number, the scan text typed."""
    digits = re.sub(r"\D", "", display_phone)
    if not 8 <= len(digits) <= 15:
        raise LeadsError(f"not a WhatsApp number in international form: {display_phone!r}")
    return f"https://wa.me/{digits}?text={quote(booth_text(booth))}"


def qr_png(text: str, box_size: int = 12) -> bytes:
    buffer = io.BytesIO()
    qrcode.make(text, box_size=box_size, border=4).save(buffer, format="PNG")
    return buffer.getvalue()


async def booth_exhibitor(conn: asyncpg.Connection, event_id: UUID, booth: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT id, name FROM exhibitors WHERE event_id = $1 AND upper(booth_number) = upper($2)",
        event_id,
        booth,
    )
    return row


async def lead_rows(
    conn: asyncpg.Connection, event_id: UUID, booth: str | None = None
) -> list[dict[str, Any]]:
    """The event's leads (one exhibitor's with ``booth``), oldest first, with the consent recorded."""
    rows = await conn.fetch(
        """SELECT l.created_at, x.name AS exhibitor, upper(x.booth_number) AS booth, c.name AS visitor_name,
                  c.phone AS visitor_phone, l.interest_level AS interest, p.name AS product, l.notes AS note,
                  l.consent_at, l.consent_text, l.follow_up_status, l.followed_up_at, s.name AS followed_up_by
           FROM leads l JOIN exhibitors x ON x.id = l.exhibitor_id JOIN contacts c ON c.id = l.contact_id
           LEFT JOIN exhibitor_products p ON p.id = l.product_id LEFT JOIN exhibitor_staff s ON s.id = l.followed_up_by
           WHERE x.event_id = $1 AND ($2::text IS NULL OR upper(x.booth_number) = upper($2))
           ORDER BY l.created_at, l.id""",
        event_id,
        booth,
    )
    return [dict(r) for r in rows]


def to_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: ""
                if row.get(k) is None
                else (row[k].isoformat() if hasattr(row[k], "isoformat") else row[k])
                for k in COLUMNS
            }
        )
    return out.getvalue()
