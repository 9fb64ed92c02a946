"""Texts of the tickets e-mail (engine/mailer.py)."""

TEXTS: dict[str, dict[str, str]] = {
    "email.tickets_subject": {
        "en": "Your tickets for {event}",
        "sw": "Tiketi zako za {event}",
    },
    "email.tickets_body": {
        "en": "Hello {holder},\n\nHere are your tickets for {event} ({when}, {venue}):\n\n{codes}\n\n"
        "Each QR code is attached: show it at the entrance (on your phone or printed).\n\n{org}",
        "sw": "Habari {holder},\n\nHizi hapa tiketi zako za {event} ({when}, {venue}):\n\n{codes}\n\n"
        "Kila msimbo wa QR umeambatishwa: uonyeshe mlangoni (kwenye simu yako au ukiwa umechapishwa).\n\n{org}",
    },
}
