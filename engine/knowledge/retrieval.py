"""Finding the passages of an organisation's knowledge base that answer a question.

Runs in a tenant transaction: row-level security confines every read to the contact's organisation. With a
query embedding: the nearest chunks by cosine distance (HNSW, iterative scan so that the tenant filter cannot
starve the index of candidates), kept when closer than ``max_distance``. Without one (no model, the model
failed, or nothing close enough, e.g. chunks stored without embeddings): PostgreSQL full-text search over
``content_tsv`` for candidates (any of the question's words, stems and synonyms, prefix-matched), ranked by
``ranking.rank`` (headings, coverage, phrases, proximity), then trigram word similarity for typos.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import asyncpg

from engine.knowledge import ranking
from engine.knowledge.vectors import literal

TOP_K = 4
MAX_DISTANCE = 0.75  # cosine distance; text-embedding-3-small: related passages ~0.35-0.7, unrelated ~0.8+
MIN_WORD_SIMILARITY = 0.6  # pg_trgm word_similarity of one question word, for the typo path
EF_SEARCH = 100


@dataclass(frozen=True)
class Passage:
    content: str  # the chunk: its heading path (if any) on the first line, then the text
    title: str  # the document's
    heading: str
    score: float  # cosine distance (lower is better) or a text rank (higher is better)
    method: str  # "vector" | "fts" | "trigram"

    @property
    def text(self) -> str:
        """The chunk without its heading line."""
        if self.heading and self.content.startswith(self.heading + "\n"):
            return self.content[len(self.heading) + 1 :]
        return self.content


_COLUMNS = "e.content, d.title, COALESCE(e.metadata->>'heading', '') AS heading"
_FROM = """FROM embeddings e JOIN documents d ON d.id = e.document_id
           JOIN knowledge_bases k ON k.id = d.knowledge_base_id AND k.is_active IS NOT FALSE"""


def nearest_sql(k: str = "$2") -> str:
    """The nearest chunks by cosine distance to ``$1``. The ordered scan runs on ``embeddings`` alone, so that
    the planner can use the HNSW index (a join in the same query level makes it sort every row instead)."""
    return f"""WITH nearest AS MATERIALIZED (
                   SELECT e.document_id, e.content, e.metadata, e.embedding <=> $1::vector AS distance
                   FROM embeddings e WHERE e.embedding IS NOT NULL ORDER BY e.embedding <=> $1::vector LIMIT {k})
               SELECT e.content, d.title, COALESCE(e.metadata->>'heading', '') AS heading, e.distance
               FROM nearest e JOIN documents d ON d.id = e.document_id
               JOIN knowledge_bases k ON k.id = d.knowledge_base_id AND k.is_active IS NOT FALSE
               ORDER BY e.distance"""


async def by_vector(
    conn: asyncpg.Connection,
    embedding: Sequence[float],
    *,
    k: int = TOP_K,
    max_distance: float = MAX_DISTANCE,
) -> list[Passage]:
    # The planner's cost of the HNSW scan under the tenant filter is unreliable: at some table sizes it chose
    # sorting the whole tenant by distance (170 ms at 27k chunks against 4 ms by the index). Sorting is
    # discouraged for this one query (the ordered index scan is then the plan), and restored after it.
    await conn.execute(f"SET LOCAL hnsw.ef_search = {EF_SEARCH}")
    await conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
    await conn.execute("SET LOCAL enable_sort = off")
    try:
        rows = await conn.fetch(nearest_sql(), literal(embedding), k)
    finally:
        await conn.execute("SET LOCAL enable_sort = on")
    found = [r for r in rows if r["distance"] <= max_distance]
    return [
        Passage(r["content"], r["title"] or "", r["heading"], float(r["distance"]), "vector") for r in found
    ]


def search_terms(question: str) -> list[str]:
    """The question's full-text query terms: its words, their stems and synonyms, prefix-matched."""
    return ranking.search_terms(ranking.concepts(question))


async def by_text(
    conn: asyncpg.Connection,
    question: str,
    *,
    k: int = TOP_K,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> list[Passage]:
    """Full-text candidates (any term of the question, stems and synonyms included), ranked by
    ``ranking.rank``: headings, coverage, phrases and proximity; then trigram similarity for typos."""
    concepts = ranking.concepts(question, synonyms)
    terms = ranking.search_terms(concepts)
    if not terms:
        return []
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS}, ts_rank_cd(e.content_tsv, q) AS rank
            {_FROM}, to_tsquery('simple', $1) q
            WHERE e.content_tsv @@ q ORDER BY rank DESC, e.chunk_index LIMIT $2""",
        " | ".join(terms),
        ranking.CANDIDATES,
    )
    if rows:
        candidates = [Passage(r["content"], r["title"] or "", r["heading"], 0.0, "fts") for r in rows]
        best = ranking.rank(concepts, [(p.heading, p.text) for p in candidates])
        return [replace(candidates[s.index], score=s.score) for s in best[:k]]
    typo_terms = [c.word for c in concepts if len(c.word) >= 4]  # enough trigrams to compare
    if not typo_terms:
        return []
    rows = await conn.fetch(
        f"""SELECT * FROM (
              SELECT {_COLUMNS}, (SELECT max(word_similarity(t, e.content)) FROM unnest($1::text[]) t)
                     AS similarity {_FROM}) s
            WHERE similarity >= $2 ORDER BY similarity DESC LIMIT $3""",
        typo_terms,
        MIN_WORD_SIMILARITY,
        k,
    )
    return [
        Passage(r["content"], r["title"] or "", r["heading"], float(r["similarity"]), "trigram") for r in rows
    ]


async def retrieve(
    conn: asyncpg.Connection,
    question: str,
    embedding: Sequence[float] | None,
    *,
    k: int = TOP_K,
    max_distance: float = MAX_DISTANCE,
    synonyms: Mapping[str, Sequence[str]] | None = None,
) -> list[Passage]:
    """The best passages: by vector when there is an embedding and a close chunk, else by text."""
    if embedding is not None:
        found = await by_vector(conn, embedding, k=k, max_distance=max_distance)
        if found:
            return found
    return await by_text(conn, question, k=k, synonyms=synonyms)
