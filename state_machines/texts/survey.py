"""Texts of surveys."""

TEXTS: dict[str, dict[str, str]] = {
    "survey.intro_one": {
        "en": "{count} question. Send MENU to pause at any time; you can continue later.",
        "sw": "Swali {count}. Tuma MWANZO kusimama wakati wowote; unaweza kuendelea baadaye.",
    },
    "survey.intro_other": {
        "en": "{count} questions. Send MENU to pause at any time; you can continue later.",
        "sw": "Maswali {count}. Tuma MWANZO kusimama wakati wowote; unaweza kuendelea baadaye.",
    },
    "survey.intro_up_to": {
        "en": "Up to {count} questions: your answers decide which ones. Send MENU to pause at any time; "
        "you can continue later.",
        "sw": "Hadi maswali {count}: majibu yako yanaamua yapi. Tuma MWANZO kusimama wakati wowote; "
        "unaweza kuendelea baadaye.",
    },
    "survey.progress": {"en": "({position}/{total})", "sw": "({position}/{total})"},
    "survey.progress_at_most": {
        "en": "({position} of at most {total})",
        "sw": "({position} kati ya {total} au machache)",
    },
    "survey.resume": {
        "en": "Welcome back to *{title}*. Let's continue where you left off.",
        "sw": "Karibu tena kwenye *{title}*. Tuendelee ulipoishia.",
    },
    "survey.optional_hint": {
        "en": "(optional: send SKIP to skip)",
        "sw": "(si lazima: tuma RUKA kuruka)",
    },
    "survey.multi_hint": {
        "en": "You can choose several: reply with their numbers, e.g. 1, 3",
        "sw": "Unaweza kuchagua zaidi ya moja: jibu kwa nambari zake, mfano 1, 3",
    },
    "survey.yes": {"en": "Yes", "sw": "Ndiyo"},
    "survey.no": {"en": "No", "sw": "Hapana"},
    "survey.skip": {"en": "Skip", "sw": "Ruka"},
    "survey.thanks": {
        "en": "Thank you for completing *{title}*!",
        "sw": "Asante kwa kukamilisha *{title}*!",
    },
    "survey.refused_already_responded": {
        "en": "You have already completed *{title}*. Thank you!",
        "sw": "Tayari umekamilisha *{title}*. Asante!",
    },
    "survey.refused_full": {
        "en": "Sorry, *{title}* has received all the responses it needs.",
        "sw": "Samahani, *{title}* imepata majibu yote inayohitaji.",
    },
    "survey.refused_closed": {
        "en": "Sorry, *{title}* is closed.",
        "sw": "Samahani, *{title}* imefungwa.",
    },
    "survey.refused_not_started": {
        "en": "*{title}* has not started yet. Please try again later.",
        "sw": "*{title}* bado haijaanza. Tafadhali jaribu tena baadaye.",
    },
    "survey.unavailable": {
        "en": "Sorry, this survey is not available.",
        "sw": "Samahani, utafiti huu haupatikani.",
    },
    "survey.reminder": {
        "en": "A reminder: *{title}* is waiting for your answer.",
        "sw": "Kumbusho: *{title}* inasubiri jibu lako.",
    },
    "survey.abandoned_notice": {
        "en": "Your survey *{title}* was closed because of inactivity.",
        "sw": "Utafiti wako *{title}* ulifungwa kwa sababu ya kutokuwa na shughuli.",
    },
    "survey.cancelled": {
        "en": "You left *{title}*.",
        "sw": "Umeacha *{title}*.",
    },
    "survey.invalid_required": {
        "en": "This question needs an answer.",
        "sw": "Swali hili linahitaji jibu.",
    },
    "survey.noun_number": {"en": "a number", "sw": "nambari"},
    "survey.noun_whole_number": {"en": "a whole number", "sw": "nambari kamili"},
    "survey.invalid_number": {
        "en": "Please reply with {noun}, e.g. 12.",
        "sw": "Tafadhali jibu kwa {noun}, mfano 12.",
    },
    "survey.invalid_number_between": {
        "en": "Please reply with {noun} from {min} to {max}.",
        "sw": "Tafadhali jibu kwa {noun} kati ya {min} na {max}.",
    },
    "survey.invalid_number_min": {
        "en": "Please reply with {noun} of at least {min}.",
        "sw": "Tafadhali jibu kwa {noun} isiyopungua {min}.",
    },
    "survey.invalid_number_max": {
        "en": "Please reply with {noun} of at most {max}.",
        "sw": "Tafadhali jibu kwa {noun} isiyozidi {max}.",
    },
    "survey.invalid_choice": {
        "en": "Please reply with a number from 1 to {count}.",
        "sw": "Tafadhali jibu kwa nambari kutoka 1 hadi {count}.",
    },
    "survey.invalid_multiple_choice": {
        "en": "Please reply with one or more numbers from 1 to {count}, e.g. 1, 3.",
        "sw": "Tafadhali jibu kwa nambari moja au zaidi kutoka 1 hadi {count}, mfano 1, 3.",
    },
    "survey.invalid_rating": {
        "en": "Please reply with a number from 1 to 5.",
        "sw": "Tafadhali jibu kwa nambari kutoka 1 hadi 5.",
    },
    "survey.invalid_yes_no": {
        "en": "Please reply YES or NO.",
        "sw": "Tafadhali jibu NDIYO au HAPANA.",
    },
    "survey.invalid_email": {
        "en": "Please reply with an email address, e.g. name@example.com.",
        "sw": "Tafadhali jibu kwa anwani ya barua pepe, mfano jina@mfano.com.",
    },
    "survey.invalid_phone": {
        "en": "Please reply with a Kenyan phone number, e.g. 0712345678.",
        "sw": "Tafadhali jibu kwa nambari ya simu ya Kenya, mfano 0712345678.",
    },
    "survey.invalid_date": {
        "en": "Please reply with a date as DD/MM/YYYY, e.g. 25/12/2024.",
        "sw": "Tafadhali jibu kwa tarehe kama DD/MM/YYYY, mfano 25/12/2024.",
    },
    "survey.image_hint": {
        "en": "(send a photo)",
        "sw": "(tuma picha)",
    },
    "survey.location_hint": {
        "en": "(share a location: tap 📎, then Location)",
        "sw": "(tuma mahali: gusa 📎, kisha Mahali)",
    },
    "survey.invalid_image": {
        "en": "Please send a photo.",
        "sw": "Tafadhali tuma picha.",
    },
    "survey.invalid_location": {
        "en": "Please share a location: tap 📎, then Location.",
        "sw": "Tafadhali tuma mahali: gusa 📎, kisha Mahali.",
    },
    "survey.invalid_text": {
        "en": "Please reply with a text message.",
        "sw": "Tafadhali jibu kwa ujumbe wa maandishi.",
    },
    "survey.invalid_text_too_long": {
        "en": "Please keep your answer under {max} characters.",
        "sw": "Tafadhali jibu kwa herufi zisizozidi {max}.",
    },
}
