"""`chatnation db ...` and `chatnation migrate`."""

from __future__ import annotations

import typer

from engine.cli.common import console, run, settings

app = typer.Typer(help="The database: embedded server, URLs, migrations.", no_args_is_help=True)


def migrate_command() -> None:
    """Apply sql/*.sql in order, once each; refuses when an applied file was edited."""
    from engine.db import database_urls
    from engine.migrate import migrate

    s = settings()

    async def body() -> list[str]:
        urls = await database_urls(s)
        return await migrate(urls.owner, s.app_db_role, s.app_db_password)

    applied = run(body)  # an edited or missing migration, a database down: one line (engine/cli/errors.py)
    console.print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


@app.command("start")
def start() -> None:
    """Start (or join) the embedded PostgreSQL and print its owner URL."""
    from engine.db import database_urls

    s = settings()
    print(run(lambda: database_urls(s)).owner)


@app.command("url")
def url(app_role: bool = typer.Option(False, "--app", help="The application role's URL instead")) -> None:
    """Print the database URL (the embedded server's when DATABASE_URL is unset)."""
    from engine.db import database_urls

    s = settings()
    urls = run(lambda: database_urls(s))
    print(urls.app if app_role else urls.owner)


@app.command("stop")
def stop() -> None:
    """Stop the embedded PostgreSQL (no effect when DATABASE_URL is set)."""
    from engine.embedded_pg import stop_embedded

    s = settings()
    if s.database_url:
        console.print("DATABASE_URL is set: not an embedded server, nothing to stop")
        return
    console.print("stopped" if stop_embedded(s.data_dir) else "not running")
