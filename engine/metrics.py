"""Prometheus metrics: one default registry per process, exposed by a small HTTP server of its own: the
gateway's on GATEWAY_METRICS_PORT (apart from the public webhook port), the workers' on METRICS_PORT.

Each process defines its own metrics in its own section or module, prefixed ``chatnation_<process>_``.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

# The *_created gauges double the exposition and no dashboard here uses them.
disable_created_metrics()


def exposition() -> tuple[bytes, str]:
    """The text exposition of every metric of this process, and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def start_metrics_server(port: int, addr: str = "0.0.0.0") -> None:
    """Serve ``/metrics`` from a daemon thread (processes without an HTTP server of their own)."""
    start_http_server(port, addr=addr)


def prime(counter: Counter, label_sets: Iterable[tuple[str, ...]]) -> None:
    """Create labelled series at zero so dashboards and alerts see them before the first event."""
    for labels in label_sets:
        counter.labels(*labels)


# ---------------------------------------------------------------- gateway

# route -> the outcomes it can have
GATEWAY_OUTCOMES: dict[str, tuple[str, ...]] = {
    "webhook": (
        "accepted",
        "bad_signature",
        "too_large",
        "bad_request",
        "unavailable",
        "disconnected",
        "error",
    ),
    "webhook_verify": ("accepted", "forbidden", "error"),
    "mpesa_callback": (
        "accepted",
        "unauthorized",
        "forbidden",
        "too_large",
        "bad_request",
        "unavailable",
        "disconnected",
        "error",
    ),
}
PART_KINDS = ("message", "status", "error", "other", "payment")

GATEWAY_REQUESTS = Counter(
    "chatnation_gateway_requests_total", "Gateway requests by route and outcome", ["route", "outcome"]
)
GATEWAY_PUBLISH_SECONDS = Histogram(
    "chatnation_gateway_publish_seconds",
    "Time from first publish to the last broker confirm, per request",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
GATEWAY_SIGNATURE_FAILURES = Counter(
    "chatnation_gateway_signature_failures_total", "Webhooks with a missing or wrong X-Hub-Signature-256"
)
GATEWAY_PARTS_PUBLISHED = Counter(
    "chatnation_gateway_parts_published_total", "Broker messages confirmed, by kind", ["kind"]
)

GATEWAY_TIMEOUTS = Counter(
    "chatnation_gateway_timeouts_total",
    "Connections closed because a request's head or body did not arrive in time",
    ["phase"],
)

prime(GATEWAY_TIMEOUTS, (("header",), ("body",)))

# M-Pesa callbacks after the gateway: for no request of ours, contradicting theirs, repeated, confirmed by the
# STK Push Query, or left unconfirmed (Daraja did not answer)
MPESA_CALLBACK_OUTCOMES = ("unknown", "suspicious", "duplicate", "confirmed", "unconfirmed")
MPESA_CALLBACKS = Counter(
    "chatnation_mpesa_callbacks_total", "M-Pesa callbacks routed, by what became of them", ["outcome"]
)
prime(MPESA_CALLBACKS, ((o,) for o in MPESA_CALLBACK_OUTCOMES))

prime(GATEWAY_REQUESTS, ((r, o) for r, outcomes in GATEWAY_OUTCOMES.items() for o in outcomes))
prime(GATEWAY_PARTS_PUBLISHED, ((k,) for k in PART_KINDS))
