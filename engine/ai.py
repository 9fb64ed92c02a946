"""The OpenAI-facing code: embeddings and chat completions through the official ``openai`` client, with retries
(tenacity) on timeouts, connection errors, 429 and 5xx, inside a time budget.

One ``AsyncOpenAI`` client per process (``create_ai`` is cached on its arguments); ``create_ai`` answers None
when no OPENAI_API_KEY is configured, and every caller has a path without a model (full-text search, keyword
intents). Conversation calls run inside a message's database transaction, so their budget is small
(OPENAI_TIMEOUT_SECONDS, 8 s by default, for *all* model calls of one message); ingestion has its own, longer one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import openai
from openai import AsyncOpenAI
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from engine.logging import get_logger
from engine.settings import Settings
from state_machines.knowledge import ModelUsage

log = get_logger(__name__)

EMBEDDING_DIMENSIONS = 1536  # embeddings.embedding is vector(1536)
EMBEDDING_BATCH = 96
INGEST_BUDGET_SECONDS = 120.0  # per embedding batch of an ingestion (no user is waiting on a transaction)
INGEST_ATTEMPTS = 6
INTERACTIVE_ATTEMPTS = 3


class AIUnavailable(Exception):
    """The model did not answer within the budget (after retries), or answered something unusable."""


@dataclass(frozen=True)
class Completion:
    text: str
    usage: ModelUsage  # the pure module's shape: what the wallet is charged for


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError | openai.RateLimitError):
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _retrying(budget: float, attempts: int) -> AsyncRetrying:
    return AsyncRetrying(
        retry=retry_if_exception(_transient),
        stop=stop_after_attempt(attempts) | stop_after_delay(budget),
        wait=wait_exponential(multiplier=0.2, max=min(2.0, budget / 4)) + wait_random(0, 0.1),
        reraise=True,
    )


class AI:
    """Embeddings and chat for the knowledge base. ``budget`` bounds a conversation's model calls in seconds."""

    def __init__(
        self,
        client: AsyncOpenAI,
        *,
        chat_model: str,
        embedding_model: str,
        budget: float,
        transcription_model: str = "gpt-4o-mini-transcribe",
    ) -> None:
        self.client = client
        self.chat_model = chat_model
        self.embedding_model = embedding_model
        self.transcription_model = transcription_model
        self.budget = budget

    async def _call(self, budget: float, attempts: int, fn: Any, **kwargs: Any) -> Any:
        """``fn(**kwargs)`` retried on transient errors; the whole (with waits) bounded by ``budget`` seconds."""
        per_request = max(0.5, budget / 2)  # a timed-out first try leaves room for one more
        try:
            async with asyncio.timeout(budget):
                async for attempt in _retrying(budget, attempts):
                    with attempt:
                        return await fn(**kwargs, timeout=per_request)
        except (TimeoutError, openai.OpenAIError) as exc:
            raise AIUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise AIUnavailable("no attempt made")  # pragma: no cover - tenacity always attempts once

    async def embed(self, texts: Sequence[str], *, budget: float | None = None) -> list[list[float]]:
        """One vector per text, in order, in batches. ``budget`` None: the ingestion policy per batch."""
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBEDDING_BATCH):
            batch = list(texts[start : start + EMBEDDING_BATCH])
            limit, attempts = (
                (INGEST_BUDGET_SECONDS, INGEST_ATTEMPTS) if budget is None else (budget, INTERACTIVE_ATTEMPTS)
            )
            response = await self._call(
                limit,
                attempts,
                self.client.embeddings.create,
                model=self.embedding_model,
                input=batch,
                dimensions=EMBEDDING_DIMENSIONS,
            )
            ordered = sorted(response.data, key=lambda d: d.index)
            if len(ordered) != len(batch) or any(len(d.embedding) != EMBEDDING_DIMENSIONS for d in ordered):
                raise AIUnavailable("the embedding answer does not match the request")
            vectors.extend(list(d.embedding) for d in ordered)
        return vectors

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        budget: float,
        max_tokens: int = 300,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """One chat completion within ``budget`` seconds; ``json_schema`` asks for a strict JSON answer."""
        extra: dict[str, Any] = {}
        if json_schema is not None:
            extra["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "strict": True, "schema": json_schema},
            }
        started = time.monotonic()
        response = await self._call(
            budget,
            INTERACTIVE_ATTEMPTS,
            self.client.chat.completions.create,
            model=self.chat_model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0,
            **extra,
        )
        text = (response.choices[0].message.content or "").strip() if response.choices else ""
        if not text:
            raise AIUnavailable("empty completion")
        usage = response.usage
        log.debug("model answered", model=response.model, seconds=round(time.monotonic() - started, 3))
        return Completion(
            text,
            ModelUsage(
                response.model or self.chat_model,
                usage.prompt_tokens if usage else 0,
                usage.completion_tokens if usage else 0,
            ),
        )

    async def transcribe(
        self, audio: bytes, mime_type: str, *, language: str | None = None, budget: float | None = None
    ) -> str:
        """The words of a voice note (OpenAI's audio transcriptions), within ``budget`` seconds."""
        extension = {
            "audio/ogg": "ogg",
            "audio/mpeg": "mp3",
            "audio/mp4": "m4a",
            "audio/aac": "aac",
            "audio/amr": "amr",
        }
        name = f"voice.{extension.get(mime_type.split(';')[0].strip(), 'ogg')}"
        extra = {"language": language} if language in ("en", "sw") else {}
        response = await self._call(
            self.budget if budget is None else budget,
            INTERACTIVE_ATTEMPTS,
            self.client.audio.transcriptions.create,
            model=self.transcription_model,
            file=(name, audio, mime_type or "audio/ogg"),
            **extra,
        )
        return str(getattr(response, "text", "") or "").strip()

    async def chat_json(
        self, messages: list[dict[str, str]], schema: dict[str, Any], *, budget: float, max_tokens: int = 100
    ) -> tuple[dict[str, Any], Completion]:
        completion = await self.chat(messages, budget=budget, max_tokens=max_tokens, json_schema=schema)
        try:
            answer = json.loads(completion.text)
        except ValueError as exc:
            raise AIUnavailable("the model's answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise AIUnavailable("the model's answer is not a JSON object")
        return answer, completion


@cache
def _openai_client(api_key: str, base_url: str | None) -> AsyncOpenAI:
    # Retries are ours (tenacity, within the budget); the client's own would ignore the budget.
    return AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)


def create_ai(settings: Settings) -> AI | None:
    """The process's model access, or None without OPENAI_API_KEY (the full-text and keyword paths)."""
    if not settings.openai_api_key:
        return None
    base_url = str(settings.openai_base_url).rstrip("/") if settings.openai_base_url else None
    return AI(
        _openai_client(settings.openai_api_key, base_url),
        chat_model=settings.openai_chat_model,
        embedding_model=settings.openai_embedding_model,
        budget=settings.openai_timeout_seconds,
        transcription_model=settings.openai_transcription_model,
    )
