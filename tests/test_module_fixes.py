"""Regressions found running the modules end to end (the e2e tests cover them too; these pin the cause)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from engine.whatsapp.outbound import build_payload
from simulators.chat import render
from state_machines import tickets
from state_machines.base import State
from tests.helpers import context

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EVENT = {
    "id": "ev-1",
    "name": "Jazz Night",
    "starts_at": NOW + timedelta(days=10),
    "venue_name": "Carnivore",
    "status": "published",
    "ticket_types": [
        {
            "id": "tt-1",
            "name": "Regular",
            "price": Decimal(1500),
            "currency": "KES",
            "remaining": 10,
            "max_per_order": 4,
            "sales_start_at": None,
            "sales_end_at": None,
            "is_active": True,
        }
    ],
}


def test_ticket_start_from_the_menu_shows_the_offered_event() -> None:
    """Chosen from the menu, only the offer is loaded (no ctx.data["event"]): the prompt must still list it."""
    ctx = context(NOW, data={"offers": {"events": [EVENT]}})
    step = tickets.start("ev-1", State(), ctx)
    shown = render(build_payload(step.replies[0], "254712345678"))
    assert "• Regular: KES 1,500" in shown and "Carnivore" in shown and "[ Regular ]" in shown
