#!/usr/bin/env bash
# Makes sure a RabbitMQ broker answers at RABBITMQ_URL (default amqp://guest:guest@127.0.0.1:5672/).
# Where none answers on a local address: start Debian's rabbitmq-server (installing it with apt-get when it is
# missing and we are root), or stop with a message saying what to do.
set -euo pipefail
url="${RABBITMQ_URL:-amqp://guest:guest@127.0.0.1:5672/}"
hostport="${url#*://}"; hostport="${hostport#*@}"; hostport="${hostport%%/*}"
host="${hostport%%:*}"; port="${hostport##*:}"; [ "$port" = "$host" ] && port=5672

answers() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }
wait_for() { for _ in $(seq 1 60); do answers && return 0; sleep 1; done; return 1; }
# The management API (queue depths, unacked counts, rates for `chatnation queues`) and the Prometheus endpoint
# (:15692). Idempotent; takes effect on the running node. Only for a local broker we administer as root.
enable_plugins() {
  case "$host" in 127.*|localhost|::1) ;; *) return 0 ;; esac
  # Already listed (the usual case after the first run): nothing to do. Enabling asks the running node to
  # reconcile its plugins, which several test runs at once should not do over and over; bounded in time.
  local listed=/etc/rabbitmq/enabled_plugins
  if [ -r "$listed" ] && grep -q rabbitmq_management "$listed" && grep -q rabbitmq_prometheus "$listed"; then
    return 0
  fi
  if [ "$(id -u)" = 0 ] && command -v rabbitmq-plugins >/dev/null 2>&1; then
    timeout 60 rabbitmq-plugins -q enable rabbitmq_management rabbitmq_prometheus >/dev/null 2>&1 \
      || echo "note: could not enable the RabbitMQ management plugins; 'chatnation queues' falls back to AMQP" >&2
  fi
  return 0
}

if answers; then enable_plugins; exit 0; fi
case "$host" in
  127.*|localhost|::1) ;;
  *) echo "RabbitMQ at $host:$port does not answer; start it or set RABBITMQ_URL" >&2; exit 1 ;;
esac
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing rabbitmq-server (Debian package)..." >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  else
    echo "No RabbitMQ answers at $host:$port and rabbitmq-server is not installed." >&2
    echo "Install it (sudo apt-get install rabbitmq-server), use 'docker compose up rabbitmq', or set RABBITMQ_URL." >&2
    exit 1
  fi
fi
echo "starting rabbitmq-server..." >&2
rabbitmq-server -detached >/dev/null 2>&1 || true
if wait_for; then
  # the port opens before the broker accepts AMQP logins; give it a moment
  for _ in $(seq 1 30); do rabbitmqctl -q await_startup >/dev/null 2>&1 && break; sleep 1; done
  enable_plugins
  exit 0
fi
echo "rabbitmq-server did not come up on $host:$port; see /var/log/rabbitmq/" >&2
exit 1
