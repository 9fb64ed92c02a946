"""One event's unit of work inside its transaction: who, where the conversation stands, what to send.

Handlers change the conversation through a ``Turn``; ``finish()`` writes the new state, the replies (each
debited and written to the outbox) and nothing else, all in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg

from engine import metrics_worker as metrics
from engine import wallet_pause
from engine.logging import get_logger
from engine.replies import write_outbound
from engine.wallet import (
    affordable,
    debit,
    pays_at_commit,
    price_of,
    signal_low_balance_once,
)
from engine.whatsapp.outbound import SendRequestInvalid, build_payload
from state_machines.base import (
    IMAGE_LINK,
    Buttons,
    Charge,
    Document,
    Image,
    ListMenu,
    Reply,
    StartTimer,
    State,
    Text,
)
from state_machines.i18n import t

log = get_logger(__name__)

SERVICE_WINDOW = timedelta(hours=24)
SAVEPOINT = "turn_effects"  # where a contact's message ends and its effects begin


@dataclass
class Org:
    id: UUID
    name: str
    phone_number_id: str
    settings: dict[str, Any]
    access_token: str = field(default="", repr=False)  # the Cloud API token, for the sender

    @property
    def language(self) -> str:
        return str(self.settings.get("language") or "en")


@dataclass
class Contact:
    id: UUID
    phone: str
    name: str | None
    language: str | None
    opted_in: bool
    message_count: int


@dataclass
class Conversation:
    id: UUID
    state: State
    last_user_message_at: datetime | None


@dataclass
class Turn:
    conn: asyncpg.Connection
    org: Org
    contact: Contact
    conversation: Conversation
    now: datetime
    trigger: str  # "message" | "payment" | "timer"
    inbound_wa_id: str | None = None
    replies: list[Reply] = field(default_factory=list)
    initial_version: int = 0
    # Work that must wait until this transaction committed (e.g. asking M-Pesa for a payment).
    after_commit: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    runtime: Any = None  # the process's Runtime, for after-commit work
    new_timers: list[StartTimer] = field(default_factory=list)  # written with the state, in finish()
    charges: list[Charge] = field(default_factory=list)  # made in finish(), after the replies
    wallet_headroom: int | None = None  # balance minus threshold at the start, unlocked; None: unknown
    charged_at_commit: int = 0  # what this turn's charges take from the wallet at commit (sql/078)
    loaded: dict[str, Any] = field(default_factory=dict)  # rows read once per event (handlers/context.py)
    # A contact's message: where its effects begin (a savepoint after the message was stored), and what the
    # turn started from, so that a turn whose replies cannot be paid is undone (``begin``, ``finish``).
    _start: tuple[Contact, State] | None = field(default=None, repr=False)
    # The inbound worker publishes the turn's replies itself once it committed (sql/071): ``event_key`` marks
    # the outbox rows as the event's, and ``published`` holds their send jobs, in order, for after the commit.
    event_key: str | None = None
    published: list[dict[str, Any]] = field(default_factory=list)

    @property
    def language(self) -> str:
        return self.contact.language or self.org.language

    @property
    def contact_key(self) -> str:
        return self.contact.phone

    def in_service_window(self) -> bool:
        last = self.conversation.last_user_message_at
        return last is not None and self.now - last < SERVICE_WINDOW

    async def begin(self) -> None:
        """The contact's message is stored: what follows (the machine's effects) can be undone as a whole."""
        await self.conn.execute(
            f"SAVEPOINT {SAVEPOINT}"
        )  # the tenant transaction is begun by hand (engine/db)
        self._start = (replace(self.contact), self.conversation.state)

    async def finish(self) -> int:
        """Persist the state, queue the replies and make the charges; returns how many replies were queued.

        Replies are paid at commit (sql/013) and charges come last: the wallet's row is the one every
        transaction of the organisation shares, so it is locked for as short a time as possible. Replies the
        wallet cannot pay never let the conversation move past what the contact saw: a message's turn is
        undone and answered with the paused notice; a payment's or timer's replies wait for a top-up
        (engine/wallet_pause.py)."""
        price = price_of("outbound_reply", self.org.settings)
        sendable = self._sendable()
        paid = await affordable(self.conn, self.org.id, price, len(sendable), self._headroom())
        if paid.crossed_low_threshold:
            metrics.wallet_low.inc()
            self._refill_after_commit()
        if paid.count < len(sendable):
            metrics.replies_skipped.labels("wallet_empty").inc(len(sendable) - paid.count)
            if self._start is not None:
                return await self._unanswered(price, len(sendable))
            await self._hold(sendable[paid.count :], price)
            sendable = sendable[: paid.count]
        await self._save_state()
        queued = await self._queue_replies(sendable, price)
        for charge in self.charges:
            await self._charge(charge, keep=queued * price)  # what the replies take at commit stays
        return queued

    async def _unanswered(self, price: int, not_sent: int) -> int:
        """The wallet cannot pay this message's replies: undo the turn (its effects, state and timers), keep the
        message and the contact's 24-hour window, and say once per pause that we cannot answer right now."""
        assert self._start is not None
        await self.conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        contact, state = self._start
        self.contact, self.conversation.state = contact, state
        self.replies, self.new_timers, self.charges, self.after_commit, self.loaded = [], [], [], [], {}
        self.published, self.charged_at_commit = [], 0  # the charges rolled back with the rest
        pause = await wallet_pause.record(
            self.conn, self.org.id, not_sent=not_sent, unanswered=1, now=self.now
        )
        if pause.new:
            await wallet_pause.opened(self.conn, self.org, pause)
        await self._save_state()
        if not await wallet_pause.first_notice(self.conn, self.org.id, pause.id, self.contact.id):
            return 0
        charged = self.org.settings.get("wallet_empty_notice") == "charged"
        if charged and (await affordable(self.conn, self.org.id, price, 1, None)).count < 1:
            return 0
        notice = Text(t("wallet.paused_notice", self.language))
        return 1 if await self._write_reply(notice, price if charged else 0) else 0

    async def _hold(self, replies: list[Reply], price: int) -> None:
        """Replies of a payment or a timer the wallet cannot pay: their effects stand, so the replies wait."""
        jobs = [(self._send_job(r), reply_text(r)) for r in replies]
        await wallet_pause.hold(self.conn, self.org.id, self.conversation.id, self.contact.id, jobs, price)
        pause = await wallet_pause.record(self.conn, self.org.id, not_sent=0, unanswered=0, now=self.now)
        if pause.new:
            await wallet_pause.opened(self.conn, self.org, pause)

    def _sendable(self) -> list[Reply]:
        if self.trigger == "timer" and not self.contact.opted_in:
            return []  # an opted-out contact gets nothing but replies to their own messages
        if not self.in_service_window():
            if self.replies:
                log.info("outside the 24-hour window; free-form replies not sent", replies=len(self.replies))
                metrics.replies_skipped.labels("outside_window").inc(len(self.replies))
            return []
        return self.replies

    async def _save_state(self) -> None:
        """The state and the timers the event started, in one statement: timers belong to the state the whole
        event ended in (its version), not to a middle step."""
        s = self.conversation.state
        timers = self.new_timers
        await self.conn.execute(
            """WITH timers AS (
                   INSERT INTO conversation_timers (organization_id, conversation_id, contact_id, kind, state_version,
                                                    data, due_at)
                   SELECT $8, $1, $9, t.kind, $5, t.data, t.due_at
                   FROM unnest($10::text[], $11::jsonb[], $12::timestamptz[]) AS t(kind, data, due_at))
               UPDATE conversations SET current_module = $2, current_state = $3, state_data = $4, state_version = $5,
                      last_message_at = $6, last_user_message_at = GREATEST(last_user_message_at, $7)
               WHERE id = $1""",
            self.conversation.id,
            s.module,
            s.step,
            dict(s.data),
            s.version,
            self.now,
            self.conversation.last_user_message_at,
            self.org.id,
            self.contact.id,
            [t.kind for t in timers],
            [dict(t.data) for t in timers],
            [self.now + timedelta(seconds=t.seconds) for t in timers],
        )

    async def _queue_replies(self, replies: list[Reply], price: int) -> int:
        """Replies the wallet pays for (``finish`` counted them under its lock when near the end)."""
        written = 0
        for reply in replies:
            if await self._write_reply(reply, price):
                written += 1
            else:
                log.error("bot loop stopped: the same reply to one contact too often")
                metrics.replies_skipped.labels("bot_loop").inc()
        metrics.replies_queued.inc(written)
        if written and price > 0:  # each reply is one debit, made by the commit-time trigger (sql/013)
            self.count_debits("outbound_reply", written)
        return written

    def count_debits(self, action: str, debits: int = 1) -> None:
        """Count debits once the transaction that makes them has committed (a rolled back one made none)."""

        async def count() -> None:
            metrics.debits.labels(action).inc(debits)

        self.after_commit.append(count)

    async def _write_reply(self, reply: Reply, price: int) -> bool:
        """The reply and its outbox row, unless it would be a bot loop (engine/replies.py)."""
        job = self._send_job(reply)
        written = await write_outbound(
            self.conn,
            organization_id=self.org.id,
            conversation_id=self.conversation.id,
            contact_id=self.contact.id,
            job=job,
            content=reply_text(reply),
            price=price,
            now=self.now,
            event_key=self.event_key,
        )
        if written is not None and self.event_key is not None:
            self.published.append({**job, "message_id": str(written), "lane": "reply"})
        return written is not None

    async def _charge(self, charge: Charge, keep: int) -> None:
        amount = price_of(charge.action, self.org.settings) * charge.quantity
        if amount > 0:  # a free action takes no lock on the wallet
            await self.charge(
                amount,
                module=charge.module,
                action=charge.action,
                reference_id=charge.reference_id,
                keep=keep,
            )

    async def charge(
        self,
        amount: int,
        *,
        module: str,
        action: str,
        reference_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        keep: int = 0,
    ) -> None:
        """A billable action. With an empty wallet the action still stands (the user did it); the charge is
        not made, so the balance never goes negative, and the low balance is signalled once.

        With ample headroom the charge is paid at commit (sql/078), so the wallet's row is not held from here to
        the end of the transaction (of the batch, with batched inbound events); near the end of the balance it
        is debited at once, under the row's lock, and refused exactly when the wallet cannot pay."""
        at_commit = amount > 0 and pays_at_commit(self._headroom(), amount + keep)
        result = await debit(
            self.conn,
            self.org.id,
            amount,
            module=module,
            action=action,
            reference_id=reference_id,
            metadata=metadata,
            keep=keep,
            at_commit=at_commit,
        )
        if at_commit:
            self.charged_at_commit += amount
        if result.ok:
            self.count_debits(action)
            if result.crossed_low_threshold:
                metrics.wallet_low.inc()
                self._refill_after_commit()
        elif await signal_low_balance_once(self.conn, self.org.id):
            log.warning("wallet empty: charge not made", action=action, amount=amount)

    def _headroom(self) -> int | None:
        """The start's headroom less what this turn's charges take at commit."""
        return None if self.wallet_headroom is None else self.wallet_headroom - self.charged_at_commit

    def _refill_after_commit(self) -> None:
        """The balance fell below the threshold: an automatic refill may be due (engine/topups.py)."""
        if self.runtime is not None:
            from engine.topups import refill_if_due

            runtime, org_id = self.runtime, self.org.id

            async def refill() -> None:
                try:
                    await refill_if_due(runtime, org_id)
                except Exception as err:  # never the message's failure: the reconciler's sweep tries again
                    log.warning("automatic refill not started", error=repr(err))

            self.after_commit.append(refill)

    def _send_job(self, reply: Reply) -> dict[str, Any]:
        job: dict[str, Any] = {
            "organization_id": str(self.org.id),
            "phone_number_id": self.org.phone_number_id,
            "to": self.contact.phone,
            "contact_key": self.contact_key,
        }
        link = reply.ref.removeprefix(IMAGE_LINK) if isinstance(reply, Image) else None
        if isinstance(reply, Image) and link == reply.ref:  # one we render and upload (a QR code, a card)
            return {**job, "type": "image", "image": {"ref": reply.ref, "caption": reply.caption}}
        try:
            request = build_payload(reply, self.contact.phone, image_link=link)
        except SendRequestInvalid as err:  # a reply over a limit is a bug: fall back to its plain text
            log.error("reply breaks a WhatsApp limit; sent as text", error=str(err))
            request = build_payload(Text(reply_text(reply)[:4096]), self.contact.phone)
        return {**job, "type": request["type"], "request": request}


def reply_text(reply: Reply) -> str:
    match reply:
        case Text(body=body) | Buttons(body=body) | ListMenu(body=body):
            return body
        case Image(ref=ref, caption=caption):
            return caption or ref
        case Document(link=link, filename=filename, caption=caption):
            return caption or filename or link
    return ""
