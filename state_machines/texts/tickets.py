"""Texts of the ticket purchase (``tickets.*``) and of the staff check-in (``checkin.*``)."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    # ---------------------------------------------------------------- choosing the event's ticket type
    "tickets.event_intro": {
        "en": "🎟 *{event}*\n📅 {when}\n📍 {venue}\n\n{prices}\n\nWhich ticket would you like?",
        "sw": "🎟 *{event}*\n📅 {when}\n📍 {venue}\n\n{prices}\n\nUngependa tiketi ipi?",
    },
    "tickets.free": {"en": "Free", "sw": "Bure"},
    "tickets.sold_out_note": {"en": "Sold out: {names}", "sw": "Zimeisha: {names}"},
    "tickets.reserved_note": {
        "en": "Reserved by buyers paying now (may free up): {names}",
        "sw": "Zimeshikiliwa na wanunuzi wanaolipa sasa (huenda zikapatikana): {names}",
    },
    "tickets.reserved_all": {
        "en": "Sorry, the last tickets for {event} are reserved by buyers who are paying right now. Some may "
        "free up in a few minutes: please try again shortly.",
        "sw": "Samahani, tiketi za mwisho za {event} zimeshikiliwa na wanunuzi wanaolipa sasa hivi. Baadhi "
        "huenda zikapatikana baada ya dakika chache: tafadhali jaribu tena baadaye kidogo.",
    },
    "tickets.event_cancelled": {
        "en": "Sorry, {event} has been cancelled, so tickets can no longer be bought. Nothing was charged.",
        "sw": "Samahani, {event} limefutwa, kwa hivyo tiketi haziwezi kununuliwa tena. Hakuna kilichotozwa.",
    },
    "tickets.cancelled_refund": {
        "en": "Sorry, {event} was cancelled while you were paying. Your payment of {amount} is recorded for a "
        "refund to your M-Pesa number.",
        "sw": "Samahani, {event} lilifutwa ulipokuwa ukilipa. Malipo yako ya {amount} yamerekodiwa ili "
        "urejeshewe kwenye namba yako ya M-Pesa.",
    },
    "tickets.limit_reached_one": {
        "en": "Sorry, {type} tickets are limited to {count} per person, and you already have it.",
        "sw": "Samahani, tiketi za {type} ni {count} tu kwa kila mtu, na tayari unayo.",
    },
    "tickets.limit_reached_other": {
        "en": "Sorry, {type} tickets are limited to {count} per person, and you already have {have}.",
        "sw": "Samahani, tiketi za {type} ni {count} tu kwa kila mtu, na tayari una {have}.",
    },
    "tickets.list_button": {"en": "Tickets", "sw": "Tiketi"},
    "tickets.invalid_type": {
        "en": "Please choose one of the ticket types below.",
        "sw": "Tafadhali chagua mojawapo ya aina za tiketi hapa chini.",
    },
    "tickets.event_unavailable": {
        "en": "Sorry, this event is no longer available.",
        "sw": "Samahani, tukio hili halipatikani tena.",
    },
    "tickets.not_on_sale": {
        "en": "Sorry, tickets for {event} are not on sale right now.",
        "sw": "Samahani, tiketi za {event} haziuzwi kwa sasa.",
    },
    "tickets.sales_open_on": {
        "en": "Tickets for {event} go on sale on {when}. Please come back then.",
        "sw": "Tiketi za {event} zitaanza kuuzwa tarehe {when}. Tafadhali rudi wakati huo.",
    },
    "tickets.sold_out_all": {
        "en": "Sorry, {event} is sold out.",
        "sw": "Samahani, tiketi zote za {event} zimeisha.",
    },
    # ---------------------------------------------------------------- quantity
    "tickets.quantity_prompt": {
        "en": "{type}: {price} each.\nHow many tickets? Tap or type a number from 1 to {max}.",
        "sw": "{type}: {price} kila moja.\nTiketi ngapi? Gusa au andika namba kutoka 1 hadi {max}.",
    },
    "tickets.quantity_prompt_free": {
        "en": "{type}: free.\nHow many tickets? Tap or type a number from 1 to {max}.",
        "sw": "{type}: bure.\nTiketi ngapi? Gusa au andika namba kutoka 1 hadi {max}.",
    },
    "tickets.quantity_not_number": {
        "en": "Please send a number from 1 to {max}.",
        "sw": "Tafadhali tuma namba kutoka 1 hadi {max}.",
    },
    # Swahili "tiketi" is one word for one and many (N class): the verb agrees, i- for one, zi- for several.
    "tickets.quantity_over_remaining_one": {
        "en": "Sorry, only {count} ticket is left.",
        "sw": "Samahani, imebaki tiketi {count} tu.",
    },
    "tickets.quantity_over_remaining_other": {
        "en": "Sorry, only {count} tickets are left.",
        "sw": "Samahani, zimebaki tiketi {count} tu.",
    },
    "tickets.quantity_over_max_one": {
        "en": "Sorry, you can buy at most {count} ticket in one order.",
        "sw": "Samahani, unaweza kununua tiketi {count} tu kwa oda moja.",
    },
    "tickets.quantity_over_max_other": {
        "en": "Sorry, you can buy at most {count} tickets in one order.",
        "sw": "Samahani, unaweza kununua tiketi {count} tu kwa oda moja.",
    },
    # ---------------------------------------------------------------- holder
    "tickets.name_prompt": {
        "en": "Whose name should be on the tickets? Type the full name.",
        "sw": "Tiketi ziwe kwa jina la nani? Andika jina kamili.",
    },
    "tickets.name_prompt_me": {
        "en": "Whose name should be on the tickets? Type the full name, or tap *Use my name* for {name}.",
        "sw": "Tiketi ziwe kwa jina la nani? Andika jina kamili, au gusa *Tumia jina langu* kwa {name}.",
    },
    "tickets.button_me": {"en": "Use my name", "sw": "Tumia jina langu"},
    "tickets.invalid_name": {
        "en": "Please type a name of 2 to 100 characters.",
        "sw": "Tafadhali andika jina lenye herufi 2 hadi 100.",
    },
    "tickets.no_contact_name": {
        "en": "I don't know your name yet, please type it.",
        "sw": "Bado sijui jina lako, tafadhali liandike.",
    },
    "tickets.email_prompt": {
        "en": "Which email address should get a copy of the tickets? Type it, or tap Skip.",
        "sw": "Nakala ya tiketi itumwe kwa barua pepe ipi? Iandike, au gusa Ruka.",
    },
    "tickets.button_skip": {"en": "Skip", "sw": "Ruka"},
    "tickets.invalid_email": {
        "en": "That doesn't look like an email address (for example jane@example.com).",
        "sw": "Hiyo haionekani kuwa anwani ya barua pepe (kwa mfano jane@example.com).",
    },
    # ---------------------------------------------------------------- confirmation
    "tickets.confirm_prompt": {
        "en": "Please confirm your order:\n{event}\n{quantity} × {type}\nName: {name}\nEmail: {email}\n*Total: {total}*",
        "sw": "Tafadhali thibitisha oda yako:\n{event}\n{quantity} × {type}\nJina: {name}\nBarua pepe: {email}\n*Jumla: {total}*",
    },
    "tickets.confirm_prompt_no_email": {
        "en": "Please confirm your order:\n{event}\n{quantity} × {type}\nName: {name}\n*Total: {total}*",
        "sw": "Tafadhali thibitisha oda yako:\n{event}\n{quantity} × {type}\nJina: {name}\n*Jumla: {total}*",
    },
    "tickets.no_email": {"en": "(none)", "sw": "(hakuna)"},
    "tickets.button_confirm": {"en": "Confirm", "sw": "Thibitisha"},
    "tickets.button_cancel": {"en": "Cancel", "sw": "Ghairi"},
    "tickets.invalid_confirm": {
        "en": "Please tap Confirm or Cancel.",
        "sw": "Tafadhali gusa Thibitisha au Ghairi.",
    },
    # ---------------------------------------------------------------- holding, paying, issuing
    "tickets.holding_wait": {
        "en": "One moment, I'm reserving your tickets…",
        "sw": "Subiri kidogo, nahifadhi tiketi zako…",
    },
    "tickets.pay_prompt": {
        "en": "Check your phone and enter your M-Pesa PIN to pay {amount}.",
        "sw": "Angalia simu yako na uweke PIN yako ya M-Pesa kulipa {amount}.",
    },
    "tickets.still_waiting": {
        "en": "Still waiting for your M-Pesa payment of {amount}. Check your phone for the PIN prompt, or tap Cancel.",
        "sw": "Bado tunasubiri malipo yako ya M-Pesa ya {amount}. Angalia simu yako uweke PIN, au gusa Ghairi.",
    },
    "tickets.issuing_wait": {
        "en": "Your payment is in, your tickets are on their way…",
        "sw": "Malipo yako yamepokelewa, tiketi zako zinakuja…",
    },
    "tickets.ticket_caption": {
        "en": "🎟 {event}\n{type}: {holder}\nTicket {n}/{count}: {code}",
        "sw": "🎟 {event}\n{type}: {holder}\nTiketi {n}/{count}: {code}",
    },
    "tickets.issued_paid": {
        "en": "🎉 Payment received (M-Pesa receipt {receipt}). Your tickets for {event}: {count} × {type}. "
        "Show each QR code at the entrance.",
        "sw": "🎉 Malipo yamepokelewa (risiti ya M-Pesa {receipt}). Tiketi zako za {event}: {count} × {type}. "
        "Onyesha kila msimbo wa QR mlangoni.",
    },
    "tickets.issued_paid_no_receipt": {
        "en": "🎉 Payment confirmed by M-Pesa. Your tickets for {event}: {count} × {type}. "
        "Show each QR code at the entrance.",
        "sw": "🎉 Malipo yamethibitishwa na M-Pesa. Tiketi zako za {event}: {count} × {type}. "
        "Onyesha kila msimbo wa QR mlangoni.",
    },
    "tickets.pay_checking": {
        "en": "⏳ We are still waiting for M-Pesa to confirm your payment. Your tickets stay held a little "
        "longer; we will tell you as soon as we know. Please do not pay again.",
        "sw": "⏳ Bado tunasubiri M-Pesa ithibitishe malipo yako. Tiketi zako zimeshikiliwa kwa muda kidogo "
        "zaidi; tutakujulisha mara tu tukijua. Tafadhali usilipe tena.",
    },
    "tickets.pay_unconfirmed": {
        "en": "We could not get a confirmation from M-Pesa, so the tickets were released. If {amount} left "
        "your M-Pesa account, do not pay again: we keep checking, and will send your tickets, or refund you "
        "if none are left.",
        "sw": "Hatukupata uthibitisho kutoka M-Pesa, kwa hivyo tiketi zimeachiliwa. Ikiwa {amount} zilitoka "
        "kwenye akaunti yako ya M-Pesa, usilipe tena: tunaendelea kuangalia, na tutakutumia tiketi zako, au "
        "tutakurudishia pesa ikiwa zimeisha.",
    },
    "tickets.late_issued": {
        "en": "🎉 M-Pesa has now confirmed your payment. Your tickets for {event}: {count} × {type}. "
        "Show each QR code at the entrance.",
        "sw": "🎉 M-Pesa sasa imethibitisha malipo yako. Tiketi zako za {event}: {count} × {type}. "
        "Onyesha kila msimbo wa QR mlangoni.",
    },
    "tickets.late_refund": {
        "en": "M-Pesa has now confirmed your payment of {amount} for {event}, but the tickets are no longer "
        "available. A refund of {amount} is recorded and the organiser will send it back to your M-Pesa "
        "number. Sorry for the trouble.",
        "sw": "M-Pesa sasa imethibitisha malipo yako ya {amount} kwa {event}, lakini tiketi hazipatikani tena. "
        "Urejeshaji wa {amount} umerekodiwa na mwandalizi atazirudisha kwenye namba yako ya M-Pesa. "
        "Samahani kwa usumbufu.",
    },
    "tickets.issued_free": {
        "en": "🎉 You're in! Your tickets for {event}: {count} × {type}. Show each QR code at the entrance.",
        "sw": "🎉 Karibu! Tiketi zako za {event}: {count} × {type}. Onyesha kila msimbo wa QR mlangoni.",
    },
    # ---------------------------------------------------------------- payment failures and retry
    "tickets.pay_failed_insufficient": {
        "en": "Your M-Pesa balance was not enough to pay {amount}.",
        "sw": "Salio lako la M-Pesa halikutosha kulipa {amount}.",
    },
    "tickets.pay_failed_cancelled": {
        "en": "The M-Pesa payment was cancelled on your phone.",
        "sw": "Malipo ya M-Pesa yameghairiwa kwenye simu yako.",
    },
    "tickets.pay_failed_unreachable": {
        "en": "We could not reach your phone with the M-Pesa PIN prompt. Make sure it is on and unlocked.",
        "sw": "Hatukuweza kufikia simu yako na ombi la PIN ya M-Pesa. Hakikisha imewashwa na haijafungwa.",
    },
    "tickets.pay_failed_wrong_pin": {
        "en": "The M-Pesa PIN entered was wrong.",
        "sw": "PIN ya M-Pesa uliyoweka si sahihi.",
    },
    "tickets.pay_failed_other": {
        "en": "The M-Pesa payment did not go through.",
        "sw": "Malipo ya M-Pesa hayakufanikiwa.",
    },
    "tickets.pay_timeout": {
        "en": "The payment timed out: we got no confirmation from M-Pesa in time.",
        "sw": "Muda wa malipo umeisha: hatukupata uthibitisho kutoka M-Pesa kwa wakati.",
    },
    "tickets.pay_request_failed": {
        "en": "We could not start the M-Pesa payment.",
        "sw": "Hatukuweza kuanzisha malipo ya M-Pesa.",
    },
    "tickets.retry_question": {
        "en": "Your tickets are no longer reserved. Would you like to try again?",
        "sw": "Tiketi zako hazijahifadhiwa tena. Ungependa kujaribu tena?",
    },
    "tickets.button_retry": {"en": "Try again", "sw": "Jaribu tena"},
    "tickets.invalid_retry": {
        "en": "Please tap Try again or Cancel.",
        "sw": "Tafadhali gusa Jaribu tena au Ghairi.",
    },
    # ---------------------------------------------------------------- sold out while holding
    "tickets.sold_out_partial_one": {
        "en": "Sorry, only {count} {type} ticket is left. Buy it for {total}?",
        "sw": "Samahani, imebaki tiketi {count} tu ya {type}. Inunue kwa {total}?",
    },
    "tickets.sold_out_partial_other": {
        "en": "Sorry, only {count} {type} tickets are left. Buy {count} for {total}?",
        "sw": "Samahani, zimebaki tiketi {count} tu za {type}. Nunua {count} kwa {total}?",
    },
    "tickets.button_buy": {"en": "Buy {n}", "sw": "Nunua {n}"},
    "tickets.invalid_partial": {
        "en": "Please tap Buy {available} or Cancel, or type a number from 1 to {available}.",
        "sw": "Tafadhali gusa Nunua {available} au Ghairi, au andika namba kutoka 1 hadi {available}.",
    },
    "tickets.sold_out_type": {
        "en": "Sorry, {type} has just sold out.",
        "sw": "Samahani, tiketi za {type} zimeisha sasa hivi.",
    },
    "tickets.reserved_type": {
        "en": "Sorry, the last {type} tickets are reserved by buyers who are paying now; they may free up in "
        "a few minutes.",
        "sw": "Samahani, tiketi za mwisho za {type} zimeshikiliwa na wanunuzi wanaolipa sasa; huenda "
        "zikapatikana baada ya dakika chache.",
    },
    "tickets.reserved_type_final": {
        "en": "Sorry, the last {type} tickets are reserved by buyers who are paying now. Some may free up in "
        "a few minutes: please try again shortly.",
        "sw": "Samahani, tiketi za mwisho za {type} zimeshikiliwa na wanunuzi wanaolipa sasa. Baadhi huenda "
        "zikapatikana baada ya dakika chache: tafadhali jaribu tena baadaye kidogo.",
    },
    "tickets.sold_out_type_final": {
        "en": "Sorry, {type} has just sold out and no other tickets are on sale.",
        "sw": "Samahani, tiketi za {type} zimeisha sasa hivi na hakuna tiketi nyingine zinazouzwa.",
    },
    # ---------------------------------------------------------------- leaving
    "tickets.cancelled": {
        "en": "Your ticket purchase is cancelled.",
        "sw": "Ununuzi wako wa tiketi umeghairiwa.",
    },
    "tickets.too_many_failures": {
        "en": "Sorry, I couldn't understand that, so I've stopped the ticket purchase.",
        "sw": "Samahani, sikuelewa, kwa hivyo nimesimamisha ununuzi wa tiketi.",
    },
    # ---------------------------------------------------------------- staff check-in
    "checkin.staff_only": {
        "en": "Sorry, only event staff can check tickets in. If you have a ticket, show its QR code at the entrance.",
        "sw": "Samahani, ni wahudumu wa tukio pekee wanaoweza kuingiza tiketi. Kama una tiketi, onyesha msimbo wake wa QR mlangoni.",
    },
    "checkin.usage": {
        "en": "Send CHECKIN followed by the ticket code, for example CHECKIN TKT-7Q2M9X.",
        "sw": "Tuma CHECKIN ikifuatiwa na namba ya tiketi, kwa mfano CHECKIN TKT-7Q2M9X.",
    },
    "checkin.valid": {
        "en": "✅ VALID: admit\n{holder}\n{type} · {event}\nCode: {code}",
        "sw": "✅ HALALI: ruhusu kuingia\n{holder}\n{type} · {event}\nNamba: {code}",
    },
    "checkin.already_used": {
        "en": "⛔ ALREADY USED at {time}: do not admit\n{holder}\n{type} · {event}\nCode: {code}",
        "sw": "⛔ IMESHATUMIKA saa {time}: usiruhusu\n{holder}\n{type} · {event}\nNamba: {code}",
    },
    "checkin.already_used_no_time": {
        "en": "⛔ ALREADY USED: do not admit\n{holder}\n{type} · {event}\nCode: {code}",
        "sw": "⛔ IMESHATUMIKA: usiruhusu\n{holder}\n{type} · {event}\nNamba: {code}",
    },
    "checkin.unknown": {
        "en": "❓ UNKNOWN CODE {code}: no ticket has this code. Check it and send it again.",
        "sw": "❓ NAMBA ISIYOJULIKANA {code}: hakuna tiketi yenye namba hii. Ikague na uitume tena.",
    },
    "checkin.wrong_event": {
        "en": "⛔ NOT FOR THIS EVENT: do not admit\nTicket for {event}\n{holder} · {type}\nCode: {code}",
        "sw": "⛔ SI YA TUKIO HILI: usiruhusu\nTiketi ya {event}\n{holder} · {type}\nNamba: {code}",
    },
    "checkin.event_cancelled": {
        "en": "🚫 EVENT CANCELLED: do not admit\n{event} was cancelled\n{holder} · {type}\nCode: {code}",
        "sw": "🚫 TUKIO LIMEFUTWA: usiruhusu\n{event} limefutwa\n{holder} · {type}\nNamba: {code}",
    },
    "checkin.event_ended": {
        "en": "⛔ EVENT ENDED: do not admit\n{event} is over\n{holder} · {type}\nCode: {code}",
        "sw": "⛔ TUKIO LIMEISHA: usiruhusu\n{event} limekwisha\n{holder} · {type}\nNamba: {code}",
    },
    "checkin.not_open_yet": {
        "en": "⏳ DOORS NOT OPEN YET: do not admit\n{event} opens at {time}\n{holder} · {type}\nCode: {code}",
        "sw": "⏳ MILANGO BADO HAIJAFUNGULIWA: usiruhusu\n{event} inafunguliwa {time}\n{holder} · {type}\nNamba: {code}",
    },
    "checkin.event_not_published": {
        "en": "⛔ EVENT NOT OPEN: do not admit\n{event} is not published\n{holder} · {type}\nCode: {code}",
        "sw": "⛔ TUKIO HALIJAFUNGULIWA: usiruhusu\n{event} halijachapishwa\n{holder} · {type}\nNamba: {code}",
    },
    "checkin.cancelled": {
        "en": "🚫 CANCELLED ticket: do not admit\n{holder}\n{type} · {event}\nCode: {code}",
        "sw": "🚫 Tiketi IMEFUTWA: usiruhusu\n{holder}\n{type} · {event}\nNamba: {code}",
    },
}
