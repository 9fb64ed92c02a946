"""The sender role: outbound jobs -> WhatsApp Cloud API, at most once per reply.

Per job: drop it when the reply already has a WhatsApp id (a relay re-publish or a redelivery); hold a template
that became PAUSED or DISABLED (parked with the reason, for replay once it is approved again); wait for the
recipient's pair limit and, for each attempt, for a slot of the number's throughput (engine/pacing.py: one
authority in PostgreSQL across every sender process, replies before bulk); send, retrying transient errors with
exponential backoff and jitter; record the id. Meta's throughput error (130429) holds the number's slots for
every process a moment; the pair rate (131056) backs off 4^n seconds; 131049 (a user's marketing limit) is not
retried (``templates.marketing_deferred_until`` says when to try that user again). Permanent errors mark the
reply failed with the code; an expired token (190) pauses the organisation's sends and parks them for replay.
The check and the record are one database round trip each (``reply_unsent`` and ``record_reply_sent``,
sql/016): this role's CPU went mostly to round trips.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from typing import Any
from uuid import UUID

import asyncpg
from aio_pika.abc import AbstractIncomingMessage
from aiolimiter import AsyncLimiter
from structlog.contextvars import bind_contextvars
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from engine import metrics_worker as metrics
from engine.consumer import INFRASTRUCTURE_ERRORS, Park
from engine.db import tenant_tx
from engine.expiring import Expiring
from engine.hypecards.store import card_image, remember_upload
from engine.inbound import advance_status
from engine.logging import get_logger, masked
from engine.pacing import Pacer, rate_of
from engine.runtime import Runtime
from engine.templates import TEMPLATE_HELD_CODES, hold_reason, mark_held
from engine.whatsapp.client import CloudApiClient
from engine.whatsapp.outbound import ApiError, build_payload
from state_machines.base import Image

log = get_logger(__name__)
PAIR_LIMIT_CODE = 131056
THROUGHPUT_CODE = 130429
THROUGHPUT_HOLD_SECONDS = 1.0  # 130429: no process sends from that number for this long
TOKEN_PAUSE_SECONDS = 300


def _transient(err: BaseException) -> bool:
    return isinstance(err, ApiError) and err.action == "retry"


_BACKOFF = wait_exponential_jitter(multiplier=0.2, max=10, jitter=0.2)


def _wait(retry_state: Any) -> float:
    """Exponential with jitter; the pair limit (131056) backs off 4^n seconds as Meta asks."""
    err = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(err, ApiError) and err.code == PAIR_LIMIT_CODE:
        return float(min(4**retry_state.attempt_number, 64))
    return float(_BACKOFF(retry_state))


class Sender:
    def __init__(self, rt: Runtime, attempts: int = 6, max_seconds: float = 120) -> None:
        self.rt = rt
        self.client = CloudApiClient(
            rt.whatsapp_http, str(rt.settings.whatsapp_api_base_url), rt.settings.whatsapp_api_version
        )
        self.pacer = Pacer(rt.app_pool)
        self._holds: Expiring[tuple[str, str, str], str | None] = Expiring(2.0)
        self._pairs: OrderedDict[str, AsyncLimiter] = OrderedDict()
        self._paused: dict[str, float] = {}
        self._stop = stop_after_attempt(attempts) | stop_after_delay(max_seconds)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        job = json.loads(message.body)
        # for the lines logged while it runs (the consumer unbinds them)
        bind_contextvars(
            kind="send", organization_id=job.get("organization_id"), contact=masked(job.get("to"))
        )
        org_id, message_id = UUID(job["organization_id"]), UUID(job["message_id"])
        if self._paused.get(job["organization_id"], 0) > time.monotonic():
            raise Park(
                "sending paused for this organisation: access token expired (190); fix it, then replay"
            )
        token = await self._prepare(org_id, message_id)
        if token is None:
            metrics.sends.labels("duplicate_dropped", "").inc()
            return
        if job.get("type") == "template":
            await self._check_template(org_id, job)
        await self._pair(job["to"]).acquire()
        try:
            wamid = await self._send_with_retries(job, token)
        except ApiError as err:
            await self._failed(job, org_id, message_id, err)
            return
        await self._record_sent(org_id, message_id, wamid)
        metrics.sends.labels("accepted", "").inc()

    async def _record_sent(self, org_id: UUID, message_id: UUID, wamid: str) -> None:
        """WhatsApp accepted the reply: keep trying to record its id through a database outage, because a
        failure here would re-run the job and send the reply a second time."""
        if "\0" in wamid:  # PostgreSQL's text cannot hold it: an error to look at, not something to retry
            raise ValueError(f"NUL in the WhatsApp id {wamid!r}")
        delay = 0.2
        while True:
            try:
                await self.rt.app_pool.execute(
                    "SELECT record_reply_sent($1, $2, $3)", org_id, message_id, wamid
                )
                return
            except (*INFRASTRUCTURE_ERRORS, asyncpg.exceptions.InternalClientError) as err:
                log.warning("recording a sent reply failed; retrying", error=repr(err), delay=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _prepare(self, org_id: UUID, message_id: UUID) -> str | None:
        """The organisation's token, or None when this reply was already accepted or failed."""
        org = await self.rt.orgs.get(
            org_id
        )  # before this check's connection: a cache miss takes one of its own
        if not await self.rt.app_pool.fetchval("SELECT reply_unsent($1, $2)", org_id, message_id):
            return None
        return org.access_token

    async def _check_template(self, org_id: UUID, job: dict[str, Any]) -> None:
        """A template that became PAUSED or DISABLED since the send was queued: held (parked) with the reason."""
        template = (job.get("request") or {}).get("template") or {}
        name, language = str(template.get("name")), str((template.get("language") or {}).get("code"))

        async def load() -> str | None:
            async with tenant_tx(self.rt.app_pool, org_id) as conn:
                return await hold_reason(conn, org_id, name, language)

        reason = await self._holds.get((str(org_id), name, language), load)
        if reason is not None:
            metrics.sends.labels("held", "").inc()
            raise Park(f"held: {reason}; replay it once the template is APPROVED again")

    async def _rate(self, org_id: UUID) -> float:
        org = await self.rt.orgs.get(org_id)
        return rate_of(org.settings, self.rt.settings.send_rate_per_second)

    async def _send_with_retries(self, job: dict[str, Any], token: str) -> str:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_transient), wait=_wait, stop=self._stop, reraise=True
        ):
            with attempt:
                request = job.get("request") or await self._image_request(job, token)
                org_id, number = UUID(job["organization_id"]), job["phone_number_id"]
                rate = await self._rate(org_id)
                lane = "bulk" if job.get("lane") == "bulk" else "reply"
                slot = await self.pacer.wait(org_id, number, rate, lane)  # every attempt takes its own slot
                departed, started = time.time(), time.perf_counter()
                try:
                    result = await self.client.send(number, token, request)
                except ApiError as err:
                    metrics.sends.labels(err.action, str(err.code)).inc()
                    log.warning("send failed", code=err.code, http_status=err.http_status, action=err.action)
                    if err.code == THROUGHPUT_CODE:
                        await self.pacer.hold(org_id, number, THROUGHPUT_HOLD_SECONDS)
                    raise
                finally:
                    metrics.send_seconds.observe(time.perf_counter() - started)
                    await self._report_pacing(org_id, number, rate, slot, departed)
        return str(result.wamid)

    async def _report_pacing(
        self, org_id: UUID, number: str, rate: float, slot: float, departed: float
    ) -> None:
        """Tell the pacer when the send's answer came back. The message may already be with WhatsApp: a database
        error here must not fail the job, whose re-run would send it a second time; the correction is skipped."""
        try:
            await self.pacer.sent(org_id, number, rate, slot, departed)
        except (*INFRASTRUCTURE_ERRORS, asyncpg.PostgresError, asyncpg.exceptions.InternalClientError) as err:
            log.warning("late-send report skipped: the database is unavailable", error=repr(err))

    async def _image_request(self, job: dict[str, Any], token: str) -> dict[str, Any]:
        """Images we generate (ticket QR codes, HypeCards) are uploaded first, then sent by media id."""
        ref, caption = job["image"]["ref"], job["image"].get("caption", "")
        kind, _, key = ref.partition(":")
        org_id, pnid = UUID(job["organization_id"]), job["phone_number_id"]
        if kind == "card":
            return await self._card_request(job, token, org_id, UUID(key), caption)
        if kind != "qr":
            raise Park(f"unknown image reference {ref!r}")
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            png = await conn.fetchval(
                """SELECT i.image FROM ticket_images i JOIN tickets t ON t.id = i.ticket_id
                   WHERE t.ticket_code = $1""",
                key,
            )
        if png is None:
            raise Park(f"no image stored for {ref!r}")
        media_id = await self.client.upload_media(pnid, token, png, "image/png", f"{key}.png")
        return build_payload(Image(ref=ref, caption=caption), job["to"], image_id=media_id)

    async def _card_request(
        self, job: dict[str, Any], token: str, org_id: UUID, card_id: UUID, caption: str
    ) -> dict[str, Any]:
        """A HypeCard: its stored image, uploaded unless WhatsApp still holds it from an earlier send."""
        pnid = job["phone_number_id"]
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            image = await card_image(conn, card_id, pnid)
        if image is None:
            raise Park(f"no image stored for card {card_id}")
        media_id = image.media_id
        if media_id is None:
            media_id = await self.client.upload_media(
                pnid, token, image.data, image.mime_type, f"hypecard.{image.extension}"
            )
            async with tenant_tx(self.rt.app_pool, org_id) as conn:
                await remember_upload(conn, image.input_hash, pnid, media_id)
        return build_payload(Image(ref=f"card:{card_id}", caption=caption), job["to"], image_id=media_id)

    async def _failed(self, job: dict[str, Any], org_id: UUID, message_id: UUID, err: ApiError) -> None:
        if err.action == "token_expired":
            self._paused[job["organization_id"]] = time.monotonic() + TOKEN_PAUSE_SECONDS
            log.error(
                "ALERT: WhatsApp access token expired or invalid; sends paused",
                phone_number_id=job["phone_number_id"],
            )
            raise Park(f"access token rejected (code {err.code}): {err.message}")
        if err.action == "retry":
            raise err  # retries exhausted: the consumer retries later, then parks with the error
        if err.code in TEMPLATE_HELD_CODES and job.get("type") == "template":
            reason = await mark_held(self.rt.app_pool, org_id, job["request"], err.code, err.message)
            self._holds.clear()
            raise Park(f"held: {reason}; replay it once the template is APPROVED again")
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            await advance_status(
                conn, message_id, "failed", error_code=err.code, error_title=err.message[:500]
            )
        log.info("reply failed permanently", code=err.code)

    def _pair(self, to: str) -> AsyncLimiter:
        limiter = self._pairs.pop(to, None)
        if limiter is None:
            burst = self.rt.settings.pair_rate_burst
            limiter = AsyncLimiter(burst, burst / self.rt.settings.pair_rate_per_second)
        self._pairs[to] = limiter
        # A recipient whose bucket has drained needs no limiter of its own: a new one would behave the same.
        # Forgetting up to two drained ones per send keeps this to the recipients of the last few seconds, so
        # the sender's memory does not grow with every contact it has ever answered.
        for _ in range(2):
            oldest = next(iter(self._pairs.values()))
            if oldest is limiter or not oldest.has_capacity(oldest.max_rate):
                break
            self._pairs.popitem(last=False)
        while len(self._pairs) > 100_000:  # a flood of distinct recipients: forget the least recently seen
            self._pairs.popitem(last=False)
        return limiter
