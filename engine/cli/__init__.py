"""The ``chatnation`` command. Each command group lives in its own module and is registered here."""

from __future__ import annotations

import typer

from engine.cli import (
    api,
    broadcasts,
    chat,
    contacts,
    content,
    db,
    demo,
    events,
    hypecard,
    kb,
    keys,
    orgs,
    parked,
    payments,
    programmes,
    queues,
    reshard,
    templates,
    wallet,
    webhooks,
    workers,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="ChatNation conversation engine.")
app.add_typer(db.app, name="db")
app.add_typer(orgs.app, name="org")
app.add_typer(wallet.app, name="wallet")
app.add_typer(kb.app, name="kb")
app.command("migrate")(db.migrate_command)
app.command("demo")(demo.demo)
app.add_typer(parked.app, name="parked")
app.command("queues")(queues.queues)
app.command("workers")(workers.workers)
app.command("reshard")(reshard.reshard)
app.command("import")(content.import_command)
app.add_typer(content.results_app, name="results")
app.add_typer(content.content_app, name="content")
app.command("chat")(chat.chat)
app.add_typer(hypecard.app, name="hypecard")
app.add_typer(templates.app, name="templates")
app.add_typer(contacts.app, name="contacts")
app.add_typer(events.event_app, name="event")
app.add_typer(events.leads_app, name="leads")
app.add_typer(payments.app, name="payments")
app.add_typer(broadcasts.app, name="broadcast")
app.add_typer(programmes.app, name="programme")
app.add_typer(keys.app, name="keys")
app.command("api")(api.api)
app.add_typer(webhooks.app, name="webhooks")


def main() -> None:
    """The console script: ``chatnation ...``; expected failures print one line (engine/cli/errors.py)."""
    from engine.cli.errors import main_guard

    main_guard(app)
