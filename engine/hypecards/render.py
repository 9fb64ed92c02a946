"""Rendering a HypeCard with Pillow: the canvas, then each layer in order, then JPEG or PNG under 5 MB.

Same inputs, same bytes (no clock, no randomness; the fonts and Pillow's version are in the key), so a card is
cached by ``input_hash``. The background and the leading layers that are the same for every card (shapes,
pictures, text without variables) are drawn once per template and kept (``Renderer``): a card then costs its
own layers and the encoding (docs/benchmarks.md, "HypeCards").

CPU-bound: the engine calls it outside any database transaction, on a thread of the cards role.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import quote

import emoji
import PIL
import qrcode
from PIL import Image, ImageChops, ImageDraw, ImageOps, JpegImagePlugin

from engine.hypecards.fonts import Fonts
from engine.hypecards.spec import (
    Gradient,
    ImageLayer,
    Picture,
    QrLayer,
    ShapeLayer,
    Solid,
    TemplateSpec,
    TextLayer,
    fill,
    rgba,
)

RENDERER_VERSION = 2  # bump when a change alters the pixels of an unchanged template
MAX_IMAGE_BYTES = 5 * 1024 * 1024  # WhatsApp's limit for images
JPEG_QUALITY = 90
PHOTO_MAX_PIXELS = 40_000_000  # a contact's photo larger than this is refused (decompression bombs)
QR_MIN_MODULE_PX = 3
# Pictures are mostly made smaller (a phone's photo into its circle); Pillow's bilinear filter widens with the
# reduction (antialiased): as good as bicubic to the eye at these ratios, and 40% cheaper (docs/benchmarks.md).
SCALING = Image.Resampling.BILINEAR
ORIENTATION = 0x0112  # the EXIF tag phones set instead of rotating the pixels
ELLIPSIS = "…"


class RenderError(ValueError):
    """The card cannot be drawn from these inputs (a picture that does not decode, a QR that cannot fit)."""


@dataclass(frozen=True)
class CardInputs:
    """What one card is made of: text values (declared variables and the engine's builtins), pictures by
    image variable name or ``logo``, the template's own pictures by SHA-256, the number a WhatsApp QR opens."""

    values: Mapping[str, str]
    pictures: Mapping[str, bytes] = field(default_factory=dict)
    assets: Mapping[str, bytes] = field(default_factory=dict)
    wa_number: str = ""


@dataclass(frozen=True)
class Rendered:
    data: bytes
    mime_type: str
    width: int
    height: int
    hash: str

    @property
    def extension(self) -> str:
        return "png" if self.mime_type == "image/png" else "jpg"


def template_digest(spec: TemplateSpec) -> str:
    """What the pixels depend on: the canvas, the layers, the format (not names, offers or texts)."""
    drawn = spec.model_dump(mode="json", include={"canvas", "layers", "format", "variables"})
    return hashlib.sha256(json.dumps(drawn, sort_keys=True).encode()).hexdigest()


def input_hash(spec: TemplateSpec, inputs: CardInputs, fonts: Fonts) -> str:
    used = _used_values(spec)
    key = {
        "renderer": RENDERER_VERSION,
        "pillow": PIL.__version__,
        "fonts": fonts.fingerprint,
        "template": template_digest(spec),
        "values": {k: inputs.values.get(k, "") for k in sorted(used)},
        "pictures": {k: hashlib.sha256(v).hexdigest() for k, v in sorted(inputs.pictures.items())},
        "wa_number": inputs.wa_number if any(isinstance(layer, QrLayer) for layer in spec.layers) else "",
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _used_values(spec: TemplateSpec) -> set[str]:
    from engine.hypecards.spec import placeholders

    used: set[str] = set()
    for layer in spec.layers:
        if isinstance(layer, TextLayer):
            used.update(placeholders(layer.text))
        elif isinstance(layer, QrLayer):
            used.update(placeholders(layer.text) + placeholders(layer.url or ""))
    return used


class Renderer:
    """Renders cards; keeps each template's pre-drawn base (the first ``BASES`` templates it met, by use)."""

    BASES = 32
    TEXTS = 256

    def __init__(self, fonts: Fonts) -> None:
        self.fonts = fonts
        self._bases: OrderedDict[str, Image.Image] = OrderedDict()
        self._texts: OrderedDict[tuple[TextLayer, str], tuple[Image.Image, Image.Image] | None] = (
            OrderedDict()
        )

    def render(self, spec: TemplateSpec, inputs: CardInputs) -> Rendered:
        digest = input_hash(spec, inputs, self.fonts)
        in_base, per_card = split_layers(spec)
        canvas = self._base(spec, inputs, in_base).copy()
        for layer in per_card:
            self._layer(canvas, layer, inputs)
        data, mime = encode(canvas, spec.format)
        return Rendered(data, mime, canvas.width, canvas.height, digest)

    def _base(self, spec: TemplateSpec, inputs: CardInputs, layers: list[Any]) -> Image.Image:
        key = template_digest(spec)
        base = self._bases.get(key)
        if base is None:
            base = _background(spec, inputs)
            for layer in layers:
                self._layer(base, layer, inputs)
            self._bases[key] = base
            while len(self._bases) > self.BASES:
                self._bases.popitem(last=False)
        self._bases.move_to_end(key)
        return base

    def _layer(self, canvas: Image.Image, layer: Any, inputs: CardInputs) -> None:
        if isinstance(layer, TextLayer):
            text = re.sub(r"[ \t]+", " ", fill(layer.text, inputs.values)).strip()
            key = (layer, text)
            drawn = self._texts.get(key)
            if drawn is None:  # the event's name or date on every card of a template: set once
                drawn = self._texts[key] = _text(layer, text, self.fonts)
                while len(self._texts) > self.TEXTS:
                    self._texts.popitem(last=False)
            if drawn is not None:
                canvas.paste(drawn[0], layer.box[:2], drawn[1])
        elif isinstance(layer, ImageLayer):
            data = (
                inputs.assets.get(layer.asset or "")
                if layer.source is None
                else inputs.pictures.get(layer.source)
            )
            if data is None and layer.source is None:
                raise RenderError(f"the template's picture {layer.file or layer.asset} is not stored")
            if data:  # no photo given (an optional variable) or no logo: the layer is left out
                _picture(canvas, layer, data)
        elif isinstance(layer, ShapeLayer):
            _shape(canvas, layer)
        elif isinstance(layer, QrLayer):
            _qr(canvas, layer, qr_content(layer, inputs))


def split_layers(spec: TemplateSpec) -> tuple[list[Any], list[Any]]:
    """(drawn once into the template's base, drawn per card). A static layer goes into the base unless it
    overlaps a per-card layer below it: the pixels come out as if every layer were drawn in order."""
    in_base: list[Any] = []
    per_card: list[Any] = []
    for layer in spec.layers:
        if layer.static and not any(_overlap(layer.box, below.box) for below in per_card):
            in_base.append(layer)
        else:
            per_card.append(layer)
    return in_base, per_card


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def encode(canvas: Image.Image, fmt: str) -> tuple[bytes, str]:
    """JPEG (quality 90) or PNG; a PNG over WhatsApp's 5 MB (a large photo-like card) becomes a JPEG."""
    if fmt == "png":
        buffer = io.BytesIO()
        canvas.save(buffer, "PNG", compress_level=6)
        if buffer.tell() <= MAX_IMAGE_BYTES:
            return buffer.getvalue(), "image/png"
    for quality in (JPEG_QUALITY, 80, 70):
        buffer = io.BytesIO()
        canvas.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= MAX_IMAGE_BYTES:
            break
    return buffer.getvalue(), "image/jpeg"


# ---------------------------------------------------------------- background


def _background(spec: TemplateSpec, inputs: CardInputs) -> Image.Image:
    size = (spec.canvas.width, spec.canvas.height)
    bg = spec.canvas.background
    if isinstance(bg, Solid):
        return Image.new("RGB", size, rgba(bg.color)[:3])
    if isinstance(bg, Gradient):
        start, end = (Image.new("RGB", size, rgba(c)[:3]) for c in bg.gradient)
        return Image.composite(end, start, _ramp(size, bg.angle))
    assert isinstance(bg, Picture)
    data = inputs.assets.get(bg.asset or "")
    if data is None:
        raise RenderError(f"the background picture {bg.file} is not stored")
    picture = _decode(data, size).convert("RGB")
    return _fit(picture, size, bg.fit).convert("RGB")


def _ramp(size: tuple[int, int], angle: int) -> Image.Image:
    """0 at the start of the gradient's direction, 255 at its end (angles in steps of 45°, y down)."""
    w, h = size
    dx, dy = round(math.cos(math.radians(angle))), round(math.sin(math.radians(angle)))
    vertical = Image.linear_gradient("L")  # 0 at the top, 255 at the bottom
    parts = []
    if dx:
        ramp = vertical.rotate(90 if dx > 0 else -90)  # 0 at the left (dx > 0) or at the right
        parts.append(ramp.resize((w, h), Image.Resampling.BILINEAR))
    if dy:
        ramp = vertical if dy > 0 else vertical.rotate(180)
        parts.append(ramp.resize((w, h), Image.Resampling.BILINEAR))
    return parts[0] if len(parts) == 1 else ImageChops.add(parts[0], parts[1], scale=2.0)


# ---------------------------------------------------------------- pictures and shapes


def _decode(data: bytes, target: tuple[int, int]) -> Image.Image:
    """A picture, upright (EXIF orientation), decoded no larger than needed (JPEG draft mode: a phone's
    photo is decoded at 1/2, 1/4 or 1/8 scale when that still covers ``target``)."""
    try:
        im: Image.Image = Image.open(io.BytesIO(data))
        if im.width * im.height > PHOTO_MAX_PIXELS:
            raise RenderError(f"picture of {im.width}×{im.height} pixels is too large")
        orientation = im.getexif().get(ORIENTATION, 1)
        if isinstance(im, JpegImagePlugin.JpegImageFile):
            im.draft("RGB", target if orientation < 5 else (target[1], target[0]))
        im.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise RenderError(f"the picture cannot be read: {err}") from None
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
    return im if im.mode in ("RGB", "RGBA") else im.convert("RGBA")


def _fit(im: Image.Image, size: tuple[int, int], how: str) -> Image.Image:
    if how == "stretch":
        return im.resize(size, SCALING, reducing_gap=2.0)
    if how == "cover":
        return ImageOps.fit(im, size, SCALING, centering=(0.5, 0.4))  # faces sit high
    contained = ImageOps.contain(im, size, SCALING).convert("RGBA")
    out = Image.new("RGBA", size, (0, 0, 0, 0))
    out.paste(contained, ((size[0] - contained.width) // 2, (size[1] - contained.height) // 2))
    return out


@lru_cache(maxsize=256)
def _ring(kind: str, w: int, h: int, radius: int, width: int) -> Image.Image:
    return ImageChops.subtract(_mask(kind, w, h, radius), _mask(kind, w, h, radius, width))


@lru_cache(maxsize=256)
def _mask(kind: str, w: int, h: int, radius: int, inset: int = 0) -> Image.Image:
    """An antialiased mask (drawn larger, then reduced) of a circle/ellipse or rounded rectangle, ``inset``
    pixels inside the box; cached per geometry."""
    scale = 4 if w * h <= 600_000 else 2
    big = Image.new("L", (w * scale, h * scale), 0)
    draw = ImageDraw.Draw(big)
    box = (inset * scale, inset * scale, (w - inset) * scale - 1, (h - inset) * scale - 1)
    if box[2] > box[0] and box[3] > box[1]:
        if kind in ("circle", "ellipse"):
            draw.ellipse(box, fill=255)
        elif kind in ("rounded", "rounded_rectangle"):
            draw.rounded_rectangle(box, radius=max(0, radius - inset) * scale, fill=255)
        else:
            draw.rectangle(box, fill=255)
    return big.resize((w, h), Image.Resampling.BOX)


def _paint(canvas: Image.Image, box: tuple[int, int, int, int], colour: str, mask: Image.Image) -> None:
    r, g, b, a = rgba(colour)
    if a < 255:
        mask = mask.point(lambda v: v * a // 255)
    canvas.paste((r, g, b), (box[0], box[1]), mask)


def _picture(canvas: Image.Image, layer: ImageLayer, data: bytes) -> None:
    x, y, w, h = layer.box
    im = _fit(_decode(data, (w, h)), (w, h), layer.fit)
    alpha = im.getchannel("A") if im.mode == "RGBA" else None
    if layer.mask != "none":
        shape = _mask(layer.mask, w, h, layer.radius)
        alpha = shape if alpha is None else ImageChops.multiply(alpha, shape)
    if layer.opacity < 1:
        alpha = (alpha or Image.new("L", (w, h), 255)).point(lambda v: round(v * layer.opacity))
    canvas.paste(im if im.mode == "RGB" else im.convert("RGB"), (x, y), alpha)
    if layer.outline and layer.outline_width:
        _paint(canvas, layer.box, layer.outline, _ring(layer.mask, w, h, layer.radius, layer.outline_width))


def _shape(canvas: Image.Image, layer: ShapeLayer) -> None:
    x, y, w, h = layer.box
    if layer.shape == "line":  # from the box's top-left to its bottom-right corner, its width centred on it
        assert layer.outline is not None
        pad = layer.outline_width
        overlay = Image.new("L", (w + 2 * pad, h + 2 * pad), 0)
        ImageDraw.Draw(overlay).line(
            (pad, pad, w - 1 + pad, h - 1 + pad), fill=255, width=layer.outline_width
        )
        _paint(canvas, (x - pad, y - pad, *overlay.size), layer.outline, overlay)
        return
    if layer.fill:
        _paint(canvas, layer.box, layer.fill, _mask(layer.shape, w, h, layer.radius))
    if layer.outline and layer.outline_width:
        _paint(canvas, layer.box, layer.outline, _ring(layer.shape, w, h, layer.radius, layer.outline_width))


# ---------------------------------------------------------------- QR codes


def qr_content(layer: QrLayer, inputs: CardInputs) -> str:
    """What the code holds: a wa.me link with prefilled text (the card's code in it), a URL, or text."""
    text = fill(layer.text, inputs.values)
    if layer.link == "whatsapp":
        number = "".join(c for c in inputs.wa_number if c.isdigit())
        if not number:
            raise RenderError("a WhatsApp QR code needs the organisation's phone number")
        return f"https://wa.me/{number}?text={quote(text)}"
    if layer.link == "url":
        return fill(layer.url or "", inputs.values)
    return text


def qr_matrix(content: str) -> list[list[bool]]:
    """The code's modules. The mask pattern is fixed: choosing the best of eight cost 5 ms of a card's 20
    (docs/benchmarks.md); every reader decodes any of them."""
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=1, border=0, mask_pattern=0
    )
    code.add_data(content)
    code.make(fit=True)
    return code.get_matrix()


def _qr(canvas: Image.Image, layer: QrLayer, content: str) -> None:
    x, y, w, h = layer.box
    matrix = qr_matrix(content)
    modules = len(matrix) + 2 * layer.quiet_zone
    scale = min(w, h) // modules
    if scale < QR_MIN_MODULE_PX:
        raise RenderError(
            f"a QR code of {len(matrix)} modules needs a box of {modules * QR_MIN_MODULE_PX} px; its box is "
            f"{min(w, h)} px (shorten the text or enlarge the box)"
        )
    n = len(matrix)
    dark = Image.frombytes("L", (n, n), bytes(255 if cell else 0 for row in matrix for cell in row))
    side = modules * scale
    left, top = x + (w - side) // 2, y + (h - side) // 2
    _paint(canvas, (left, top, side, side), layer.background, Image.new("L", (side, side), 255))
    quiet = layer.quiet_zone * scale
    _paint(
        canvas,
        (left + quiet, top + quiet, n * scale, n * scale),
        layer.color,
        dark.resize((n * scale, n * scale), Image.Resampling.NEAREST),
    )


# ---------------------------------------------------------------- text


Piece = tuple[str, bool]  # (text, is an emoji)


@lru_cache(maxsize=4096)
def pieces(text: str) -> tuple[Piece, ...]:
    """Text split into plain runs and single emoji (ZWJ sequences, flags, skin tones kept whole)."""
    out: list[Piece] = []
    at = 0
    for found in emoji.emoji_list(text):
        if found["match_start"] > at:
            out.append((text[at : found["match_start"]], False))
        out.append((found["emoji"], True))
        at = found["match_end"]
    if at < len(text):
        out.append((text[at:], False))
    return tuple(out)


@dataclass
class _Setter:
    fonts: Fonts
    layer: TextLayer
    size: int

    def __post_init__(self) -> None:
        f = self.layer.font
        self.font = self.fonts.text(f.weight, f.italic, self.size)
        self.emoji_width = self.fonts.emoji_advance(self.size)
        self._widths: dict[str, float] = {}  # wrapping measures the same runs again and again

    def run_width(self, run: str) -> float:
        found = self._widths.get(run)
        if found is None:
            found = self._widths[run] = self.font.getlength(run)
        return found

    def width(self, text: str) -> float:
        return sum(self.emoji_width if is_emoji else self.run_width(run) for run, is_emoji in pieces(text))

    def lines(self, text: str, width: int) -> list[str]:
        """Greedy word wrap; a word longer than the line is broken between characters."""
        if not self.layer.wrap:
            return text.split("\n")
        out: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}" if line else word
                if self.width(candidate) <= width:
                    line = candidate
                    continue
                if line:
                    out.append(line)
                line = word
                while self.width(line) > width and len(line) > 1:
                    cut = next(i for i in range(len(line), 0, -1) if self.width(line[:i]) <= width or i == 1)
                    out.append(line[:cut])
                    line = line[cut:]
            out.append(line)
        return out

    @property
    def line_height(self) -> float:
        return self.size * self.layer.line_spacing

    def block_height(self, count: int) -> float:
        ascent, descent = self.font.getmetrics()
        return (count - 1) * self.line_height + ascent + descent

    def fits(self, lines: list[str], w: int, h: int) -> bool:
        if self.layer.max_lines is not None and len(lines) > self.layer.max_lines:
            return False
        return self.block_height(len(lines)) <= h and all(self.width(line) <= w for line in lines)


def _layout(fonts: Fonts, layer: TextLayer, text: str) -> tuple[_Setter, list[str]]:
    """The largest size from ``font.size`` down to ``font.min_size`` at which the text fits its box; at the
    smallest, the lines that fit, the last one ending in an ellipsis."""
    _, _, w, h = layer.box
    low, high = layer.font.min_size or layer.font.size, layer.font.size
    largest = _Setter(fonts, layer, high)
    lines = largest.lines(text, w)
    if largest.fits(lines, w, h):  # most texts fit at the designed size: one measurement
        return largest, lines
    high -= 1
    best: tuple[_Setter, list[str]] | None = None
    while low <= high:  # binary search: fitting is monotone in the size
        mid = (low + high) // 2
        setter = _Setter(fonts, layer, mid)
        lines = setter.lines(text, w)
        if setter.fits(lines, w, h):
            best, low = (setter, lines), mid + 1
        else:
            high = mid - 1
    if best is not None:
        return best
    setter = _Setter(fonts, layer, layer.font.min_size or layer.font.size)
    return setter, _truncate(setter, setter.lines(text, w), w, h)


def _truncate(setter: _Setter, lines: list[str], w: int, h: int) -> list[str]:
    fitting = [n for n in range(1, len(lines) + 1) if setter.block_height(n) <= h]
    keep = max(fitting, default=1)
    if setter.layer.max_lines is not None:
        keep = min(keep, setter.layer.max_lines)
    kept = [_clip(setter, line, w) for line in lines[:keep]]
    if keep < len(lines) or kept[-1] != lines[keep - 1]:
        kept[-1] = _clip(setter, kept[-1].rstrip(ELLIPSIS) + ELLIPSIS, w, force=True)
    return kept


def _clip(setter: _Setter, line: str, w: int, force: bool = False) -> str:
    if setter.width(line) <= w:
        return line
    body = line.removesuffix(ELLIPSIS) if force else line
    while body and setter.width(body + ELLIPSIS) > w:
        body = body[:-1]
    return body.rstrip() + ELLIPSIS


def _text(layer: TextLayer, text: str, fonts: Fonts) -> tuple[Image.Image, Image.Image] | None:
    """The text set in its box: (colours, coverage) to paste at the box's corner; None for no text."""
    if not text:
        return None
    _, _, w, h = layer.box
    setter, lines = _layout(fonts, layer, text)
    overlay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    colour = rgba(layer.color)
    ascent = setter.font.getmetrics()[0]
    block = setter.block_height(len(lines))
    top = {"top": 0.0, "middle": (h - block) / 2, "bottom": h - block}[layer.valign]
    for n, line in enumerate(lines):
        baseline = round(top + n * setter.line_height + ascent)
        width = setter.width(line)
        pen = {"left": 0.0, "center": (w - width) / 2, "right": w - width}[layer.align]
        for run, is_emoji in pieces(line):
            if is_emoji:
                glyph = fonts.emoji(run, setter.size)
                overlay.paste(glyph, (round(pen), baseline - fonts.emoji_ascent(setter.size)), glyph)
                pen += setter.emoji_width
            else:
                draw.text((pen, baseline), run, font=setter.font, fill=colour, anchor="ls")
                pen += setter.run_width(run)
    return overlay.convert("RGB"), overlay.getchannel("A")
