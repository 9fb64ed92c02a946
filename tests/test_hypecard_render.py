"""HypeCard rendering: every layer type drawn where and how the template says (pixels read back from known
regions), the QR code's modules, determinism, formats and limits, and templates refused with errors that name
the path."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from engine.hypecards.fonts import Fonts
from engine.hypecards.render import (
    MAX_IMAGE_BYTES,
    CardInputs,
    Renderer,
    RenderError,
    input_hash,
    qr_content,
    qr_matrix,
    split_layers,
)
from engine.hypecards.spec import TemplateError, card_values, parse_template
from engine.settings import get_settings
from tests.helpers import rgb

WHITE, BLACK, RED, BLUE = (255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(Fonts(get_settings().hypecard_emoji_font))


def template(*layers: dict[str, Any], **canvas: Any) -> Any:
    raw = {
        "name": "t",
        "canvas": {"width": 400, "height": 400, "background": {"color": "#000000"}, **canvas},
        "format": "png",
        "variables": [
            {"name": "name", "type": "text", "default": "Wanjiku"},
            {"name": "photo", "type": "image", "required": False},
        ],
        "layers": list(layers),
    }
    return parse_template(raw)[0]


def draw(
    renderer: Renderer, spec: Any, values: dict[str, str] | None = None, **pictures: bytes
) -> Image.Image:
    inputs = CardInputs(card_values(spec, values or {}, {"code": "HC-TEST01"}), pictures, {}, "254700000001")
    card = renderer.render(spec, inputs)
    return Image.open(io.BytesIO(card.data)).convert("RGB")


def picture(size: tuple[int, int], colour: tuple[int, int, int], fmt: str = "PNG", **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt, **save)
    return buffer.getvalue()


def ink(im: Image.Image, box: tuple[int, int, int, int], background: tuple[int, int, int] = BLACK) -> Any:
    """The bounding box (in canvas coordinates) of pixels in ``box`` that differ from ``background``."""
    x, y, w, h = box
    region = im.crop((x, y, x + w, y + h))
    diff = Image.new("RGB", region.size, background)
    from PIL import ImageChops

    found = ImageChops.difference(region, diff).convert("L").point(lambda v: 255 if v > 40 else 0).getbbox()
    return None if found is None else (found[0] + x, found[1] + y, found[2] + x, found[3] + y)


def pixels(im: Image.Image) -> list[tuple[int, int, int]]:
    data = im.convert("RGB").tobytes()
    return [(data[i], data[i + 1], data[i + 2]) for i in range(0, len(data), 3)]


def close(a: object, b: object, tolerance: int = 3) -> bool:
    assert isinstance(a, tuple) and isinstance(b, tuple), (a, b)
    return all(abs(p - q) <= tolerance for p, q in zip(a, b, strict=True))


# ---------------------------------------------------------------- canvas


def test_solid_and_gradient_backgrounds(renderer: Renderer) -> None:
    shape = {"type": "shape", "box": [0, 0, 1, 1], "fill": "#00000000"}
    solid = draw(renderer, template(shape, background={"color": "#336699"}))
    assert solid.getpixel((200, 200)) == (0x33, 0x66, 0x99)
    down = draw(renderer, template(shape, background={"gradient": ["#ff0000", "#0000ff"], "angle": 90}))
    assert close(down.getpixel((200, 0)), RED, 4) and close(down.getpixel((200, 399)), BLUE, 4)
    assert close(down.getpixel((0, 200)), down.getpixel((399, 200)), 1)  # same colour across a row
    across = draw(renderer, template(shape, background={"gradient": ["#ff0000", "#0000ff"], "angle": 0}))
    assert close(across.getpixel((0, 200)), RED, 4) and close(across.getpixel((399, 200)), BLUE, 4)
    diagonal = draw(renderer, template(shape, background={"gradient": ["#ffffff", "#000000"], "angle": 45}))
    assert rgb(diagonal, (0, 0))[0] > 245 and rgb(diagonal, (399, 399))[0] < 10
    assert close(diagonal.getpixel((399, 0)), diagonal.getpixel((0, 399)), 3)  # the other diagonal: midway


def test_picture_background(renderer: Renderer, tmp_path: Path) -> None:
    (tmp_path / "bg.png").write_bytes(picture((100, 50), (10, 200, 30)))
    raw = {
        "name": "bg",
        "canvas": {"width": 300, "height": 300, "background": {"file": "bg.png", "fit": "cover"}},
        "layers": [{"type": "shape", "box": [0, 0, 10, 10], "fill": "#ff0000"}],
    }
    spec, assets = parse_template(raw, base_dir=tmp_path)
    card = renderer.render(spec, CardInputs({}, {}, assets))
    im = Image.open(io.BytesIO(card.data)).convert("RGB")
    assert close(im.getpixel((150, 150)), (10, 200, 30), 12) and close(im.getpixel((5, 5)), RED, 12)  # JPEG


# ---------------------------------------------------------------- shapes


def test_shapes_fill_outline_and_transparency(renderer: Renderer) -> None:
    spec = template(
        {"type": "shape", "shape": "rectangle", "box": [10, 10, 100, 100], "fill": "#ff0000"},
        {"type": "shape", "shape": "ellipse", "box": [200, 10, 100, 100], "fill": "#0000ff"},
        {
            "type": "shape",
            "shape": "rounded_rectangle",
            "box": [10, 200, 100, 100],
            "fill": "#ffffff",
            "radius": 40,
        },
        {
            "type": "shape",
            "box": [200, 200, 100, 100],
            "fill": "#ffffff80",
            "outline": "#00ff00",
            "outline_width": 8,
        },
        {"type": "shape", "shape": "line", "box": [0, 350, 400, 1], "outline": "#ffffff", "outline_width": 4},
    )
    im = draw(renderer, spec)
    assert im.getpixel((60, 60)) == RED and im.getpixel((5, 5)) == BLACK and im.getpixel((115, 60)) == BLACK
    assert (
        close(im.getpixel((250, 60)), BLUE) and im.getpixel((202, 12)) == BLACK
    )  # an ellipse: not its corner
    assert im.getpixel((60, 250)) == WHITE and im.getpixel((12, 202)) == BLACK  # a rounded corner
    assert close(im.getpixel((250, 250)), (128, 128, 128), 2)  # half-transparent white over black
    assert im.getpixel((202, 250)) == (0, 255, 0)  # the outline, inside the box's edge
    assert im.getpixel((200, 350)) == WHITE and im.getpixel((200, 351)) == WHITE  # 4 px thick, on its box
    assert im.getpixel((200, 360)) == BLACK


# ---------------------------------------------------------------- images


def test_photo_in_a_circle_with_a_ring(renderer: Renderer) -> None:
    spec = template(
        {
            "type": "image",
            "source": "photo",
            "box": [100, 100, 200, 200],
            "mask": "circle",
            "outline": "#00ff00",
            "outline_width": 6,
        }
    )
    im = draw(renderer, spec, photo=picture((640, 480), RED, "JPEG", quality=95))
    assert close(im.getpixel((200, 200)), RED, 8)
    assert im.getpixel((102, 102)) == BLACK  # outside the circle
    assert close(im.getpixel((200, 102)), (0, 255, 0), 8)  # the ring at the top of the circle
    assert draw(renderer, spec).getpixel((200, 200)) == BLACK  # no photo given: the layer is left out


def test_photo_is_shown_upright_from_its_exif_orientation(renderer: Renderer) -> None:
    sideways = Image.new("RGB", (200, 100), RED)
    ImageDraw.Draw(sideways).rectangle((100, 0, 199, 99), fill=BLUE)  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90° clockwise to show it
    buffer = io.BytesIO()
    sideways.save(buffer, "JPEG", quality=95, exif=exif)
    spec = template({"type": "image", "source": "photo", "box": [0, 0, 100, 200], "fit": "stretch"})
    im = draw(renderer, spec, photo=buffer.getvalue())
    assert close(im.getpixel((50, 20)), RED, 12) and close(im.getpixel((50, 180)), BLUE, 12)


def test_contain_letterboxes_and_logo_and_template_pictures(renderer: Renderer, tmp_path: Path) -> None:
    (tmp_path / "poster.png").write_bytes(picture((50, 50), BLUE))
    raw = {
        "name": "pics",
        "canvas": {"width": 400, "height": 400, "background": {"color": "#000000"}},
        "layers": [
            {"type": "image", "source": "logo", "box": [0, 0, 200, 100], "fit": "contain"},
            {
                "type": "image",
                "file": "poster.png",
                "box": [200, 200, 100, 100],
                "mask": "rounded",
                "radius": 30,
            },
        ],
    }
    spec, assets = parse_template(raw, base_dir=tmp_path)
    im = Image.open(
        io.BytesIO(renderer.render(spec, CardInputs({}, {"logo": picture((100, 100), RED)}, assets)).data)
    ).convert("RGB")
    assert close(im.getpixel((100, 50)), RED, 8) and close(
        im.getpixel((10, 50)), BLACK, 8
    )  # bars left, right
    assert close(im.getpixel((250, 250)), BLUE, 8) and close(im.getpixel((201, 201)), BLACK, 8)  # rounded
    with pytest.raises(RenderError, match="not stored"):  # a fresh renderer: the base is drawn again
        Renderer(renderer.fonts).render(spec, CardInputs({}, {}, {}))


def test_a_picture_that_does_not_decode_is_a_render_error(renderer: Renderer) -> None:
    spec = template({"type": "image", "source": "photo", "box": [0, 0, 100, 100]})
    with pytest.raises(RenderError, match="cannot be read"):
        draw(renderer, spec, photo=b"not a picture at all")


# ---------------------------------------------------------------- text


def text_layer(text: str, **kw: Any) -> dict[str, Any]:
    return {"type": "text", "text": text, "box": [20, 100, 360, 200], "color": "#ffffff", **kw}


def test_text_alignment_inside_its_box(renderer: Renderer) -> None:
    for align, check in (
        ("left", lambda b: b[0] < 30 and b[2] < 300),
        ("right", lambda b: b[2] > 370 and b[0] > 100),
        ("center", lambda b: abs((b[0] + b[2]) / 2 - 200) < 6),
    ):
        im = draw(renderer, template(text_layer("Karibu", align=align, wrap=False, font={"size": 48})))
        found = ink(im, (0, 0, 400, 400))
        assert found is not None and check(found), (align, found)
        assert found[1] >= 100 and found[3] <= 300  # never outside its box
    bottom = ink(
        draw(renderer, template(text_layer("Karibu", valign="bottom", font={"size": 48}))), (0, 0, 400, 400)
    )
    assert bottom is not None and bottom[3] > 270


def test_long_text_shrinks_to_fit_then_wraps(renderer: Renderer) -> None:
    short = ink(
        draw(renderer, template(text_layer("{name}", wrap=False, font={"size": 80, "min_size": 20}))),
        (0, 0, 400, 400),
    )
    long_values = {"name": "Wanjiku Nyambura Kamau-Otieno"}
    spec = template(text_layer("{name}", wrap=False, font={"size": 80, "min_size": 20}))
    shrunk = ink(draw(renderer, spec, long_values), (0, 0, 400, 400))
    assert short is not None and shrunk is not None
    assert shrunk[0] >= 20 and shrunk[2] <= 380  # the long name fits the box's width
    assert (shrunk[3] - shrunk[1]) < (short[3] - short[1])  # by being smaller
    wrapped = ink(
        draw(renderer, template(text_layer("{name}", font={"size": 60})), long_values), (0, 0, 400, 400)
    )
    assert wrapped is not None and wrapped[3] - wrapped[1] > 100  # at its size, on several lines


def test_text_that_cannot_fit_ends_in_an_ellipsis(renderer: Renderer) -> None:
    words = " ".join(["Habari"] * 60)
    spec = template(text_layer(words, box=[20, 100, 360, 120], font={"size": 40, "min_size": 30}))
    im = draw(renderer, spec)
    found = ink(im, (0, 0, 400, 400))
    assert found is not None and found[1] >= 100 and found[3] <= 220
    from engine.hypecards.render import _layout

    _, lines = _layout(renderer.fonts, spec.layers[0], words)
    assert lines[-1].endswith("…") and 2 <= len(lines) < 10


def test_emoji_are_drawn_in_colour(renderer: Renderer) -> None:
    im = draw(renderer, template(text_layer("Karibu 🍎", color="#ffffff", font={"size": 60})))
    found = ink(im, (0, 0, 400, 400))
    assert found is not None
    region = im.crop(found)
    reds = [p for p in pixels(region) if p[0] > 180 and p[1] < 90 and p[2] < 90]
    assert len(reds) > 100  # the apple is red; the text is white
    plain = draw(renderer, template(text_layer("Karibu", font={"size": 60})))
    assert not [p for p in pixels(plain) if p[0] > 180 and p[1] < 90]


def test_swahili_and_flags_render_as_glyphs(renderer: Renderer) -> None:
    fonts = renderer.fonts
    font = fonts.text("regular", False, 40)
    for letter in "ŋñéâ’":  # Swahili is Latin; names and loanwords bring these
        assert font.getmask(letter).getbbox() is not None
    kenya = fonts.emoji("🇰🇪", 40)
    assert kenya.width < 60  # one flag, not two regional letters side by side


# ---------------------------------------------------------------- QR codes


def test_qr_code_modules_read_back(renderer: Renderer) -> None:
    spec = template(
        {"type": "qr", "link": "whatsapp", "text": "Hi! {name} sent me ({code})", "box": [50, 50, 300, 300]}
    )
    im = draw(renderer, spec)
    content = qr_content(
        spec.layers[0], CardInputs(card_values(spec, {}, {"code": "HC-TEST01"}), wa_number="254700000001")
    )
    assert content == "https://wa.me/254700000001?text=Hi%21%20Wanjiku%20sent%20me%20%28HC-TEST01%29"
    matrix = qr_matrix(content)
    n = len(matrix)
    scale = 300 // (n + 4)
    side = (n + 4) * scale
    left = 50 + (300 - side) // 2 + 2 * scale
    read = [
        [rgb(im, (left + c * scale + scale // 2, left + r * scale + scale // 2))[0] < 128 for c in range(n)]
        for r in range(n)
    ]
    assert read == matrix
    assert im.getpixel((left - 1, left - 1)) == WHITE  # the quiet zone


def test_a_qr_code_that_cannot_fit_its_box_is_refused(renderer: Renderer) -> None:
    spec = template({"type": "qr", "link": "text", "text": "x" * 400, "box": [0, 0, 64, 64]})
    with pytest.raises(RenderError, match="needs a box"):
        draw(renderer, spec)


# ---------------------------------------------------------------- the card as a whole


def test_same_inputs_same_bytes_and_the_hash_names_them(renderer: Renderer) -> None:
    spec = template(
        {"type": "shape", "box": [0, 0, 400, 100], "fill": "#223344"},
        text_layer("{name} 🎷", font={"size": 50, "min_size": 20}),
        {"type": "qr", "box": [250, 250, 140, 140]},
    )
    inputs = CardInputs(card_values(spec, {"name": "Wanjiku"}, {"code": "HC-A"}), wa_number="254700000001")
    first = renderer.render(spec, inputs)
    again = Renderer(renderer.fonts).render(spec, inputs)  # a fresh renderer: no pre-drawn base
    assert first.data == again.data and first.hash == again.hash == input_hash(spec, inputs, renderer.fonts)
    other = renderer.render(
        spec, CardInputs(card_values(spec, {"name": "Achieng"}, {"code": "HC-A"}), wa_number="254700000001")
    )
    assert other.hash != first.hash and other.data != first.data


def test_static_layers_are_drawn_once_but_in_order(renderer: Renderer) -> None:
    spec = template(
        {"type": "shape", "box": [0, 0, 100, 100], "fill": "#ff0000"},  # base
        {"type": "image", "source": "photo", "box": [50, 50, 200, 200]},  # per card
        {"type": "shape", "box": [100, 100, 40, 40], "fill": "#00ff00"},  # on the photo: stays per card
        {"type": "shape", "box": [300, 300, 50, 50], "fill": "#ffffff"},  # apart: base
    )
    in_base, per_card = split_layers(spec)
    assert [layer.box for layer in in_base] == [(0, 0, 100, 100), (300, 300, 50, 50)]
    im = draw(renderer, spec, photo=picture((10, 10), BLUE))
    assert im.getpixel((120, 120)) == (0, 255, 0) and im.getpixel((60, 60)) == BLUE
    assert im.getpixel((10, 10)) == RED and im.getpixel((320, 320)) == WHITE


@pytest.mark.parametrize(
    "width, height, fmt", [(1080, 1080, "jpeg"), (1080, 1920, "png"), (1080, 1350, "jpeg")]
)
def test_whatsapp_sizes_and_formats(renderer: Renderer, width: int, height: int, fmt: str) -> None:
    spec = template(text_layer("{name}"), width=width, height=height).model_copy(update={"format": fmt})
    card = renderer.render(spec, CardInputs(card_values(spec, {}, {})))
    im = Image.open(io.BytesIO(card.data))
    assert im.size == (width, height) and im.format == fmt.upper() and card.mime_type == f"image/{fmt}"
    assert len(card.data) < MAX_IMAGE_BYTES


def test_a_png_over_five_megabytes_is_sent_as_jpeg(renderer: Renderer) -> None:
    noise = Image.frombytes("RGB", (1600, 1600), os.urandom(1600 * 1600 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG", compress_level=1)
    spec = template({"type": "image", "source": "photo", "box": [0, 0, 1600, 1600]}, width=1600, height=1600)
    card = renderer.render(spec, CardInputs({}, {"photo": buffer.getvalue()}))
    assert card.mime_type == "image/jpeg" and len(card.data) <= MAX_IMAGE_BYTES


# ---------------------------------------------------------------- templates refused, with the path


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"layers": [{"type": "text", "text": "{nmae}", "box": [0, 0, 100, 100]}]},
            "layers[0].text: unknown variable {nmae}",
        ),
        (
            {"layers": [{"type": "text", "text": "Hi", "box": [1500, 0, 100, 100]}]},
            "layers[0].box: [1500, 0, 100, 100] lies outside",
        ),
        (
            {"layers": [{"type": "shape", "box": [0, 0, 10, 10], "fill": "red"}]},
            "layers[0].fill: String should match pattern",
        ),
        (
            {
                "layers": [
                    {"type": "text", "text": "x", "box": [0, 0, 10, 10], "font": {"size": 20, "min_size": 30}}
                ]
            },
            "layers[0].font: min_size 30 is larger",
        ),
        ({"layers": [{"type": "sticker", "box": [0, 0, 10, 10]}]}, "layers[0]: Input tag 'sticker' found"),
        (
            {"layers": [{"type": "image", "source": "selfie", "box": [0, 0, 10, 10]}]},
            "layers[0].source: 'selfie' is not an image variable",
        ),
        (
            {"layers": [{"type": "qr", "box": [0, 0, 40, 40]}]},
            "layers[0].box: a QR code needs at least 64×64",
        ),
        (
            {"layers": [{"type": "qr", "link": "url", "box": [0, 0, 100, 100]}]},
            "layers[0]: link: url needs `url`",
        ),
        (
            {"layers": [{"type": "text", "text": "{name!r}", "box": [0, 0, 100, 100]}]},
            "layers[0].text: placeholder",
        ),
        ({"menu": True}, "(template): a template in the menu needs a `title`"),
        (
            {"variables": [{"name": "code", "type": "text", "default": "x"}]},
            "variables[0]: 'code' is set by the engine",
        ),
        (
            {"variables": [{"name": "nick", "type": "text"}]},
            "variables[0]: a required variable needs `ask`",
        ),
        ({"layers": []}, "layers: List should have at least 1 item"),
        ({"canvas": {"width": 5000}}, "canvas.width: Input should be less than or equal to 2160"),
    ],
)
def test_bad_templates_are_refused_naming_the_path(change: dict[str, Any], message: str) -> None:
    raw = {"name": "bad", "layers": [{"type": "text", "text": "ok", "box": [0, 0, 100, 100]}], **change}
    with pytest.raises(TemplateError) as refused:
        parse_template(raw, "hypecards[3]")
    assert any(
        e.startswith("hypecards[3]." + message)
        or e.startswith("hypecards[3]" + message.removeprefix("(template)"))
        for e in refused.value.errors
    ), refused.value.errors


def test_missing_or_broken_pictures_are_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"\x89PNG but not really")
    raw = {
        "name": "pics",
        "layers": [
            {"type": "image", "file": "missing.png", "box": [0, 0, 10, 10]},
            {"type": "image", "file": "broken.png", "box": [0, 0, 10, 10]},
        ],
    }
    with pytest.raises(TemplateError) as refused:
        parse_template(raw, base_dir=tmp_path)
    assert refused.value.errors[0].startswith("layers[0].file: cannot read missing.png")
    assert refused.value.errors[1].startswith("layers[1].file (broken.png): not a picture")
