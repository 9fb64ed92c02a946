"""The media client (engine/whatsapp/media.py) against the WhatsApp simulator over real HTTP: uploads, the
two-step download with the organisation's token, expired URLs, digests, size limits, retried faults, and the
media reference of inbound messages (the shared real payloads)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from engine.whatsapp.client import new_session
from engine.whatsapp.media import (
    MediaClient,
    digest_matches,
    download_with_retries,
    inbound_media,
)
from engine.whatsapp.outbound import ApiError
from engine.whatsapp.webhook import parse_envelope, split_envelope
from simulators.whatsapp import WhatsAppSimulator
from tests.helpers import shared_dir

PNID, TOKEN = "106540352242922", "token-media"
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40  # the bytes are what matters, not a valid JPEG


@pytest.fixture
async def wa() -> AsyncIterator[WhatsAppSimulator]:
    sim = WhatsAppSimulator({PNID: TOKEN})
    await sim.start()
    yield sim
    await sim.stop()


@pytest.fixture
async def client(wa: WhatsAppSimulator) -> AsyncIterator[MediaClient]:
    session = new_session()
    yield MediaClient(session, wa.base_url, "v23.0")
    await session.close()


async def test_upload_then_download_the_same_bytes(wa: WhatsAppSimulator, client: MediaClient) -> None:
    media_id = await client.upload(PNID, TOKEN, PHOTO, "image/jpeg", "card.jpg")
    info = await client.info(media_id, TOKEN)
    assert info.mime_type == "image/jpeg" and info.file_size == len(PHOTO)
    assert info.sha256 == hashlib.sha256(PHOTO).hexdigest()
    media = await client.download(media_id, TOKEN)
    assert media.data == PHOTO and media.mime_type == "image/jpeg"
    assert media.sha256 == hashlib.sha256(PHOTO).hexdigest()
    assert [d["id"] for d in wa.downloads] == [media_id]


async def test_a_users_photo_needs_a_token_the_api_knows(wa: WhatsAppSimulator, client: MediaClient) -> None:
    media_id = wa.add_media(PHOTO, "image/jpeg")
    assert (await client.download(media_id, TOKEN)).data == PHOTO
    with pytest.raises(ApiError) as refused:
        await client.download(media_id, "not-a-token")
    assert refused.value.action == "token_expired" and refused.value.http_status == 401


async def test_the_number_s_media_needs_that_number_s_token(
    wa: WhatsAppSimulator, client: MediaClient
) -> None:
    wa.tokens["999"] = "other-token"
    media_id = await client.upload(PNID, TOKEN, PHOTO, "image/jpeg")
    with pytest.raises(ApiError) as refused:
        await client.info(media_id, "other-token")
    assert refused.value.action == "token_expired"


async def test_unknown_media_is_a_permanent_error(client: MediaClient) -> None:
    with pytest.raises(ApiError) as unknown:
        await download_with_retries(client, "12345", TOKEN)
    assert unknown.value.code == 100 and unknown.value.action == "permanent"


async def test_an_expired_or_altered_download_url_is_refused(
    wa: WhatsAppSimulator, client: MediaClient
) -> None:
    media_id = wa.add_media(PHOTO, "image/jpeg")
    info = await client.info(media_id, TOKEN)
    session = client._session
    async with session.get(
        info.url.replace("sig=", "sig=0"), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as r:
        assert r.status == 400
    async with session.get(info.url) as r:  # the URL alone is not enough: the token goes with it
        assert r.status == 401
    wa.media_url_seconds = -1
    with pytest.raises(ApiError) as expired:
        await client.download(media_id, TOKEN)
    assert expired.value.http_status == 404 and "expired" in expired.value.message


async def test_transient_faults_on_both_steps_are_retried(wa: WhatsAppSimulator, client: MediaClient) -> None:
    media_id = wa.add_media(PHOTO, "image/png")
    wa.add_faults(
        [
            {"endpoint": "media_info", "status": 500},
            {"endpoint": "media_download", "status": 503},
            {"endpoint": "media_info", "status": 429, "code": 130429},
        ]
    )
    media = await download_with_retries(client, media_id, TOKEN)
    assert media.data == PHOTO and wa.faults == []
    assert len(wa.downloads) == 1  # one failed download, then the one that was served


async def test_a_corrupted_transfer_is_retried_then_refused(
    wa: WhatsAppSimulator, client: MediaClient
) -> None:
    media_id = wa.add_media(PHOTO, "image/png")
    wa.media[media_id]["sha256"] = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ApiError) as corrupted:
        await download_with_retries(client, media_id, TOKEN, attempts=2)
    assert "SHA-256" in corrupted.value.message
    assert len(wa.downloads) == 2


async def test_media_over_the_limit_is_refused(wa: WhatsAppSimulator, client: MediaClient) -> None:
    media_id = wa.add_media(PHOTO, "image/jpeg")
    with pytest.raises(ApiError) as big:
        await download_with_retries(client, media_id, TOKEN, max_bytes=1000)
    assert big.value.http_status == 413 and big.value.action == "permanent"
    wa.media[media_id]["file_size"] = None  # not announced: the transfer itself is capped
    with pytest.raises(ApiError):
        await client.download(media_id, TOKEN, max_bytes=1000)
    with pytest.raises(ApiError) as too_big_to_send:
        await client.upload(PNID, TOKEN, b"\0" * (5 * 1024 * 1024 + 1), "image/png")
    assert too_big_to_send.value.action == "permanent"
    assert len(wa.media) == 1  # nothing was uploaded


async def test_upload_faults_come_back_classified(wa: WhatsAppSimulator, client: MediaClient) -> None:
    wa.add_faults([{"endpoint": "media", "status": 400, "code": 131053}])
    with pytest.raises(ApiError) as failed:
        await client.upload(PNID, TOKEN, PHOTO, "image/jpeg")
    assert failed.value.code == 131053 and failed.value.action == "retry"
    closed = MediaClient(aiohttp.ClientSession(), "http://127.0.0.1:9", "v23.0")  # nothing listens there
    try:
        with pytest.raises(ApiError) as unreachable:
            await closed.upload(PNID, TOKEN, PHOTO, "image/jpeg")
        assert unreachable.value.http_status == 0 and unreachable.value.action == "retry"
    finally:
        await closed._session.close()


def test_digests_in_hex_or_base64() -> None:
    digest = hashlib.sha256(PHOTO)
    assert digest_matches(PHOTO, digest.hexdigest())
    assert digest_matches(PHOTO, base64.b64encode(digest.digest()).decode())
    assert digest_matches(PHOTO, "")
    assert not digest_matches(PHOTO, hashlib.sha256(b"x").hexdigest())
    assert not digest_matches(PHOTO, "4654+8g=")


@pytest.mark.parametrize(
    "name, kind",
    [("image_02", "image"), ("image_03", "image"), ("audio_02", "audio"), ("document_02", "document")],
)
def test_inbound_media_of_real_payloads(name: str, kind: str) -> None:
    envelope = parse_envelope(
        json.loads((shared_dir() / "whatsapp" / "payloads" / f"{name}.json").read_bytes())
    )
    message = next(p for p in split_envelope(envelope) if p.kind == "message").payload
    media = inbound_media(message)
    assert media is not None and media.kind == kind
    assert media.media_id == message[kind]["id"] and media.mime_type == message[kind]["mime_type"]


def test_messages_without_media() -> None:
    assert inbound_media({"type": "text", "text": {"body": "hi"}}) is None
    assert inbound_media({"type": "image", "image": {}}) is None
    assert inbound_media({"type": "location", "location": {"latitude": 1}}) is None


def test_the_simulated_users_photo_webhook_carries_what_the_engine_downloads() -> None:
    from simulators.whatsapp import build_media_envelope

    sha = hashlib.sha256(PHOTO)
    envelope = build_media_envelope(
        PNID,
        "254700000000",
        "254712345678",
        "Wanjiku",
        "image",
        {"id": "42", "mime_type": "image/jpeg", "sha256": base64.b64encode(sha.digest()).decode()},
    )
    message = next(p for p in split_envelope(parse_envelope(envelope)) if p.kind == "message").payload
    media = inbound_media(message)
    assert media is not None and media.media_id == "42" and digest_matches(PHOTO, media.sha256)
