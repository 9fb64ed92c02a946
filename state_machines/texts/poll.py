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
        "en": "Sorry, this poll has closed.",
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
    # Swahili "kura" is the same word for one vote and many (N class); the verb agrees instead elsewhere.
    "poll.results_one": {
        "en": "Results so far ({count} vote):",
        "sw": "Matokeo hadi sasa (kura {count}):",
    },
    "poll.results_other": {
        "en": "Results so far ({count} votes):",
        "sw": "Matokeo hadi sasa (kura {count}):",
    },
    "poll.results_final_one": {
        "en": "Final results ({count} vote):",
        "sw": "Matokeo ya mwisho (kura {count}):",
    },
    "poll.results_final_other": {
        "en": "Final results ({count} votes):",
        "sw": "Matokeo ya mwisho (kura {count}):",
    },
}
