#!/usr/bin/env bash
# Makes sure the colour emoji font HypeCards draw emoji with is installed: Debian's fonts-noto-color-emoji
# (Noto Color Emoji, SIL Open Font License 1.1: free to use, bundle and redistribute with software).
# Installs it with apt-get when missing and we are root; otherwise says what to do. The text font, Noto Sans,
# comes from PyPI (fontpkg-noto-sans in pyproject.toml). HYPECARD_EMOJI_FONT names another file.
set -euo pipefail
font="${HYPECARD_EMOJI_FONT:-/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf}"
[ -f "$font" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing fonts-noto-color-emoji (Debian package)..." >&2
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-noto-color-emoji >/dev/null
  fi
  [ -f "$font" ] && exit 0
fi
echo "The colour emoji font $font is missing: install it (sudo apt-get install fonts-noto-color-emoji)" >&2
echo "or set HYPECARD_EMOJI_FONT to a Noto Color Emoji file." >&2
exit 1
