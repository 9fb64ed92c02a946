"""Texts of "My tickets": a contact's own tickets and their QR codes sent again."""

TEXTS: dict[str, dict[str, str]] = {
    "my_tickets.summary_one": {
        "en": "🎟 Your ticket for an upcoming event:",
        "sw": "🎟 Tiketi yako ya tukio lijalo:",
    },
    "my_tickets.summary_other": {
        "en": "🎟 Your {count} tickets for upcoming events:",
        "sw": "🎟 Tiketi zako {count} za matukio yajayo:",
    },
    "my_tickets.used": {"en": "{count} used", "sw": "{count} zimetumika"},
    "my_tickets.qr_again": {
        "en": "Here are their QR codes again: show each one at the entrance.",
        "sw": "Hizi hapa tena misimbo yake ya QR: onyesha kila mmoja mlangoni.",
    },
    "my_tickets.caption": {
        "en": "🎟 {event}\n{holder}\n{code}",
        "sw": "🎟 {event}\n{holder}\n{code}",
    },
    "my_tickets.menu_hint": {
        "en": "Send MENU to see what's on offer.",
        "sw": "Tuma MWANZO kuona tunachotoa.",
    },
    "my_tickets.none": {
        "en": "You have no tickets for upcoming events.",
        "sw": "Huna tiketi za matukio yajayo.",
    },
    "my_tickets.not_yours": {
        "en": "I couldn't find a ticket {code} among your tickets.",
        "sw": "Sikupata tiketi {code} kati ya tiketi zako.",
    },
}
