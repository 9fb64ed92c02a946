"""HypeCard templates through the content import into hypecard_templates / template_layers / hypecard_assets
(as the application role, under row-level security) and back; `chatnation hypecard render|list`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from engine.content_import import ContentError, import_content, load_content, parse_content
from engine.db import tenant_tx
from engine.hypecards import store
from engine.hypecards.fonts import Fonts
from engine.hypecards.render import CardInputs, Renderer
from engine.hypecards.spec import card_values
from engine.settings import PROJECT_ROOT, get_settings
from tests.helpers import run_cli

DEMO = PROJECT_ROOT / "demo" / "content.yaml"


async def test_demo_templates_round_trip_through_the_database(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Cards")
    content = load_content(DEMO)
    summary = await import_content(app_pool, org, content)
    assert summary.created["hypecards"] == 2
    renderer = Renderer(Fonts(get_settings().hypecard_emoji_font))
    async with tenant_tx(app_pool, org) as conn:
        for spec, pictures in content.hypecards:
            template_id = summary.ids["hypecards"][spec.name]
            stored = await store.load_template(conn, template_id)  # type: ignore[arg-type]
            assert stored is not None
            assert stored.spec.canvas == spec.canvas and stored.spec.layers == spec.layers
            assert stored.spec.variables == spec.variables and stored.spec.caption == spec.caption
            assert await store.assets(conn, stored.spec) == pictures
            kinds = await conn.fetch(
                "SELECT kind, z_index FROM template_layers WHERE template_id = $1 ORDER BY z_index", stored.id
            )
            assert [r["kind"] for r in kinds] == [layer.type for layer in spec.layers]
            logo = await store.logo(conn)
            assert logo is not None
            assert logo == content.logo[1]  # type: ignore[index]
            values = card_values(spec, {"name": "Wanjiku"}, {"code": "HC-ABC123", "event_name": "Jazz"})
            from_file = renderer.render(spec, CardInputs(values, {"logo": logo}, pictures, "254700000000"))
            from_db = renderer.render(
                stored.spec, CardInputs(values, {"logo": logo}, pictures, "254700000000")
            )
            assert from_file.data == from_db.data and from_file.hash == from_db.hash
        jazz = await conn.fetchrow("SELECT * FROM hypecard_templates WHERE name = 'Jazz Night attendee'")
        assert jazz["event_id"] == await conn.fetchval(
            "SELECT id FROM events WHERE name = 'Nairobi Jazz Night'"
        )
        assert jazz["in_menu"] and jazz["layers"] == []  # the layers live in template_layers
        voter = await conn.fetchrow("SELECT * FROM hypecard_templates WHERE name = 'Best act voter'")
        assert voter["poll_id"] is not None and voter["output_format"] == "png"
    again = await import_content(app_pool, org, content)  # by name: updated, not doubled
    assert again.updated["hypecards"] == 2 and "hypecards" not in again.created
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM hypecard_templates") == 2
        assert await conn.fetchval("SELECT count(*) FROM template_layers") == sum(
            len(s.layers) for s, _ in content.hypecards
        )


async def test_a_bad_template_in_the_content_file_writes_nothing(make_org, app_pool, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Bad cards")
    raw = yaml.safe_load(DEMO.read_text())
    raw["hypecards"][0]["layers"][6]["text"] = "{full_name}"
    raw["hypecards"][0]["layers"][2]["font"]["size"] = 0
    raw["hypecards"][1]["poll"] = "No such poll?"
    raw["organization"]["logo"] = "pictures/missing.png"
    with pytest.raises(ContentError) as refused:
        parse_content(raw, DEMO.parent)
    errors = refused.value.errors
    assert "hypecards[0].layers[2].font.size: Input should be greater than or equal to 6" in errors
    assert "hypecards[1].poll: no poll asking 'No such poll?' in this file" in errors
    assert any(e.startswith("organization.logo: cannot read pictures/missing.png") for e in errors)
    raw["hypecards"][0]["layers"][2]["font"]["size"] = 60
    with pytest.raises(ContentError) as still:
        parse_content(raw, DEMO.parent)
    assert any(
        e.startswith("hypecards[0].layers[6].text: unknown variable {full_name}") for e in still.value.errors
    )
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM hypecard_templates") == 0


async def test_templates_are_confined_to_their_organisation(make_org, app_pool) -> None:  # type: ignore[no-untyped-def]
    mine, _ = await make_org("Mine")
    theirs, _ = await make_org("Theirs")
    summary = await import_content(app_pool, mine, load_content(DEMO))
    template_id = summary.ids["hypecards"]["Jazz Night attendee"]
    async with tenant_tx(app_pool, theirs) as conn:
        assert await store.load_template(conn, template_id) is None  # type: ignore[arg-type]
        assert await conn.fetchval("SELECT count(*) FROM hypecard_assets") == 0
        assert await store.list_templates(conn) == []


async def test_cli_renders_from_a_file_and_from_the_database_and_lists(
    make_org, app_pool, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    org, new = await make_org("Cli cards")
    await import_content(app_pool, org, load_content(DEMO))
    photo = tmp_path / "me.jpg"
    Image.new("RGB", (900, 1200), (200, 120, 90)).save(photo, "JPEG")
    from_file = tmp_path / "file.png"
    done = run_cli(
        "hypecard",
        "render",
        "--template",
        str(DEMO),
        "--var",
        "name=Wanjiku",
        "--photo",
        str(photo),
        "--logo",
        str(DEMO.parent / "pictures" / "kilele-logo.png"),
        "--out",
        str(from_file),
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(from_file).size == (1080, 1350) and "1080×1350 image/png" in done.stdout
    from_db = tmp_path / "db.jpg"
    done = run_cli(
        "hypecard",
        "render",
        "--template",
        "Jazz Night attendee",
        "--org",
        new.phone_number_id,
        "--var",
        "name=Wanjiku",
        "--photo",
        str(photo),
        "--out",
        str(from_db),
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(io.BytesIO(from_db.read_bytes())).format == "JPEG"
    refused = run_cli(
        "hypecard", "render", "--template", str(DEMO), "--var", "nmae=x", "--out", str(tmp_path / "x.png")
    )
    assert refused.returncode != 0 and "no variable nmae" in refused.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump({"name": "b", "layers": [{"type": "text", "text": "{who}", "box": [0, 0, 50, 50]}]})
    )
    refused = run_cli("hypecard", "render", "--template", str(bad), "--out", str(tmp_path / "b.png"))
    assert refused.returncode == 1 and "error: layers[0].text: unknown variable {who}" in refused.stderr
    listed = run_cli("hypecard", "list", "--org", new.phone_number_id, "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert (
        rows["Jazz Night attendee"]["event"] == "Nairobi Jazz Night"
        and rows["Jazz Night attendee"]["layers"] == 9
    )
    assert rows["Best act voter"]["poll"] == "Best act of the night?" and rows["Best act voter"]["sent"] == 0
