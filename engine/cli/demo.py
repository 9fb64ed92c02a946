"""`chatnation demo`: the engine on the embedded defaults, end to end, narrated.

Starts (or joins) the embedded PostgreSQL, migrates, checks the broker, starts the WhatsApp and M-Pesa
simulators, the gateway and the workers in this process, creates a demo organisation with the content of
demo/content.yaml, and plays a scripted WhatsApp conversation through every module: the survey (with a
branch), a paid ticket purchase with M-Pesa, Wanjiku's HypeCard (her photo downloaded, the card rendered,
uploaded and sent; a friend who scans it), a staff check-in, the poll, the agenda with a reminder, a booth's QR
code scanned and a lead its exhibitor's staffer receives, the way to a booth, STOP and START, a programme
subscribed by keyword, a broadcast and the programme's next item delivered by the scheduler role. Then the wallet's
ledger and a summary. ``local_session`` is shared with ``chatnation chat``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
from rich.markup import escape

from engine.cli.common import console, emit
from engine.cli.errors import NotFound
from engine.resources import resource_dir
from engine.settings import Settings, get_settings

DEMO_FILE = "content.yaml"  # in demo/ (installed: engine/demo)
DEMO_PHOTO = "pictures/wanjiku.jpg"  # in demo/ too
USER_PHONE, USER_NAME = "254712345678", "Wanjiku"
FRIEND_PHONE = "254722000333"
STAFF_PHONE = "254700000001"  # Gate A in demo/content.yaml
EXHIBITOR_PHONE = "254700000002"  # Otieno of Savanna Sounds, booth A1, in demo/content.yaml


@dataclass
class Session:
    settings: Settings
    stack: Any  # LocalStack
    pool: asyncpg.Pool
    org_id: UUID
    phone_number_id: str


def quiet_settings() -> Settings:
    """Settings with warnings-only logs: a narrated session is for reading."""
    from engine.logging import configure_logging

    s = get_settings().model_copy(
        update={"log_level": "warning", "broker_prefix": f"demo{uuid.uuid4().hex[:6]}"}
    )
    configure_logging(s)
    return s


@asynccontextmanager
async def local_session(
    org: str | None = None, *, fresh: bool = True, say: bool = True
) -> AsyncIterator[Session]:
    """PostgreSQL (migrated), the local stack on a private broker topology, and an organisation: ``org`` (a
    phone_number_id) if given, else the demo organisation with demo/content.yaml imported (``fresh``: a new
    one each time; else the one kept for ``chatnation chat``). Everything it started is stopped on exit."""
    from engine.db import create_pool, database_urls
    from engine.local_stack import LocalStack
    from engine.migrate import migrate

    s = quiet_settings()
    urls = await database_urls(s)
    applied = await migrate(urls.owner, s.app_db_role, s.app_db_password)
    stack = await LocalStack(s, statuses=("sent", "delivered", "read")).start()
    pool = await create_pool(urls.app, max_size=4, session_state=False, deployment=s.broker_prefix)
    try:
        if say:
            console.print(
                f"[bold]PostgreSQL[/bold] ready ({f'migrated {len(applied)} file(s)' if applied else 'schema up to date'})"
                f" · [bold]RabbitMQ[/bold] topology '{s.broker_prefix}' · [bold]simulators[/bold] "
                f"WhatsApp {stack.whatsapp.base_url}, M-Pesa {stack.mpesa.base_url}"
                + (f", SMTP 127.0.0.1:{stack.smtp.port}" if stack.smtp is not None else "")
            )
        org_id, pnid = await _organisation(pool, org, fresh)
        yield Session(s, stack, pool, org_id, pnid)
    finally:
        await pool.close()
        await stack.stop()
        await _cleanup_topology(s)


async def _organisation(pool: asyncpg.Pool, org: str | None, fresh: bool) -> tuple[UUID, str]:
    from engine.content_import import import_content, load_content
    from engine.orgs import NewOrganization, create_organization

    if org is not None:
        org_id = await pool.fetchval("SELECT org_by_phone_number_id($1)", org)
        if org_id is None:
            raise NotFound(f"no organisation with phone_number_id {org!r}")
        return org_id, org
    tag = uuid.uuid4().hex[:6] if fresh else "chat"
    pnid = f"demo-{tag}"
    org_id = await pool.fetchval("SELECT org_by_phone_number_id($1)", pnid)
    if org_id is None:
        org_id = await create_organization(
            pool,
            NewOrganization(
                name="Kilele FM",
                slug=f"kilele-fm-{tag}",
                phone_number_id=pnid,
                access_token="demo-token",
                display_phone="254700000000",  # the number a HypeCard's QR code opens
                tokens=1000,
                type="radio",
            ),
        )
    await import_content(
        pool, org_id, load_content(resource_dir("demo") / DEMO_FILE)
    )  # by natural key: a re-run updates
    return org_id, pnid


async def _cleanup_topology(s: Settings) -> None:
    from engine.broker import Topology, connect

    connection = await connect(s)
    await Topology.from_settings(s).delete(await connection.channel())
    await connection.close()


# ---------------------------------------------------------------- the narrated conversation


class Narrator:
    """Prints each turn as a person would read it on WhatsApp."""

    def __init__(self, driver: Any, who: str, colour: str = "cyan") -> None:
        self.driver, self.who, self.colour = driver, who, colour

    def said(self, line: str) -> None:
        console.print(
            f"\n[{self.colour}]{self.who} →[/{self.colour}] {escape(line)}", highlight=False, soft_wrap=True
        )

    def bot(self, messages: list[dict[str, Any]]) -> None:
        from simulators.chat import render

        for m in messages:
            text = render(m["payload"]).replace("\n", "\n      ")
            console.print(f"[green]bot →[/green] {escape(text)}", highlight=False, soft_wrap=True)

    async def say(self, text: str, expect: int = 1) -> list[dict[str, Any]]:
        self.said(text)
        replies = await self.driver.say(text, expect)
        self.bot(replies)
        return replies

    async def tap(self, title: str, expect: int = 1) -> list[dict[str, Any]]:
        self.said(f"[tap] {title}")
        replies = await self.driver.tap(title, expect)
        self.bot(replies)
        return replies


def note(text: str) -> None:
    console.print(f"   [dim]· {escape(text)}[/dim]", highlight=False, soft_wrap=True)


async def _script(session: Session) -> None:
    from simulators.chat import ChatDriver

    stack = session.stack
    user = Narrator(
        ChatDriver(stack.whatsapp, stack.user(session.phone_number_id, USER_PHONE, USER_NAME)), USER_NAME
    )
    staff = Narrator(
        ChatDriver(stack.whatsapp, stack.user(session.phone_number_id, STAFF_PHONE, "Gate A")),
        "Gate A (staff)",
        "magenta",
    )
    await user.say("hi")
    await user.tap("Listener survey", expect=2)
    await user.tap("No")  # the branch: first-timers skip the rating
    await user.tap("Radio")
    await user.say("1, 3")
    await user.say("29")
    await user.say("skip")
    await user.say("menu")
    await user.tap("Nairobi Jazz Night")
    await user.tap("Regular")
    await user.tap("2")
    await user.say("Wanjiku Kamau")
    await user.say("wanjiku@example.com")
    user.said("[tap] Confirm")
    paid = await user.driver.tap("Confirm", expect=5)  # the PIN prompt, 2 tickets, the receipt, a HypeCard
    user.bot(paid[:1])
    for request in stack.mpesa.requests:
        note(
            f"M-Pesa: STK push of KES {request['amount']} to {request['phone']} accepted by the simulator; "
            f"callback {request['outcome']} → gateway → worker"
        )
    user.bot(paid[1:])
    if stack.smtp is not None:  # the tickets e-mail, through the SMTP simulator
        (mail,) = await stack.smtp.wait_for("wanjiku@example.com")
        attached = [part.get_filename() for part in mail.iter_attachments()]
        note(
            f'E-mail to {mail["To"]}: "{mail["Subject"]}" with {len(attached)} QR code(s) attached: {", ".join(attached)}'
        )
    await _hypecard(session, user)
    codes = await _ticket_codes(session)
    await user.say(codes[0], expect=3)  # their own ticket code: My tickets, with the QR codes sent again
    await staff.say(f"CHECKIN {codes[0]}")
    await staff.say(f"CHECKIN {codes[0]}")
    await user.say("menu")
    await user.tap("Best act of the night?")
    await user.tap("Sauti Sol", expect=2)  # the results, and the voter's HypeCard on offer
    await _event_guide(session, user)
    await user.say("STOP")
    await user.say("START", expect=2)
    await _broadcast_and_programme(session, user)


async def _broadcast_and_programme(session: Session, user: Narrator) -> None:
    """Kilele FM speaks first: a broadcast to every opted-in contact, and the morning devotional's next item
    to its subscribers, both sent by the scheduler role (engine/scheduler.py)."""
    from engine.broadcast_stats import stats
    from engine.broadcasts import NewBroadcast, create
    from engine.db import tenant_tx

    await user.say("devotional")  # the programme's keyword: subscribed
    text = "Hi {{name}}! Tonight at 20:00 on Kilele FM: the Jazz Night line-up, live. Tune in!"
    async with tenant_tx(session.pool, session.org_id) as conn:
        broadcast_id = await create(
            conn, session.org_id, NewBroadcast(name="Tonight on Kilele FM", text=text)
        )
    assert broadcast_id is not None
    note(
        f'operator: chatnation broadcast create --org {session.phone_number_id} --text "{text}" → {broadcast_id}; '
        "the scheduler resolves the recipients, reserves their tokens and fans the messages out"
    )
    user.bot(await user.driver.settle(1))
    await asyncio.sleep(1.0)  # the status webhooks (delivered, read)
    async with tenant_tx(session.pool, session.org_id) as conn:
        b = await stats(conn, broadcast_id, datetime.now(UTC), session.settings.send_rate_per_second)
        await conn.execute(  # the demo's clock: the next 06:00 is now
            "UPDATE programs SET next_fire_at = now() WHERE key = 'morning-devotional'"
        )
    assert b is not None
    note(
        f"broadcast {b['status']}: {b['recipients']} recipients, {b['sent']} sent, {b['delivered']} delivered, "
        f"{b['read']} read; tokens reserved {b['tokens_reserved']}, spent {b['tokens_spent']}, "
        f"released {b['tokens_released']}"
    )
    note("the demo moves the morning devotional's next occurrence (06:00 Africa/Nairobi) to now")
    user.bot(await user.driver.settle(1))
    note("the programme's item went to its subscribers as a broadcast (chatnation broadcast list)")


async def _hypecard(session: Session, user: Narrator) -> None:
    """Wanjiku's card: her name, her photo (downloaded by the cards role with the organisation's token), the
    card rendered, uploaded and sent as an image; then a friend who scans its QR code comes to the chat."""
    from simulators.chat import ChatDriver

    stack = session.stack
    await user.tap("Get my HypeCard")
    await user.say("Wanjiku Kamau")
    user.said("[photo] wanjiku.jpg")
    started = time.monotonic()
    got = await user.driver.send_photo(
        (resource_dir("demo") / DEMO_PHOTO).read_bytes(), expect=3
    )  # "making", the card, the share line
    user.bot(got)
    card = next((m["payload"] for m in got if m["payload"]["type"] == "image"), None)
    if card is None:
        raise RuntimeError("Wanjiku's HypeCard did not arrive")
    uploaded = stack.whatsapp.media[card["image"]["id"]]
    saved = session.settings.data_dir / "demo" / "wanjiku-hypecard.jpg"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(uploaded["data"])
    note(
        f"cards role: photo downloaded through GET /{{media_id}} and its URL, card rendered and stored; sender: "
        f"POST /media ({len(uploaded['data']):,} bytes) then the image message, {time.monotonic() - started:.1f}s "
        f"after the photo. The card is saved at {saved}"
    )
    code = await _card_code(session)
    friend = Narrator(
        ChatDriver(stack.whatsapp, stack.user(session.phone_number_id, FRIEND_PHONE, "Achieng")),
        "Achieng",
        "yellow",
    )
    await friend.say(f"Hi Kilele FM! Wanjiku Kamau sent me a Jazz Night card ({code})", expect=3)
    note("the card's code counted: a view and a share on Wanjiku's card")


async def _event_guide(session: Session, user: Narrator) -> None:
    """The agenda with a reminder, a booth's QR code scanned, a lead left with consent and the exhibitor's
    staffer told at once, then the way to another booth (docs/events.md)."""
    from simulators.chat import ChatDriver

    stack = session.stack
    otieno = Narrator(
        ChatDriver(stack.whatsapp, stack.user(session.phone_number_id, EXHIBITOR_PHONE, "Otieno")),
        "Otieno (Savanna Sounds staff)",
        "blue",
    )
    await otieno.say("hi")  # staff write to the number when the day starts: their 24-hour window opens
    await user.say("agenda")
    await user.tap("Today's sessions")
    await user.tap(_row_with(user, "Nairobi Horns"))
    await user.tap("Remind me")
    await user.tap("Achieng Otieno", expect=2)  # the profile: the photo, then the bio and sessions
    note("a phone's camera on the booth's QR code opens this chat with BOOTH A1 typed (chatnation event qr)")
    await user.say("BOOTH A1")
    await user.tap("Catalogue")
    await user.tap("Student saxophone", expect=2)
    await user.tap("Contact me")
    await user.tap("Yes, share")
    await user.tap("4 – Very interested")
    await user.say("Looking for a first sax for my son")
    otieno.bot(await otieno.driver.settle(expect=1))  # the lead, at once
    await otieno.tap("Followed up")
    await user.say("where is booth A2?", expect=2)


def _row_with(narrator: Narrator, part: str) -> str:
    """The title of the latest list row or button that contains ``part`` (a session's row starts with its time)."""
    from simulators.chat import choices

    for message in reversed(narrator.driver.whatsapp.messages(to=narrator.driver.user.wa_id)):
        for _, title in choices(message["payload"]):
            if part in title:
                return title.split(". ", 1)[-1].removesuffix("…")
    raise LookupError(f"no row with {part!r}")


async def _card_code(session: Session) -> str:
    from engine.db import tenant_tx

    async with tenant_tx(session.pool, session.org_id) as conn:
        return str(await conn.fetchval("SELECT code FROM generated_cards ORDER BY created_at DESC LIMIT 1"))


async def _ticket_codes(session: Session) -> list[str]:
    from engine.db import tenant_tx

    async with tenant_tx(session.pool, session.org_id) as conn:
        rows = await conn.fetch(
            """SELECT t.ticket_code FROM tickets t JOIN contacts c ON c.id = t.contact_id
                                   WHERE c.phone = $1 ORDER BY t.created_at, t.ticket_code""",
            USER_PHONE,
        )
    if not rows:
        raise RuntimeError("no tickets were issued")
    return [r["ticket_code"] for r in rows]


async def _report(session: Session) -> None:
    from engine.db import tenant_tx

    async with tenant_tx(session.pool, session.org_id) as conn:
        ledger = [
            dict(r)
            for r in await conn.fetch(
                """SELECT type, module, action, count(*) AS entries, sum(amount) AS tokens FROM token_transactions
               GROUP BY type, module, action ORDER BY min(created_at)"""
            )
        ]
        summary = await conn.fetchrow(
            """SELECT (SELECT count(*) FROM messages WHERE direction = 'inbound') AS "messages in",
                      (SELECT count(*) FROM messages WHERE direction = 'outbound') AS "messages out",
                      (SELECT count(*) FROM tickets) AS "tickets sold",
                      (SELECT count(*) FROM tickets WHERE status = 'used') AS "tickets checked in",
                      (SELECT count(*) FROM survey_responses WHERE status = 'completed') AS "survey responses",
                      (SELECT count(*) FROM generated_cards WHERE status = 'sent') AS "HypeCards sent",
                      (SELECT sum(view_count) || ' / ' || sum(share_count) FROM generated_cards)
                          AS "HypeCard views / shares",
                      (SELECT string_agg(text || ': ' || votes, ', ' ORDER BY sort_order) FROM poll_options)
                          AS "poll tallies",
                      (SELECT count(*) FROM session_reminders) AS "session reminders",
                      (SELECT count(*) || ' (' || count(*) FILTER (WHERE follow_up_status = 'followed_up')
                              || ' followed up)' FROM leads) AS "booth leads",
                      (SELECT count(*) FROM broadcasts WHERE status = 'completed') AS "broadcasts sent",
                      (SELECT balance FROM wallets) AS "wallet balance"
            """
        )
    console.print()
    emit(ledger, as_json=False, title="wallet ledger (by action)")
    emit([{"": k, "value": v} for k, v in summary.items()], as_json=False, title="summary")


async def _run() -> None:
    started = time.monotonic()
    async with local_session() as session:
        console.print(
            f"[bold]Organisation[/bold] Kilele FM ({session.phone_number_id}), content from "
            f"{resource_dir('demo') / DEMO_FILE}"
        )
        await _script(session)
        await _report(session)
    console.print(f"[bold]done[/bold] in {time.monotonic() - started:.1f}s")


def demo() -> None:
    """Run the engine end to end on the embedded defaults and narrate a scripted WhatsApp conversation."""
    asyncio.run(_run())  # a service down or an edited migration: one line (engine/cli/errors.py)
