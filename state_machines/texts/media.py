"""Texts for messages that are not words (state_machines/media.py)."""

TEXTS: dict[str, dict[str, str]] = {
    "media.outside_flow": {
        "en": "I can read text: reply with a number or tap a button.",
        "sw": "Ninaweza kusoma maandishi tu: jibu kwa nambari au gusa kitufe.",
    },
    "media.type_your_answer": {
        "en": "Please type your answer.",
        "sw": "Tafadhali andika jibu lako.",
    },
    "media.tap_your_answer": {
        "en": "Please tap a button or reply with a number.",
        "sw": "Tafadhali gusa kitufe au jibu kwa nambari.",
    },
    "media.voice_not_understood": {
        "en": "Sorry, I can't listen to voice notes. Please type your message.",
        "sw": "Samahani, siwezi kusikiliza ujumbe wa sauti. Tafadhali andika ujumbe wako.",
    },
}
