"""Texts of the menu of offers."""

TEXTS: dict[str, dict[str, str]] = {
    "menu.body": {
        "en": "What would you like to do? Choose an option.",
        "sw": "Ungependa kufanya nini? Chagua moja.",
    },
    "menu.body_org": {
        "en": "Welcome to {org}! What would you like to do? Choose an option.",
        "sw": "Karibu {org}! Ungependa kufanya nini? Chagua moja.",
    },
    "menu.button": {
        "en": "Menu",
        "sw": "Menyu",
    },
    "menu.gone": {
        "en": "Sorry, that is no longer available.",
        "sw": "Samahani, hicho hakipatikani tena.",
    },
    "menu.empty": {
        "en": "There is nothing on offer right now. Please check again later. Send HELP to see what you can do.",
        "sw": "Hakuna kinachotolewa kwa sasa. Tafadhali angalia tena baadaye. Tuma MSAADA kuona unachoweza kufanya.",
    },
}
