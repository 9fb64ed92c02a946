"""What the bot does with messages that are not words: reactions, stickers, photos, voice notes, locations.

- Reactions (and edits, deletions, system notices) are taken silently: no reply, no charge, no failure.
- A voice note is transcribed when the engine can (``TranscribeVoiceNote``: the engine downloads it and asks
  the transcription model; the text comes back as an ``Inbound`` of kind "voice" and is handled as if typed);
  when it cannot, ``VoiceNoteNotTranscribed`` and the polite line.
- Other media (a photo without a caption, a sticker, a document, a location, a contact card) outside a flow:
  one short line, "I can read text: reply with a number or tap a button", not the whole menu each time;
  inside a flow that wants words: "please type your answer" and the question again, not a failed answer. A
  survey question of type image or location takes the photo or the location as its answer (survey.py).
Pure: the router (conversation.py) calls ``silent``, ``needs_words`` and the replies below.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from state_machines.base import Buttons, Context, Effect, Inbound, ListMenu, Reply, State, Step, Text
from state_machines.i18n import t

SILENT_KINDS = frozenset({"reaction", "edit", "revoke", "system", "request_welcome"})
VOICE = "voice"  # an audio message recorded in the app
VOICE_TEXT = "voice_text"  # the words of a transcribed voice note, handled as typed text
WORD_KINDS = frozenset({"text", "interactive", "button", VOICE_TEXT})  # what carries words
MEDIA_KINDS = frozenset({"image", "video", "audio", "voice", "document", "sticker", "location", "contacts"})


@dataclass(frozen=True)
class TranscribeVoiceNote(Effect):
    """Download the voice note and transcribe it; answered by an ``Inbound`` of kind ``VOICE_TEXT`` with the
    words, or by ``VoiceNoteNotTranscribed``."""

    media_id: str
    language: str


@dataclass(frozen=True)
class VoiceNoteNotTranscribed:
    reason: str  # "not_configured" | "failed" | "empty"


def silent(event: Inbound) -> bool:
    return event.kind in SILENT_KINDS


def needs_words(event: Inbound) -> bool:
    """A message with nothing to read: media without a caption, a location, a sticker ... (not a tap)."""
    return event.choice_id is None and event.kind not in WORD_KINDS and not event.text.strip()


def transcribe(event: Inbound, state: State, ctx: Context) -> Step | None:
    """A voice note the engine may be able to turn into words; the state stays until the words come back."""
    if event.kind != VOICE or not event.media_id:
        return None
    return Step(state, (), (TranscribeVoiceNote(event.media_id, ctx.language),))


def outside_flow(ctx: Context) -> tuple[Reply, ...]:
    return (Text(t("media.outside_flow", ctx.language)),)


def inside_flow(ctx: Context, reprompt: tuple[Reply, ...]) -> tuple[Reply, ...]:
    """What the step wants, on top of the question it answers (one message): "Please type your answer" for a
    typed answer, "tap a button or reply with a number" when the question offers choices."""
    if not reprompt:
        return (Text(t("media.type_your_answer", ctx.language)),)
    first = reprompt[0]
    if isinstance(first, Text):
        return (Text(f"{t('media.type_your_answer', ctx.language)}\n\n{first.body}"), *reprompt[1:])
    if isinstance(first, Buttons | ListMenu):
        return (
            replace(first, body=f"{t('media.tap_your_answer', ctx.language)}\n\n{first.body}"),
            *reprompt[1:],
        )
    return (Text(t("media.type_your_answer", ctx.language)), *reprompt)


def not_transcribed(state: State, ctx: Context, reprompt: tuple[Reply, ...]) -> Step:
    """A voice note we could not listen to: the polite line (and the question again inside a flow)."""
    line = Text(t("media.voice_not_understood", ctx.language))
    return Step(state, (line, *reprompt))
