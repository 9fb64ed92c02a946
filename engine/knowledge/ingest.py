"""Ingesting documents into an organisation's knowledge base.

Per source: read it (file or URL), register the document (pending), mark it processing (both committed, so
``kb list`` shows progress), chunk it, embed the chunks (when a model is configured; NULL embeddings otherwise,
and answers use full-text search), then replace its chunks and mark it ready in ONE transaction: readers see
the old chunks or the new ones, never a mix. A failure marks the document failed with the error; the chunks
it had stay (and keep answering). An unchanged document (same content hash, ready) is skipped unless forced.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from uuid import UUID

import asyncpg
import httpx

from engine.ai import AI, EMBEDDING_BATCH, AIUnavailable
from engine.db import tenant_tx
from engine.knowledge import store
from engine.knowledge.chunking import Chunk, chunk_text
from engine.knowledge.sources import Source, SourceError, is_url, read_source
from engine.logging import get_logger

log = get_logger(__name__)


class Reporter(Protocol):
    """Progress of one document: ``begin`` with the number of chunks, ``advance`` as they are embedded."""

    def begin(self, title: str, total: int) -> None: ...

    def advance(self, done: int) -> None: ...


class _Silent:
    def begin(self, title: str, total: int) -> None:
        pass

    def advance(self, done: int) -> None:
        pass


@dataclass(frozen=True)
class IngestResult:
    ref: str
    title: str
    status: str  # "ready" | "unchanged" | "failed"
    chunks: int = 0
    embedded: bool = False
    error: str | None = None


async def ingest(
    pool: asyncpg.Pool,
    org_id: UUID,
    kb_name: str,
    refs: list[str],
    ai: AI | None,
    *,
    reporter: Reporter | None = None,
    force: bool = False,
    http: httpx.AsyncClient | None = None,
) -> list[IngestResult]:
    """Ingest every file or URL of ``refs`` into the knowledge base ``kb_name`` (created when new)."""
    async with tenant_tx(pool, org_id) as conn:
        kb_id = await store.ensure_kb(conn, org_id, kb_name)
    return [
        await ingest_one(pool, org_id, kb_id, ref, ai, reporter=reporter or _Silent(), force=force, http=http)
        for ref in refs
    ]


async def ingest_one(
    pool: asyncpg.Pool,
    org_id: UUID,
    kb_id: UUID,
    ref: str,
    ai: AI | None,
    *,
    reporter: Reporter,
    force: bool = False,
    http: httpx.AsyncClient | None = None,
) -> IngestResult:
    try:
        source = await read_source(ref, http)
    except SourceError as exc:
        await _record_unreadable(pool, org_id, kb_id, ref, str(exc))
        return IngestResult(ref, ref, "failed", error=str(exc))
    return await ingest_source(pool, org_id, kb_id, source, ai, reporter=reporter, force=force, ref=ref)


async def ingest_source(
    pool: asyncpg.Pool,
    org_id: UUID,
    kb_id: UUID,
    source: Source,
    ai: AI | None,
    *,
    reporter: Reporter,
    force: bool = False,
    ref: str | None = None,
) -> IngestResult:
    """A document already read (a file, a URL, or text the API was sent): chunked, embedded, stored."""
    ref = ref or source.key
    digest = hashlib.sha256(source.text.encode()).hexdigest()
    async with tenant_tx(pool, org_id) as conn:
        doc_id, previous = await store.register_document(conn, org_id, kb_id, source.key, source.title)
        if previous == digest and not force:
            await store.set_status(conn, doc_id, "ready")
            stored = await conn.fetchrow(
                """SELECT chunk_count, EXISTS (SELECT FROM embeddings WHERE document_id = $1)
                          AND NOT EXISTS (SELECT FROM embeddings WHERE document_id = $1 AND embedding IS NULL)
                          AS embedded
                   FROM documents WHERE id = $1""",
                doc_id,
            )
            return IngestResult(
                ref, source.title, "unchanged", stored["chunk_count"] or 0, stored["embedded"]
            )
    try:
        chunks, vectors = await _prepare(pool, org_id, doc_id, source, ai, reporter)
        async with tenant_tx(pool, org_id) as conn:
            await store.replace_chunks(
                conn,
                org_id,
                doc_id,
                title=source.title,
                text=source.text,
                content_hash=digest,
                chunks=chunks,
                vectors=vectors,
            )
    except (AIUnavailable, asyncpg.PostgresError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        async with tenant_tx(pool, org_id) as conn:
            await store.set_status(conn, doc_id, "failed", error)
        log.warning("document failed", ref=ref, error=error)
        return IngestResult(ref, source.title, "failed", error=error)
    return IngestResult(ref, source.title, "ready", len(chunks), vectors is not None)


async def _prepare(
    pool: asyncpg.Pool, org_id: UUID, doc_id: UUID, source: Source, ai: AI | None, reporter: Reporter
) -> tuple[list[Chunk], list[list[float]] | None]:
    async with tenant_tx(pool, org_id) as conn:
        await store.set_status(conn, doc_id, "processing")
    chunks = chunk_text(source.text, markdown=source.markdown)
    if not chunks:
        raise ValueError("the document has no text to index")
    reporter.begin(source.title, len(chunks))
    if ai is None:
        reporter.advance(len(chunks))
        return chunks, None
    vectors: list[list[float]] = []
    for start in range(0, len(chunks), EMBEDDING_BATCH):
        batch = chunks[start : start + EMBEDDING_BATCH]
        vectors.extend(await ai.embed([c.content for c in batch]))
        reporter.advance(len(batch))
    return chunks, vectors


async def _record_unreadable(pool: asyncpg.Pool, org_id: UUID, kb_id: UUID, ref: str, error: str) -> None:
    """An unreadable source is a failed document, so that ``kb list`` shows it (chunks it had stay served)."""
    key = ref if is_url(ref) else str(Path(ref).resolve())
    async with tenant_tx(pool, org_id) as conn:
        doc_id, _ = await store.register_document(conn, org_id, kb_id, key, Path(ref).name or ref)
        await store.set_status(conn, doc_id, "failed", error)
