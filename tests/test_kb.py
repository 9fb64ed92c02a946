"""The knowledge base on real PostgreSQL (pgvector, RLS) with the OpenAI-compatible test server: ingestion,
answers, tenant isolation, the time budget and its fallback, full-text search without a key, charging,
atomic re-ingestion, intents, and the CLI."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from engine.ai import AI, create_ai
from engine.db import tenant_tx
from engine.knowledge.answering import answer
from engine.knowledge.ingest import ingest
from engine.knowledge.retrieval import by_vector
from engine.settings import PROJECT_ROOT
from engine.turn import Contact, Conversation, Org, Turn
from handlers import knowledge_effects
from simulators.openai_server import OpenAISimulator, embed
from state_machines.base import Inbound, State
from state_machines.knowledge import (
    AnswerQuestion,
    ChargeAnswer,
    ClassifyIntent,
    IntentChoice,
    IntentClassified,
)

GUIDE = """# Nairobi Jazz Festival guide

## Gates and times
Gates open at 4 pm and the first act starts at 5 pm. The last act ends at 11 pm.

## Parking
Parking is available at the Carnivore grounds for KES 300 per car. Boda bodas drop off at Gate B.

## Food and drinks
Food stalls sell nyama choma, pilau and vegan options. Outside drinks are not allowed.
"""
OTHER = "Church services\n\nGates open at 6 am for the sunrise service. Sunday school starts at 9 am.\n"
QUESTIONS = [
    ("what time do gates open?", "4 pm"),
    ("how much is parking?", "KES 300"),
    ("can I bring my own drinks?", "Outside drinks are not allowed"),
]


def pdf_bytes(text: str) -> bytes:
    """A one-page PDF showing ``text`` (Helvetica), with a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
async def sim():  # type: ignore[no-untyped-def]
    server = OpenAISimulator(api_key="sk-test")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def ai(sim: OpenAISimulator, settings) -> AI:  # type: ignore[no-untyped-def]
    made = create_ai(
        settings.model_copy(
            update={
                "openai_api_key": "sk-test",
                "openai_base_url": sim.base_url,
                "openai_timeout_seconds": 4.0,
            }
        )
    )
    assert made is not None
    return made


@pytest.fixture
def docs(tmp_path: Path) -> list[str]:
    (tmp_path / "guide.md").write_text(GUIDE)
    (tmp_path / "faq.txt").write_text("Children under 12 enter free.\n\nLost property is kept at Gate A.\n")
    (tmp_path / "rules.pdf").write_bytes(pdf_bytes("Umbrellas and pets are not allowed inside the venue."))
    return [str(tmp_path / n) for n in ("guide.md", "faq.txt", "rules.pdf")]


async def ask(app_pool, org, question: str, ai: AI | None, language: str = "en"):  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        return await answer(conn, ai, question, language, org_name="Jazz Fest")


async def test_ingest_then_ask_answers_from_the_right_passage(app_pool, make_org, ai, sim, docs) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("KB")
    results = await ingest(app_pool, org, "festival", docs, ai)
    assert [(r.status, r.embedded) for r in results] == [("ready", True)] * 3
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch("SELECT title, status, chunk_count FROM documents ORDER BY title")
        embedded = await conn.fetchval("SELECT count(*) FROM embeddings WHERE embedding IS NOT NULL")
    assert [(r["title"], r["status"]) for r in rows] == [
        ("faq.txt", "ready"),
        ("guide.md", "ready"),
        ("rules.pdf", "ready"),
    ]
    assert embedded == sum(r["chunk_count"] for r in rows) >= 5
    async with tenant_tx(app_pool, org) as conn:  # the nearest chunk by vector alone is the right one
        for question, expected in QUESTIONS:
            nearest = await by_vector(conn, embed(question))
            assert nearest and expected in nearest[0].content and nearest[0].method == "vector"
    for question, expected in [*QUESTIONS, ("are pets allowed?", "pets are not allowed")]:
        got = await ask(app_pool, org, question, ai)
        assert got.found and not got.from_passage and expected in got.text, (question, got)
        assert got.usage is not None and got.usage.total_tokens > 0
    swahili = await ask(app_pool, org, "what time do gates open?", ai, "sw")
    assert swahili.text.startswith("Kulingana na taarifa zetu") and "4 pm" in swahili.text
    assert "Swahili" in sim.calls("chat")[-1]["messages"][0]["content"]
    nothing = await ask(app_pool, org, "who won the football league?", ai)
    assert not nothing.found and nothing.usage is None  # nothing close enough: the chat model is not called


async def test_another_organisations_knowledge_never_leaks(app_pool, make_org, ai, sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.md").write_text(GUIDE)
    (tmp_path / "b.txt").write_text(OTHER)
    org_a, _ = await make_org("KbA")
    org_b, _ = await make_org("KbB")
    await ingest(app_pool, org_a, "main", [str(tmp_path / "a.md")], ai)
    await ingest(app_pool, org_b, "main", [str(tmp_path / "b.txt")], ai)
    for org, mine, theirs in [(org_a, "4 pm", "6 am"), (org_b, "6 am", "4 pm")]:
        for model in (ai, None):
            sim.requests.clear()
            got = await ask(app_pool, org, "what time do gates open?", model)
            assert got.found and mine in got.text and theirs not in got.text
            assert all(theirs not in p for p in got.passages)
            assert all(theirs not in str(c["messages"]) for c in sim.calls("chat"))


async def test_a_model_timing_out_gives_the_best_passage_within_the_budget(
    app_pool, make_org, ai, sim, docs
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Slow")
    await ingest(app_pool, org, "festival", docs, ai)
    sim.add_faults([{"endpoint": "chat", "delay": 10.0}] * 5)
    started = time.monotonic()
    got = await ask(app_pool, org, "what time do gates open?", ai)
    elapsed = time.monotonic() - started
    sim.faults.clear()
    assert got.found and got.from_passage and got.usage is None
    assert "Gates open at 4 pm" in got.text and got.text.startswith(
        "*Nairobi Jazz Festival guide > Gates and times*"
    )
    assert elapsed < ai.budget + 0.5, elapsed


async def test_rate_limits_and_server_errors_are_retried(app_pool, make_org, ai, sim, docs) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Retry")
    await ingest(app_pool, org, "festival", docs, ai)
    sim.requests.clear()
    sim.add_faults([{"endpoint": "chat", "status": 429}, {"endpoint": "chat", "status": 500}])
    got = await ask(app_pool, org, "how much is parking?", ai)
    assert got.found and not got.from_passage and "KES 300" in got.text
    assert sim.faults == [] and len(sim.calls("chat")) == 1  # two refused, the third answered


async def test_full_text_search_without_a_key_answers_the_same_questions(app_pool, make_org, docs) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("NoKey")
    results = await ingest(app_pool, org, "festival", docs, None)
    assert [(r.status, r.embedded) for r in results] == [("ready", False)] * 3
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM embeddings WHERE embedding IS NOT NULL") == 0
    for question, expected in [*QUESTIONS, ("are pets allowed?", "pets are not allowed")]:
        got = await ask(app_pool, org, question, None)
        assert got.found and got.from_passage and expected in got.text, (question, got)
        assert got.usage is None
    typo = await ask(app_pool, org, "umbrelas?", None)  # no word matches: trigram similarity
    assert typo.found and "Umbrellas" in typo.text
    assert not (await ask(app_pool, org, "football league winners", None)).found


def turn_for(conn, org, ai: AI | None, settings: dict | None = None) -> Turn:  # type: ignore[no-untyped-def]
    return Turn(
        conn=conn,
        org=Org(org, "Jazz Fest", "pn", settings or {}),
        contact=Contact(uuid.uuid4(), "254700000009", None, "en", True, 3),
        conversation=Conversation(uuid.uuid4(), State(), None),
        now=datetime.now(UTC),
        trigger="message",
        runtime=SimpleNamespace(ai=ai),
    )


async def test_the_wallet_is_debited_by_the_recorded_usage(app_pool, make_org, ai, docs) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Bill", tokens=100)
    await ingest(app_pool, org, "festival", docs, ai)
    async with tenant_tx(app_pool, org) as conn:
        turn = turn_for(conn, org, ai)
        got = await knowledge_effects.answer_question(turn, AnswerQuestion("what time do gates open?", "en"))
        assert got.usage is not None
        await knowledge_effects.charge_answer(turn, ChargeAnswer(got.usage))
        row = await conn.fetchrow(
            "SELECT amount, action, module, metadata FROM token_transactions WHERE type = 'debit'"
        )
        balance = await conn.fetchval("SELECT balance FROM wallets")
    price = 2 + math.ceil(got.usage.total_tokens / 1000)
    assert (row["amount"], row["action"], row["module"], balance) == (
        -price,
        "ai_answer",
        "knowledge",
        100 - price,
    )
    assert row["metadata"] == {
        "prompt_tokens": got.usage.prompt_tokens,
        "completion_tokens": got.usage.completion_tokens,
        "model": "gpt-4o-mini",
    }


CHOICES = (IntentChoice("survey:s1", "Visitor feedback"), IntentChoice("event:e1", "Jazz Night"))


@pytest.mark.parametrize(
    ("said", "with_model", "expected"),
    [
        ("I want to buy tickets for jazz", True, Inbound("Jazz Night", "event:e1", "intent")),
        ("what time do gates open?", True, IntentClassified("knowledge")),
        ("I want tickets", False, Inbound("Jazz Night", "event:e1", "intent")),
        ("what time do gates open?", False, IntentClassified("knowledge")),
    ],
)
async def test_intents_route_to_an_offer_or_the_knowledge_base(
    app_pool,
    make_org,
    ai,
    said,
    with_model,  # type: ignore[no-untyped-def]
    expected,
) -> None:
    from state_machines.knowledge import keyword_item

    org, _ = await make_org("Intent", tokens=100)
    async with tenant_tx(app_pool, org) as conn:
        turn = turn_for(conn, org, ai if with_model else None)
        got = await knowledge_effects.classify_intent(
            turn, ClassifyIntent(said, "en", CHOICES, keyword_item(said, CHOICES))
        )
        debits = await conn.fetch("SELECT action, amount FROM token_transactions WHERE type = 'debit'")
    assert got == expected
    assert [(d["action"], d["amount"]) for d in debits] == ([("ai_intent", -1)] if with_model else [])


async def test_a_failed_classification_falls_back_to_keywords(app_pool, make_org, ai, sim) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("IntentDown")
    sim.add_faults([{"endpoint": "chat", "status": 500}] * 5)
    async with tenant_tx(app_pool, org) as conn:
        got = await knowledge_effects.classify_intent(
            turn_for(conn, org, ai), ClassifyIntent("tickets please", "en", CHOICES, "event:e1")
        )
    sim.faults.clear()
    assert got == Inbound("Jazz Night", "event:e1", "intent")


async def _snapshot(app_pool, org, title: str) -> frozenset[str]:  # type: ignore[no-untyped-def]
    async with tenant_tx(app_pool, org) as conn:
        rows = await conn.fetch(
            """SELECT e.content FROM embeddings e JOIN documents d ON d.id = e.document_id
                                   WHERE d.title = $1""",
            title,
        )
    return frozenset(r["content"] for r in rows)


async def test_re_ingest_replaces_chunks_atomically(app_pool, make_org, ai, sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Reingest")
    path = tmp_path / "guide.md"
    path.write_text(GUIDE)
    (first,) = await ingest(app_pool, org, "festival", [str(path)], ai)
    old = await _snapshot(app_pool, org, "guide.md")
    (again,) = await ingest(app_pool, org, "festival", [str(path)], ai)
    # unchanged says so, with what is stored (not "0 chunks, not embedded")
    assert (again.status, again.chunks, again.embedded) == (
        "unchanged",
        first.chunks,
        True,
    ) and first.chunks > 0
    path.write_text(GUIDE.replace("4 pm", "3 pm") + "\n## Toilets\nToilets are next to Gate C.\n")
    sim.add_faults([{"endpoint": "embeddings", "delay": 0.5}])  # keep the re-ingest open while we read
    seen: set[frozenset[str]] = set()
    task = asyncio.create_task(ingest(app_pool, org, "festival", [str(path)], ai))
    while not task.done():
        seen.add(await _snapshot(app_pool, org, "guide.md"))
        await asyncio.sleep(0.01)
    assert (await task)[0].status == "ready"
    new = await _snapshot(app_pool, org, "guide.md")
    assert seen <= {old, new} and old in seen and new != old  # never a mix, never empty
    assert "3 pm" in (await ask(app_pool, org, "what time do gates open?", ai)).text
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM documents") == 1


async def test_a_failed_re_ingest_keeps_the_old_chunks_and_says_why(
    app_pool, make_org, ai, sim, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Failing")
    path = tmp_path / "guide.md"
    path.write_text(GUIDE)
    await ingest(app_pool, org, "festival", [str(path)], ai)
    old = await _snapshot(app_pool, org, "guide.md")
    path.write_text(GUIDE + "\nMore.\n")
    sim.add_faults([{"endpoint": "embeddings", "status": 400}])  # not retried: a bad request stays bad
    (result,) = await ingest(app_pool, org, "festival", [str(path)], ai)
    assert result.status == "failed" and "BadRequestError" in (result.error or "")
    async with tenant_tx(app_pool, org) as conn:
        status, error = await conn.fetchrow("SELECT status, error FROM documents")
    assert status == "failed" and "BadRequestError" in error
    assert await _snapshot(app_pool, org, "guide.md") == old


async def test_unreadable_sources_fail_with_a_clear_error(app_pool, make_org, tmp_path) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Bad")
    (tmp_path / "x.docx").write_text("nope")
    results = await ingest(
        app_pool,
        org,
        "kb",
        ["http://127.0.0.1:9/faq.html", str(tmp_path / "x.docx"), str(tmp_path / "missing.md")],
        None,
    )
    assert [r.status for r in results] == ["failed"] * 3
    assert "cannot fetch" in (results[0].error or "") and "unsupported file type" in (results[1].error or "")
    async with tenant_tx(app_pool, org) as conn:
        assert await conn.fetchval("SELECT count(*) FROM documents WHERE status = 'failed'") == 3


async def test_the_cli_adds_lists_and_asks(make_org, settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, new = await make_org("Cli")
    (tmp_path / "guide.md").write_text(GUIDE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "engine.cli", "kb", *args],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )

    added = await asyncio.to_thread(
        cli, "add", "--org", new.phone_number_id, "--kb", "fest", str(tmp_path / "guide.md"), "--json"
    )
    assert added.returncode == 0, added.stderr
    listed = await asyncio.to_thread(cli, "list", "--org", new.phone_number_id, "--json")
    assert '"name": "fest"' in listed.stdout and '"ready": 1' in listed.stdout
    asked = await asyncio.to_thread(cli, "ask", "--org", new.phone_number_id, "what time do gates open?")
    assert asked.returncode == 0 and "Gates open at 4 pm" in asked.stdout and "passage 1" in asked.stdout
