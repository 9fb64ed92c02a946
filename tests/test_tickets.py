"""The ticket purchase as a pure state machine: every step valid and invalid, stock races, M-Pesa outcomes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from state_machines import tickets as tk
from state_machines.base import (
    Button,
    Buttons,
    CancelTimers,
    Charge,
    Context,
    Image,
    Inbound,
    PaymentResult,
    StartTimer,
    State,
    Text,
    TimerFired,
)
from state_machines.formatting import kes
from state_machines.i18n import t, tn
from tests.helpers import context

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def ticket_type(id_, name, price, remaining=100, max_per_order=10, start=None, end=None, active=True):
    return {
        "id": id_,
        "name": name,
        "price": Decimal(price),
        "currency": "KES",
        "remaining": remaining,
        "max_per_order": max_per_order,
        "sales_start_at": start,
        "sales_end_at": end,
        "is_active": active,
    }


REGULAR = ticket_type("tt-reg", "Regular", "1500", remaining=None, start=NOW - DAY, end=NOW + DAY)
VIP = ticket_type("tt-vip", "VIP", "5000", remaining=2, max_per_order=4)
STUDENT = ticket_type("tt-stu", "Student", "500", remaining=0)
EARLY = ticket_type("tt-early", "Early Bird", "1000", end=NOW - DAY)
DOOR = ticket_type("tt-door", "Door", "2000", start=NOW + 3 * DAY)
STAFF = ticket_type("tt-staff", "Crew", "0", active=False)
EVENT = {
    "id": "ev-1",
    "name": "Nairobi Jazz Night",
    "starts_at": datetime(2026, 3, 14, 15, 0, tzinfo=UTC),
    "venue_name": "Carnivore Grounds",
    "status": "published",
    "ticket_types": [REGULAR, VIP, STUDENT, EARLY, DOOR, STAFF],
}
FREE_EVENT = {**EVENT, "ticket_types": [ticket_type("tt-free", "Community", "0", max_per_order=2)]}


def ctx(lang="en", name="Jane Wanjiku", event=EVENT, **data) -> Context:
    return context(
        NOW,
        language=lang,
        contact_id="c-1",
        contact_phone="254712345678",
        contact_name=name,
        data={"event": event, **data},
    )


def tap(choice_id: str, title: str = "") -> Inbound:
    return Inbound(text=title, choice_id=choice_id, kind="interactive")


def held(hold_id="h-1", quantity=2, unit="1500", type_id="tt-reg") -> tk.TicketsHeld:
    return tk.TicketsHeld(
        hold_id, type_id, quantity, Decimal(unit), Decimal(unit) * quantity, NOW + timedelta(minutes=10)
    )


def feed(step, *events, c=None):
    c = c or ctx()
    for event in events:
        event = Inbound(text=event) if isinstance(event, str) else event
        step = tk.step(step.state, event, c)
    return step


def walk(*events, c=None):
    c = c or ctx()
    return feed(tk.start("ev-1", State(version=7), c), *events, c=c)


TO_NAME = ("Regular", "2")
TO_EMAIL = (*TO_NAME, "me")
TO_CONFIRM = (*TO_EMAIL, "jane@example.com")
TO_HOLDING = (*TO_CONFIRM, tap(tk.ID_CONFIRM))
TO_AWAITING = (*TO_HOLDING, held(), tk.PaymentRequested("h-1", "ws_CO_1"))
TO_ISSUING = (*TO_AWAITING, PaymentResult("ws_CO_1", 0, receipt="SAB1CD2EF3", amount=Decimal("3000")))
PATHS = {
    "choose_type": (),
    "quantity": ("Regular",),
    "holder_name": TO_NAME,
    "holder_email": TO_EMAIL,
    "confirm": TO_CONFIRM,
    "holding": TO_HOLDING,
    "awaiting_payment": TO_AWAITING,
    "issuing": TO_ISSUING,
    "retry": (*TO_AWAITING, PaymentResult("ws_CO_1", 1032)),
    "fewer": (*TO_HOLDING, tk.SoldOut("tt-reg", 1)),
}


MENU_TAIL = "\n\n" + t("menu.empty", "en")  # the menu, the next step after a dead end (nothing on offer here)


def to_menu(text: str, version: int = 7) -> tk.Step:
    """A purchase that ends with ``text`` on top of the menu."""
    return tk.Step(State(version=version), (Text(text + MENU_TAIL),))


def texts(step) -> list[str]:
    return [str(getattr(r, "body", None) or getattr(r, "caption", "")) for r in step.replies]


def type_menu_body(lang="en", sold="Student", prefix=""):
    prices = "• Regular: KES 1,500\n• VIP: KES 5,000\n\n" + t("tickets.sold_out_note", lang, names=sold)
    body = t(
        "tickets.event_intro",
        lang,
        event="Nairobi Jazz Night",
        when="14/03/2026 18:00",
        venue="Carnivore Grounds",
        prices=prices,
    )
    return f"{prefix}\n\n{body}" if prefix else body


# ---------------------------------------------------------------- start and the sales window


def test_start_offers_types_on_sale_with_prices_and_notes_sold_out():
    step = tk.start("ev-1", State(version=7), ctx())
    assert step.state == State(
        "tickets", "choose_type", {"event_id": "ev-1", "event_name": "Nairobi Jazz Night"}, 7
    )
    assert step.effects == ()
    assert step.replies == (
        Buttons(
            type_menu_body(), (Button("tickets:type:tt-reg", "Regular"), Button("tickets:type:tt-vip", "VIP"))
        ),
    )


def closed(*types, status="published"):
    return {**EVENT, "status": status, "ticket_types": list(types)}


@pytest.mark.parametrize(
    "event, key, values",
    [
        (closed(DOOR), "tickets.sales_open_on", {"when": "04/03/2026 12:00"}),  # before the window
        (closed(EARLY), "tickets.not_on_sale", {}),  # after the window
        (closed(STUDENT), "tickets.sold_out_all", {}),
        (closed(STUDENT, DOOR), "tickets.sales_open_on", {"when": "04/03/2026 12:00"}),
        (closed(STAFF), "tickets.not_on_sale", {}),
        (closed(), "tickets.not_on_sale", {}),
        (closed(REGULAR, status="draft"), "tickets.not_on_sale", {}),
        (closed(ticket_type("x", "X", "1", end=NOW)), "tickets.not_on_sale", {}),  # the end is exclusive
    ],
)
def test_start_when_nothing_can_be_bought_goes_back_idle(event, key, values):
    step = tk.start("ev-1", State(version=7), ctx(event=event))
    assert step == to_menu(t(key, "en", event="Nairobi Jazz Night", **values))


def test_sales_start_is_inclusive():
    step = tk.start("ev-1", State(), ctx(event=closed(ticket_type("x", "X", "100", start=NOW))))
    assert step.state.step == "choose_type"


@pytest.mark.parametrize("event", [None, {**EVENT, "id": "ev-2"}])
def test_start_without_the_event_loaded(event):
    step = tk.start("ev-1", State(version=3), ctx(event=event))
    assert step == to_menu(t("tickets.event_unavailable", "en"), version=3)


def test_a_dead_end_offers_the_menu_without_that_event():
    other = {**EVENT, "id": "ev-2", "name": "Gospel Sunday", "starts_at": None, "venue_name": None}
    c = ctx(event=closed(EARLY), offers={"events": [{**closed(EARLY), "name": "Nairobi Jazz Night"}, other]})
    (reply,) = tk.start("ev-1", State(), c).replies
    assert reply.body.startswith(t("tickets.not_on_sale", "en", event="Nairobi Jazz Night") + "\n\n")
    assert [b.id for b in reply.buttons] == ["event:ev-2"]


def test_many_types_fall_back_to_a_list_with_prices():
    types = [ticket_type(f"t{i}", f"Tier {i}", str(100 * i)) for i in range(1, 6)]
    step = tk.start("ev-1", State(), ctx(event=closed(*types)))
    menu = step.replies[0]
    assert menu.button == "Tickets"
    assert [(r.id, r.title, r.description) for r in menu.rows][:2] == [
        ("tickets:type:t1", "1. Tier 1", "KES 100"),
        ("tickets:type:t2", "2. Tier 2", "KES 200"),
    ]


# ---------------------------------------------------------------- choosing the type


@pytest.mark.parametrize("said", [tap("tickets:type:tt-vip", "VIP"), "VIP", "  vip ", "2", "2.", "Vip!"])
def test_choose_type_any_way(said):
    step = walk(said)
    assert step.state.step == "quantity"
    assert (
        step.state.data["type_id"] == "tt-vip" and step.state.data["limit"] == 2
    )  # min(4 per order, 2 left)
    assert step.replies == (
        Buttons(
            t("tickets.quantity_prompt", "en", type="VIP", price="KES 5,000", max=2),
            (Button("tickets:qty:1", "1"), Button("tickets:qty:2", "2")),
        ),
    )


@pytest.mark.parametrize("said", ["Gold", "3", "0", "", "Student", "Early Bird", tap("tickets:type:tt-stu")])
def test_choose_type_invalid_reasks_and_counts(said):
    step = walk(said)
    assert step.state.step == "choose_type" and step.state.data["failures"] == 1
    prefix = t("tickets.invalid_type", "en")
    assert texts(step) == [type_menu_body(prefix=prefix)]


def test_three_failures_give_up_to_the_menu():
    step = walk("gold", "silver", "bronze")
    assert step == to_menu(t("tickets.too_many_failures", "en"))


def test_a_valid_answer_resets_the_failures():
    step = walk("gold", "silver", "Regular", "zero", "ten!")
    assert step.state.step == "quantity" and step.state.data["failures"] == 2


def test_only_one_ticket_possible_skips_the_quantity():
    event = closed(ticket_type("x", "Last seat", "700", remaining=1))
    step = walk("Last seat", c=ctx(event=event))
    assert step.state.step == "holder_name" and step.state.data["quantity"] == 1


# ---------------------------------------------------------------- quantity


@pytest.mark.parametrize(
    "said, quantity", [(tap("tickets:qty:3", "3"), 3), ("2", 2), (" 3 ", 3), ("10", 10), ("7.", 7), ("1", 1)]
)
def test_quantity_valid(said, quantity):
    step = walk("Regular", said)
    assert step.state.step == "holder_name" and step.state.data["quantity"] == quantity


def test_quantity_prompt_for_regular_offers_three_buttons_and_the_range():
    step = walk("Regular")
    assert step.replies == (
        Buttons(
            t("tickets.quantity_prompt", "en", type="Regular", price="KES 1,500", max=10),
            tuple(Button(f"tickets:qty:{n}", str(n)) for n in (1, 2, 3)),
        ),
    )


@pytest.mark.parametrize(
    ("lang", "prompt"),
    [
        ("en", "Community: free.\nHow many tickets? Tap or type a number from 1 to 2."),
        ("sw", "Community: bure.\nTiketi ngapi? Gusa au andika namba kutoka 1 hadi 2."),
    ],
)
def test_a_free_ticket_is_free_not_free_each(lang, prompt):
    step = walk("Community", c=ctx(lang, event=FREE_EVENT))
    assert texts(step) == [prompt]


@pytest.mark.parametrize(
    "type_, said, key, limit",
    [
        ("Regular", "0", "tickets.quantity_not_number", 10),
        ("Regular", "11", "tickets.quantity_over_max", 10),
        ("Regular", "two", "tickets.quantity_not_number", 10),
        ("Regular", "-1", "tickets.quantity_not_number", 10),
        ("Regular", "", "tickets.quantity_not_number", 10),
        ("Regular", "99999999999", "tickets.quantity_not_number", 10),
        ("VIP", "3", "tickets.quantity_over_remaining", 2),
        ("VIP", "4", "tickets.quantity_over_remaining", 2),
    ],
)
def test_quantity_invalid(type_, said, key, limit):
    step = walk(type_, said)
    assert step.state.step == "quantity" and step.state.data["failures"] == 1
    error = t(key, "en", max=limit) if key == "tickets.quantity_not_number" else tn(key, "en", limit)
    assert texts(step)[0].startswith(error + "\n\n")
    assert f"1 to {limit}" in texts(step)[0]


# ---------------------------------------------------------------- holder name and email


@pytest.mark.parametrize(
    "said, name",
    [
        ("me", "Jane Wanjiku"),
        ("SAME", "Jane Wanjiku"),
        ("Mimi", "Jane Wanjiku"),
        (tap(tk.ID_ME, "Use my name"), "Jane Wanjiku"),
        ("  Peter   Otieno ", "Peter Otieno"),
        ("Li", "Li"),
    ],
)
def test_holder_name_valid(said, name):
    step = walk(*TO_NAME, said)
    assert step.state.step == "holder_email" and step.state.data["holder_name"] == name
    assert step.replies == (Buttons(t("tickets.email_prompt", "en"), (Button(tk.ID_SKIP, "Skip"),)),)


@pytest.mark.parametrize("said", ["", "J", "12", "x" * 101, Inbound(kind="image")])
def test_holder_name_invalid(said):
    step = walk(*TO_NAME, said)
    assert step.state.step == "holder_name"
    assert texts(step) == [
        t("tickets.invalid_name", "en") + "\n\n" + t("tickets.name_prompt_me", "en", name="Jane Wanjiku")
    ]


def test_holder_name_me_without_a_known_name():
    c = ctx(name=None)
    step = walk(*TO_NAME, c=c)
    assert step.replies == (Text(t("tickets.name_prompt", "en")),)
    step = feed(step, "me", c=c)
    assert step.state.step == "holder_name"
    assert step.replies == (
        Text(t("tickets.no_contact_name", "en") + "\n\n" + t("tickets.name_prompt", "en")),
    )


@pytest.mark.parametrize(
    "said, email",
    [
        ("jane@example.com", "jane@example.com"),
        (" j.doe+x@mail.co.ke ", "j.doe+x@mail.co.ke"),
        ("SKIP", None),
        ("ruka", None),
        (tap(tk.ID_SKIP, "Skip"), None),
    ],
)
def test_holder_email_valid(said, email):
    step = walk(*TO_EMAIL, said)
    assert step.state.step == "confirm" and step.state.data["holder_email"] == email
    body = t(
        "tickets.confirm_prompt",
        "en",
        event="Nairobi Jazz Night",
        quantity=2,
        type="Regular",
        name="Jane Wanjiku",
        email=email or "(none)",
        total="KES 3,000",
    )
    assert step.replies == (
        Buttons(body, (Button(tk.ID_CONFIRM, "Confirm"), Button(tk.ID_CANCEL, "Cancel"))),
    )


@pytest.mark.parametrize(
    "said", ["jane@", "jane@example", "jane example.com", "@example.com", "a@b.c", "", "a@@b.co"]
)
def test_holder_email_invalid(said):
    step = walk(*TO_EMAIL, said)
    assert step.state.step == "holder_email" and step.state.data["failures"] == 1
    assert texts(step) == [t("tickets.invalid_email", "en") + "\n\n" + t("tickets.email_prompt", "en")]


# ---------------------------------------------------------------- confirm and hold


@pytest.mark.parametrize("said", [tap(tk.ID_CONFIRM, "Confirm"), "confirm", " YES ", "1", "Thibitisha"])
def test_confirm_holds_the_selection(said):
    step = walk(*TO_CONFIRM, said)
    assert step.state.step == "holding"
    assert step.replies == ()
    assert step.effects == (tk.HoldTickets("tt-reg", 2, 600),)


def test_hold_seconds_come_from_the_context():
    step = walk(*TO_CONFIRM, "yes", c=ctx(hold_seconds=120))
    assert step.effects == (tk.HoldTickets("tt-reg", 2, 120),)


@pytest.mark.parametrize("said", [tap(tk.ID_CANCEL, "Cancel"), "no", "hapana", "2"])
def test_confirm_cancel_leaves_without_effects(said):
    step = walk(*TO_CONFIRM, said)
    assert step == to_menu(t("tickets.cancelled", "en"))


def test_confirm_invalid():
    step = walk(*TO_CONFIRM, "maybe")
    assert step.state.step == "confirm" and step.effects == ()
    assert texts(step)[0].startswith(t("tickets.invalid_confirm", "en") + "\n\n")


# ---------------------------------------------------------------- paying


def test_held_requests_the_payment_and_starts_the_timer():
    step = walk(*TO_HOLDING, held(), c=ctx(payment_timeout_seconds=90))
    assert step.state.step == "awaiting_payment"
    assert step.state.data["hold_id"] == "h-1" and step.state.data["total"] == "3000"
    assert step.effects == (
        tk.RequestPayment("h-1", Decimal("3000"), "254712345678", "NAIROBIJAZZN", "Tickets x2"),
        StartTimer("payment_expiry", 90, {"hold_id": "h-1"}),
    )
    assert step.replies == (
        Buttons(t("tickets.pay_prompt", "en", amount="KES 3,000"), (Button(tk.ID_CANCEL, "Cancel"),)),
    )


def test_payment_requested_remembers_the_checkout_quietly():
    step = walk(*TO_AWAITING)
    assert step.state.step == "awaiting_payment" and step.state.data["checkout_request_id"] == "ws_CO_1"
    assert step.replies == () and step.effects == ()


def test_payment_requested_for_another_hold_is_ignored():
    before = walk(*TO_HOLDING, held())
    assert feed(before, tk.PaymentRequested("h-9", "ws_CO_9")).state == before.state


def test_paid_then_two_tickets_issued():
    paid = walk(*TO_ISSUING)
    assert paid.state.step == "issuing" and paid.replies == ()
    assert paid.effects == (
        tk.IssueTickets("h-1", "Jane Wanjiku", "jane@example.com", "SAB1CD2EF3", Decimal("3000")),
        *tk.STOP_PAYMENT_TIMERS,
    )
    done = feed(paid, tk.TicketsIssued("h-1", ("TKT-AAA111", "TKT-BBB222"), "Nairobi Jazz Night"))

    def caption(n: int, code: str) -> str:
        return t(
            "tickets.ticket_caption",
            "en",
            event="Nairobi Jazz Night",
            type="Regular",
            holder="Jane Wanjiku",
            n=n,
            count=2,
            code=code,
        )

    summary = t(
        "tickets.issued_paid", "en", receipt="SAB1CD2EF3", event="Nairobi Jazz Night", count=2, type="Regular"
    )
    assert done == tk.Step(
        State(version=7),
        (
            Image("qr:TKT-AAA111", caption(1, "TKT-AAA111")),
            Image("qr:TKT-BBB222", caption(2, "TKT-BBB222")),
            Text(summary),
        ),
        (Charge("ticket_issued", "events", reference_id="h-1", quantity=2),),
    )


def test_duplicate_payment_result_after_success_is_ignored():
    issuing = walk(*TO_ISSUING)
    again = PaymentResult("ws_CO_1", 0, receipt="SAB1CD2EF3", amount=Decimal("3000"))
    assert feed(issuing, again) == tk.Step(issuing.state)
    done = feed(issuing, tk.TicketsIssued("h-1", ("TKT-AAA111",), "Nairobi Jazz Night"))
    assert feed(done, again) == tk.Step(done.state)
    assert feed(done, tk.TicketsIssued("h-1", ("TKT-AAA111",), "x")) == tk.Step(done.state)


def test_payment_result_before_payment_requested_is_taken():
    step = walk(*TO_HOLDING, held(), PaymentResult("ws_CO_7", 0, receipt="R1", amount=Decimal("3000")))
    assert step.state.step == "issuing" and isinstance(step.effects[0], tk.IssueTickets)


def test_payment_result_before_payment_requested_with_another_amount_is_ignored():
    before = walk(*TO_HOLDING, held())
    assert feed(before, PaymentResult("ws_CO_7", 0, receipt="R1", amount=Decimal("10"))) == tk.Step(
        before.state
    )


@pytest.mark.parametrize(
    "result",
    [
        PaymentResult("ws_CO_OTHER", 0, receipt="R9"),  # another checkout
        PaymentResult("ws_CO_OTHER", 1032),
    ],
)
def test_payment_result_for_another_checkout_is_ignored(result):
    awaiting = walk(*TO_AWAITING)
    assert feed(awaiting, result) == tk.Step(awaiting.state)


@pytest.mark.parametrize(
    "code, reason, key",
    [
        (1, "insufficient_funds", "tickets.pay_failed_insufficient"),
        (1032, "cancelled_by_user", "tickets.pay_failed_cancelled"),
        (1037, "phone_unreachable", "tickets.pay_failed_unreachable"),
        (2001, "wrong_pin", "tickets.pay_failed_wrong_pin"),
        (17, "payment_failed", "tickets.pay_failed_other"),
    ],
)
def test_payment_failure_releases_and_offers_retry(code, reason, key):
    step = walk(*TO_AWAITING, PaymentResult("ws_CO_1", code, "failed"))
    assert step.state.step == "retry"
    assert "hold_id" not in step.state.data and step.state.data["old_checkouts"] == ["ws_CO_1"]
    assert step.effects == (tk.ReleaseHold("h-1", reason), *tk.STOP_PAYMENT_TIMERS)
    body = t(key, "en", amount="KES 3,000") + " " + t("tickets.retry_question", "en")
    assert step.replies == (
        Buttons(body, (Button(tk.ID_RETRY, "Try again"), Button(tk.ID_CANCEL, "Cancel"))),
    )


def test_retry_holds_the_same_selection_and_old_callbacks_stay_ignored():
    failed = walk(*TO_AWAITING, PaymentResult("ws_CO_1", 1032))
    again = feed(failed, tap(tk.ID_RETRY, "Try again"))
    assert again.state.step == "holding" and again.effects == (tk.HoldTickets("tt-reg", 2, 600),)
    waiting = feed(again, held("h-2"))
    assert waiting.effects[0] == tk.RequestPayment(
        "h-2", Decimal("3000"), "254712345678", "NAIROBIJAZZN", "Tickets x2"
    )
    late = PaymentResult("ws_CO_1", 0, receipt="LATE", amount=Decimal("3000"))
    assert feed(waiting, late) == tk.Step(waiting.state)  # before PaymentRequested of the new attempt
    current = feed(waiting, tk.PaymentRequested("h-2", "ws_CO_2"))
    assert feed(current, late) == tk.Step(current.state)
    paid = feed(current, PaymentResult("ws_CO_2", 0, receipt="OK2", amount=Decimal("3000")))
    assert paid.effects[0] == tk.IssueTickets(
        "h-2", "Jane Wanjiku", "jane@example.com", "OK2", Decimal("3000")
    )


@pytest.mark.parametrize(
    "said, outcome",
    [
        ("yes", "holding"),
        ("jaribu tena", "holding"),
        (tap(tk.ID_CANCEL), "idle"),
        ("no", "idle"),
        ("later", "retry"),
    ],
)
def test_retry_answers(said, outcome):
    step = walk(*PATHS["retry"], said)
    assert step.state.step == outcome
    assert all(not isinstance(e, tk.ReleaseHold) for e in step.effects)  # nothing is held any more


def test_payment_request_refused_by_daraja():
    step = walk(*TO_HOLDING, held(), tk.PaymentRequestFailed("h-1", "invalid phone"))
    assert step.state.step == "retry"
    assert step.effects == (tk.ReleaseHold("h-1", "payment_request_failed"), *tk.STOP_PAYMENT_TIMERS)
    assert texts(step)[0].startswith(t("tickets.pay_request_failed", "en"))


def test_text_while_awaiting_payment_keeps_waiting():
    awaiting = walk(*TO_AWAITING)
    for said in ("hello?", "1", "did it work", tap("tickets:type:tt-vip")):
        step = feed(awaiting, said)
        assert step.state == awaiting.state and step.effects == ()
        assert step.replies == (
            Buttons(t("tickets.still_waiting", "en", amount="KES 3,000"), (Button(tk.ID_CANCEL, "Cancel"),)),
        )


@pytest.mark.parametrize("said", [tap(tk.ID_CANCEL, "Cancel"), "cancel", "Ghairi"])
def test_cancel_button_while_awaiting_releases(said):
    step = walk(*TO_AWAITING, said)
    assert step == tk.Step(
        State(version=7),
        (Text(t("tickets.cancelled", "en") + MENU_TAIL),),
        (tk.ReleaseHold("h-1", "cancelled"), *tk.STOP_PAYMENT_TIMERS),
    )


# ---------------------------------------------------------------- the payment timer


def timer(version=7, **data):
    return TimerFired("payment_expiry", version, data)


def test_current_expiry_timer_asks_mpesa_before_anything_is_released():
    step = walk(*TO_AWAITING, timer(hold_id="h-1"))
    assert step.state.step == "awaiting_payment" and step.replies == ()
    assert step.effects == (
        tk.QueryPayment("h-1", 1),
        StartTimer("payment_grace", 120, {"hold_id": "h-1", "attempt": 2}),
    )


def test_mpesa_says_not_paid_at_the_timer_releases_and_tells_the_buyer():
    asked = walk(*TO_AWAITING, timer(hold_id="h-1"))
    step = feed(asked, PaymentResult("ws_CO_1", 1037, "timeout", hold_id="h-1"))
    assert step.state.step == "retry"
    assert step.effects == (tk.ReleaseHold("h-1", "phone_unreachable"), *tk.STOP_PAYMENT_TIMERS)
    assert texts(step)[0].startswith(t("tickets.pay_failed_unreachable", "en"))


def test_mpesa_says_paid_at_the_timer_issues():
    asked = walk(*TO_AWAITING, timer(hold_id="h-1"))
    step = feed(asked, PaymentResult("ws_CO_1", 0, "ok", None, Decimal(3000), hold_id="h-1"))
    assert step.state.step == "issuing" and step.state.data["paid"] is True
    assert step.effects[0] == tk.IssueTickets("h-1", "Jane Wanjiku", "jane@example.com", None, Decimal(3000))
    issued = feed(step, tk.TicketsIssued("h-1", ("TKT-AAAAA2",), "Jazz Night"))
    assert texts(issued)[-1].startswith("🎉 Payment confirmed by M-Pesa")


def test_mpesa_unreachable_keeps_the_hold_a_little_longer_then_lets_go():
    asked = walk(*TO_AWAITING, timer(hold_id="h-1"))
    waiting = feed(asked, tk.PaymentUnconfirmed("h-1", "unreachable", 1))
    assert waiting.state.step == "awaiting_payment" and waiting.effects == ()
    assert texts(waiting) == [t("tickets.pay_checking", "en")]
    grace = feed(waiting, TimerFired("payment_grace", 1, {"hold_id": "h-1", "attempt": 2}))
    assert grace.effects == (
        tk.QueryPayment("h-1", 2),
        StartTimer("payment_grace", 120, {"hold_id": "h-1", "attempt": 3}),
    )
    gone = feed(grace, tk.PaymentUnconfirmed("h-1", "unreachable", 2))
    assert gone.state.module is None
    assert gone.effects == (tk.ReleaseHold("h-1", "unconfirmed"), CancelTimers("payment_grace"))
    assert texts(gone)[0].startswith(t("tickets.pay_unconfirmed", "en", amount="KES 3,000"))


def test_a_lost_answer_ends_the_wait_at_the_last_grace():
    asked = walk(*TO_AWAITING, timer(hold_id="h-1"))
    step = feed(asked, TimerFired("payment_grace", 1, {"hold_id": "h-1", "attempt": 3}))
    assert step.state.module is None and step.effects[0] == tk.ReleaseHold("h-1", "unconfirmed")


@pytest.mark.parametrize("path", ["retry", "idle_after_cancel"])
def test_a_late_confirmed_payment_is_settled(path):
    if path == "retry":  # M-Pesa said failed, then (sandboxes do this) paid
        before = walk(*TO_AWAITING, PaymentResult("ws_CO_1", 1032, hold_id="h-1"))
    else:
        before = walk(*TO_AWAITING, tap(tk.ID_CANCEL, "Cancel"))
    late = feed(before, PaymentResult("ws_CO_1", 0, "", "RCPT1", Decimal(3000), hold_id="h-1"))
    assert late.effects == (tk.IssueTickets("h-1", "", None, "RCPT1", Decimal(3000), late=True),)
    issued = feed(late, tk.LatePaymentSettled("h-1", "issued", ("TKT-AAAAA2",), "Jazz Night", "Regular"))
    assert issued.state.module is None
    assert texts(issued)[-1].startswith("🎉 M-Pesa has now confirmed your payment")
    refund = feed(
        late, tk.LatePaymentSettled("h-1", "refund_due", (), "Jazz Night", "Regular", Decimal(3000))
    )
    assert texts(refund) == [t("tickets.late_refund", "en", event="Jazz Night", amount="KES 3,000")]
    assert feed(late, tk.LatePaymentSettled("h-1", "already")).replies == ()


def test_a_late_failure_changes_nothing():
    before = walk(*TO_AWAITING, tap(tk.ID_CANCEL, "Cancel"))
    assert feed(before, PaymentResult("ws_CO_1", 1032, hold_id="h-1")) == tk.Step(before.state)


@pytest.mark.parametrize(
    "path, fired",
    [
        ("awaiting_payment", timer(hold_id="h-0")),  # a timer of an earlier hold
        ("awaiting_payment", timer(version=6)),  # no hold named: the version decides
        ("awaiting_payment", TimerFired("reminder", 7, {"hold_id": "h-1"})),
        ("issuing", timer(hold_id="h-1")),
        ("retry", timer(hold_id="h-1")),
        ("confirm", timer()),
    ],
)
def test_stale_or_foreign_timers_are_ignored(path, fired):
    before = walk(*PATHS[path])
    assert feed(before, fired) == tk.Step(before.state)


def test_unnamed_timer_with_the_current_version_fires():
    assert walk(*TO_AWAITING, timer(version=7)).effects[0] == tk.QueryPayment("h-1", 1)


# ---------------------------------------------------------------- free tickets


def test_free_ticket_skips_payment():
    c = ctx(event=FREE_EVENT)
    holding = walk("Community", "1", "Peter Otieno", "skip", "confirm", c=c)
    assert holding.effects == (tk.HoldTickets("tt-free", 1, 600),)
    issuing = feed(holding, held("h-5", 1, "0", "tt-free"), c=c)
    assert issuing.state.step == "issuing" and issuing.replies == ()
    assert issuing.effects == (tk.IssueTickets("h-5", "Peter Otieno", None, None, Decimal("0")),)
    done = feed(issuing, tk.TicketsIssued("h-5", ("TKT-FREE01",), "Nairobi Jazz Night"), c=c)
    assert done.state == State(version=7)
    assert done.replies[-1] == Text(
        t("tickets.issued_free", "en", event="Nairobi Jazz Night", count=1, type="Community")
    )
    assert done.effects == (Charge("ticket_issued", "events", reference_id="h-5", quantity=1),)


def test_free_type_is_shown_as_free():
    assert "• Community: Free" in texts(tk.start("ev-1", State(), ctx(event=FREE_EVENT)))[0]


# ---------------------------------------------------------------- sold out while holding


def test_sold_out_partially_offers_the_rest():
    step = walk(*PATHS["fewer"])
    assert step.state.step == "fewer" and step.effects == ()
    body = "Sorry, only 1 Regular ticket is left. Buy it for KES 1,500?"  # one, not "1 tickets are"
    assert step.replies == (Buttons(body, (Button(tk.ID_TAKE, "Buy 1"), Button(tk.ID_CANCEL, "Cancel"))),)
    three = walk(*TO_HOLDING, tk.SoldOut("tt-reg", 3))
    assert texts(three) == ["Sorry, only 3 Regular tickets are left. Buy 3 for KES 4,500?"]


@pytest.mark.parametrize(
    "said, effects, step_name",
    [
        (tap(tk.ID_TAKE, "Buy 1"), (tk.HoldTickets("tt-reg", 1, 600),), "holding"),
        ("buy 1", (tk.HoldTickets("tt-reg", 1, 600),), "holding"),
        ("1", (tk.HoldTickets("tt-reg", 1, 600),), "holding"),
        ("2", (), "fewer"),
        ("whatever", (), "fewer"),
        (tap(tk.ID_CANCEL, "Cancel"), (), "idle"),
    ],
)
def test_answers_to_the_smaller_offer(said, effects, step_name):
    step = walk(*PATHS["fewer"], said)
    assert step.state.step == step_name and step.effects == effects


def test_typed_number_up_to_what_is_left():
    step = feed(walk(*TO_HOLDING, tk.SoldOut("tt-reg", 3)), "2")
    assert step.effects == (tk.HoldTickets("tt-reg", 2, 600),)


def test_sold_out_completely_offers_other_types():
    step = walk("VIP", "2", "me", "skip", "confirm", tk.SoldOut("tt-vip", 0))
    assert step.state.step == "choose_type" and step.state.data["excluded_types"] == ["tt-vip"]
    prefix = t("tickets.sold_out_type", "en", type="VIP")
    prices = "• Regular: KES 1,500\n\n" + t("tickets.sold_out_note", "en", names="VIP, Student")
    body = t(
        "tickets.event_intro",
        "en",
        event="Nairobi Jazz Night",
        when="14/03/2026 18:00",
        venue="Carnivore Grounds",
        prices=prices,
    )
    assert step.replies == (Buttons(f"{prefix}\n\n{body}", (Button("tickets:type:tt-reg", "Regular"),)),)
    assert feed(step, "VIP").state.data["failures"] == 1  # no longer offered
    assert feed(step, "Regular").state.step == "quantity"


def test_sold_out_completely_with_nothing_else_goes_idle():
    step = walk("VIP", "2", "me", "skip", "confirm", tk.SoldOut("tt-vip", 0), c=ctx(event=closed(VIP)))
    assert step == to_menu(t("tickets.sold_out_type_final", "en", type="VIP"))


def test_held_after_the_user_left_is_released():
    step = tk.step(State(version=9), held("h-3"), ctx())
    assert step == tk.Step(State(version=9), (), (tk.ReleaseHold("h-3", "abandoned"),))


def test_sold_out_when_not_holding_is_ignored():
    before = walk(*TO_CONFIRM)
    assert feed(before, tk.SoldOut("tt-reg", 0)) == tk.Step(before.state)


# ---------------------------------------------------------------- cancel and reprompt at every step


@pytest.mark.parametrize("path", sorted(PATHS))
def test_cancel_releases_a_hold_only_when_one_exists(path):
    before = walk(*PATHS[path])
    step = tk.cancel(before.state, ctx())
    if path == "issuing":  # paid: the tickets are coming, nothing to cancel
        assert step == tk.Step(before.state, (Text(t("tickets.issuing_wait", "en")),))
        return
    effects = (
        (tk.ReleaseHold("h-1", "cancelled"), *tk.STOP_PAYMENT_TIMERS) if path == "awaiting_payment" else ()
    )
    assert step == tk.Step(State(version=7), (Text(t("tickets.cancelled", "en")),), effects)


def test_cancel_when_idle_has_no_effects():
    assert tk.cancel(State(version=2), ctx()).effects == ()


@pytest.mark.parametrize("path", sorted(PATHS))
def test_reprompt_repeats_the_question(path):
    before = walk(*PATHS[path])
    again = tk.reprompt(before.state, ctx())
    assert len(again) == 1
    if path in ("holding", "issuing"):
        assert again == (Text(t(f"tickets.{path}_wait", "en")),)
    elif path == "awaiting_payment":
        assert again[0].body == t("tickets.still_waiting", "en", amount="KES 3,000")
    else:  # the same prompt that led to the step
        assert again == before.replies[-1:]


def test_reprompt_when_idle():
    assert tk.reprompt(State(), ctx()) == ()


def test_inbound_when_not_in_the_module_is_ignored():
    assert tk.step(State(module="survey", step="q1"), Inbound("2"), ctx()) == tk.Step(
        State(module="survey", step="q1")
    )


@pytest.mark.parametrize("path", sorted(PATHS))
def test_state_data_is_json(path):
    json.dumps(dict(walk(*PATHS[path]).state.data))


@pytest.mark.parametrize("path", ["holding", "issuing"])
def test_text_while_busy_says_wait(path):
    before = walk(*PATHS[path])
    assert feed(before, "hi") == tk.Step(before.state, (Text(t(f"tickets.{path}_wait", "en")),))


# ---------------------------------------------------------------- Swahili and formatting


def test_swahili_walk():
    c = ctx("sw")
    start = walk(c=c)
    assert texts(start) == [type_menu_body("sw")]
    confirm = walk(*TO_CONFIRM, c=c)
    assert confirm.replies[0].buttons == (Button(tk.ID_CONFIRM, "Thibitisha"), Button(tk.ID_CANCEL, "Ghairi"))
    assert "*Jumla: KES 3,000*" in confirm.replies[0].body
    assert feed(confirm, "confirm", c=c).state.step == "holding"  # English words still work
    paying = walk(*TO_HOLDING, held(), c=c)
    assert paying.replies[0].body == "Angalia simu yako na uweke PIN yako ya M-Pesa kulipa KES 3,000."
    failed = feed(walk(*TO_AWAITING, c=c), PaymentResult("ws_CO_1", 1), c=c)
    assert failed.replies[0].body.startswith("Salio lako la M-Pesa halikutosha kulipa KES 3,000.")
    assert walk("dhahabu", c=c).replies[0].body.startswith(t("tickets.invalid_type", "sw"))


def test_every_text_has_a_distinct_swahili_version():
    from state_machines.texts.tickets import TEXTS

    assert [k for k, v in TEXTS.items() if set(v) != {"en", "sw"} or v["sw"] == v["en"]] == []


@pytest.mark.parametrize(
    "amount, shown",
    [
        ("1500", "KES 1,500"),
        ("1500.00", "KES 1,500"),
        ("1500.5", "KES 1,500.50"),
        ("0", "KES 0"),
        ("1250000", "KES 1,250,000"),
    ],
)
def test_kes(amount, shown):
    assert kes(Decimal(amount)) == shown


def test_daraja_limits_on_reference_and_description():
    c = ctx(event={**EVENT, "name": "Ngoma! Festival 2026 – Mombasa"})
    step = walk(*TO_HOLDING, held(quantity=2), c=c)
    pay = step.effects[0]
    assert pay.account_reference == "NGOMAFESTIVA" and len(pay.description) <= 13


def test_replies_fit_whatsapp_limits():
    for path in PATHS:
        for reply in walk(*PATHS[path]).replies:
            if isinstance(reply, Buttons):
                assert len(reply.buttons) <= 3 and all(len(b.title) <= 20 for b in reply.buttons)
                assert len(reply.body) <= 1024


@pytest.mark.parametrize("path", sorted(PATHS))
def test_version_is_left_to_the_router(path):
    assert walk(*PATHS[path]).state.version == 7


# ---------------------------------------------------------------- where tickets may be sold (issue 14)


def test_reserved_by_others_is_not_sold_out():
    reserved = {**STUDENT, "held": 3}  # nothing left to take, three held by buyers paying now
    event = {**EVENT, "ticket_types": [REGULAR, reserved]}
    body = texts(tk.start("ev-1", State(version=7), ctx(event=event)))[0]
    assert t("tickets.reserved_note", "en", names="Student") in body
    assert t("tickets.sold_out_note", "en", names="Student") not in body
    only_reserved = tk.start("ev-1", State(version=7), ctx(event={**EVENT, "ticket_types": [reserved]}))
    assert texts(only_reserved)[0].startswith(t("tickets.reserved_all", "en", event="Nairobi Jazz Night"))
    sold = tk.start("ev-1", State(version=7), ctx(event={**EVENT, "ticket_types": [STUDENT]}))
    assert texts(sold)[0].startswith(t("tickets.sold_out_all", "en", event="Nairobi Jazz Night"))


def test_a_hold_refused_for_reservations_says_they_may_free_up():
    step = walk("VIP", "2", "me", "skip", "confirm", tk.SoldOut("tt-vip", 0, reserved=2))
    assert texts(step)[0].startswith(t("tickets.reserved_type", "en", type="VIP"))
    final = walk("VIP", "2", "me", "skip", "confirm", tk.SoldOut("tt-vip", 0, 2), c=ctx(event=closed(VIP)))
    assert final == to_menu(t("tickets.reserved_type_final", "en", type="VIP"))


@pytest.mark.parametrize(
    ("reason", "key"), [("event_cancelled", "tickets.event_cancelled"), ("closed", "tickets.not_on_sale")]
)
def test_a_hold_refused_because_the_event_stopped_selling(reason, key):
    step = walk(*TO_HOLDING, tk.SalesClosed("tt-reg", reason))
    assert step == to_menu(t(key, "en", event="Nairobi Jazz Night"))


def test_the_free_ticket_limit_per_contact():
    c = ctx(event=FREE_EVENT)
    step = walk("Community", "1", "Peter Otieno", "skip", "confirm", tk.LimitReached("tt-free", 2, 2), c=c)
    assert texts(step)[0].startswith(
        t("tickets.limit_reached_other", "en", type="Community", count=2, have=2)
    )
    assert step.state.module is None


@pytest.mark.parametrize(
    ("settled", "key"),
    [
        (
            tk.LatePaymentSettled(
                "h-1", "refund_due", amount=Decimal(3000), event_name="Jazz", reason="event_cancelled"
            ),
            "tickets.cancelled_refund",
        ),
        (
            tk.LatePaymentSettled("h-1", "closed", event_name="Jazz", reason="event_cancelled"),
            "tickets.event_cancelled",
        ),
    ],
)
def test_an_event_cancelled_while_the_buyer_paid(settled, key):
    issuing = walk(*TO_AWAITING, PaymentResult("ws_CO_1", 0, "", "R1", Decimal(3000), hold_id="h-1"))
    step = feed(issuing, settled)
    assert step.state.module is None
    assert texts(step) == [t(key, "en", event="Jazz", amount="KES 3,000")]
