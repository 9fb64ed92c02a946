"""The fonts cards are set in, all local files (nothing fetched at run time):

- Noto Sans (OFL-1.1) from the PyPI package ``fontpkg-noto-sans``: Latin with every letter English and
  Swahili use, as one variable font (weights 100-900) and its italic.
- Noto Color Emoji (OFL-1.1) from Debian's ``fonts-noto-color-emoji`` (``scripts/ensure_fonts.sh`` installs
  it; the path is ``HYPECARD_EMOJI_FONT``). A bitmap (CBDT) font: FreeType draws it only at its native size,
  109 px, so each emoji is drawn once there and scaled to the text's size (both cached).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, features

EMOJI_NATIVE_SIZE = 109  # Noto Color Emoji's only bitmap strike
WEIGHTS = {"light": 300, "regular": 400, "medium": 500, "semibold": 600, "bold": 700, "extrabold": 800}
WEIGHTS["black"] = 900


class FontsMissing(RuntimeError):
    """A font file the renderer needs is not on this machine; the message says how to install it."""


def sans_files() -> tuple[Path, Path]:
    """(upright, italic) Noto Sans variable fonts shipped by the fontpkg-noto-sans wheel."""
    from importlib.resources import files

    folder = files("fontpkg_noto_sans").joinpath("files")
    return Path(str(folder.joinpath("NotoSans[wdth,wght].ttf"))), Path(
        str(folder.joinpath("NotoSans-Italic[wdth,wght].ttf"))
    )


@dataclass
class Fonts:
    """Fonts by (weight, italic, size), emoji bitmaps by (sequence, height); one per rendering thread
    (FreeType faces are not shared between threads)."""

    emoji_path: Path
    sans: tuple[Path, Path] = field(default_factory=sans_files)
    fingerprint: str = ""  # names the exact font files: part of every card's cache key

    def __post_init__(self) -> None:
        for path, how in (
            (self.sans[0], "pip install fontpkg-noto-sans"),
            (self.emoji_path, "apt-get install fonts-noto-color-emoji, or set HYPECARD_EMOJI_FONT"),
        ):
            if not path.is_file():
                raise FontsMissing(f"font file {path} is missing ({how}; `make` installs both)")
        digest = hashlib.sha256(
            f"raqm={features.version('raqm')};ft={features.version('freetype2')}".encode()
        )
        for path in (*self.sans, self.emoji_path):
            stat = path.stat()
            digest.update(f"{path.name}:{stat.st_size}".encode())
        self.fingerprint = digest.hexdigest()[:16]
        self.text = lru_cache(maxsize=256)(self._text)
        self.emoji = lru_cache(maxsize=4096)(self._emoji)
        self._native = lru_cache(maxsize=1024)(self._native_emoji)
        self._emoji_font = ImageFont.truetype(str(self.emoji_path), EMOJI_NATIVE_SIZE)

    def _text(self, weight: str, italic: bool, size: int) -> ImageFont.FreeTypeFont:
        font = ImageFont.truetype(str(self.sans[1] if italic else self.sans[0]), size)
        font.set_variation_by_axes([WEIGHTS[weight], 100])  # axes: weight, width (100 = normal)
        return font

    def _native_emoji(self, sequence: str) -> Image.Image:
        left, top, right, bottom = self._emoji_font.getbbox(sequence)
        glyph = Image.new("RGBA", (max(1, math.ceil(right)), max(1, math.ceil(bottom))))
        ImageDraw.Draw(glyph).text((0, 0), sequence, font=self._emoji_font, embedded_color=True)
        return glyph

    def _emoji(self, sequence: str, size: int) -> Image.Image:
        """``sequence`` (one emoji, ZWJ sequences and flags included) for text of ``size`` px."""
        native = self._native(sequence)
        scale = size / EMOJI_NATIVE_SIZE
        return native.resize(
            (max(1, round(native.width * scale)), max(1, round(native.height * scale))),
            Image.Resampling.LANCZOS,
        )

    def emoji_advance(self, size: int) -> float:
        return self._emoji_font.getlength("\U0001f600") * size / EMOJI_NATIVE_SIZE

    def emoji_ascent(self, size: int) -> int:
        return round(self._emoji_font.getmetrics()[0] * size / EMOJI_NATIVE_SIZE)
