"""`chatnation demo`: the engine on the embedded defaults, end to end, narrated.

Starts (or joins) the embedded PostgreSQL, migrates, checks the broker, starts the WhatsApp and M-Pesa
simulators, the gateway and the workers in this process, registers a demo organisation, and plays a
WhatsApp user: "hi" goes in as a signed webhook, the bot's reply comes out at the simulator, and the
wallet's ledger shows the debit.
"""

from __future__ import annotations

import asyncio
import uuid

import typer

from engine.cli.common import console, emit, settings


async def _round_trip() -> None:
    from engine.db import create_pool, database_urls, tenant_tx
    from engine.local_stack import LocalStack
    from engine.migrate import migrate
    from engine.orgs import NewOrganization, create_organization
    from simulators.chat import render

    s = settings().model_copy(update={"broker_prefix": f"demo{uuid.uuid4().hex[:6]}"})
    urls = await database_urls(s)
    applied = await migrate(urls.owner, s.app_db_role, s.app_db_password)
    console.print(f"[bold]PostgreSQL[/bold] ready ({'migrated ' + str(len(applied)) + ' file(s)' if applied else 'schema up to date'})")
    stack = await LocalStack(s, statuses=("sent", "delivered", "read")).start()
    console.print(f"[bold]RabbitMQ[/bold] {s.rabbitmq_url} — topology '{s.broker_prefix}' declared")
    console.print(f"[bold]Simulators[/bold] WhatsApp {stack.whatsapp.base_url}, M-Pesa {stack.mpesa.base_url}")
    pool = await create_pool(urls.app, max_size=2)
    try:
        tag = uuid.uuid4().hex[:6]
        org = await create_organization(pool, NewOrganization(
            name=f"Demo FM {tag}", slug=f"demo-fm-{tag}", phone_number_id=f"demo{tag}", access_token="demo-token",
            tokens=500))
        user = stack.user(f"demo{tag}", "254712345678", "Wanjiku")
        console.print("\n[cyan]Wanjiku →[/cyan] hi")
        await user.say("hi")
        for reply in await stack.whatsapp.wait_for_messages(1, to=user.wa_id, timeout=20):
            console.print(f"[green]bot →[/green] {render(reply['payload'])}")
        await asyncio.sleep(0.5)
        async with tenant_tx(pool, org) as conn:
            rows = [dict(r) for r in await conn.fetch(
                """SELECT type, amount, balance_before, balance_after, module, action FROM token_transactions
                   ORDER BY created_at""")]
        emit(rows, as_json=False, title="wallet ledger")
    finally:
        await pool.close()
        await stack.stop()
        await _cleanup_topology(s)


async def _cleanup_topology(s) -> None:  # type: ignore[no-untyped-def]
    from engine.broker import Topology, connect

    connection = await connect(s)
    await Topology.from_settings(s).delete(await connection.channel())
    await connection.close()


def demo() -> None:
    """Run the engine end to end on the embedded defaults and narrate a WhatsApp conversation."""
    try:
        asyncio.run(_round_trip())
    except ConnectionError as err:
        console.print(f"[red]cannot reach a service:[/red] {err}")
        raise typer.Exit(1) from None
