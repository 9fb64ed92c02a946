#!/usr/bin/env bash
# A second RabbitMQ, of another version than the local one, for the tests that must hold on the version
# compose.yaml pins (tests/test_parking.py). This machine's own Debian (bookworm) has RabbitMQ 3.10 on
# Erlang/OTP 25, and later RabbitMQ needs a later OTP (3.13: 26, 4.0: 27), which bookworm has not; Debian's
# next releases carry both. So the broker runs from a chroot of that release, made with debootstrap from the
# mirror this machine's apt already uses, on ports of its own (loopback only).
#
#   scripts/rabbitmq_compat.sh start [SUITE]   once the broker answers, prints RABBITMQ_URL=… and
#                                              RABBITMQ_MANAGEMENT_URL=… for `env` (SUITE: trixie)
#   scripts/rabbitmq_compat.sh stop  [SUITE]   stops the broker and its epmd, unmounts /proc
#
# Suites: trixie (RabbitMQ 4.0 on OTP 27: the first 4.x, whose reads count toward the delivery limit) and forky
# (4.3 on OTP 29: compose.yaml's rabbitmq:4.3-management).
# Needs root (chroot, mount). The chroot stays in $COMPAT_ROOT for the next run (about 400 MB).
set -euo pipefail
action="${1:?usage: $0 start|stop [SUITE]}"
suite="${2:-trixie}"
case "$suite" in
  trixie) offset=0 ;;
  forky) offset=1 ;;
  *) echo "unknown suite $suite (trixie or forky)" >&2; exit 2 ;;
esac
amqp=$((5690 + offset)) management=$((15690 + offset)) dist=$((25690 + offset)) epmd=$((4390 + offset))
base="${COMPAT_ROOT:-/var/tmp/chatnation-rabbitmq}"
root="$base/$suite"
node="rabbit@localhost"
in_root() {
  chroot --userspec=rabbitmq:rabbitmq "$root" /usr/bin/env -i HOME=/var/lib/rabbitmq PATH=/usr/sbin:/usr/bin:/bin \
    LANG=C.UTF-8 ERL_EPMD_PORT="$epmd" RABBITMQ_NODENAME="$node" RABBITMQ_DIST_PORT="$dist" \
    RABBITMQ_CONFIG_FILE=/etc/rabbitmq/compat "$@"
}
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$amqp") 2>/dev/null; }

mirror() {
  local uri
  uri=$(bash "$(dirname "$0")/debian_mirror.sh")
  [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt/sources*" >&2; exit 1; }
  echo "$uri"
}

make_root() {
  [ -x "$root/usr/lib/rabbitmq/bin/rabbitmq-server" ] && return 0
  command -v debootstrap >/dev/null 2>&1 || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  local script=/usr/share/debootstrap/scripts/sid  # newer suites than this debootstrap knows follow sid's
  [ -e "/usr/share/debootstrap/scripts/$suite" ] && script="/usr/share/debootstrap/scripts/$suite"
  rm -rf "$root.partial" && mkdir -p "$base"
  echo "making a $suite chroot with RabbitMQ in $root (a few minutes, once)..." >&2
  debootstrap --variant=minbase "$suite" "$root.partial" "$(mirror)" "$script" >"$base/$suite.debootstrap.log" 2>&1 \
    || { echo "debootstrap failed: $base/$suite.debootstrap.log" >&2; exit 1; }
  # packages must not start services in the chroot (the host's broker has the usual ports)
  printf '#!/bin/sh\nexit 101\n' >"$root.partial/usr/sbin/policy-rc.d" && chmod +x "$root.partial/usr/sbin/policy-rc.d"
  chroot "$root.partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    rabbitmq-server >>"$base/$suite.debootstrap.log" 2>&1 \
    || { echo "installing rabbitmq-server failed: $base/$suite.debootstrap.log" >&2; exit 1; }
  chroot "$root.partial" apt-get clean
  mv "$root.partial" "$root"
}

configure() {
  cat >"$root/etc/rabbitmq/compat.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$amqp
management.tcp.ip = 127.0.0.1
management.tcp.port = $management
EOF
  echo '[rabbitmq_management].' >"$root/etc/rabbitmq/enabled_plugins"
  chown rabbitmq:rabbitmq "$root/etc/rabbitmq/enabled_plugins" 2>/dev/null \
    || chroot "$root" chown rabbitmq:rabbitmq /etc/rabbitmq/enabled_plugins
  [ -s "$root/etc/hosts" ] || cp /etc/hosts "$root/etc/hosts"
  mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
}

stop() {
  if [ -x "$root/usr/lib/rabbitmq/bin/rabbitmqctl" ] && mountpoint -q "$root/proc"; then
    in_root /usr/lib/rabbitmq/bin/rabbitmqctl -q stop >/dev/null 2>&1 || true
    in_root /usr/bin/epmd -kill >/dev/null 2>&1 || true
  fi
  mountpoint -q "$root/proc" && umount "$root/proc"
  return 0
}

case "$action" in
  start)
    [ "$(id -u)" = 0 ] || { echo "needs root (chroot)" >&2; exit 1; }
    make_root
    configure
    if ! answers; then
      (in_root setsid /usr/lib/rabbitmq/bin/rabbitmq-server >/dev/null 2>&1 &)
      for _ in $(seq 1 120); do answers && break; sleep 1; done
      in_root timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -q await_startup >/dev/null 2>&1 \
        || { echo "RabbitMQ ($suite) did not start" >&2; stop; exit 1; }
    fi
    echo "RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$amqp/"
    echo "RABBITMQ_MANAGEMENT_URL=http://guest:guest@127.0.0.1:$management/"
    ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop [SUITE]" >&2; exit 2 ;;
esac
