"""The menu of offers: items, ids, how it is shown and how a choice is understood."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from state_machines import menu
from state_machines.base import Buttons, Context, Inbound, ListMenu, Text
from state_machines.choices import Option
from tests.helpers import buttons_of, context

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
OFFERS = {
    "surveys": [
        {"id": "s1", "title": "Feedback", "description": "2 minutes", "questions": [], "settings": {}}
    ],
    "events": [
        {
            "id": "e1",
            "name": "Jazz Night",
            "starts_at": datetime(2025, 3, 14, 16, 30, tzinfo=UTC),
            "venue_name": "Carnivore",
            "ticket_types": [],
        },
        {
            "id": "e2",
            "name": "Harambee",
            "starts_at": datetime(2025, 4, 1, 10, 0),
            "venue_name": None,
            "ticket_types": [],
        },
    ],
    "polls": [
        {
            "id": "p1",
            "question": "Best snack?",
            "options": [],
            "allow_multiple": False,
            "show_results": True,
            "ends_at": None,
        }
    ],
}


def make_ctx(offers: Any = OFFERS, language: str = "en", org: str = "Org") -> Context:
    data = {} if offers is None else {"offers": offers}
    return context(NOW, language=language, org_name=org, data=data)


def test_items_in_order_with_details() -> None:
    assert menu.items(make_ctx()) == [
        Option("survey:s1", "Feedback", "2 minutes"),
        Option("event:e1", "Jazz Night", "14/03/2025 19:30 · Carnivore"),  # Nairobi time
        Option("event:e2", "Harambee", "01/04/2025 10:00"),  # naive: taken as local; no venue
        Option("poll:p1", "Best snack?", ""),
    ]


@pytest.mark.parametrize("offers", [None, {}, {"surveys": None, "events": [], "polls": []}])
def test_no_offers(offers: Any) -> None:
    assert menu.items(make_ctx(offers)) == []
    assert menu.menu_replies(make_ctx(offers), lead="Hello") == (
        Text(
            "Hello\n\nThere is nothing on offer right now. Please check again later. Send HELP to see what you can do."
        ),
    )


def test_the_menu_is_a_list_with_a_lead() -> None:
    (reply,) = menu.menu_replies(make_ctx(language="sw"), lead="Samahani")
    assert isinstance(reply, ListMenu)
    assert reply.body == "Samahani\n\nKaribu Org! Ungependa kufanya nini? Chagua moja."
    assert reply.button == "Menyu" and [r.id for r in reply.rows] == [
        "survey:s1",
        "event:e1",
        "event:e2",
        "poll:p1",
    ]


def test_few_short_offers_are_buttons() -> None:
    (reply,) = menu.menu_replies(make_ctx({"polls": OFFERS["polls"]}, org=""))
    assert reply == Buttons("What would you like to do? Choose an option.", buttons_of(reply)) and [
        b.id for b in reply.buttons
    ] == ["poll:p1"]


@pytest.mark.parametrize(
    ("item", "parsed"),
    [
        ("survey:s1", ("survey", "s1")),
        ("event:e-9", ("event", "e-9")),
        ("poll:a:b", ("poll", "a:b")),
        ("ticket:1", None),
        ("survey:", None),
        ("survey", None),
        ("", None),
        ("tickets:type:1", None),
    ],
)
def test_parse_item_id(item: str, parsed: tuple[str, str] | None) -> None:
    assert menu.parse_item_id(item) == parsed


@pytest.mark.parametrize(
    ("event", "chosen"),
    [
        (Inbound("Jazz Night", "event:e1"), ("event", "e1")),
        (Inbound("3"), ("event", "e2")),
        (Inbound(" best SNACK? "), ("poll", "p1")),
        (Inbound("harambee"), ("event", "e2")),
        (Inbound("feed"), ("survey", "s1")),
        (Inbound("9"), None),
        (Inbound("nonsense"), None),
        (Inbound(""), None),
    ],
)
def test_choose(event: Inbound, chosen: tuple[str, str] | None) -> None:
    assert menu.choose(event, make_ctx()) == chosen


def test_find_offer() -> None:
    found = menu.find_offer(make_ctx(), "event", "e2")
    assert found is not None and found["name"] == "Harambee"
    assert menu.find_offer(make_ctx(), "event", "s1") is None
    assert menu.find_offer(make_ctx(None), "poll", "p1") is None
