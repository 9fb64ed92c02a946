"""Applier of the media module: a voice note downloaded (engine/whatsapp/media.py, with the organisation's token)
and transcribed (engine/ai.py, OpenAI's audio transcriptions), inside the message's transaction and within the
model's time budget. The words come back as a typed-looking ``Inbound`` (kind ``VOICE_TEXT``), so the router
handles them like any text; without a model, or when either step fails, ``VoiceNoteNotTranscribed``. A
transcription is charged ``prices.ai_transcription`` (default 1 token)."""

from __future__ import annotations

from engine.ai import AIUnavailable
from engine.logging import get_logger
from engine.turn import Turn
from engine.wallet import price_of
from engine.whatsapp.media import MediaClient, download_with_retries
from engine.whatsapp.outbound import ApiError
from state_machines.base import Inbound
from state_machines.media import VOICE_TEXT, TranscribeVoiceNote, VoiceNoteNotTranscribed

log = get_logger(__name__)
VOICE_NOTE_MAX_BYTES = 16 * 1024 * 1024  # WhatsApp's audio limit
DOWNLOAD_ATTEMPTS = 2  # a message's transaction waits on it: one retry at most


async def transcribe_voice_note(turn: Turn, effect: TranscribeVoiceNote) -> Inbound | VoiceNoteNotTranscribed:
    rt = turn.runtime
    ai = getattr(rt, "ai", None)
    if ai is None:
        return VoiceNoteNotTranscribed("not_configured")
    media = MediaClient(
        rt.whatsapp_http, str(rt.settings.whatsapp_api_base_url), rt.settings.whatsapp_api_version
    )
    try:
        note = await download_with_retries(
            media,
            effect.media_id,
            turn.org.access_token,
            max_bytes=VOICE_NOTE_MAX_BYTES,
            attempts=DOWNLOAD_ATTEMPTS,
        )
        words = await ai.transcribe(note.data, note.mime_type, language=effect.language)
    except (ApiError, AIUnavailable) as err:
        log.warning("voice note not transcribed", media_id=effect.media_id, error=str(err)[:300])
        return VoiceNoteNotTranscribed("failed")
    price = price_of("ai_transcription", turn.org.settings)
    if price > 0:
        await turn.charge(
            price, module="media", action="ai_transcription", metadata={"model": ai.transcription_model}
        )
    if not words:
        return VoiceNoteNotTranscribed("empty")
    return Inbound(text=words, kind=VOICE_TEXT)
