"""Texts of the handover to people (state_machines/handover.py)."""

TEXTS: dict[str, dict[str, str]] = {
    "handover.requested": {
        "en": "Thanks, a member of our team will reply here soon. Send STOP at any time to unsubscribe.",
        "sw": "Asante, mmoja wa timu yetu atakujibu hapa hivi karibuni. Tuma ACHA wakati wowote kujiondoa.",
    },
    "handover.unanswered": {
        "en": "Sorry for the wait: our team is not available right now. {hours}We will reply here as soon as we can.",
        "sw": "Samahani kwa kusubiri: timu yetu haipatikani kwa sasa. {hours}Tutakujibu hapa haraka iwezekanavyo.",
    },
    "handover.hours": {
        "en": "Our hours of service: {hours}. ",
        "sw": "Saa zetu za huduma: {hours}. ",
    },
    "handover.agent_notice": {
        "en": "New handover: {who} asks for a person{said}. Answer in the CRM (handover {ref}).",
        "sw": "Mteja anahitaji mtu: {who}{said}. Jibu kupitia CRM (handover {ref}).",
    },
    "handover.closed": {
        "en": "Thanks for chatting with our team. Here is the menu again.",
        "sw": "Asante kwa kuongea na timu yetu. Hii hapa menyu tena.",
    },
}
