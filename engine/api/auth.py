"""Who is asking: ``Authorization: Bearer <key>`` → the key's organisation and scopes, rate-limited per key;
refused authentications are counted per client address (in PostgreSQL, shared by every API process) and, past
a limit, refused before any look-up.

Every route names the scope it needs with ``Depends(scope("contacts", "read"))`` and gets a ``Caller`` whose
``tx()`` opens the request's transaction as the application role, confined to the key's organisation.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
from fastapi import Request

from engine.api.problems import ApiProblem
from engine.api_keys import KEY_PREFIX, look_up
from engine.db import tenant_tx

MAX_TRACKED = 10_000  # keys and client addresses remembered by the limiters (the oldest forgotten first)


class TokenBucket:
    """``rate`` tokens a second up to ``burst``, per name; ``take`` answers the seconds to wait (0: go)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, name: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, at = self._state.pop(name, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.rate
        self._state[name] = (tokens - 1 if wait == 0 else tokens, now)
        while len(self._state) > MAX_TRACKED:
            self._state.popitem(last=False)
        return wait


class FailureWindow:
    """Refused authentications per client address in the last ``window`` seconds, counted in PostgreSQL
    (sql/039: api_auth_failed, api_auth_blocked_for, run as chatnation_definer) so that every API process
    behind a balancer shares one limit. Only a hash of the address is stored."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit, self.window = limit, window

    async def blocked_for(self, pool: asyncpg.Pool, client: str) -> float:
        """Seconds before this client may try again (0: now)."""
        return float(
            await pool.fetchval("SELECT api_auth_blocked_for($1, $2, $3)", client, self.limit, self.window)
        )

    async def failed(self, pool: asyncpg.Pool, client: str) -> None:
        await pool.execute("SELECT api_auth_failed($1, $2)", client, self.window)


@dataclass
class Guard:
    """The API process's limiters: the key's rate per process, refused authentications across processes
    (docs/api.md)."""

    per_key: TokenBucket
    failures: FailureWindow
    pool: asyncpg.Pool | None


@dataclass(frozen=True)
class Caller:
    key_id: UUID
    organization_id: UUID
    scopes: frozenset[str]
    pool: asyncpg.Pool = field(repr=False)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[asyncpg.Connection]:
        """The request's transaction: the application role, row-level security set to the key's organisation."""
        async with tenant_tx(self.pool, self.organization_id) as conn:
            await conn.execute(  # the key's last use, to ten seconds (no write on every request)
                """UPDATE api_keys SET last_used_at = now()
                   WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '10 seconds')""",
                self.key_id,
            )
            yield conn


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="chatnation"'})


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, int(seconds + 0.999)))}


async def authenticate(request: Request) -> Caller:
    guard: Guard = request.app.state.guard
    assert guard.pool is not None, "the API's pool is opened by its lifespan"
    client = request.client.host if request.client else "unknown"
    blocked = await guard.failures.blocked_for(guard.pool, client)
    if blocked:
        raise ApiProblem(
            429, "too-many-failures", "too many refused keys from this address", headers=_retry_after(blocked)
        )
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    reason: str | None = None
    record = None
    if scheme.lower() != "bearer" or not key:
        reason = "send Authorization: Bearer <API key>"
    elif not key.startswith(KEY_PREFIX) or len(key) > 200 or not key.isascii():
        reason = "not an API key"
    else:
        record = await look_up(guard.pool, key)
        now = datetime.now(UTC)
        if record is None:
            reason = "unknown API key"
        elif record.revoked_at is not None:
            reason = "this API key was revoked"
        elif record.expires_at is not None and record.expires_at <= now:
            reason = "this API key has expired"
    if reason is not None or record is None:
        await guard.failures.failed(guard.pool, client)
        raise _unauthorized(reason or "unknown API key")
    wait = guard.per_key.take(str(record.id))
    if wait:
        raise ApiProblem(
            429, "rate-limited", "this key's request rate is exceeded", headers=_retry_after(wait)
        )
    return Caller(record.id, record.organization_id, record.scopes, guard.pool)


def scope(resource: str, level: str) -> Callable[[Request], Awaitable[Caller]]:
    """The dependency of a route that needs ``resource:level``."""
    needed = f"{resource}:{level}"

    async def dependency(request: Request) -> Caller:
        caller = await authenticate(request)
        if needed not in caller.scopes:
            raise ApiProblem(403, "scope", f"this key lacks the scope {needed}")
        return caller

    dependency.__name__ = f"scope_{resource}_{level}"
    return dependency
