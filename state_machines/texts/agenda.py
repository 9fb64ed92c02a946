"""Texts of the agenda: sessions, speakers, reminders."""

_WEEKDAYS = {
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    "sw": ("Jtatu", "Jnne", "Jtano", "Alh", "Ijm", "Jmosi", "Jpili"),
}

TEXTS: dict[str, dict[str, str]] = {
    **{f"agenda.weekday_{i}": {"en": _WEEKDAYS["en"][i], "sw": _WEEKDAYS["sw"][i]} for i in range(7)},
    "agenda.menu_item": {"en": "Agenda: {event}", "sw": "Ratiba: {event}"},
    "agenda.none": {
        "en": "There is no agenda to show right now.",
        "sw": "Hakuna ratiba ya kuonyesha kwa sasa.",
    },
    "agenda.home": {
        "en": "*{event}*\nWhat would you like to see?",
        "sw": "*{event}*\nUngependa kuona nini?",
    },
    "agenda.button": {"en": "Open", "sw": "Fungua"},
    "agenda.row_now": {"en": "On now & next", "sw": "Sasa na kinachofuata"},
    "agenda.row_today": {"en": "Today's sessions", "sw": "Vipindi vya leo"},
    "agenda.row_stages": {"en": "By stage or room", "sw": "Kwa jukwaa au ukumbi"},
    "agenda.row_speakers": {"en": "Speakers", "sw": "Wazungumzaji"},
    "agenda.row_rsvp": {"en": "RSVP: get a place", "sw": "Jisajili: pata nafasi"},
    "agenda.row_exhibitors": {"en": "Exhibitors", "sw": "Waonyeshaji"},
    "agenda.row_find": {"en": "Find a booth", "sw": "Tafuta banda"},
    "agenda.button_reserve": {"en": "Reserve a seat", "sw": "Weka nafasi"},
    "agenda.menu_item_info": {"en": "About {event}", "sw": "Kuhusu {event}"},
    "agenda.more": {"en": "More sessions…", "sw": "Vipindi zaidi…"},
    "agenda.no_sessions": {"en": "No sessions.", "sw": "Hakuna vipindi."},
    "agenda.nothing_left": {
        "en": "{event}: no more sessions today.",
        "sw": "{event}: hakuna vipindi zaidi leo.",
    },
    "agenda.now_title": {"en": "*On now*", "sw": "*Sasa hivi*"},
    "agenda.now_nothing": {"en": "Nothing at the moment.", "sw": "Hakuna kitu kwa sasa."},
    "agenda.next_title": {"en": "*Next*", "sw": "*Kinachofuata*"},
    "agenda.today": {"en": "today", "sw": "leo"},
    "agenda.day_title": {
        "en": "*{event}* – sessions {day}. Tap one for details.",
        "sw": "*{event}* – vipindi {day}. Gusa kimoja kwa maelezo.",
    },
    "agenda.stages_title": {
        "en": "*{event}* – choose a stage or room.",
        "sw": "*{event}* – chagua jukwaa au ukumbi.",
    },
    "agenda.room_title": {"en": "*{room}* – sessions:", "sw": "*{room}* – vipindi:"},
    "agenda.session_gone": {
        "en": "That session is no longer on the agenda.",
        "sw": "Kipindi hicho hakipo tena kwenye ratiba.",
    },
    "agenda.is_cancelled": {"en": "❌ This session is cancelled.", "sw": "❌ Kipindi hiki kimeghairiwa."},
    "agenda.speakers_title": {"en": "Speakers:", "sw": "Wazungumzaji:"},
    "agenda.button_remind": {"en": "Remind me", "sw": "Nikumbushe"},
    "agenda.button_unremind": {"en": "Cancel reminder", "sw": "Ghairi ukumbusho"},
    "agenda.already_started": {
        "en": "{title} has already started.",
        "sw": "{title} kimeshaanza.",
    },
    "agenda.starts_soon": {
        "en": "{title} starts in {minutes} min at {room}: too soon for a reminder.",
        "sw": "{title} kinaanza baada ya dakika {minutes} katika {room}: ni karibu mno kwa ukumbusho.",
    },
    "agenda.already_reminded": {
        "en": "You will already be reminded of {title} at {time}.",
        "sw": "Tayari utakumbushwa kuhusu {title} saa {time}.",
    },
    "agenda.reminder_set": {
        "en": "⏰ Done: I will remind you of {title} at {time}, {minutes} min before it starts.",
        "sw": "⏰ Sawa: nitakukumbusha kuhusu {title} saa {time}, dakika {minutes} kabla hakijaanza.",
    },
    "agenda.reminder_cancelled": {
        "en": "OK, no reminder for {title}.",
        "sw": "Sawa, hakuna ukumbusho wa {title}.",
    },
    "agenda.no_speakers": {"en": "No speakers listed yet.", "sw": "Bado hakuna wazungumzaji."},
    "agenda.speakers_list": {
        "en": "*{event}* – speakers. Tap one for their profile.",
        "sw": "*{event}* – wazungumzaji. Gusa mmoja kuona wasifu wake.",
    },
    "agenda.speaker_gone": {
        "en": "That speaker is no longer on the agenda.",
        "sw": "Mzungumzaji huyo hayupo tena kwenye ratiba.",
    },
    "agenda.speaker_sessions": {"en": "Sessions:", "sw": "Vipindi:"},
    "agenda.reminder": {
        "en": "⏰ Starting in {minutes} min: *{title}* at {time}, {room}.",
        "sw": "⏰ Kinaanza baada ya dakika {minutes}: *{title}* saa {time}, {room}.",
    },
    "agenda.changed_cancelled": {
        "en": "❌ {title} has been cancelled. Your reminder is cancelled too.",
        "sw": "❌ {title} kimeghairiwa. Ukumbusho wako pia umeghairiwa.",
    },
    "agenda.changed_moved": {
        "en": "🔁 {title} has moved to {day} {time} ({room}). Your reminder moved with it.",
        "sw": "🔁 {title} kimehamishwa hadi {day} saa {time} ({room}). Ukumbusho wako umehamishwa pia.",
    },
    "agenda.changed_moved_soon": {
        "en": "🔁 {title} has moved to {day} {time} ({room}).",
        "sw": "🔁 {title} kimehamishwa hadi {day} saa {time} ({room}).",
    },
}
