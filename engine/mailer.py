"""The tickets e-mail: a buyer who gave an e-mail address gets their tickets with each QR code attached.

``queue_tickets_email`` writes a ``ticket_emails`` row in the transaction that issues the tickets; the relay
role's ``mail_forever`` (every relay process; rows are claimed with SKIP LOCKED) builds the message from the
issued tickets and their stored QR images and sends it with aiosmtplib, then marks it sent. A refusal for
good (5xx) marks it failed with the error; anything else (connection, timeout, 4xx) is retried with a growing
delay, up to ``MAX_ATTEMPTS``. A crash between the server's acceptance and the mark can send it twice: the
message carries the same Message-ID every time, so that mail systems can tell.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any
from uuid import UUID

import aiosmtplib
import asyncpg

from engine.logging import get_logger
from engine.settings import Settings
from state_machines.formatting import DEFAULT_TIMEZONE, local_time
from state_machines.i18n import t

log = get_logger(__name__)
POLL_SECONDS = 1.0
BATCH = 10
MAX_ATTEMPTS = 8


def enabled(settings: Settings | None) -> bool:
    """Whether tickets are e-mailed (and so whether the ticket flow asks for an address)."""
    return settings is not None and bool(settings.smtp_host)


async def queue_tickets_email(
    conn: asyncpg.Connection, org_id: UUID, hold_id: str, to_address: str, language: str
) -> None:
    """In the issuing transaction: the e-mail exists exactly when its tickets do (once per hold)."""
    await conn.execute(
        """INSERT INTO ticket_emails (organization_id, hold_id, to_address, language) VALUES ($1, $2, $3, $4)
           ON CONFLICT (hold_id) DO NOTHING""",
        org_id,
        UUID(hold_id),
        to_address,
        language,
    )


async def build_tickets_email(conn: asyncpg.Connection, row: asyncpg.Record, sender: str) -> EmailMessage:
    tickets = await conn.fetch(
        """SELECT t.ticket_code, t.holder_name, tt.name AS type_name, e.name AS event_name, e.starts_at,
                  e.venue_name, e.timezone, o.name AS org_name, i.image
           FROM tickets t JOIN ticket_types tt ON tt.id = t.ticket_type_id JOIN events e ON e.id = tt.event_id
           JOIN organizations o ON o.id = t.organization_id
           LEFT JOIN ticket_images i ON i.ticket_id = t.id
           WHERE t.hold_id = $1 ORDER BY t.created_at, t.ticket_code""",
        row["hold_id"],
    )
    if not tickets:
        raise LookupError(f"no tickets issued for hold {row['hold_id']}")
    first, lang = tickets[0], row["language"]
    when = (
        local_time(first["starts_at"], first["timezone"] or DEFAULT_TIMEZONE) if first["starts_at"] else "-"
    )
    codes = "\n".join(
        f"• {x['ticket_code']}: {x['type_name']}, {x['holder_name'] or ''}".rstrip(", ") for x in tickets
    )
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row["to_address"]
    message["Subject"] = t("email.tickets_subject", lang, event=first["event_name"])
    # the same id on every attempt: a duplicate after a crash is recognisable as one
    message["Message-ID"] = make_msgid(idstring=f"tickets-{row['hold_id']}", domain="chatnation.local")
    message.set_content(
        t(
            "email.tickets_body",
            lang,
            holder=first["holder_name"] or "",
            event=first["event_name"],
            when=when,
            venue=first["venue_name"] or "-",
            codes=codes,
            org=first["org_name"],
        )
    )
    for ticket in tickets:
        if ticket["image"]:
            message.add_attachment(
                bytes(ticket["image"]),
                maintype="image",
                subtype="png",
                filename=f"{ticket['ticket_code']}.png",
            )
    return message


async def send(settings: Settings, message: EmailMessage) -> None:
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls",
        timeout=settings.smtp_timeout_seconds,
    )


def _permanent(err: Exception) -> bool:
    """A refusal that trying again cannot change: a 5xx answer (bad address, message refused)."""
    if isinstance(err, aiosmtplib.SMTPRecipientsRefused):
        return all(r.code >= 500 for r in err.recipients)
    return isinstance(err, aiosmtplib.SMTPResponseException) and err.code >= 500


async def send_due(owner_pool: asyncpg.Pool, settings: Settings, now: datetime | None = None) -> int:
    """Send the due e-mails of every organisation (the owner's connection: a background job across tenants);
    returns how many were sent."""
    sent, deployment = 0, settings.broker_prefix  # this deployment's e-mails only (sql/070)
    await owner_pool.execute(  # e-mails of no deployment become ours (row locks: one mailer adopts each)
        "UPDATE ticket_emails SET deployment = $1 WHERE status = 'pending' AND deployment IS NULL", deployment
    )
    async with owner_pool.acquire() as conn, conn.transaction():
        due = await conn.fetch(
            """SELECT * FROM ticket_emails
               WHERE status = 'pending' AND deployment = $3 AND next_attempt_at <= $1
               ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED""",
            now or datetime.now(UTC),
            BATCH,
            deployment,
        )
        for row in due:
            try:
                await send(settings, await build_tickets_email(conn, row, settings.smtp_from))
            except (aiosmtplib.SMTPException, OSError, TimeoutError, LookupError) as err:
                await _failed(conn, row, err)
                continue
            await conn.execute(
                "UPDATE ticket_emails SET status = 'sent', sent_at = now(), attempts = attempts + 1 WHERE id = $1",
                row["id"],
            )
            sent += 1
    return sent


async def _failed(conn: asyncpg.Connection, row: asyncpg.Record, err: Exception) -> None:
    attempts = row["attempts"] + 1
    final = _permanent(err) or attempts >= MAX_ATTEMPTS
    delay = timedelta(seconds=min(600, 5 * 2 ** (attempts - 1)))
    await conn.execute(
        """UPDATE ticket_emails SET attempts = $2, last_error = $3, status = $4,
                  next_attempt_at = now() + $5 WHERE id = $1""",
        row["id"],
        attempts,
        f"{type(err).__name__}: {err}"[:1000],
        "failed" if final else "pending",
        delay,
    )
    log.warning(
        "tickets e-mail not sent" + (" (given up)" if final else "; will retry"),
        organization_id=str(row["organization_id"]),
        ticket_email_id=row["id"],
        attempts=attempts,
        error=str(err)[:300],
    )


async def mail_forever(rt: Any, stop: asyncio.Event) -> None:
    """The relay role's mailer; idle (and never connecting) without SMTP_HOST."""
    if not enabled(rt.settings):
        return
    while not stop.is_set():
        try:
            if await send_due(rt.owner_pool, rt.settings):
                continue  # more may be due
        except (asyncpg.PostgresError, OSError) as err:
            log.warning("mailer interrupted; retrying", error=repr(err))
        try:
            await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        except TimeoutError:
            pass
