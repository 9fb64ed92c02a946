"""An OpenAI-compatible test server: the two endpoints the engine calls, deterministic, with scripted faults.

- ``POST /v1/embeddings``: 1536-dimension vectors from hashed features (content words, lightly stemmed, and
  their character trigrams), L2-normalised, so texts sharing words are near and unrelated texts are far.
  Honours ``encoding_format`` ("float" or "base64", the official client's default).
- ``POST /v1/chat/completions``: a strict-JSON request (``response_format``) is an intent classification,
  answered by keyword matching over the options in the prompt; any other request is a question over numbered
  passages (``[1] ...``), answered by quoting the passage sentence(s) sharing most words with the question, or
  ``NOT_IN_KB`` when none does; Swahili is honoured minimally (a Swahili lead-in).
- ``POST /v1/audio/transcriptions`` (multipart ``file``, ``model``, ``language``): the words after a
  ``TRANSCRIPT:`` marker in the file, else "" (nothing heard), with a duration ``usage``.
- All require ``Authorization: Bearer <api_key>``; chat and embeddings report ``usage`` token counts (words x 1.3).

Control: ``POST /_sim/faults`` ``[{"status": 429}, {"status": 500}, {"delay": 3.0}, ...]`` queued, one consumed per
request (optional ``"endpoint": "chat" | "embeddings" | "transcriptions"``); ``GET|DELETE /_sim/faults``; ``GET /_sim/requests``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from collections.abc import Iterable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from simulators import ServerRunner, parse_multipart

DIMENSIONS = 1536
NOT_IN_KB = "NOT_IN_KB"
STOPWORDS = frozenset(
    "a an the is are was were be been do does did of to in on at for and or but with by from as it its this that "
    "these those i you we they he she my your our their me us what when where which who whom how why can could "
    "will would should shall may might there here have has had not no yes if then than so just about into any "
    "ni na ya wa za la kwa katika je nini gani lini wapi vipi kuna mimi wewe sisi nyinyi yeye ndiyo hapana".split()
)
KIND_WORDS = {
    "event": {"ticket", "tiketi", "buy", "book"},
    "survey": {"survey", "utafiti", "feedback"},
    "poll": {"vote", "kura", "poll"},
}


def words(text: str) -> list[str]:
    """Content words, lower case, a plural 's' dropped: what both sides of a comparison are reduced to."""
    found = re.findall(r"[a-z0-9]+", text.lower())
    return [
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in found
        if w not in STOPWORDS
    ]


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % DIMENSIONS, 1.0 if value >> 63 else -1.0


def embed(text: str) -> list[float]:
    """The deterministic embedding of ``text`` (unit length; all zeros only for a text with no words)."""
    vector = [0.0] * DIMENSIONS
    for word in words(text):
        features = [(f"w:{word}", 1.0)] + [(f"t:{g}", 0.35) for g in _trigrams(word)]
        for feature, weight in features:
            index, sign = _bucket(feature)
            vector[index] += sign * weight
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def _trigrams(word: str) -> Iterable[str]:
    padded = f"#{word}#"
    return (padded[i : i + 3] for i in range(len(padded) - 2))


def approx_tokens(text: str) -> int:
    return math.ceil(len(text.split()) * 1.3)


def _error(status: int, message: str, type_: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": None, "code": code}}, status_code=status
    )


def _fault_response(status: int) -> JSONResponse:
    if status == 429:
        return _error(429, "Rate limit reached (simulated)", "requests", "rate_limit_exceeded")
    return _error(status, "The server had an error (simulated)", "server_error")


class OpenAISimulator:
    def __init__(self, api_key: str = "sk-test") -> None:
        self.api_key = api_key
        self.faults: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []  # every accepted request: {"endpoint", "body"}
        self.app = Starlette(
            routes=[
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/audio/transcriptions", self._transcriptions, methods=["POST"]),
                Route("/_sim/health", self._health, methods=["GET"]),
                Route("/_sim/faults", self._faults_endpoint, methods=["GET", "POST", "DELETE"]),
                Route("/_sim/requests", self._requests_endpoint, methods=["GET", "DELETE"]),
            ]
        )
        self._runner = ServerRunner(self.app)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        return await self._runner.start(host, port)

    async def stop(self) -> None:
        await self._runner.stop()

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL should be."""
        return self._runner.base_url + "/v1"

    def add_faults(self, faults: Iterable[dict[str, Any]]) -> None:
        self.faults.extend(dict(f) for f in faults)

    def calls(self, endpoint: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["endpoint"] == endpoint]

    # ------------------------------------------------------------ the API

    async def _admit(self, request: Request, endpoint: str) -> tuple[dict[str, Any] | None, Response | None]:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key != self.api_key:
            return None, _error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        fault = self._next_fault(endpoint)
        if fault is not None:
            if fault.get("delay"):
                await asyncio.sleep(float(fault["delay"]))
            if fault.get("status"):
                return None, _fault_response(int(fault["status"]))
        try:
            body = json.loads(await request.body())
        except ValueError:
            return None, _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        if not isinstance(body, dict) or not body.get("model"):
            return None, _error(400, "you must provide a model parameter", "invalid_request_error")
        self.requests.append({"endpoint": endpoint, "body": body})
        return body, None

    async def _embeddings(self, request: Request) -> Response:
        body, refused = await self._admit(request, "embeddings")
        if refused is not None or body is None:
            return refused or _error(400, "bad request", "invalid_request_error")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return _error(400, "'input' must be a string or a list of strings", "invalid_request_error")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vector = embed(text)
            value: Any = (
                base64.b64encode(struct.pack(f"<{DIMENSIONS}f", *vector)).decode() if as_base64 else vector
            )
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(approx_tokens(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _chat(self, request: Request) -> Response:
        body, refused = await self._admit(request, "chat")
        if refused is not None or body is None:
            return refused or _error(400, "bad request", "invalid_request_error")
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' must be a non-empty list", "invalid_request_error")
        system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
        user = str(messages[-1].get("content", ""))
        content = _classify(user) if body.get("response_format") else _answer(system, user)
        prompt_tokens = sum(approx_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = approx_tokens(content)
        return JSONResponse(
            {
                "id": "chatcmpl-sim" + uuid.uuid4().hex[:12],
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def _transcriptions(self, request: Request) -> Response:
        """Multipart ``file`` and ``model`` (and ``language``): the words are those after a ``TRANSCRIPT:``
        marker in the file (tests make such voice notes), else nothing was heard ("")."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key != self.api_key:
            return _error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        fault = self._next_fault("transcriptions")
        if fault is not None:
            if fault.get("delay"):
                await asyncio.sleep(float(fault["delay"]))
            if fault.get("status"):
                return _fault_response(int(fault["status"]))
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), await request.body())
        except ValueError:
            fields = {}
        if "file" not in fields or not fields.get("model", (b"",))[0]:
            return _error(400, "file and model are required (multipart/form-data)", "invalid_request_error")
        data = fields["file"][0]
        model = fields["model"][0].decode()
        language = fields.get("language", (b"",))[0].decode()
        self.requests.append(
            {"endpoint": "transcriptions", "body": {"model": model, "language": language, "bytes": len(data)}}
        )
        marker = data.find(b"TRANSCRIPT:")
        text = data[marker + len(b"TRANSCRIPT:") :].decode("utf-8", "replace").strip() if marker >= 0 else ""
        seconds = max(1, len(data) // 4000)
        return JSONResponse({"text": text, "usage": {"type": "duration", "seconds": seconds}})

    def _next_fault(self, endpoint: str) -> dict[str, Any] | None:
        for i, fault in enumerate(self.faults):
            if fault.get("endpoint") in (None, endpoint):
                return self.faults.pop(i)
        return None

    # ------------------------------------------------------------ control endpoints

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def _faults_endpoint(self, request: Request) -> Response:
        if request.method == "POST":
            body = await request.json()
            self.add_faults(body if isinstance(body, list) else body.get("faults", []))
        elif request.method == "DELETE":
            self.faults.clear()
        return JSONResponse({"faults": self.faults})

    async def _requests_endpoint(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.requests.clear()
        return JSONResponse(self.requests)


def _classify(user: str) -> str:
    """The intent JSON for ``{"message": ..., "options": [{"id", "kind", "title"}]}`` by keyword matching."""
    try:
        prompt = json.loads(user)
        said, options = set(words(str(prompt["message"]))), list(prompt.get("options") or [])
    except (ValueError, KeyError, TypeError):
        return json.dumps({"intent": "unknown", "item_id": None})
    if not said:
        return json.dumps({"intent": "unknown", "item_id": None})
    scored = []
    for option in options:
        title_hits = len(said & set(words(str(option.get("title", "")))))
        kind_hits = len(said & KIND_WORDS.get(str(option.get("kind")), set()))
        if kind_hits:
            scored.append((kind_hits * 2 + title_hits, str(option.get("id"))))
    scored.sort(reverse=True)
    if scored and (len(scored) == 1 or scored[0][0] > scored[1][0]):
        return json.dumps({"intent": "item", "item_id": scored[0][1]})
    return json.dumps({"intent": "knowledge", "item_id": None})


def _answer(system: str, user: str) -> str:
    """The passage sentence(s) sharing most words with the question, or NOT_IN_KB."""
    question_part = user.rsplit("Question:", 1)
    question = set(words(question_part[-1]))
    passages = re.findall(r"^\[\d+\]\s*(.*?)(?=^\[\d+\]|\Z)", question_part[0], flags=re.M | re.S)
    sentences = [s.strip() for p in passages for s in re.split(r"(?<=[.!?])\s+|\n+", p) if s.strip()]
    scored = sorted(((len(question & set(words(s))), -i, s) for i, s in enumerate(sentences)), reverse=True)
    if not question or not scored or scored[0][0] == 0:
        return NOT_IN_KB
    best = [s for score, _, s in scored[:2] if score == scored[0][0]]
    answer = " ".join(best)[:600]
    return f"Kulingana na taarifa zetu: {answer}" if "Swahili" in system else answer
