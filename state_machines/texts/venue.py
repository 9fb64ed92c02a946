"""Texts of finding booths and exhibitors at the venue."""

TEXTS: dict[str, dict[str, str]] = {
    "venue.ask": {
        "en": "Send a booth number (e.g. K12), or an exhibitor's name or category.",
        "sw": "Tuma nambari ya banda (mfano K12), au jina au aina ya mwonyeshaji.",
    },
    "venue.not_found": {
        "en": "No booth or exhibitor matches “{asked}”.",
        "sw": "Hakuna banda wala mwonyeshaji anayelingana na “{asked}”.",
    },
    "venue.several": {
        "en": "Several exhibitors match “{asked}”: which one?",
        "sw": "Waonyeshaji kadhaa wanalingana na “{asked}”: yupi?",
    },
    "venue.button": {"en": "Exhibitors", "sw": "Waonyeshaji"},
    "venue.booth_of": {"en": "Booth {booth}: {exhibitor}", "sw": "Banda {booth}: {exhibitor}"},
    "venue.booth": {"en": "Booth {booth}", "sw": "Banda {booth}"},
    "venue.hall": {"en": "Hall: {hall}", "sw": "Ukumbi: {hall}"},
    "venue.no_position": {
        "en": "At {venue}; ask at the information desk for the way.",
        "sw": "Katika {venue}; uliza njia kwenye meza ya maelezo.",
    },
    "venue.map": {"en": "Map of {venue}", "sw": "Ramani ya {venue}"},
}
