"""Chunking documents along their structure, within a token budget, with overlap."""

from __future__ import annotations

import pytest

from engine.knowledge.chunking import approx_tokens, chunk_text, sections

GUIDE = """# Festival guide

Welcome to the festival.

## Gates
Gates open at 4 pm.

### Re-entry
No re-entry after 9 pm.

## Parking
Parking costs KES 300.

```
# not a heading inside a code fence
```
"""


def test_headings_make_sections_with_their_path() -> None:
    found = sections(GUIDE)
    assert [s.heading for s in found] == [
        "Festival guide",
        "Festival guide > Gates",
        "Festival guide > Gates > Re-entry",
        "Festival guide > Parking",
    ]
    assert found[3].body.startswith("Parking costs KES 300.") and "# not a heading" in found[3].body


def test_each_chunk_carries_its_heading_path() -> None:
    chunks = chunk_text(GUIDE)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    gates = next(c for c in chunks if "4 pm" in c.content)
    assert gates.content == "Festival guide > Gates\nGates open at 4 pm."
    assert gates.heading == "Festival guide > Gates"


def test_plain_text_keeps_hash_lines_as_text() -> None:
    chunks = chunk_text("# 1 is the loneliest number\n\nSecond paragraph.", markdown=False)
    assert len(chunks) == 1 and chunks[0].heading == "" and chunks[0].content.startswith("# 1 is")


def _paragraphs(n: int, words: int) -> str:
    return "\n\n".join(" ".join(f"p{i}w{j}" for j in range(words - 1)) + f" end{i}." for i in range(n))


@pytest.mark.parametrize(("max_tokens", "overlap"), [(60, 10), (120, 30), (300, 40)])
def test_chunks_stay_within_the_budget_and_lose_nothing(max_tokens: int, overlap: int) -> None:
    text = _paragraphs(30, 17)
    chunks = chunk_text(text, max_tokens=max_tokens, overlap_tokens=overlap)
    assert all(c.tokens <= max_tokens for c in chunks)
    assert all(c.tokens == approx_tokens(c.content) for c in chunks)
    joined = " ".join(c.content for c in chunks)
    assert all(f"end{i}." in joined for i in range(30))  # every paragraph is somewhere
    assert len(chunks) > 1


def test_neighbouring_chunks_overlap_by_trailing_sentences() -> None:
    text = "\n\n".join(f"Sentence a{i} is here. Sentence b{i} closes paragraph {i}." for i in range(20))
    chunks = chunk_text(text, max_tokens=40, overlap_tokens=10)
    assert len(chunks) > 2
    for before, after in zip(chunks, chunks[1:], strict=False):
        last_sentence = before.content.rsplit(". ", 1)[-1]
        assert after.content.startswith(last_sentence)  # the next chunk repeats where the last one ended


def test_a_paragraph_over_the_budget_is_split_by_sentences_then_words() -> None:
    long_sentence = " ".join(f"w{i}" for i in range(200)) + "."
    chunks = chunk_text(f"Short one. {long_sentence}", max_tokens=50, overlap_tokens=5)
    assert all(c.tokens <= 50 for c in chunks)
    assert " ".join(c.content for c in chunks).count("w199") >= 1


def test_empty_documents_have_no_chunks_and_bad_overlap_is_refused() -> None:
    assert chunk_text("   \n\n  ") == []
    with pytest.raises(ValueError):
        chunk_text("text", max_tokens=10, overlap_tokens=10)
