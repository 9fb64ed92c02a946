"""Texts of knowledge-base answers and free-text understanding."""

TEXTS: dict[str, dict[str, str]] = {
    "knowledge.not_found": {
        "en": "Sorry, I don't know the answer to that.",
        "sw": "Samahani, sijui jibu la swali hilo.",
    },
    "knowledge.not_understood": {
        "en": "Sorry, I didn't understand that.",
        "sw": "Samahani, sikuelewa hilo.",
    },
    "knowledge.found_passage": {
        "en": "Here is what I found:\n\n{passage}",
        "sw": "Hiki ndicho nilichopata:\n\n{passage}",
    },
    "knowledge.from_passage": {
        "en": "Here is what I found:\n\n{passage}\n\nSend MENU to see what's on offer.",
        "sw": "Hiki ndicho nilichopata:\n\n{passage}\n\nTuma MWANZO kuona tunachotoa.",
    },
}
