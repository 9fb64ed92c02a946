#!/usr/bin/env bash
# Prints a command that runs Docker Compose v2, for the test that validates compose.yaml (`… config`).
# `docker compose` (the plugin) is used where it works; else a docker-compose v2 binary in .venv/tools/, taken
# once out of the Debian package of the release after this machine's (bookworm's docker-compose is v1, which
# rejects compose.yaml's top-level `name`; trixie's is v2 and needs only libc). The package is only unpacked:
# apt reads that release's index into a private folder, nothing is installed and no source list changes.
# Prints nothing and exits 0 when none of this works, so that the test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then echo "docker compose"; exit 0; fi
tools=.venv/tools
if [ -x "$tools/docker-compose" ]; then echo "$PWD/$tools/docker-compose"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || exit 0
mirror=$(bash scripts/debian_mirror.sh)
[ -n "$mirror" ] || exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/archives/partial"
echo "deb $mirror trixie main" >"$work/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=-"
  -o "Dir::State::Lists=$work/lists" -o "Dir::Cache::Archives=$work/archives" -o "Dir::Cache=$work"
  -o "APT::Get::List-Cleanup=0" -o "Debug::NoLocking=1")
apt-get -qq "${apt_private[@]}" update >/dev/null 2>&1 || exit 0
(cd "$work" && apt-get -qq "${apt_private[@]}" download docker-compose >/dev/null 2>&1) || exit 0
dpkg-deb --fsys-tarfile "$work"/docker-compose_*.deb | tar -x -C "$work" ./usr/libexec/docker/cli-plugins/docker-compose \
  2>/dev/null || dpkg-deb --fsys-tarfile "$work"/docker-compose_*.deb | tar -x -C "$work" ./usr/bin/docker-compose
mkdir -p "$tools"
found=$(find "$work/usr" -name docker-compose -type f | head -1)
[ -n "$found" ] || exit 0
"$found" version >/dev/null 2>&1 || exit 0
mv "$found" "$tools/docker-compose"
echo "$PWD/$tools/docker-compose"
