"""How vectors cross the wire to pgvector, in one place.

Queries and ordinary inserts pass text literals (``'[0.1,0.2,...]'`` cast with ``::vector``): they work on any
connection of any pool, with no codec to register. Bulk loads (COPY, binary) need pgvector's binary codec,
registered on the one connection that loads (``register_binary``).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


def literal(vector: Sequence[float]) -> str:
    """The pgvector text form of ``vector``; use with a ``$n::vector`` parameter."""
    return "[" + ",".join(f"{v:.7g}" for v in vector) + "]"


async def register_binary(conn: asyncpg.Connection) -> None:
    """pgvector's binary codec on ``conn`` (numpy arrays or lists in, numpy arrays out): for COPY."""
    from pgvector.asyncpg import register_vector

    await register_vector(conn)
