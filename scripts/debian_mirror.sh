#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt reads from (nothing when there is none), for the scripts that
# take packages of another Debian release (scripts/ensure_compose.sh, scripts/rabbitmq_compat.sh).
grep -hoE '^(URIs:|deb) *\[?[^]]*\]? *https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources \
  /etc/apt/sources.list 2>/dev/null | grep -oE 'https?://[^ ]+' | head -1 || true
