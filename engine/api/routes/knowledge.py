"""The knowledge base: add a document (its text, Markdown or plain), list knowledge bases and documents, ask a
question the way a WhatsApp contact would. Documents are given as text: the API never reads a file or fetches a
URL on the server's behalf (`chatnation kb add` does, on the operator's machine)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from engine.api.auth import Caller, scope
from engine.api.problems import ApiProblem

router = APIRouter(prefix="/knowledge", tags=["knowledge"])
NAME = r"^[^\x00-\x1f\x7f/]+$"


class NewDocument(BaseModel):
    knowledge_base: str = Field(min_length=1, max_length=100, pattern=NAME, description="Created when new")
    title: str = Field(min_length=1, max_length=200, pattern=NAME, description="Its identity in the base")
    text: str = Field(min_length=1, max_length=2_000_000, pattern=r"^[^\x00]+$")
    format: Literal["markdown", "text"] = "markdown"
    force: bool = Field(False, description="Ingest it again even when its text did not change")


class Ingested(BaseModel):
    title: str
    status: Literal["ready", "unchanged", "failed"]
    chunks: int
    embedded: bool
    error: str | None


class Question(BaseModel):
    question: str = Field(min_length=1, max_length=500, pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+$")
    language: Literal["en", "sw"] = "en"


class Answer(BaseModel):
    answer: str
    found: bool
    from_passage: bool
    passages: list[str]


class KnowledgeBase(BaseModel):
    name: str
    active: bool | None
    documents: int
    ready: int
    failed: int
    chunks: int
    embedded: int


class Document(BaseModel):
    knowledge_base: str
    title: str
    status: str | None
    chunks: int | None
    error: str | None
    updated_at: datetime | None


@router.post("/documents", response_model=Ingested, summary="Add (or replace) a document by its title")
async def add_document(
    new: NewDocument, request: Request, caller: Caller = Depends(scope("knowledge", "write"))
) -> dict[str, Any]:
    from engine.ai import create_ai
    from engine.db import tenant_tx
    from engine.knowledge import store
    from engine.knowledge.ingest import _Silent, ingest_source
    from engine.knowledge.sources import Source

    async with tenant_tx(caller.pool, caller.organization_id) as conn:
        kb_id = await store.ensure_kb(conn, caller.organization_id, new.knowledge_base)
    source = Source(f"api:{new.title}", new.title, new.text, markdown=new.format == "markdown")
    result = await ingest_source(
        caller.pool,
        caller.organization_id,
        kb_id,
        source,
        create_ai(request.app.state.settings),
        reporter=_Silent(),
        force=new.force,
    )
    return {k: getattr(result, k) for k in ("title", "status", "chunks", "embedded", "error")}


@router.get("", summary="Knowledge bases with their counts")
async def knowledge_bases(
    caller: Caller = Depends(scope("knowledge", "read")),
) -> dict[str, list[KnowledgeBase]]:
    from engine.knowledge import store

    async with caller.tx() as conn:
        return {"data": [KnowledgeBase(**r) for r in await store.knowledge_bases(conn)]}


@router.get("/documents", summary="Documents, by knowledge base and title")
async def documents(
    caller: Caller = Depends(scope("knowledge", "read")),
    knowledge_base: str | None = Query(None, max_length=100, pattern=NAME),
) -> dict[str, list[Document]]:
    from engine.knowledge import store

    async with caller.tx() as conn:
        return {"data": [Document(**r) for r in await store.documents(conn, knowledge_base)]}


@router.post("/ask", response_model=Answer, summary="Answer a question as a contact would get it")
async def ask(
    question: Question, request: Request, caller: Caller = Depends(scope("knowledge", "read"))
) -> dict[str, Any]:
    from engine.ai import create_ai
    from engine.knowledge.answering import answer

    async with caller.tx() as conn:
        name = await conn.fetchval("SELECT name FROM organizations")
        try:
            got = await answer(
                conn,
                create_ai(request.app.state.settings),
                question.question,
                question.language,
                org_name=name or "",
            )
        except ValueError as err:
            raise ApiProblem(422, "question", str(err)) from None
    return {
        "answer": got.text,
        "found": got.found,
        "from_passage": got.from_passage,
        "passages": list(got.passages),
    }
