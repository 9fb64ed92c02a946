"""The knowledge base's rows: knowledge_bases, documents (pending -> processing -> ready | failed) and their
chunks in ``embeddings``. Every function runs in the caller's tenant transaction (RLS confines it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from engine.knowledge.chunking import Chunk
from engine.knowledge.vectors import literal


async def ensure_kb(
    conn: asyncpg.Connection, org_id: UUID, name: str, description: str | None = None
) -> UUID:
    kb_id: UUID = await conn.fetchval(
        """INSERT INTO knowledge_bases (organization_id, name, description) VALUES ($1, $2, $3)
           ON CONFLICT (organization_id, name) DO UPDATE SET is_active = true RETURNING id""",
        org_id,
        name,
        description,
    )
    return kb_id


async def register_document(
    conn: asyncpg.Connection, org_id: UUID, kb_id: UUID, key: str, title: str
) -> tuple[UUID, str | None]:
    """The document of ``key`` in the knowledge base (created, or its existing row) set to pending, and the
    hash of the content it had when it was last made ready (None: new, or never ready)."""
    row = await conn.fetchrow(
        """SELECT id, CASE WHEN status = 'ready' THEN content_hash END AS hash FROM documents
           WHERE knowledge_base_id = $1 AND source_url = $2 ORDER BY created_at LIMIT 1 FOR UPDATE""",
        kb_id,
        key,
    )
    if row is not None:
        await set_status(conn, row["id"], "pending")
        return row["id"], row["hash"]
    doc_id: UUID = await conn.fetchval(
        """INSERT INTO documents (organization_id, knowledge_base_id, title, content, source_url, status)
           VALUES ($1, $2, $3, '', $4, 'pending') RETURNING id""",
        org_id,
        kb_id,
        title[:255],
        key,
    )
    return doc_id, None


async def set_status(conn: asyncpg.Connection, doc_id: UUID, status: str, error: str | None = None) -> None:
    await conn.execute("UPDATE documents SET status = $2, error = $3 WHERE id = $1", doc_id, status, error)


async def replace_chunks(
    conn: asyncpg.Connection,
    org_id: UUID,
    doc_id: UUID,
    *,
    title: str,
    text: str,
    content_hash: str,
    chunks: Sequence[Chunk],
    vectors: Sequence[Sequence[float]] | None,
) -> None:
    """The document's chunks become ``chunks`` and it is ready; call in one transaction, so that readers see
    the old chunks or the new ones, never a mix or none."""
    await conn.execute("DELETE FROM embeddings WHERE document_id = $1", doc_id)
    await conn.executemany(
        """INSERT INTO embeddings (document_id, organization_id, chunk_index, content, embedding, metadata)
           VALUES ($1, $2, $3, $4, $5::vector, $6)""",
        [
            (
                doc_id,
                org_id,
                c.index,
                c.content,
                literal(vectors[i]) if vectors else None,
                {"heading": c.heading, "tokens": c.tokens},
            )
            for i, c in enumerate(chunks)
        ],
    )
    await conn.execute(
        """UPDATE documents SET title = $2, content = $3, content_hash = $4, chunk_count = $5, status = 'ready',
                  error = NULL WHERE id = $1""",
        doc_id,
        title[:255],
        text,
        content_hash,
        len(chunks),
    )


async def knowledge_bases(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT k.name, k.is_active AS active, count(d.id) AS documents,
                  count(d.id) FILTER (WHERE d.status = 'ready') AS ready,
                  count(d.id) FILTER (WHERE d.status = 'failed') AS failed,
                  COALESCE(sum(d.chunk_count) FILTER (WHERE d.status = 'ready'), 0) AS chunks,
                  (SELECT count(*) FROM embeddings e JOIN documents d2 ON d2.id = e.document_id
                   WHERE d2.knowledge_base_id = k.id AND e.embedding IS NOT NULL) AS embedded
           FROM knowledge_bases k LEFT JOIN documents d ON d.knowledge_base_id = k.id
           GROUP BY k.id ORDER BY k.name"""
    )
    return [dict(r) for r in rows]


async def documents(conn: asyncpg.Connection, kb_name: str | None = None) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT k.name AS knowledge_base, d.title, d.status, d.chunk_count AS chunks, d.error, d.updated_at
           FROM documents d JOIN knowledge_bases k ON k.id = d.knowledge_base_id
           WHERE $1::text IS NULL OR k.name = $1 ORDER BY k.name, d.title""",
        kb_name,
    )
    return [dict(r) for r in rows]
