"""Texts of RSVPs and the waiting list."""

TEXTS: dict[str, dict[str, str]] = {
    "rsvp.confirmed": {
        "en": "✅ You have a place at {title}. See you there!",
        "sw": "✅ Una nafasi katika {title}. Tukutane huko!",
    },
    "rsvp.already_confirmed": {
        "en": "You already have a place at {title}.",
        "sw": "Tayari una nafasi katika {title}.",
    },
    "rsvp.waiting": {
        "en": "{title} is full. You are number {position} on the waiting list: I will tell you as soon as a place frees up.",
        "sw": "{title} imejaa. Wewe ni nambari {position} kwenye orodha ya kusubiri: nitakuambia nafasi ikipatikana.",
    },
    "rsvp.already_waiting": {
        "en": "You are number {position} on the waiting list for {title}.",
        "sw": "Wewe ni nambari {position} kwenye orodha ya kusubiri ya {title}.",
    },
    "rsvp.closed": {
        "en": "{title} does not take RSVPs.",
        "sw": "{title} haipokei usajili.",
    },
    "rsvp.unknown": {
        "en": "I could not find that registration.",
        "sw": "Sikupata usajili huo.",
    },
    "rsvp.cancelled": {
        "en": "Your place at {title} is cancelled.",
        "sw": "Nafasi yako katika {title} imeghairiwa.",
    },
    "rsvp.left_queue": {
        "en": "You have left the waiting list for {title}.",
        "sw": "Umetoka kwenye orodha ya kusubiri ya {title}.",
    },
    "rsvp.promoted": {
        "en": "🎉 A place freed up: you now have a place at {title}!",
        "sw": "🎉 Nafasi imepatikana: sasa una nafasi katika {title}!",
    },
    "rsvp.button_cancel": {"en": "Cancel my place", "sw": "Ghairi nafasi yangu"},
    "rsvp.button_leave_queue": {"en": "Leave the list", "sw": "Toka kwenye orodha"},
}
