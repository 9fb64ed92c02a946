"""``Idempotency-Key`` on POSTs that create things: the first request's response is stored in the transaction
that created the thing (api_idempotency, sql/035); a retry with the same key and the same request gets that
response again (``Idempotent-Replayed: true``), the same key with another request a 422. Two requests with one
key at once: the second waits for the first's transaction (the unique index) and then replays it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from fastapi import Header
from fastapi.encoders import jsonable_encoder
from starlette.responses import JSONResponse

from engine.api.auth import Caller
from engine.api.problems import ApiProblem

IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    min_length=1,
    max_length=255,
    pattern=r"^[\x21-\x7e]+$",
    description="Any unique string (a UUID): a retry with it creates nothing twice",
)

# The created answer of such a POST, as documented: a replay says so in a header.
REPLAYABLE: dict[int | str, dict[str, Any]] = {
    201: {"headers": {"Idempotent-Replayed": {"schema": {"type": "string"}}}}
}


def _fingerprint(method: str, path: str, body: Any) -> str:
    raw = json.dumps([method, path, jsonable_encoder(body)], sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()


async def create_once(
    caller: Caller,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    create: Callable[[asyncpg.Connection], Awaitable[dict[str, Any]]],
    status_code: int = 201,
) -> JSONResponse:
    """Run ``create`` in the request's transaction, at most once per idempotency key."""
    async with caller.tx() as conn:
        if key is not None:
            fingerprint = _fingerprint(method, path, body)
            claimed = await conn.fetchval(
                """INSERT INTO api_idempotency (organization_id, api_key_id, idempotency_key, method, path,
                                                request_hash, status_code, response)
                   VALUES ($1, $2, $3, $4, $5, $6, 0, '{}')
                   ON CONFLICT (organization_id, idempotency_key) DO NOTHING RETURNING id""",
                caller.organization_id,
                caller.key_id,
                key,
                method,
                path,
                fingerprint,
            )
            if claimed is None:
                stored = await conn.fetchrow(
                    """SELECT request_hash, status_code, response FROM api_idempotency
                       WHERE idempotency_key = $1""",
                    key,
                )
                if stored is None or stored["request_hash"] != fingerprint:
                    raise ApiProblem(
                        422, "idempotency-key-reused", "this Idempotency-Key was used for another request"
                    )
                return JSONResponse(
                    stored["response"],
                    status_code=stored["status_code"],
                    headers={"Idempotent-Replayed": "true"},
                )
        created = jsonable_encoder(await create(conn))
        if key is not None:
            await conn.execute(
                """UPDATE api_idempotency SET status_code = $2, response = $3 WHERE idempotency_key = $1""",
                key,
                status_code,
                created,
            )
    return JSONResponse(created, status_code=status_code)
