"""`chatnation chat --phone 2547XXXXXXXX`: talk to the bot from the terminal.

The local stack runs in this process (as in the demo); each line read from stdin is posted as a signed
WhatsApp webhook from that phone, and the bot's replies are printed as WhatsApp shows them, including late
ones (a payment callback's tickets). ``/tap TITLE`` taps a button or list row; Ctrl-D or ``/quit`` ends.
"""

from __future__ import annotations

import asyncio
import re
import sys

import typer
from rich.markup import escape

from engine.cli.common import console
from engine.migrate import MigrationEdited

PROMPT_HELP = "Type a message (numbers work for choices), /tap TITLE to tap a button, /quit or Ctrl-D to end."


async def _read_line() -> str | None:
    line = await asyncio.to_thread(sys.stdin.readline)
    return None if line == "" else line.rstrip("\n")


async def _converse(phone: str, org: str | None) -> None:
    from engine.cli.demo import local_session
    from simulators.chat import ChatDriver, render

    async with local_session(org, fresh=False) as session:
        driver = ChatDriver(session.stack.whatsapp, session.stack.user(session.phone_number_id, phone, "You"))
        console.print(f"[bold]Chatting with {session.phone_number_id}[/bold] as {phone}. {PROMPT_HELP}")

        def show(messages: list[dict]) -> None:
            for m in messages:
                console.print(
                    f"[green]bot →[/green] {escape(render(m['payload']))}", highlight=False, soft_wrap=True
                )

        echo = not sys.stdin.isatty()  # piped input: show what was said, as a transcript
        while (line := await _read_line()) is not None:
            text = line.strip()
            if echo and text:
                console.print(
                    f"[cyan]{escape(phone)} →[/cyan] {escape(text)}", highlight=False, soft_wrap=True
                )
            if text in ("/quit", "/exit"):
                break
            if not text:
                show(await driver.settle(expect=0))  # an empty line shows what arrived meanwhile
                continue
            tapped = re.fullmatch(r"/tap\s+(.+)", text)
            try:
                show(await (driver.tap(tapped[1]) if tapped else driver.say(text)))
            except LookupError as err:
                console.print(f"[yellow]{escape(str(err))}[/yellow]")
        show(await driver.settle(expect=0))


def chat(
    phone: str = typer.Option(..., "--phone", help="Your WhatsApp number as wa_id, e.g. 254712345678"),
    org: str | None = typer.Option(
        None, "--org", help="An organisation's phone_number_id (default: the demo one)"
    ),
) -> None:
    """Chat with the bot in the terminal, through the whole local stack."""
    if not re.fullmatch(r"\d{8,15}", phone):
        raise typer.BadParameter(
            "digits only, with the country code, e.g. 254712345678", param_hint="--phone"
        )
    try:
        asyncio.run(_converse(phone, org))
    except ConnectionError as err:
        console.print(f"[red]cannot reach a service:[/red] {err}")
        raise typer.Exit(1) from None
    except MigrationEdited as err:
        console.print(f"[red]refused:[/red] {err}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
