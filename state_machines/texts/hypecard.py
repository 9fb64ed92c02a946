"""Texts of HypeCards (a template's own questions, caption and share line come from the content file)."""

TEXTS: dict[str, dict[str, str]] = {
    "hypecard.offer": {
        "en": "🎨 Want a HypeCard to share on your status? It takes a few seconds.",
        "sw": "🎨 Ungependa HypeCard ya kushiriki kwenye status yako? Inachukua sekunde chache.",
    },
    "hypecard.button_get": {"en": "Get my HypeCard", "sw": "Pata HypeCard yangu"},
    "hypecard.button_me": {"en": "Use my name", "sw": "Tumia jina langu"},
    "hypecard.button_skip": {"en": "Skip", "sw": "Ruka"},
    "hypecard.ask_text": {
        "en": "What should the card say for {name}?",
        "sw": "Kadi iandike nini kwa {name}?",
    },
    "hypecard.ask_image": {
        "en": "Send a photo for your card, or tap Skip.",
        "sw": "Tuma picha ya kadi yako, au gusa Ruka.",
    },
    "hypecard.ask_image_required": {
        "en": "Send a photo for your card.",
        "sw": "Tuma picha ya kadi yako.",
    },
    "hypecard.invalid_text": {
        "en": "Please type 1 to {max} characters.",
        "sw": "Tafadhali andika herufi 1 hadi {max}.",
    },
    "hypecard.invalid_number": {
        "en": "Please send a number.",
        "sw": "Tafadhali tuma namba.",
    },
    "hypecard.no_contact_name": {
        "en": "I don't know your name yet, please type it.",
        "sw": "Bado sijui jina lako, tafadhali liandike.",
    },
    "hypecard.not_a_photo": {
        "en": "That isn't a photo. Send one from your gallery or camera.",
        "sw": "Hiyo si picha. Tuma moja kutoka kwenye picha zako au kamera.",
    },
    "hypecard.making": {
        "en": "🎨 Making your card…",
        "sw": "🎨 Ninatengeneza kadi yako…",
    },
    "hypecard.still_making": {
        "en": "Your card is taking a little longer than usual. It will arrive here as soon as it's ready.",
        "sw": "Kadi yako inachukua muda kidogo zaidi ya kawaida. Itafika hapa mara tu itakapokuwa tayari.",
    },
    "hypecard.busy": {
        "en": "Your card is on its way. Send MENU for something else meanwhile.",
        "sw": "Kadi yako inakuja. Tuma MWANZO kwa jambo lingine wakati huo.",
    },
    "hypecard.caption": {
        "en": "Here is your HypeCard!",
        "sw": "HypeCard yako hii hapa!",
    },
    "hypecard.share": {
        "en": "Share it on your WhatsApp status: friends who scan the code come straight to us.",
        "sw": "Ishiriki kwenye status yako ya WhatsApp: marafiki watakaochanganua msimbo watatufikia moja kwa moja.",
    },
    "hypecard.photo_failed": {
        "en": "(I couldn't fetch your photo, so the card was made without it.)",
        "sw": "(Sikuweza kupata picha yako, kwa hivyo kadi imetengenezwa bila picha.)",
    },
    "hypecard.failed": {
        "en": "Sorry, I couldn't make your card right now. Please try again later. Send MENU to see what's on offer.",
        "sw": "Samahani, sikuweza kutengeneza kadi yako sasa hivi. Tafadhali jaribu tena baadaye. Tuma MWANZO kuona tunachotoa.",
    },
    "hypecard.unavailable": {
        "en": "Sorry, this card is no longer available. Send MENU to see what's on offer.",
        "sw": "Samahani, kadi hii haipatikani tena. Tuma MWANZO kuona tunachotoa.",
    },
    "hypecard.cancelled": {
        "en": "OK, no card.",
        "sw": "Sawa, hakuna kadi.",
    },
    "hypecard.referred": {
        "en": "Karibu! 🎉 {owner} shared a HypeCard with you.",
        "sw": "Karibu! 🎉 {owner} ameshiriki HypeCard nawe.",
    },
    "hypecard.referred_anonymous": {
        "en": "Karibu! 🎉 Someone shared a HypeCard with you.",
        "sw": "Karibu! 🎉 Mtu ameshiriki HypeCard nawe.",
    },
    "hypecard.offer_own": {
        "en": "Get a card of your own to share:",
        "sw": "Pata kadi yako mwenyewe ya kushiriki:",
    },
}
