"""The cards role: renders the HypeCards people asked for, outside every conversation's transaction.

The inbound transaction that takes the last answer records a ``generated_cards`` row (pending) and, after it
commits, queues a job on ``p.cards``. Here, per job: read the card and its template (one short tenant
transaction); download the contact's photo through the Cloud API with the organisation's token (retried);
look the inputs' hash up in ``hypecard_images`` (a hit skips rendering), else render on this process's render
thread (niced, so a burst of cards yields the CPU to conversations) and store the image; mark the card
rendered and publish ``card``/``ready`` into the contact's inbound shard, where the conversation sends it (the
sender uploads it). A card that cannot be drawn is marked failed and the user told (``card``/``failed``).

Every step can run twice (a redelivery, a job queued again by the conversation's slow-card timer): a card
already rendered is announced again and the inbound receipt (``card-ready:<id>``) makes that a no-op.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID

from aio_pika.abc import AbstractIncomingMessage

from engine import metrics_worker as metrics
from engine.consumer import Park
from engine.db import tenant_tx
from engine.hypecards import store
from engine.hypecards.fonts import Fonts
from engine.hypecards.render import CardInputs, Renderer, RenderError, input_hash
from engine.hypecards.spec import card_values
from engine.logging import get_logger
from engine.runtime import Runtime
from engine.whatsapp.media import IMAGE_MAX_BYTES, MediaClient, download_with_retries
from engine.whatsapp.outbound import ApiError

log = get_logger(__name__)
PHOTO_MAX_BYTES = IMAGE_MAX_BYTES * 2  # a photo WhatsApp delivers is under 5 MB; room for other clients


async def enqueue(rt: Runtime, org_id: UUID, card_id: UUID, phone_number_id: str, wa_id: str) -> None:
    """Queue a card to render (confirmed). Safe to repeat: the role skips a card that is no longer pending."""
    job = {
        "v": 1,
        "organization_id": str(org_id),
        "card_id": str(card_id),
        "phone_number_id": phone_number_id,
        "wa_id": wa_id,
    }
    await rt.publisher.publish(rt.topology.cards_exchange, "card", job, message_id=f"card:{card_id}")


class CardMaker:
    """One per process: the fonts, the renderer and its thread, the media client."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        s = rt.settings
        self._nice = s.hypecard_render_nice
        # One thread: Pillow's work on one core per process (FreeType faces are not shared across threads).
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="render", initializer=self._lower)
        self.renderer = Renderer(self._thread.submit(Fonts, s.hypecard_emoji_font).result())
        self.media = MediaClient(rt.whatsapp_http, str(s.whatsapp_api_base_url), s.whatsapp_api_version)

    def _lower(self) -> None:
        """Linux niceness is per thread: only rendering yields, the event loop (downloads, acks) does not."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self._nice)
        except (AttributeError, OSError):  # not Linux, or not allowed: render at normal priority
            pass

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    async def handle(self, message: AbstractIncomingMessage) -> None:
        job = json.loads(message.body)
        org_id, card_id = UUID(job["organization_id"]), UUID(job["card_id"])
        org = await self.rt.orgs.get(org_id)
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            card = await conn.fetchrow("SELECT * FROM generated_cards WHERE id = $1", card_id)
            if card is None:
                raise Park(f"no card {card_id}")
            if card["status"] in ("failed", "sent"):
                return  # given up or undrawable (the user was told), or delivered: a copy of its job
            stored = await store.load_template(conn, card["template_id"])
            if stored is None:
                raise Park(f"card {card_id}: its template is gone")
            assets = await store.assets(conn, stored.spec)
            logo = await store.logo(conn)
            wa_number = await conn.fetchval("SELECT phone FROM organizations WHERE id = $1", org_id)
        data: dict[str, Any] = card["input_data"] or {}
        event: dict[str, Any] = {
            "card_id": str(card_id),
            "template_id": str(card["template_id"]),
            "caption": stored.spec.caption or {},
            "share": stored.spec.share or {},
        }
        values = card_values(stored.spec, data.get("answers") or {}, data.get("builtins") or {})
        event["values"] = values
        if card["status"] in ("rendered", "sent"):
            await self._announce(job, "ready", event)
            return
        pictures: dict[str, bytes] = {"logo": logo} if logo else {}
        photo_failed = False
        image_variable = next((v.name for v in stored.spec.variables if v.type == "image"), None)
        if data.get("photo_media_id") and image_variable:
            try:
                media = await download_with_retries(
                    self.media, data["photo_media_id"], org.access_token, max_bytes=PHOTO_MAX_BYTES
                )
                pictures[image_variable] = media.data
            except ApiError as err:
                if err.action == "retry":
                    raise  # WhatsApp unreachable for now: the consumer tries the job again later
                log.warning(
                    "photo download refused; the card is made without it", code=err.code, card_id=str(card_id)
                )
                photo_failed = True
        event["photo_failed"] = photo_failed
        inputs = CardInputs(values, pictures, assets, wa_number or "")
        try:
            digest, hit = await self._image(org_id, stored.spec, inputs)
        except RenderError as err:
            log.warning("card cannot be drawn", card_id=str(card_id), error=str(err))
            async with tenant_tx(self.rt.app_pool, org_id) as conn:
                failed = await conn.fetchval(
                    """UPDATE generated_cards SET status = 'failed', error = $2 WHERE id = $1 AND status = 'pending'
                       RETURNING id""",
                    card_id,
                    str(err)[:1000],
                )
            if failed:
                await self._announce(job, "failed", {"card_id": str(card_id), "reason": str(err)[:200]})
            return
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            rendered = await conn.fetchval(
                """UPDATE generated_cards SET status = 'rendered', input_hash = $2, cache_hit = $3, rendered_at = now(),
                          input_data = input_data || jsonb_build_object('photo_failed', $4::boolean)
                   WHERE id = $1 AND status = 'pending' RETURNING id""",
                card_id,
                digest,
                hit,
                photo_failed,
            )
        if rendered:  # else given up meanwhile: the user was told it failed
            await self._announce(job, "ready", event)

    async def _image(self, org_id: UUID, spec: Any, inputs: CardInputs) -> tuple[str, bool]:
        """The card's image in ``hypecard_images``, found by its inputs' hash or rendered and stored:
        (the hash, whether it was found)."""
        digest = input_hash(spec, inputs, self.renderer.fonts)
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            hit = await store.cached_image(conn, digest) is not None
        metrics.cards.labels("cache_hit" if hit else "rendered").inc()
        if hit:
            return digest, True
        started = time.process_time()
        loop = asyncio.get_running_loop()
        card = await loop.run_in_executor(self._thread, self._render_timed, spec, inputs)
        async with tenant_tx(self.rt.app_pool, org_id) as conn:
            await store.store_image(conn, org_id, card[0], card[1])
        cpu_ms = round((time.process_time() - started) * 1000, 1)
        log.info("card rendered", ms=round(card[1], 1), bytes=len(card[0].data), cpu_ms=cpu_ms)
        return digest, False

    def _render_timed(self, spec: Any, inputs: CardInputs) -> tuple[Any, float]:
        started = time.perf_counter()
        card = self.renderer.render(spec, inputs)
        elapsed = (time.perf_counter() - started) * 1000
        metrics.card_render_seconds.observe(elapsed / 1000)
        return card, elapsed

    async def _announce(self, job: dict[str, Any], kind: str, event: dict[str, Any]) -> None:
        body = {
            "v": 1,
            "kind": "card",
            "type": kind,
            "phone_number_id": job["phone_number_id"],
            "wa_id": job["wa_id"],
            "external_id": f"card-{kind}:{job['card_id']}",
            **event,
        }
        await self.rt.publish_inbound(job["wa_id"], body, body["external_id"])
