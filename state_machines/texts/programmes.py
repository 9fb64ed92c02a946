"""Texts of programmes (subscribe and leave in the conversation) and event reminders (engine/programmes.py,
engine/reminders.py). ``{event}`` and ``{when}`` in the cancellation become the broadcast's per-recipient
variables."""

TEXTS: dict[str, dict[str, str]] = {
    "programmes.subscribed": {
        "en": "You are subscribed to {name}. Send {leave} to stop.",
        "sw": "Umejiunga na {name}. Tuma {leave} kuacha.",
    },
    "programmes.subscribed_menu": {
        "en": "You are subscribed to {name}. Choose it in the menu again to stop.",
        "sw": "Umejiunga na {name}. Ichague tena kwenye menyu kuacha.",
    },
    "programmes.unsubscribed": {
        "en": "You will no longer receive {name}. Send {join} to subscribe again.",
        "sw": "Hutapokea tena {name}. Tuma {join} kujiunga tena.",
    },
    "programmes.menu_join": {
        "en": "Subscribe",
        "sw": "Jiunge",
    },
    "programmes.menu_leave": {
        "en": "Subscribed: choose to leave",
        "sw": "Umejiunga: chagua kuacha",
    },
    "programmes.event_cancelled": {
        "en": "We are sorry: {event} on {when} is cancelled.",
        "sw": "Samahani: {event} ya {when} imeghairiwa.",
    },
}
