"""`chatnation kb add|list|ask`: an organisation's knowledge base."""

from __future__ import annotations

from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.cli.common import console, emit, org_pool, org_tx, run, settings

app = typer.Typer(help="Knowledge bases: ingest documents, list them, ask a question.", no_args_is_help=True)
ORG = typer.Option(..., "--org", help="organisation id or its WhatsApp phone_number_id")


class _Bar:
    """A rich progress bar per document (chunks embedded of total)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None

    def begin(self, title: str, total: int) -> None:
        self.task = self.progress.add_task(title[:40], total=total)

    def advance(self, done: int) -> None:
        self.progress.advance(self.task, done)


@app.command("add")
def add(
    paths: list[str] = typer.Argument(..., help=".txt, .md or .pdf files, or http(s) URLs"),
    org: str = ORG,
    kb: str = typer.Option(..., "--kb", help="knowledge base name (created when new)"),
    force: bool = typer.Option(False, help="re-ingest documents whose content did not change"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ingest documents: chunk them, embed them (with OPENAI_API_KEY; full-text search without), store them."""
    from engine.ai import create_ai
    from engine.knowledge.ingest import ingest

    s = settings()
    ai = create_ai(s)
    if ai is None:
        console.print(
            "[yellow]no OPENAI_API_KEY: chunks stored without embeddings; answers use full-text search"
        )

    async def body() -> list[dict[str, Any]]:
        async with org_pool(s, org) as (pool, org_id):
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console, transient=as_json) as progress:
                results = await ingest(pool, org_id, kb, paths, ai, reporter=_Bar(progress), force=force)
        return [
            {
                "document": r.title,
                "status": r.status,
                "chunks": r.chunks,
                "embedded": r.embedded,
                "error": r.error,
            }
            for r in results
        ]

    rows = run(body)
    emit(rows, as_json=as_json, title=f"knowledge base {kb}")
    unchanged = sum(1 for r in rows if r["status"] == "unchanged")
    if unchanged and not as_json:
        console.print(
            f"{unchanged} document(s) unchanged since they were ingested: kept as they are "
            "(their chunks and embeddings above); --force ingests them again"
        )
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)


@app.command("list")
def list_(
    org: str = ORG,
    documents: bool = typer.Option(False, "--documents", help="one row per document"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The organisation's knowledge bases (documents, ready, failed, chunks, embedded chunks)."""
    from engine.knowledge import store

    s = settings()

    async def body() -> list[dict[str, Any]]:
        async with org_tx(s, org) as (conn, org_id):
            return await (store.documents(conn) if documents else store.knowledge_bases(conn))

    what = "documents" if documents else "knowledge bases"
    emit(run(body), as_json=as_json, title=what, empty=f"no {what}")


@app.command("ask")
def ask(
    question: str,
    org: str = ORG,
    language: str = typer.Option("en", "--lang", help="en or sw"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Answer a question the way a WhatsApp contact would get it, with the passages used."""
    from engine.ai import create_ai
    from engine.knowledge.answering import answer

    s = settings()

    async def body() -> dict[str, Any]:
        async with org_tx(s, org) as (conn, org_id):
            name = await conn.fetchval("SELECT name FROM organizations")
            got = await answer(conn, create_ai(s), question, language, org_name=name or "")
        return {
            "answer": got.text,
            "found": got.found,
            "from_passage": got.from_passage,
            "tokens": got.usage_tokens,
            "passages": list(got.passages),
        }

    result = run(body)
    if as_json:
        emit([result], as_json=True)
        return
    if result["found"]:
        console.print(result["answer"], markup=False)
    else:
        console.print("[yellow](not in the knowledge base)")
    for i, passage in enumerate(result["passages"], 1):
        console.rule(f"passage {i}")
        console.print(passage, markup=False)
    console.print(f"[dim]model tokens: {result['tokens']}; from a passage: {result['from_passage']}")
