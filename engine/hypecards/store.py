"""HypeCard templates, pictures and rendered images in PostgreSQL, always inside the caller's tenant
transaction (row-level security confines every statement to its organisation).

A template's canvas is a ``hypecard_templates`` row, its layers ``template_layers`` rows in drawing order
(``z_index``); ``load_template`` rebuilds the same ``TemplateSpec`` the YAML gave, validated again.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from engine.hypecards.render import Rendered
from engine.hypecards.spec import Gradient, Picture, Solid, TemplateSpec, assets_of

LOGO = "logo"


@dataclass(frozen=True)
class StoredTemplate:
    id: UUID
    organization_id: UUID
    spec: TemplateSpec
    event_id: UUID | None
    poll_id: UUID | None


def _background_type(spec: TemplateSpec) -> str:
    bg = spec.canvas.background
    return {Solid: "color", Gradient: "gradient", Picture: "image"}[type(bg)]


def _mime(data: bytes) -> tuple[str, int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return Image.MIME.get(im.format or "", "application/octet-stream"), im.width, im.height


async def save_asset(
    conn: asyncpg.Connection, org_id: UUID, sha256: str, data: bytes, name: str | None
) -> None:
    mime, width, height = _mime(data)
    await conn.execute(
        """INSERT INTO hypecard_assets (organization_id, sha256, name, mime_type, width, height, data)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id, sha256) DO NOTHING""",
        org_id,
        sha256,
        name,
        mime,
        width,
        height,
        data,
    )


async def save_logo(conn: asyncpg.Connection, org_id: UUID, sha256: str, data: bytes) -> None:
    """The organisation's logo (``source: logo`` in a template): one per organisation, replaced."""
    await conn.execute(
        "UPDATE hypecard_assets SET name = NULL WHERE name = $1 AND sha256 <> $2", LOGO, sha256
    )
    await save_asset(conn, org_id, sha256, data, LOGO)
    await conn.execute("UPDATE hypecard_assets SET name = $1 WHERE sha256 = $2", LOGO, sha256)


async def save_template(
    conn: asyncpg.Connection,
    org_id: UUID,
    spec: TemplateSpec,
    assets: dict[str, bytes],
    event_id: UUID | None = None,
    poll_id: UUID | None = None,
) -> tuple[UUID, bool]:
    """Insert or update the template named ``spec.name``; its layers are replaced. (id, created)."""
    for sha256, data in assets.items():
        await save_asset(conn, org_id, sha256, data, None)
    background = spec.canvas.background.model_dump(mode="json")
    values = (
        spec.canvas.width,
        spec.canvas.height,
        _background_type(spec),
        json.dumps(background),
        [v.model_dump(mode="json", exclude_none=True) for v in spec.variables],
        spec.active,
        spec.title,
        event_id,
        poll_id,
        spec.menu,
        spec.format,
        {k: v for k, v in (("caption", spec.caption), ("share", spec.share)) if v},
    )
    row = await conn.fetchrow(
        """INSERT INTO hypecard_templates (organization_id, name, width, height, background_type, background_value,
                                           variables, is_active, title, event_id, poll_id, in_menu, output_format,
                                           texts)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
           ON CONFLICT (organization_id, name) DO UPDATE SET
               width = EXCLUDED.width, height = EXCLUDED.height, background_type = EXCLUDED.background_type,
               background_value = EXCLUDED.background_value, variables = EXCLUDED.variables,
               is_active = EXCLUDED.is_active, title = EXCLUDED.title, event_id = EXCLUDED.event_id,
               poll_id = EXCLUDED.poll_id, in_menu = EXCLUDED.in_menu, output_format = EXCLUDED.output_format,
               texts = EXCLUDED.texts
           RETURNING id, (xmax = 0) AS created""",
        org_id,
        spec.name,
        *values,
    )
    template_id = row["id"]
    await conn.execute("DELETE FROM template_layers WHERE template_id = $1", template_id)
    await conn.executemany(
        """INSERT INTO template_layers (organization_id, template_id, kind, z_index, x, y, width, height, config)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        [
            (
                org_id,
                template_id,
                layer.type,
                z,
                *layer.box,
                layer.model_dump(mode="json", exclude={"type", "box"}, exclude_defaults=True),
            )
            for z, layer in enumerate(spec.layers)
        ],
    )
    return template_id, bool(row["created"])


def spec_of(template: asyncpg.Record, layers: list[asyncpg.Record]) -> TemplateSpec:
    texts = template["texts"] or {}
    raw: dict[str, Any] = {
        "name": template["name"],
        "title": template["title"],
        "menu": template["in_menu"],
        "active": template["is_active"],
        "format": template["output_format"],
        "canvas": {
            "width": template["width"],
            "height": template["height"],
            "background": json.loads(template["background_value"] or '{"color": "#ffffff"}'),
        },
        "variables": template["variables"] or [],
        "layers": [
            {"type": r["kind"], "box": [r["x"], r["y"], r["width"], r["height"]], **(r["config"] or {})}
            for r in layers
        ],
        "caption": texts.get("caption"),
        "share": texts.get("share"),
    }
    return TemplateSpec.model_validate(raw)


async def load_template(conn: asyncpg.Connection, template_id: UUID) -> StoredTemplate | None:
    row = await conn.fetchrow("SELECT * FROM hypecard_templates WHERE id = $1", template_id)
    if row is None:
        return None
    layers = await conn.fetch(
        "SELECT * FROM template_layers WHERE template_id = $1 ORDER BY z_index, created_at", template_id
    )
    return StoredTemplate(
        row["id"], row["organization_id"], spec_of(row, layers), row["event_id"], row["poll_id"]
    )


async def find_template(conn: asyncpg.Connection, id_or_name: str) -> UUID | None:
    try:
        return UUID(id_or_name)
    except ValueError:
        return await conn.fetchval("SELECT id FROM hypecard_templates WHERE name = $1", id_or_name)


async def assets(conn: asyncpg.Connection, spec: TemplateSpec) -> dict[str, bytes]:
    wanted = sorted(assets_of(spec))
    if not wanted:
        return {}
    rows = await conn.fetch("SELECT sha256, data FROM hypecard_assets WHERE sha256 = ANY($1::text[])", wanted)
    return {r["sha256"]: bytes(r["data"]) for r in rows}


async def logo(conn: asyncpg.Connection) -> bytes | None:
    data = await conn.fetchval("SELECT data FROM hypecard_assets WHERE name = $1", LOGO)
    return bytes(data) if data is not None else None


async def cached_image(conn: asyncpg.Connection, input_hash: str) -> asyncpg.Record | None:
    """The stored render for these inputs, counted as a hit."""
    return await conn.fetchrow(
        """UPDATE hypecard_images SET hits = hits + 1 WHERE input_hash = $1
           RETURNING input_hash, mime_type, width, height, length(data) AS bytes""",
        input_hash,
    )


async def store_image(conn: asyncpg.Connection, org_id: UUID, rendered: Rendered, render_ms: float) -> None:
    await conn.execute(
        """INSERT INTO hypecard_images (organization_id, input_hash, mime_type, width, height, data, render_ms)
           VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (organization_id, input_hash) DO NOTHING""",
        org_id,
        rendered.hash,
        rendered.mime_type,
        rendered.width,
        rendered.height,
        rendered.data,
        render_ms,
    )


async def list_templates(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT t.id, t.name, t.width || '×' || t.height AS size, t.output_format AS format,
                  (SELECT count(*) FROM template_layers l WHERE l.template_id = t.id) AS layers,
                  e.name AS event, p.question AS poll, t.in_menu AS menu, t.is_active AS active,
                  count(c.id) FILTER (WHERE c.status = 'sent') AS sent,
                  count(c.id) FILTER (WHERE c.status IN ('pending', 'rendered')) AS in_progress,
                  count(c.id) FILTER (WHERE c.status = 'failed') AS failed,
                  COALESCE(sum(c.view_count), 0) AS views, COALESCE(sum(c.share_count), 0) AS shares,
                  COALESCE(sum(c.tokens_consumed), 0) AS tokens
           FROM hypecard_templates t LEFT JOIN events e ON e.id = t.event_id LEFT JOIN polls p ON p.id = t.poll_id
           LEFT JOIN generated_cards c ON c.template_id = t.id
           GROUP BY t.id, e.name, p.question ORDER BY t.created_at"""
    )
    return [dict(r) for r in rows]


MEDIA_REUSE = "29 days"  # WhatsApp keeps uploaded media for 30 days


@dataclass(frozen=True)
class CardImage:
    input_hash: str
    data: bytes
    mime_type: str
    media_id: str | None  # still held by WhatsApp for this number: send it without uploading again

    @property
    def extension(self) -> str:
        return "png" if self.mime_type == "image/png" else "jpg"


async def card_image(conn: asyncpg.Connection, card_id: UUID, phone_number_id: str) -> CardImage | None:
    row = await conn.fetchrow(
        f"""SELECT i.input_hash, i.data, i.mime_type,
                   CASE WHEN i.media_phone_number_id = $2 AND i.media_uploaded_at > now() - interval '{MEDIA_REUSE}'
                        THEN i.media_id END AS media_id
            FROM generated_cards c JOIN hypecard_images i ON i.input_hash = c.input_hash WHERE c.id = $1""",
        card_id,
        phone_number_id,
    )
    if row is None:
        return None
    return CardImage(row["input_hash"], bytes(row["data"]), row["mime_type"], row["media_id"])


async def remember_upload(
    conn: asyncpg.Connection, input_hash: str, phone_number_id: str, media_id: str
) -> None:
    await conn.execute(
        """UPDATE hypecard_images SET media_id = $3, media_phone_number_id = $2, media_uploaded_at = now()
           WHERE input_hash = $1""",
        input_hash,
        phone_number_id,
        media_id,
    )
