"""Knowledge-base retrieval latency at 100k chunks: HNSW (pgvector) and full-text search, under row-level security.

On a throwaway database (created, migrated, dropped): two organisations share the embeddings table (a large
one and a small one, so the tenant filter matters), chunks with deterministic synthetic embeddings (topic
centroids plus noise, unit length) and topic-word texts, loaded with binary COPY; the HNSW index is built
after the load (timed). Then, as the application role in tenant transactions, the engine's own retrieval
functions (``by_vector``: iterative HNSW scan, ``by_text``: tsquery over content_tsv) run ``--queries`` times
per organisation; recall@4 of HNSW against an exact scan is measured on a sample.

    python bench/retrieval.py [--chunks 100000] [--queries 500] [--small-share 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import create_database, drop_database, new_tag, percentile  # noqa: E402
from engine.db import create_pool, database_urls, tenant_tx, with_user  # noqa: E402
from engine.knowledge.retrieval import by_text, by_vector  # noqa: E402
from engine.knowledge.vectors import register_binary  # noqa: E402
from engine.migrate import migrate  # noqa: E402
from engine.orgs import NewOrganization, create_organization  # noqa: E402
from engine.settings import get_settings  # noqa: E402

DIM = 1536
TOPICS = 200
WORDS_PER_TOPIC = 12
BATCH = 5000
SEED = 20250301
rng = np.random.default_rng(SEED)
CENTROIDS = rng.standard_normal((TOPICS, DIM), dtype=np.float32)
VOCAB = [[f"t{t}w{w}" for w in range(WORDS_PER_TOPIC)] for t in range(TOPICS)]


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def synthetic(n: int, start: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``n`` chunks: embeddings near their topic's centroid, and texts of that topic's words plus fillers."""
    local = np.random.default_rng(SEED + start)
    topics = local.integers(0, TOPICS, n)
    vectors = unit(CENTROIDS[topics] + 1.2 * local.standard_normal((n, DIM), dtype=np.float32))
    texts = [
        " ".join(local.choice(VOCAB[t], 8)) + f" chunk {start + i} of the synthetic guide."
        for i, t in enumerate(topics)
    ]
    return vectors.astype(np.float32), texts, topics


async def load(owner_url: str, org_id: uuid.UUID, n: int, start: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(owner_url)  # the owner loads (no RLS); readers are the app role
    try:
        await register_binary(conn)
        kb = await conn.fetchval(
            "INSERT INTO knowledge_bases (organization_id, name) VALUES ($1, 'bench') RETURNING id", org_id
        )
        doc = await conn.fetchval(
            """INSERT INTO documents (organization_id, knowledge_base_id, title, content, status)
                                     VALUES ($1, $2, 'bench', '', 'ready') RETURNING id""",
            org_id,
            kb,
        )
        for offset in range(0, n, BATCH):
            size = min(BATCH, n - offset)
            vectors, texts, _ = synthetic(size, start + offset)
            records = [(uuid.uuid4(), doc, org_id, offset + i, texts[i], vectors[i]) for i in range(size)]
            await conn.copy_records_to_table(
                "embeddings",
                records=records,
                columns=["id", "document_id", "organization_id", "chunk_index", "content", "embedding"],
            )
    finally:
        await conn.close()


async def build_index(owner_url: str) -> float:
    import asyncpg

    conn = await asyncpg.connect(owner_url, command_timeout=3600)
    try:
        await conn.execute("SET maintenance_work_mem = '3GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        started = time.perf_counter()
        await conn.execute(
            "CREATE INDEX idx_embeddings_vector ON embeddings USING hnsw (embedding vector_cosine_ops)"
        )
        await conn.execute("ANALYZE embeddings")
        return time.perf_counter() - started
    finally:
        await conn.close()


def queries(n: int) -> tuple[np.ndarray, list[str]]:
    local = np.random.default_rng(SEED - 1)
    topics = local.integers(0, TOPICS, n)
    vectors = unit(CENTROIDS[topics] + 1.2 * local.standard_normal((n, DIM), dtype=np.float32))
    texts = [f"where is {' '.join(local.choice(VOCAB[t], 2))}?" for t in topics]
    return vectors, texts


async def timed(pool, org_id, fn, args) -> tuple[list[float], list[list]]:  # type: ignore[no-untyped-def]
    latencies, results = [], []
    for arg in args:
        async with tenant_tx(pool, org_id) as conn:
            started = time.perf_counter()
            results.append(await fn(conn, arg))
            latencies.append((time.perf_counter() - started) * 1000)
    return latencies, results


async def exact(pool, org_id, vector) -> list[str]:  # type: ignore[no-untyped-def]
    async with tenant_tx(pool, org_id) as conn:
        await conn.execute("SET LOCAL enable_indexscan = off")
        return [p.content for p in await by_vector(conn, vector, max_distance=2.0)]


async def measure(pool, org_id, label: str, n_queries: int, recall_sample: int) -> list[tuple]:  # type: ignore[no-untyped-def]
    vectors, texts = queries(n_queries)
    vec_ms, found = await timed(pool, org_id, lambda c, v: by_vector(c, v, max_distance=2.0), list(vectors))
    fts_ms, _ = await timed(pool, org_id, by_text, texts)
    hits = 0
    for i in range(recall_sample):
        truth = set(await exact(pool, org_id, vectors[i]))
        hits += len(truth & {p.content for p in found[i]})
    recall = hits / (recall_sample * 4) if recall_sample else float("nan")
    return [(label, "vector (HNSW)", vec_ms, recall), (label, "full-text", fts_ms, None)]


def report(rows: list[tuple], n_chunks: int, index_seconds: float, load_seconds: float) -> None:
    print(
        f"\n{n_chunks} chunks of {DIM} dimensions; load (COPY) {load_seconds:.1f} s; HNSW build {index_seconds:.1f} s"
    )
    print(
        f"{platform.node()} · {platform.processor() or platform.machine()} · Python {platform.python_version()} · "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
    )
    print("| organisation | retrieval | queries | p50 ms | p95 ms | p99 ms | recall@4 |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, kind, ms, recall in rows:
        r = f"{recall:.3f}" if recall is not None else ""
        print(
            f"| {label} | {kind} | {len(ms)} | {percentile(ms, 50):.2f} | {percentile(ms, 95):.2f} | "
            f"{percentile(ms, 99):.2f} | {r} |"
        )


async def show_plan(pool, org_id) -> None:  # type: ignore[no-untyped-def]
    from engine.knowledge import retrieval
    from engine.knowledge.vectors import literal

    vectors, _ = queries(1)
    async with tenant_tx(pool, org_id) as conn:
        await conn.execute(f"SET LOCAL hnsw.ef_search = {retrieval.EF_SEARCH}")
        await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        await conn.execute("SET LOCAL enable_sort = off")
        plan = await conn.fetch("EXPLAIN (ANALYZE) " + retrieval.nearest_sql("4"), literal(vectors[0]))
    print("\n".join(r[0][:160] for r in plan))


async def main(n_chunks: int, n_queries: int, small_share: float, recall_sample: int, explain: bool) -> None:
    settings = get_settings()
    urls = await database_urls(settings)
    name = f"bench_kb_{new_tag()}"
    owner = await create_database(urls.owner, name)
    try:
        await migrate(owner, settings.app_db_role, settings.app_db_password)
        pool = await create_pool(with_user(owner, settings.app_db_role, settings.app_db_password), max_size=2)
        big = await create_organization(pool, NewOrganization("Big", "bench-big", "x"))
        small = await create_organization(pool, NewOrganization("Small", "bench-small", "x"))
        n_small = int(n_chunks * small_share)
        import asyncpg

        conn = await asyncpg.connect(owner)
        await conn.execute("DROP INDEX idx_embeddings_vector")  # built once after the load: much faster
        await conn.close()
        started = time.perf_counter()
        await load(owner, big, n_chunks - n_small, 0)
        await load(owner, small, n_small, n_chunks - n_small)
        load_seconds = time.perf_counter() - started
        print(f"loaded {n_chunks} chunks in {load_seconds:.1f} s; building the HNSW index ...", flush=True)
        index_seconds = await build_index(owner)
        for org_id in (big, small) if explain else ():
            await show_plan(pool, org_id)
        rows = await measure(pool, big, f"large ({n_chunks - n_small} chunks)", n_queries, recall_sample)
        rows += await measure(pool, small, f"small ({n_small} chunks)", n_queries, recall_sample)
        await pool.close()
        report(rows, n_chunks, index_seconds, load_seconds)
    finally:
        await drop_database(urls.owner, name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--small-share", type=float, default=0.1)
    parser.add_argument("--recall-sample", type=int, default=50)
    parser.add_argument("--explain", action="store_true", help="print the plan of one vector query")
    args = parser.parse_args()
    asyncio.run(main(args.chunks, args.queries, args.small_share, args.recall_sample, args.explain))
