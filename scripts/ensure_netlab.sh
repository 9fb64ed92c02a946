#!/usr/bin/env bash
# What `make scale-test` needs beyond the engine (tests/faults/netlab.py, tests/faults/balancer.py): iproute2's ip
# for the hosts' network namespaces, nftables' nft to cut a host off from the broker, haproxy for the round-robin
# in front of the two gateways. Installs the missing Debian packages when we are root; otherwise says what to do.
set -euo pipefail
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v nft >/dev/null 2>&1 || missing+=(nftables)
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
[ ${#missing[@]} = 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "make scale-test needs root (network namespaces) and ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} (Debian packages)..." >&2
# The packages' own services are not wanted: the test runs haproxy with a configuration of its own.
apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
