"""The worker processes' Prometheus series (each process serves them on METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# No *_created series: they double the exposition and nothing here reads them (engine/metrics.py, the gateway's).
disable_created_metrics()

events = Counter(
    "chatnation_worker_events_total", "Queued events handled, by kind and outcome", ["kind", "outcome"]
)
processing_seconds = Histogram(
    "chatnation_worker_processing_seconds",
    "Time to handle one event (transaction included)",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
batch_events = Histogram(
    "chatnation_worker_batch_events",
    "Inbound events committed together in one transaction (INBOUND_BATCH_SIZE > 1)",
    buckets=(1, 2, 4, 8, 12, 16, 24),
)
duplicates = Counter("chatnation_worker_duplicates_total", "Events already processed (no effect)", ["source"])
replies_queued = Counter("chatnation_worker_replies_queued_total", "Replies written to the outbox")
replies_skipped = Counter(
    "chatnation_worker_replies_skipped_total", "Replies not queued, by reason", ["reason"]
)
debits = Counter("chatnation_wallet_debits_total", "Wallet debits by action", ["action"])
wallet_low = Counter(
    "chatnation_wallet_low_total", "Debits that took a wallet below its low-balance threshold"
)
wallet_paused = Counter(
    "chatnation_wallet_paused_total", "Pauses opened: an organisation's wallet could not pay its replies"
)
wallet_low_balance = Gauge("chatnation_wallet_below_threshold", "Wallets below their low-balance threshold")
relayed = Counter("chatnation_relay_published_total", "Outbox rows published to the outbound queue")
published_by_writer = Counter(
    "chatnation_replies_published_total",
    "Replies published to the outbound queue by the inbound worker that wrote them, after its commit",
)
sends = Counter(
    "chatnation_sender_results_total", "WhatsApp send results by outcome and error code", ["outcome", "code"]
)
send_seconds = Histogram(
    "chatnation_sender_request_seconds",
    "WhatsApp API request latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
queue_depth = Gauge("chatnation_queue_messages", "Messages in a queue, by state", ["queue", "state"])
queue_consumers = Gauge("chatnation_queue_consumers", "Consumers of a queue", ["queue"])
outbox_backlog = Gauge("chatnation_outbox_backlog", "Outbox rows committed and not yet relayed")
outbox_oldest_seconds = Gauge(
    "chatnation_outbox_oldest_seconds", "How long the oldest outbox row not yet relayed has waited"
)
sampler_active = Gauge(
    "chatnation_queue_sampler_active", "1 in the one process that samples queues, outbox and wallets"
)
in_flight = Gauge("chatnation_worker_in_flight", "Events received and not yet acked", ["role"])
cards = Counter(
    "chatnation_hypecards_total", "HypeCards made by the cards role: rendered or a cache hit", ["how"]
)
card_render_seconds = Histogram(
    "chatnation_hypecard_render_seconds",
    "Time to render one HypeCard (the render thread)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
