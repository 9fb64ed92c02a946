"""Texts of polls."""

TEXTS: dict[str, dict[str, str]] = {
    "poll.multi_hint": {
        "en": "You can choose several: reply with their numbers, e.g. 1, 3",
        "sw": "Unaweza kuchagua zaidi ya moja: jibu kwa nambari zake, mfano 1, 3",
    },
    "poll.invalid": {
        "en": "Please reply with a number from 1 to {count}.",
        "sw": "Tafadhali jibu kwa nambari kutoka 1 hadi {count}.",
    },
    "poll.invalid_multiple": {
        "en": "Please reply with one or more numbers from 1 to {count}, e.g. 1, 3.",
        "sw": "Tafadhali jibu kwa nambari moja au zaidi kutoka 1 hadi {count}, mfano 1, 3.",
    },
    "poll.closed": {
        "en": "Sorry, this poll is closed.",
        "sw": "Samahani, kura hii imefungwa.",
    },
    "poll.unavailable": {
        "en": "Sorry, this poll is no longer available.",
        "sw": "Samahani, kura hii haipatikani tena.",
    },
    "poll.already_voted": {
        "en": "You have already voted in this poll.",
        "sw": "Tayari umepiga kura katika kura hii.",
    },
    "poll.thanks": {
        "en": "Thank you for voting!",
        "sw": "Asante kwa kupiga kura!",
    },
    "poll.changed": {
        "en": "Your vote has been changed.",
        "sw": "Kura yako imebadilishwa.",
    },
    "poll.results": {
        "en": "Results so far ({total} votes):",
        "sw": "Matokeo hadi sasa (kura {total}):",
    },
}
