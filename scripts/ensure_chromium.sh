#!/usr/bin/env bash
# Debian's chromium and chromedriver for the operator console's browser test (tests/test_console.py). Installs
# them with apt-get when they are missing and this runs as root; prints the two paths.
set -euo pipefail
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = "0" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
  else
    echo "chromium and chromedriver are missing: apt-get install chromium chromium-driver (as root)" >&2
    exit 1
  fi
fi
command -v chromium
command -v chromedriver
