"""Raw limits of the two services under the engine, measured on the same machine in the same run:

- PostgreSQL: pgbench (shipped inside the embedded server's package) running a custom transaction the size of
  one inbound message's (dedupe insert, contact upsert, conversation select-for-update, two updates of the
  conversation, wallet update and ledger insert, inbound and outbound message inserts, outbox insert) on a
  scratch database.
- RabbitMQ: confirmed persistent publishes into quorum queues and acknowledged consumption from them, at the
  same time, with aio-pika (the engine's client), on scratch queues.

    python bench/baselines.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import create_database, drop_database, new_tag  # noqa: E402

SCHEMA = """
CREATE TABLE b_processed (org int, external_id text, created_at timestamptz DEFAULT now(),
                          PRIMARY KEY (org, external_id));
CREATE TABLE b_contacts (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org int, phone int, message_count int,
                         last_seen_at timestamptz, UNIQUE (org, phone));
CREATE TABLE b_conversations (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), contact int UNIQUE, state jsonb,
                              version int DEFAULT 0, last_user_message_at timestamptz, last_message_at timestamptz);
CREATE TABLE b_wallets (org int PRIMARY KEY, balance int CHECK (balance >= 0));
CREATE TABLE b_ledger (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org int, amount int, balance_after int,
                       created_at timestamptz DEFAULT now());
CREATE TABLE b_messages (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), org int, contact int, direction text,
                         content text, payload jsonb, wa_message_id text, created_at timestamptz DEFAULT now());
CREATE INDEX ON b_messages (contact, created_at);
CREATE UNIQUE INDEX ON b_messages (org, wa_message_id) WHERE wa_message_id IS NOT NULL;
CREATE TABLE b_outbox (id bigserial PRIMARY KEY, org int, message_id uuid, payload jsonb, relayed_at timestamptz);
CREATE INDEX ON b_outbox (id) WHERE relayed_at IS NULL;
INSERT INTO b_conversations (contact, state) SELECT g, '{}' FROM generate_series(1, 50000) g;
INSERT INTO b_wallets SELECT g, 1000000000 FROM generate_series(1, 4) g;
"""

# One inbound message's transaction, statement for statement as the engine runs it.
TRANSACTION = """
\\set org random(1, 4)
\\set contact random(1, 50000)
\\set eid random(1, 2000000000)
BEGIN;
SELECT set_config('app.current_org', :org::text, true);
INSERT INTO b_processed (org, external_id) VALUES (:org, 'wamid.' || :client_id || '.' || :eid) ON CONFLICT DO NOTHING;
INSERT INTO b_contacts (org, phone, message_count, last_seen_at) VALUES (:org, :contact, 1, now())
  ON CONFLICT (org, phone) DO UPDATE SET message_count = b_contacts.message_count + 1, last_seen_at = now() RETURNING *;
SELECT * FROM b_conversations WHERE contact = :contact FOR UPDATE;
INSERT INTO b_messages (org, contact, direction, content, payload, wa_message_id)
  VALUES (:org, :contact, 'inbound', 'hi', '{"type":"text","text":{"body":"hi"},"from":"254700000000"}', 'wamid.' || :client_id || '.' || :eid);
UPDATE b_conversations SET last_user_message_at = now() WHERE contact = :contact;
UPDATE b_conversations SET state = '{"module":"poll","step":"vote","data":{"poll_id":"x"}}', version = version + 1,
  last_message_at = now() WHERE contact = :contact;
UPDATE b_wallets SET balance = balance - 1 WHERE org = :org AND balance >= 1 RETURNING balance;
INSERT INTO b_ledger (org, amount, balance_after) VALUES (:org, -1, 0);
INSERT INTO b_messages (org, contact, direction, content, payload)
  VALUES (:org, :contact, 'outbound', 'Best snack?', '{"type":"interactive","interactive":{"type":"button","body":{"text":"Best snack?"}}}')
  RETURNING id;
INSERT INTO b_outbox (org, payload) VALUES (:org, '{"to":"254700000000","type":"interactive"}');
COMMIT;
"""


def pgbench_binary() -> Path:
    """The pgbench of the embedded server's package (the same build as the server the engine uses)."""
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"


def _run_pgbench(url: str, seconds: int, clients: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write(TRANSACTION)
    cmd = [
        str(pgbench_binary()),
        "-n",
        "-M",
        "prepared",
        "-c",
        str(clients),
        "-j",
        "2",
        "-T",
        str(seconds),
        "-f",
        script.name,
        url,
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=True).stdout
    finally:
        Path(script.name).unlink()
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    return {
        "tps": round(float(tps.group(1)), 1) if tps else None,
        "latency_ms": float(latency.group(1)) if latency else None,
        "clients": clients,
        "seconds": seconds,
    }


async def pgbench_baseline(owner_url: str, seconds: int = 10, clients: int = 16) -> dict[str, Any]:
    """Transactions per second of one inbound message's transaction on a scratch database."""
    import asyncpg

    name = f"bench_pgbench_{new_tag()}"
    url = await create_database(owner_url, name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()
        return await asyncio.to_thread(_run_pgbench, url, seconds, clients)
    finally:
        await drop_database(owner_url, name)


async def broker_baseline(
    rabbitmq_url: str, seconds: float = 10, queues: int = 8, in_flight: int = 64, body_size: int = 700
) -> dict[str, Any]:
    """Confirmed persistent publishes and acked consumption per second, at the same time, on quorum queues."""
    import aio_pika

    connection = await aio_pika.connect(rabbitmq_url)
    names = [f"baseline{new_tag()}.{i:03d}" for i in range(queues)]
    body = b"x" * body_size
    counts = {"published": 0, "consumed": 0}
    async with connection:
        publish_channel = await connection.channel(publisher_confirms=True)
        for name in names:
            await publish_channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            counts["consumed"] += 1

        consumers = []
        for name in names:
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=100)
            await (await channel.get_queue(name)).consume(on_message)
            consumers.append(channel)
        deadline = time.monotonic() + seconds

        async def publisher(i: int) -> None:
            while time.monotonic() < deadline:
                message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await publish_channel.default_exchange.publish(message, routing_key=names[i % queues])
                counts["published"] += 1

        started = time.monotonic()
        await asyncio.gather(*(publisher(i) for i in range(in_flight)))
        elapsed = time.monotonic() - started
        consumed = counts["consumed"]
        for channel in consumers:
            await channel.close()
        for name in names:
            await publish_channel.queue_delete(name)
    return {
        "publish_per_s": round(counts["published"] / elapsed, 1),
        "consume_per_s": round(consumed / elapsed, 1),
        "queues": queues,
        "in_flight": in_flight,
        "body_bytes": body_size,
        "seconds": round(elapsed, 1),
    }


def engine_limits(pg: dict[str, Any] | None, broker: dict[str, Any] | None) -> dict[str, float | None]:
    """Messages/s each service alone could carry for the engine: one inbound transaction per message (plus
    smaller ones by the relay and the sender), and two confirmed publishes and two consumes per message
    (gateway -> inbound, relay -> sender)."""
    pg_limit = pg.get("tps") if pg else None
    broker_limit = min(broker["publish_per_s"], broker["consume_per_s"]) / 2 if broker else None
    return {"postgres_msgs_per_s": pg_limit, "broker_msgs_per_s": broker_limit}


async def _main(seconds: int) -> None:
    from engine.db import database_urls
    from engine.settings import Settings

    settings = Settings()
    urls = await database_urls(settings)
    pg = await pgbench_baseline(urls.owner, seconds)
    print(f"pgbench, one inbound message's transaction: {pg}")
    broker = await broker_baseline(str(settings.rabbitmq_url), seconds)
    print(f"RabbitMQ confirmed publish + consume (quorum, persistent): {broker}")
    print(f"limits for the engine (messages/s): {engine_limits(pg, broker)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    asyncio.run(_main(parser.parse_args().seconds))
