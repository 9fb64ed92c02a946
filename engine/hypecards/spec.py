"""A HypeCard template as designers write it (the ``hypecards:`` list of the content YAML, or one template in a
file of its own for ``chatnation hypecard render``), validated whole, every error naming its path.

```yaml
name: Jazz Night attendee                  # how re-imports find it
title: {en: My Jazz Night card, sw: Kadi yangu ya Jazz Night}   # the menu row and the offer
event: Nairobi Jazz Night                  # offered after a ticket purchase for it (optional)
poll: Best act of the night?               # offered after a vote in it (optional)
menu: true                                 # listed in the menu (a campaign)
canvas: {width: 1080, height: 1350, background: {gradient: ["#1b1f4a", "#c2185b"], angle: 90}}
format: jpeg                               # or png
variables:                                 # asked in this order (those with ``ask``), else the default
  - {name: name, type: text, max_length: 40, ask: {en: "Which name goes on your card?"}}
  - {name: photo, type: image, required: false, ask: {en: "Send a photo, or tap Skip"}}
layers:                                    # drawn in order, each inside its box [x, y, width, height]
  - {type: shape, shape: rounded_rectangle, box: [60, 60, 960, 1230], fill: "#ffffff22", radius: 40}
  - {type: image, source: photo, box: [340, 140, 400, 400], fit: cover, mask: circle}
  - {type: text, text: "{name} 🎷", box: [80, 580, 920, 160], font: {weight: bold, size: 96, min_size: 40}}
  - {type: qr, link: whatsapp, text: "Hi! {name} sent me ({code})", box: [800, 1070, 200, 200]}
caption: {en: "Your card for {event_name}!"}
share: {en: "Share it on your status: friends who scan it come straight to us."}
```

Text may name variables as ``{name}``: those declared, and the engine's own (``BUILTINS``). Images come from a
variable of type image (the contact's photo), the organisation's logo (``source: logo``) or a picture of the
template (``file: poster.png``, relative to the YAML file, stored with the template). Colours are ``#rgb``,
``#rrggbb`` or ``#rrggbbaa``.
"""

from __future__ import annotations

import hashlib
import io
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from state_machines.hypecard import is_number

BUILTINS = {
    "contact_name": "the contact's WhatsApp name",
    "org_name": "the organisation's name",
    "event_name": "the template's event",
    "event_date": "its date, e.g. 28 Dec 2026",
    "event_venue": "its venue",
    "code": "the card's referral code (HC-XXXXXX)",
}
MAX_SIDE = 2160
MAX_ASSET_BYTES = 5 * 1024 * 1024
LAYER_KINDS = ("text", "image", "shape", "qr")
Colour = Annotated[str, Field(pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})$")]
Texts = dict[Literal["en", "sw"], Annotated[str, Field(min_length=1, max_length=1024)]]
Box = tuple[int, int, Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
VariableName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class TemplateError(ValueError):
    """The template cannot be used; ``errors`` has one message per problem, each naming its path."""

    def __init__(self, errors: Sequence[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


def rgba(colour: str) -> tuple[int, int, int, int]:
    hexes = colour.lstrip("#")
    if len(hexes) == 3:
        hexes = "".join(c * 2 for c in hexes)
    if len(hexes) == 6:
        hexes += "ff"
    r, g, b, a = (int(hexes[i : i + 2], 16) for i in range(0, 8, 2))
    return r, g, b, a


def placeholders(text: str) -> list[str]:
    """The variable names ``text`` uses; ValueError for a malformed one (``{`` unclosed, ``{x!r}``, ``{x:>3}``)."""
    names = []
    for _, name, spec, conversion in string.Formatter().parse(text):
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ValueError(
                f"placeholder {{{name}{'!' + conversion if conversion else ''}}} is not a variable name"
            )
        names.append(name)
    return names


def fill(text: str, values: Mapping[str, str]) -> str:
    return text.format_map({k: values.get(k, "") for k in placeholders(text)})


def card_values(spec: TemplateSpec, given: Mapping[str, str], builtins: Mapping[str, str]) -> dict[str, str]:
    """Every text a card's layers may use: the engine's builtins, then each declared variable's given value
    (spaces collapsed, cut to its ``max_length``) or its default."""
    values = {name: str(builtins.get(name) or "") for name in BUILTINS}
    for v in spec.variables:
        if v.type == "image":
            continue
        given_value = " ".join(str(given.get(v.name) or "").split())[: v.max_length]
        values[v.name] = given_value or v.default or ""
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Variable(_Strict):
    name: VariableName
    type: Literal["text", "number", "image"] = "text"
    default: str | None = None
    required: bool = True
    max_length: Annotated[int, Field(ge=1, le=200)] = 60
    ask: Texts | None = None  # the bot asks for it, in the contact's language; else the default is used

    @model_validator(mode="after")
    def _usable(self) -> Variable:
        if self.name in BUILTINS:
            raise ValueError(f"{self.name!r} is set by the engine; choose another name")
        if self.type == "image" and self.default is not None:
            raise ValueError(
                "an image variable has no default (its layer is left out when no picture is given)"
            )
        if self.type == "number" and self.default is not None and not is_number(self.default):
            raise ValueError(f"default {self.default!r} is not a number")
        if self.default is not None and len(self.default) > self.max_length:
            raise ValueError(f"default is longer than max_length {self.max_length}")
        if self.required and self.ask is None and self.default is None and self.type != "image":
            raise ValueError("a required variable needs `ask` (the bot asks for it) or a `default`")
        return self


class Gradient(_Strict):
    gradient: tuple[Colour, Colour]
    angle: Literal[0, 45, 90, 135, 180, 225, 270, 315] = 90  # 0: left to right, 90: top to bottom


class Solid(_Strict):
    color: Colour


class Picture(_Strict):
    file: str  # relative to the YAML file; becomes ``asset`` (its SHA-256) once loaded
    asset: str | None = None
    fit: Literal["cover", "contain", "stretch"] = "cover"


Background = Solid | Gradient | Picture


class Canvas(_Strict):
    width: Annotated[int, Field(ge=64, le=MAX_SIDE)] = 1080
    height: Annotated[int, Field(ge=64, le=MAX_SIDE)] = 1080
    background: Background = Solid(color="#ffffff")


class Font(_Strict):
    family: Literal["sans"] = "sans"
    weight: Literal["light", "regular", "medium", "semibold", "bold", "extrabold", "black"] = "regular"
    italic: bool = False
    size: Annotated[int, Field(ge=6, le=600)] = 48
    min_size: Annotated[int, Field(ge=6, le=600)] | None = None  # shrink to fit down to this size

    @model_validator(mode="after")
    def _sizes(self) -> Font:
        if self.min_size is not None and self.min_size > self.size:
            raise ValueError(f"min_size {self.min_size} is larger than size {self.size}")
        return self


class _Layer(_Strict):
    box: Box

    @property
    def static(self) -> bool:
        """Drawn the same for every card (no variable, no contact's picture): pre-drawn once per template."""
        return False


class TextLayer(_Layer):
    type: Literal["text"]
    text: Annotated[str, Field(min_length=1, max_length=1000)]
    font: Font = Font()
    color: Colour = "#000000"
    align: Literal["left", "center", "right"] = "left"
    valign: Literal["top", "middle", "bottom"] = "top"
    wrap: bool = True
    line_spacing: Annotated[float, Field(ge=0.8, le=3.0)] = 1.2
    max_lines: Annotated[int, Field(ge=1, le=50)] | None = None

    @field_validator("text")
    @classmethod
    def _well_formed(cls, v: str) -> str:
        placeholders(v)
        return v

    @property
    def static(self) -> bool:
        return not placeholders(self.text)


class ImageLayer(_Layer):
    type: Literal["image"]
    source: str | None = None  # an image variable, or "logo" (the organisation's)
    file: str | None = None  # a picture of the template, relative to the YAML file
    asset: str | None = None  # SHA-256 of the stored picture (set when the file is loaded)
    fit: Literal["cover", "contain", "stretch"] = "cover"
    mask: Literal["none", "circle", "rounded"] = "none"
    radius: Annotated[int, Field(ge=0)] = 24
    outline: Colour | None = None
    outline_width: Annotated[int, Field(ge=0, le=100)] = 0
    opacity: Annotated[float, Field(ge=0, le=1)] = 1.0

    @model_validator(mode="after")
    def _one_source(self) -> ImageLayer:
        if (self.source is None) == (self.file is None and self.asset is None):
            raise ValueError("give exactly one of `source` (an image variable or logo) and `file`")
        return self

    @property
    def static(self) -> bool:
        return self.source is None


class ShapeLayer(_Layer):
    type: Literal["shape"]
    shape: Literal["rectangle", "rounded_rectangle", "ellipse", "line"] = "rectangle"
    fill: Colour | None = None
    outline: Colour | None = None
    outline_width: Annotated[int, Field(ge=0, le=200)] = 0
    radius: Annotated[int, Field(ge=0)] = 24

    @model_validator(mode="after")
    def _visible(self) -> ShapeLayer:
        if self.fill is None and (self.outline is None or self.outline_width == 0):
            raise ValueError("a shape needs a `fill`, or an `outline` with an `outline_width`")
        if self.shape == "line" and (self.outline is None or self.outline_width == 0):
            raise ValueError("a line is drawn with `outline` (its colour) and `outline_width`")
        return self

    @property
    def static(self) -> bool:
        return True


class QrLayer(_Layer):
    type: Literal["qr"]
    link: Literal["whatsapp", "url", "text"] = "whatsapp"
    text: Annotated[str, Field(max_length=500)] = "Hi! ({code})"  # whatsapp: prefilled; text: the QR content
    url: Annotated[str, Field(max_length=1000)] | None = None
    color: Colour = "#000000"
    background: Colour = "#ffffff"
    quiet_zone: Annotated[int, Field(ge=0, le=8)] = 2  # modules of background around the code

    @model_validator(mode="after")
    def _target(self) -> QrLayer:
        if self.link == "url" and not (self.url or "").startswith(("https://", "http://")):
            raise ValueError("link: url needs `url` starting with https:// or http://")
        placeholders(self.text)
        placeholders(self.url or "")
        return self

    @property
    def static(self) -> bool:
        return False  # carries the card's code


Layer = Annotated[TextLayer | ImageLayer | ShapeLayer | QrLayer, Field(discriminator="type")]


class TemplateSpec(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=255)]
    title: Texts | None = None
    event: str | None = None
    poll: str | None = None
    menu: bool = False
    active: bool = True
    canvas: Canvas = Canvas()
    format: Literal["jpeg", "png"] = "jpeg"
    variables: list[Variable] = Field(default_factory=list)
    layers: Annotated[list[Layer], Field(min_length=1, max_length=60)]
    caption: Texts | None = None
    share: Texts | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TemplateSpec:
        names = [v.name for v in self.variables]
        if len(set(names)) != len(names):
            raise ValueError("variable names must be unique")
        if self.menu and self.title is None:
            raise ValueError("a template in the menu needs a `title`")
        return self

    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.variables if v.name == name), None)

    def asked(self) -> list[Variable]:
        return [v for v in self.variables if v.ask is not None]


def _path(loc: Sequence[int | str]) -> str:
    """``('layers', 2, 'text', 'font', 'size')`` -> ``layers[2].font.size`` (the union's tag left out)."""
    kept = [
        p
        for i, p in enumerate(loc)
        if not (i >= 2 and p in LAYER_KINDS and isinstance(loc[i - 1], int) and loc[i - 2] == "layers")
    ]
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in kept).lstrip(".") or "(template)"


def parse_template(
    raw: Any, where: str = "", base_dir: Path | None = None
) -> tuple[TemplateSpec, dict[str, bytes]]:
    """A validated template and the pictures it uses (SHA-256 -> bytes), read from files next to the YAML.
    ``where`` prefixes every error's path (``hypecards[0]`` inside a content file)."""
    prefix = f"{where}." if where else ""
    try:
        spec = TemplateSpec.model_validate(raw)
    except ValidationError as err:
        raise TemplateError(
            [f"{_under(where, _path(e['loc']))}: {_message(e)}" for e in err.errors()]
        ) from None
    errors = _cross_checks(spec, prefix)
    assets: dict[str, bytes] = {}
    if base_dir is not None and not errors:
        spec, errors = _load_pictures(spec, prefix, base_dir, assets)
    if errors:
        raise TemplateError(errors)
    return spec, assets


def _under(where: str, path: str) -> str:
    if path == "(template)":
        return where or path
    return f"{where}.{path}" if where else path


def _message(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _cross_checks(spec: TemplateSpec, prefix: str) -> list[str]:
    errors = []
    known = set(BUILTINS) | {v.name for v in spec.variables if v.type != "image"}
    images = {v.name for v in spec.variables if v.type == "image"}
    w, h = spec.canvas.width, spec.canvas.height
    for i, layer in enumerate(spec.layers):
        at = f"{prefix}layers[{i}]"
        x, y, bw, bh = layer.box
        if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
            errors.append(f"{at}.box: {list(layer.box)} lies outside the {w}×{h} canvas")
        texts: list[tuple[str, str]] = []
        if isinstance(layer, TextLayer):
            texts = [("text", layer.text)]
            smallest = layer.font.min_size or layer.font.size
            if smallest * 0.8 > bh:
                errors.append(f"{at}.font.size: {smallest} px text cannot fit a box {bh} px high")
        elif isinstance(layer, QrLayer):
            texts = [("text", layer.text), ("url", layer.url or "")]
            if min(bw, bh) < 64:
                errors.append(f"{at}.box: a QR code needs at least 64×64 px to scan")
        elif isinstance(layer, ImageLayer) and layer.source is not None:
            if layer.source != "logo" and layer.source not in images:
                choices = ", ".join(sorted(images | {"logo"}))
                errors.append(f"{at}.source: {layer.source!r} is not an image variable (one of: {choices})")
        for field, text in texts:
            errors += [
                f"{at}.{field}: unknown variable {{{name}}} (declare it under variables, or use one of: "
                f"{', '.join(sorted(known))})"
                for name in placeholders(text)
                if name not in known
            ]
    for field, texts_ in (("caption", spec.caption), ("share", spec.share)):
        for lang, text in (texts_ or {}).items():
            try:
                unknown = [n for n in placeholders(text) if n not in known]
            except ValueError as err:
                errors.append(f"{prefix}{field}.{lang}: {err}")
                continue
            errors += [f"{prefix}{field}.{lang}: unknown variable {{{n}}}" for n in unknown]
    return errors


def read_picture(data: bytes, where: str) -> tuple[int, int]:
    """The size of a picture Pillow can decode (JPEG, PNG, WebP, GIF); TemplateError otherwise."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_ASSET_BYTES:
        raise TemplateError([f"{where}: {len(data)} bytes is over the limit of {MAX_ASSET_BYTES}"])
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()
            return im.size
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError) as err:
        raise TemplateError([f"{where}: not a picture Pillow can read ({err})"]) from None


def _load_pictures(
    spec: TemplateSpec, prefix: str, base_dir: Path, assets: dict[str, bytes]
) -> tuple[TemplateSpec, list[str]]:
    errors: list[str] = []

    def load(file: str, where: str) -> str | None:
        path = (base_dir / file).resolve()
        try:
            data = path.read_bytes()
        except OSError as err:
            errors.append(f"{where}: cannot read {file}: {err.strerror or err}")
            return None
        try:
            read_picture(data, f"{where} ({file})")
        except TemplateError as err:
            errors.extend(err.errors)
            return None
        digest = hashlib.sha256(data).hexdigest()
        assets[digest] = data
        return digest

    background = spec.canvas.background
    if isinstance(background, Picture) and background.asset is None:
        digest = load(background.file, f"{prefix}canvas.background.file")
        background = background.model_copy(update={"asset": digest})
    layers = []
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, ImageLayer) and layer.file is not None and layer.asset is None:
            layer = layer.model_copy(update={"asset": load(layer.file, f"{prefix}layers[{i}].file")})
        layers.append(layer)
    canvas = spec.canvas.model_copy(update={"background": background})
    return spec.model_copy(update={"canvas": canvas, "layers": layers}), errors


def assets_of(spec: TemplateSpec) -> set[str]:
    """The SHA-256 of every picture the template draws (its background and its files)."""
    found = {layer.asset for layer in spec.layers if isinstance(layer, ImageLayer) and layer.asset}
    background = spec.canvas.background
    if isinstance(background, Picture) and background.asset:
        found.add(background.asset)
    return found
