"""End to end: a WhatsApp user's question answered from the knowledge base, through the gateway, RabbitMQ,
the workers (intent and answer by the OpenAI-compatible test server), PostgreSQL and the WhatsApp simulator."""

from __future__ import annotations

import uuid

import pytest

from engine.ai import create_ai
from engine.db import tenant_tx
from engine.knowledge.ingest import ingest
from engine.local_stack import LocalStack
from simulators.openai_server import OpenAISimulator

GUIDE = """# Festival guide

## Gates
Gates open at 4 pm and the first act starts at 5 pm.

## Parking
Parking costs KES 300 per car at the Carnivore grounds.
"""


@pytest.fixture
async def model():  # type: ignore[no-untyped-def]
    server = OpenAISimulator(api_key="sk-test")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def stack(settings, broker, db_urls, model):  # type: ignore[no-untyped-def]
    with_model = settings.model_copy(update={"openai_api_key": "sk-test", "openai_base_url": model.base_url})
    st = await LocalStack(with_model).start()
    yield st
    await st.stop()


def body_of(message: dict) -> str:  # type: ignore[type-arg]
    payload = message["payload"]
    return payload["text"]["body"] if payload["type"] == "text" else payload["interactive"]["body"]["text"]


async def test_a_question_gets_the_knowledge_base_answer(
    stack: LocalStack,
    model,
    make_org,
    app_pool,  # type: ignore[no-untyped-def]
    tmp_path,
) -> None:
    org, new = await make_org("KbE2E", tokens=100)
    async with tenant_tx(app_pool, org) as conn:  # something on the menu, so the intent is classified first
        await conn.execute(
            """INSERT INTO polls (organization_id, question, options)
                              VALUES ($1, 'Best act?', '[{"id": "a", "text": "Sauti Sol"}]')""",
            org,
        )
    (tmp_path / "guide.md").write_text(GUIDE)
    assert stack.settings is not None
    await ingest(app_pool, org, "festival", [str(tmp_path / "guide.md")], create_ai(stack.settings))
    user = stack.user(new.phone_number_id, "2547" + str(uuid.uuid4().int)[:8])
    await user.say("hi")
    await stack.whatsapp.wait_for_messages(1, to=user.wa_id, timeout=15)  # the menu
    await user.say("what time do gates open?")
    sent = await stack.whatsapp.wait_for_messages(2, to=user.wa_id, timeout=15)
    assert body_of(sent[1]) == "Gates open at 4 pm and the first act starts at 5 pm."
    assert [c["response_format"]["type"] for c in model.calls("chat")[:1]] == ["json_schema"]  # intent first
    async with tenant_tx(app_pool, org) as conn:
        debits = await conn.fetch("""SELECT action, metadata FROM token_transactions WHERE type = 'debit'
                                     ORDER BY created_at, action""")
        state = await conn.fetchval("SELECT current_module FROM conversations")
    actions = sorted(d["action"] for d in debits)
    assert actions == ["ai_answer", "ai_intent", "outbound_reply", "outbound_reply"]
    assert all(d["metadata"]["model"] == "gpt-4o-mini" for d in debits if d["action"].startswith("ai_"))
    assert state is None  # back at the menu, ready for the next question
