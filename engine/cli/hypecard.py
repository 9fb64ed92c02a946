"""`chatnation hypecard render|list`: designers try a template on their own machine; operators see what
each template has produced."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from uuid import UUID

import typer
from rich.console import Console

from engine.cli.common import console, emit, org_tx, run, settings

app = typer.Typer(help="HypeCards: personalised image cards.", no_args_is_help=True)
errors = Console(stderr=True)
PREVIEW_CODE = "HC-PREVIEW"
PREVIEW_NUMBER = "254700000000"


def _fail(messages: list[str]) -> None:
    for message in messages:
        errors.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _pairs(values: list[str]) -> dict[str, str]:
    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--var")
        pairs[name.strip()] = value
    return pairs


def _from_file(path: Path, name: str | None) -> tuple[Any, dict[str, bytes]]:
    """One template: the file is a template, or a content file whose ``hypecards:`` has it (by --name)."""
    import yaml

    from engine.hypecards.spec import TemplateError, parse_template

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        _fail([f"cannot read {path}: {err}"])
    where, chosen = "", raw
    if isinstance(raw, dict) and "hypecards" in raw:
        cards = raw.get("hypecards") or []
        names = [c.get("name") for c in cards if isinstance(c, dict)]
        index = names.index(name) if name in names else (0 if name is None and cards else None)
        if index is None:
            _fail([f"{path}: no HypeCard named {name!r} (there are: {', '.join(map(str, names)) or 'none'})"])
            return {}, {}
        where, chosen = f"hypecards[{index}]", cards[index]
    try:
        return parse_template(chosen, where, path.resolve().parent)
    except TemplateError as err:
        _fail(err.errors)
    raise AssertionError("unreachable")


@app.command("render")
def render(
    template: str = typer.Option(
        ...,
        "--template",
        help="A YAML file (a template, or a content file), or a stored template's id or name",
    ),
    var: list[str] = typer.Option([], "--var", help="NAME=VALUE for a variable (repeatable)"),
    photo: Path | None = typer.Option(None, "--photo", help="A picture for the template's image variable"),
    logo: Path | None = typer.Option(None, "--logo", help="The organisation's logo (file templates)"),
    out: Path = typer.Option(..., "--out", help="Where to write the card (.png or .jpg chooses the format)"),
    org: str | None = typer.Option(
        None, "--org", help="The organisation of a stored template (id or phone_number_id)"
    ),
    name: str | None = typer.Option(None, "--name", help="Which HypeCard of a content file"),
    number: str = typer.Option(PREVIEW_NUMBER, "--number", help="The WhatsApp number a QR code opens"),
) -> None:
    """Render one card to a file: the same renderer, fonts and cache key the engine uses."""
    from engine.hypecards.fonts import Fonts, FontsMissing
    from engine.hypecards.render import CardInputs, Renderer, RenderError
    from engine.hypecards.spec import card_values

    given = _pairs(var)
    path = Path(template)
    s = settings()
    pictures: dict[str, bytes] = {}
    if path.suffix in (".yaml", ".yml") or path.is_file():
        spec, assets = _from_file(path, name)
        org_name = "Your organisation"
        if logo is not None:
            pictures["logo"] = _read(logo, "--logo")
    else:
        spec, assets, stored_logo, org_name = run(lambda: _stored(s, template, org))
        if stored_logo is not None:
            pictures["logo"] = stored_logo
    declared = {v.name for v in spec.variables}
    unknown = sorted(
        set(given)
        - declared
        - {"contact_name", "org_name", "event_name", "event_date", "event_venue", "code"}
    )
    if unknown:
        raise typer.BadParameter(
            f"no variable {', '.join(unknown)} in {spec.name!r} (it has: {', '.join(sorted(declared)) or 'none'})",
            param_hint="--var",
        )
    image_vars = [v.name for v in spec.variables if v.type == "image"]
    if photo is not None:
        if not image_vars:
            raise typer.BadParameter(f"{spec.name!r} has no image variable", param_hint="--photo")
        pictures[image_vars[0]] = _read(photo, "--photo")
    builtins = {"org_name": org_name, "event_name": spec.event or "", "code": PREVIEW_CODE, **given}
    builtins.setdefault("contact_name", given.get("name", ""))
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(out.suffix.lower())
    if fmt is None:
        raise typer.BadParameter("the file name must end in .png, .jpg or .jpeg", param_hint="--out")
    spec = spec.model_copy(update={"format": fmt})
    try:
        renderer = Renderer(Fonts(s.hypecard_emoji_font))
        inputs = CardInputs(card_values(spec, given, builtins), pictures, assets, number)
        started = time.perf_counter()
        card = renderer.render(spec, inputs)
        elapsed = (time.perf_counter() - started) * 1000
    except (FontsMissing, RenderError) as err:
        _fail([str(err)])
    out.write_bytes(card.data)
    console.print(
        f"{out}: {card.width}×{card.height} {card.mime_type}, {len(card.data):,} bytes, rendered in {elapsed:.0f} ms "
        f"(first card of a template includes its base), hash {card.hash[:16]}"
    )


def _read(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise typer.BadParameter(f"cannot read {path}: {err.strerror or err}", param_hint=option) from None


async def _stored(s: Any, template: str, org: str | None) -> tuple[Any, dict[str, bytes], bytes | None, str]:
    from engine.hypecards import store

    if org is None:
        raise typer.BadParameter(
            f"{template!r} is not a YAML file; a stored template needs --org", param_hint="--template"
        )
    async with org_tx(s, org) as (conn, org_id):
        template_id = await store.find_template(conn, template)
        stored = await store.load_template(conn, template_id) if template_id else None
        if stored is None:
            raise typer.BadParameter(
                f"no HypeCard template {template!r} in that organisation", param_hint="--template"
            )
        org_name = await conn.fetchval("SELECT name FROM organizations WHERE id = $1", org_id)
        return stored.spec, await store.assets(conn, stored.spec), await store.logo(conn), org_name


@app.command("list")
def list_templates(
    org: str = typer.Option(..., "--org", help="The organisation: id or WhatsApp phone_number_id"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The organisation's templates: size, layers, where they are offered, cards sent, views and shares."""
    from engine.hypecards.store import list_templates as rows_of

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, _):
            return await rows_of(conn)

    rows = run(body)
    if not rows and not as_json:
        console.print(
            "no HypeCard templates (add them under `hypecards:` in the content file, then import it)"
        )
        return
    emit(
        [{**r, "id": str(r["id"]) if isinstance(r["id"], UUID) else r["id"]} for r in rows],
        as_json=as_json,
        title="HypeCard templates",
    )
