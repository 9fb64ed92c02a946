"""Texts of the router: keywords, help, opt-out, language, not understood."""

TEXTS: dict[str, dict[str, str]] = {
    "common.opted_out": {
        "en": "You have been unsubscribed and will get no more messages from us. Send START to subscribe again.",
        "sw": "Umejiondoa na hutapokea ujumbe zaidi kutoka kwetu. Tuma ANZA (START) kujiunga tena.",
    },
    "common.unsubscribed": {
        "en": "You are unsubscribed. Send START to get messages from us again.",
        "sw": "Umejiondoa. Tuma ANZA (START) kupokea ujumbe wetu tena.",
    },
    "common.welcome_back": {
        "en": "Welcome! You are subscribed and will get our messages.",
        "sw": "Karibu! Umejiunga na utapokea ujumbe wetu.",
    },
    "common.help": {
        "en": (
            "You can send these words at any time:\n"
            "MENU – see what's on offer\n"
            "CANCEL – leave what you are doing\n"
            "SKIP – skip an optional question\n"
            "SW – Kiswahili · EN – English\n"
            "STOP – unsubscribe · START – subscribe again"
        ),
        "sw": (
            "Unaweza kutuma maneno haya wakati wowote:\n"
            "MWANZO – kuona tunachotoa\n"
            "GHAIRI – kuacha unachofanya\n"
            "RUKA – kuruka swali lisilo la lazima\n"
            "SW – Kiswahili · EN – English\n"
            "ACHA – kujiondoa · ANZA – kujiunga tena"
        ),
    },
    "common.language_set": {
        "en": "OK, I will write in English.",
        "sw": "Sawa, nitaandika kwa Kiswahili.",
    },
    "common.not_understood": {
        "en": "Sorry, I didn't understand that.",
        "sw": "Samahani, sikuelewa hilo.",
    },
    "common.too_many_failures": {
        "en": "Let's go back to the menu. Your progress is saved: choose the same item to continue.",
        "sw": "Turudi kwenye menyu. Ulipofikia kumehifadhiwa: chagua kitu kile kile kuendelea.",
    },
    "common.cancelled": {
        "en": "OK, cancelled.",
        "sw": "Sawa, imeghairiwa.",
    },
    "common.invalid_tap": {
        "en": "Please tap one of the buttons.",
        "sw": "Tafadhali gusa mojawapo ya vitufe.",
    },
    "common.choose": {
        "en": "Choose",
        "sw": "Chagua",
    },
}
