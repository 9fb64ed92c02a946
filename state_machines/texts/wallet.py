"""Texts the engine sends when an organisation's wallet cannot pay its replies (engine/wallet_pause.py)."""

TEXTS: dict[str, dict[str, str]] = {
    "wallet.paused_notice": {
        "en": "Sorry, we cannot answer right now. Please try again later.",
        "sw": "Samahani, hatuwezi kujibu kwa sasa. Tafadhali jaribu tena baadaye.",
    },
    "wallet.admin_paused": {
        "en": "ChatNation: {org} has run out of tokens, so replies to your contacts are paused since {when}. "
        "Top up the wallet to resume them.",
        "sw": "ChatNation: tokeni za {org} zimeisha, kwa hivyo majibu kwa wateja wako yamesimamishwa tangu {when}. "
        "Ongeza tokeni ili yaendelee.",
    },
}
