#!/usr/bin/env bash
# Prints the path of a promtool (Prometheus' rule checker), for the tests that validate deploy/prometheus/.
# One on PATH is used as it is; otherwise promtool is taken out of Debian's `prometheus` package into
# .venv/tools/ (the package is only unpacked there: no server is installed or started). Prints nothing and
# exits 0 when neither works, so that the tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
tools=.venv/tools
if [ -x "$tools/promtool" ]; then echo "$PWD/$tools/promtool"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || exit 0
mkdir -p "$tools"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1); then
  # a new machine may have no package lists yet
  [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1) || exit 0
fi
dpkg-deb --fsys-tarfile "$work"/prometheus_*.deb | tar -x -C "$work" ./usr/bin/promtool
mv "$work/usr/bin/promtool" "$tools/promtool"
echo "$PWD/$tools/promtool"
