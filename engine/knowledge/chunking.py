"""Cutting a document into retrieval chunks along its structure: Markdown headings, then paragraphs, then
sentences, then words, packed up to a token budget with a small overlap between neighbouring chunks.

Tokens are estimated as words x 1.3 (close to OpenAI's tokeniser for English and Swahili prose); tiktoken
would be exact but downloads its vocabulary at run time. Each chunk starts with its heading path
("Gates > Opening times"), so a passage keeps the context its section gave it. Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MAX_TOKENS = 300
OVERLAP_TOKENS = 40
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    content: str  # the heading path (if any) on the first line, then the text
    heading: str = ""
    tokens: int = 0


@dataclass(frozen=True)
class Section:
    heading: str
    body: str


def approx_tokens(text: str) -> int:
    return math.ceil(len(text.split()) * 1.3)


def sections(text: str, *, markdown: bool = True) -> list[Section]:
    """The text split at Markdown headings (not inside code fences), each with its heading path."""
    if not markdown:
        return [Section("", text)]
    found: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def close() -> None:
        body = "\n".join(lines).strip()
        if body:
            found.append(Section(" > ".join(title for _, title in path), body))
        lines.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        close()
        level = len(heading.group(1))
        path = [(lvl, title) for lvl, title in path if lvl < level] + [(level, heading.group(2))]
    close()
    return found


def _units(body: str, budget: int) -> list[str]:
    """Paragraphs; a paragraph over the budget becomes its sentences, a sentence over it word windows."""
    units: list[str] = []
    for paragraph in re.split(r"\n\s*\n", body):
        paragraph = paragraph.strip()
        if not paragraph:
            continue
        if approx_tokens(paragraph) <= budget:
            units.append(paragraph)
            continue
        for sentence in _SENTENCE_END.split(paragraph):
            units.extend(_word_windows(sentence, budget))
    return units


def _word_windows(text: str, budget: int) -> list[str]:
    words = text.split()
    size = max(1, int(budget / 1.3))
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def _overlap(unit: str, budget: int) -> list[str]:
    """The trailing sentences of ``unit`` that fit ``budget`` (none when even the last one is too long)."""
    tail: list[str] = []
    for sentence in reversed(_SENTENCE_END.split(unit)):
        if approx_tokens(" ".join([sentence, *tail])) > budget:
            break
        tail.insert(0, sentence)
    return [" ".join(tail)] if tail else []


def _pack(units: list[str], budget: int, overlap: int) -> list[str]:
    packed: list[str] = []
    current: list[str] = []
    fresh = False  # the current chunk has text of its own, not only the overlap carried over
    for unit in units:
        if fresh and approx_tokens("\n\n".join([*current, unit])) > budget:
            packed.append("\n\n".join(current))
            current = _overlap(current[-1], min(overlap, budget - approx_tokens(unit)))
        current.append(unit)
        fresh = True
    if fresh:
        packed.append("\n\n".join(current))
    return packed


def chunk_text(
    text: str, *, markdown: bool = True, max_tokens: int = MAX_TOKENS, overlap_tokens: int = OVERLAP_TOKENS
) -> list[Chunk]:
    """The document's chunks in reading order; each at most ``max_tokens`` (estimated), heading included."""
    if overlap_tokens >= max_tokens:
        raise ValueError("the overlap must be smaller than the chunk budget")
    chunks: list[Chunk] = []
    for section in sections(text, markdown=markdown):
        budget = max(20, max_tokens - approx_tokens(section.heading))
        for body in _pack(_units(section.body, budget), budget, overlap_tokens):
            content = f"{section.heading}\n{body}" if section.heading else body
            chunks.append(Chunk(len(chunks), content, section.heading, approx_tokens(content)))
    return chunks
