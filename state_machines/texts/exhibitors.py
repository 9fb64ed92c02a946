"""Texts of the exhibitors' booths, catalogues and leads."""

TEXTS: dict[str, dict[str, str]] = {
    "exhibitors.welcome": {
        "en": "👋 Welcome to *{exhibitor}* (booth {booth}).",
        "sw": "👋 Karibu *{exhibitor}* (banda {booth}).",
    },
    "exhibitors.no_booth": {
        "en": "I could not find booth {booth}. Check the code on the booth, or send MENU.",
        "sw": "Sikupata banda {booth}. Angalia msimbo ulio kwenye banda, au tuma MENU.",
    },
    "exhibitors.gone": {
        "en": "That exhibitor is no longer listed.",
        "sw": "Mwonyeshaji huyo hayupo tena kwenye orodha.",
    },
    "exhibitors.none": {
        "en": "No exhibitors are listed yet.",
        "sw": "Bado hakuna waonyeshaji kwenye orodha.",
    },
    "exhibitors.list": {
        "en": "Exhibitors: tap one to see its profile.",
        "sw": "Waonyeshaji: gusa mmoja kuona maelezo yake.",
    },
    "exhibitors.button_open": {"en": "Exhibitors", "sw": "Waonyeshaji"},
    "exhibitors.button_contact": {"en": "Contact me", "sw": "Niwasiliane nami"},
    "exhibitors.button_catalogue": {"en": "Catalogue", "sw": "Bidhaa"},
    "exhibitors.button_brochure": {"en": "Brochure", "sw": "Brosha"},
    "exhibitors.button_products": {"en": "Products", "sw": "Bidhaa"},
    "exhibitors.catalogue": {
        "en": "*{exhibitor}*: tap a product to see it.",
        "sw": "*{exhibitor}*: gusa bidhaa kuiona.",
    },
    "exhibitors.no_products": {
        "en": "{exhibitor} has not listed products yet.",
        "sw": "{exhibitor} bado hawajaorodhesha bidhaa.",
    },
    "exhibitors.product_gone": {
        "en": "That product is no longer in {exhibitor}'s catalogue.",
        "sw": "Bidhaa hiyo haipo tena kwenye orodha ya {exhibitor}.",
    },
    "exhibitors.no_brochure": {
        "en": "{exhibitor} has no brochure to send.",
        "sw": "{exhibitor} hawana brosha ya kutuma.",
    },
    "exhibitors.brochure": {"en": "{exhibitor} – brochure", "sw": "{exhibitor} – brosha"},
    "exhibitors.your_name": {"en": "your name", "sw": "jina lako"},
    "exhibitors.consent": {
        "en": (
            "{exhibitor} would like to contact you. May we share your name ({name}) and WhatsApp number ({phone}) "
            "with the {exhibitor} team for this?"
        ),
        "sw": (
            "{exhibitor} wangependa kuwasiliana nawe. Je, tunaweza kushiriki jina lako ({name}) na nambari yako ya "
            "WhatsApp ({phone}) na timu ya {exhibitor} kwa ajili hiyo?"
        ),
    },
    "exhibitors.button_yes": {"en": "Yes, share", "sw": "Ndiyo, shiriki"},
    "exhibitors.button_no": {"en": "No thanks", "sw": "Hapana, asante"},
    "exhibitors.not_shared": {
        "en": "OK, nothing was shared.",
        "sw": "Sawa, hakuna kilichoshirikiwa.",
    },
    "exhibitors.lead_dropped": {
        "en": "OK, nothing was shared.",
        "sw": "Sawa, hakuna kilichoshirikiwa.",
    },
    "exhibitors.ask_interest": {
        "en": "How interested are you?",
        "sw": "Una nia kiasi gani?",
    },
    "exhibitors.interest_5": {"en": "5 – Ready to buy", "sw": "5 – Niko tayari kununua"},
    "exhibitors.interest_4": {"en": "4 – Very interested", "sw": "4 – Nina nia sana"},
    "exhibitors.interest_3": {"en": "3 – Interested", "sw": "3 – Nina nia"},
    "exhibitors.interest_2": {"en": "2 – A little", "sw": "2 – Kidogo"},
    "exhibitors.interest_1": {"en": "1 – Just looking", "sw": "1 – Naangalia tu"},
    "exhibitors.ask_note": {
        "en": "Anything they should know? Type a short note, or SKIP.",
        "sw": "Kuna jambo wanalopaswa kujua? Andika ujumbe mfupi, au RUKA.",
    },
    "exhibitors.lead_saved": {
        "en": "✅ Thank you! {exhibitor} has your details and will contact you.",
        "sw": "✅ Asante! {exhibitor} wamepata maelezo yako na watawasiliana nawe.",
    },
    "exhibitors.lead_saved_later": {
        "en": "✅ Thank you! {exhibitor} will get your details and contact you.",
        "sw": "✅ Asante! {exhibitor} watapata maelezo yako na kuwasiliana nawe.",
    },
    "exhibitors.product": {"en": "product", "sw": "bidhaa"},
    "exhibitors.new_lead": {
        "en": "🆕 New lead: {visitor}, interest {interest}/5{product}",
        "sw": "🆕 Mteja mpya: {visitor}, nia {interest}/5{product}",
    },
    "exhibitors.new_lead_for": {
        "en": "For {exhibitor}. Tap the button once you have followed up.",
        "sw": "Kwa {exhibitor}. Gusa kitufe ukishawasiliana naye.",
    },
    "exhibitors.button_followed_up": {"en": "Followed up", "sw": "Nimewasiliana"},
    "exhibitors.followed_up": {
        "en": "👍 Marked followed up: {visitor} ({exhibitor}).",
        "sw": "👍 Imewekwa kuwa umewasiliana: {visitor} ({exhibitor}).",
    },
    "exhibitors.followed_up_already": {
        "en": "{visitor} was already marked followed up.",
        "sw": "{visitor} alishawekwa kuwa amewasiliana.",
    },
    "exhibitors.followed_up_not_staff": {
        "en": "Only {exhibitor}'s staff can mark its leads.",
        "sw": "Ni wafanyakazi wa {exhibitor} pekee wanaoweza kuweka alama kwa wateja wake.",
    },
    "exhibitors.followed_up_unknown": {
        "en": "I could not find that lead.",
        "sw": "Sikumpata mteja huyo.",
    },
}
