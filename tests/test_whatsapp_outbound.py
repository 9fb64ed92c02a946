"""engine.whatsapp.outbound: Meta's send examples validate, every limit holds at its boundary and breaks one
past it, builders produce valid requests, and answers are read and classified."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from engine.whatsapp import outbound as ob
from engine.whatsapp.outbound import (
    ApiError,
    SendRequestInvalid,
    SendResult,
    build_mark_read,
    build_payload,
    build_template,
    classify,
    parse_response,
    validate_send_request,
)
from state_machines.base import Button, Buttons, Image, ListMenu, Row, Text
from tests.helpers import shared_dir

SEND = shared_dir() / "whatsapp" / "payloads" / "send"
REQUESTS = sorted(SEND.glob("req_*.json"))


def _load(name: str) -> Any:
    return json.loads((SEND / name).read_text())


def test_the_shared_send_examples_are_there() -> None:
    assert len(REQUESTS) >= 10, SEND


@pytest.mark.parametrize("path", REQUESTS, ids=[p.name for p in REQUESTS])
def test_every_example_request_validates(path: Path) -> None:
    # All of them are sendable requests (placeholders are strings of legal length); req_text_02 omits
    # "type", which the Cloud API defaults to "text".
    body = json.loads(path.read_text())
    model = validate_send_request(body)
    expected = ob.MarkRead if "status" in body else None
    assert expected is None or isinstance(model, expected)
    assert getattr(model, "type", None) in (None, body.get("type", "text"))


# ---------------------------------------------------------------- limits


def _text(body: str = "hi") -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "254700000001",
        "type": "text",
        "text": {"body": body},
    }


def _buttons(n: int = 2) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": "254700000001",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pick one"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": f"b{i}", "title": f"Option {i}"}} for i in range(n)
                ]
            },
        },
    }


def _list(sections: list[int] | None = None) -> dict[str, Any]:
    sections = sections or [2]
    return {
        "messaging_product": "whatsapp",
        "to": "254700000001",
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Choose"},
            "action": {
                "button": "Menu",
                "sections": [
                    {
                        "title": f"Section {s}",
                        "rows": [
                            {"id": f"s{s}r{r}", "title": f"Row {r}", "description": "d"} for r in range(n)
                        ],
                    }
                    for s, n in enumerate(sections)
                ],
            },
        },
    }


def _image() -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": "254700000001",
        "type": "image",
        "image": {"link": "https://example.com/qr.png", "caption": "ticket"},
    }


def _document() -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "to": "254700000001",
        "type": "document",
        "document": {"id": "123", "caption": "receipt", "filename": "receipt.pdf"},
    }


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    target = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


BUTTON = ("interactive", "action", "buttons", 0, "reply")
ROW = ("interactive", "action", "sections", 0, "rows", 0)

# (base request, path, limit, field named in the error)
STRING_LIMITS = [
    (_text(), ("text", "body"), 4096, "text.body"),
    (_image(), ("image", "caption"), 1024, "image.caption"),
    (_document(), ("document", "caption"), 1024, "document.caption"),
    (_buttons(), ("interactive", "body", "text"), 1024, "interactive.body.text"),
    (_buttons(), (*BUTTON, "id"), 256, "interactive.action.buttons[0].reply.id"),
    (_buttons(), (*BUTTON, "title"), 20, "interactive.action.buttons[0].reply.title"),
    (_list(), ("interactive", "body", "text"), 4096, "interactive.body.text"),
    (_list(), ("interactive", "action", "button"), 20, "interactive.action.button"),
    (_list(), ("interactive", "action", "sections", 0, "title"), 24, "interactive.action.sections[0].title"),
    (_list(), (*ROW, "id"), 200, "interactive.action.sections[0].rows[0].id"),
    (_list(), (*ROW, "title"), 24, "interactive.action.sections[0].rows[0].title"),
    (_list(), (*ROW, "description"), 72, "interactive.action.sections[0].rows[0].description"),
    (
        _set(_list(), ("interactive", "footer"), {"text": "f"}),
        ("interactive", "footer", "text"),
        60,
        "interactive.footer.text",
    ),
    (
        _set(_buttons(), ("interactive", "header"), {"type": "text", "text": "h"}),
        ("interactive", "header", "text"),
        60,
        "interactive.header.text",
    ),
]


@pytest.mark.parametrize(("base", "path", "limit", "field"), STRING_LIMITS, ids=[s[3] for s in STRING_LIMITS])
def test_string_limits(base: dict[str, Any], path: tuple[Any, ...], limit: int, field: str) -> None:
    validate_send_request(_set(base, path, "é" * limit))  # characters, not bytes
    with pytest.raises(SendRequestInvalid) as caught:
        validate_send_request(_set(base, path, "é" * (limit + 1)))
    assert (caught.value.code, caught.value.field) == (100, field)
    assert f"at most {limit} characters" in caught.value.message and field in caught.value.message


COUNT_LIMITS = [
    (_buttons(3), _buttons(4), "interactive.action.buttons", "at most 3 items"),
    (_list([10]), _list([11]), "interactive.action.sections[0].rows", "at most 10 items"),
    (_list([5, 5]), _list([5, 6]), "interactive.action", "at most 10 rows in total"),
    (_list([1] * 10), _list([1] * 11), "interactive.action.sections", "at most 10 items"),
]


@pytest.mark.parametrize(
    ("ok", "bad", "field", "says"), COUNT_LIMITS, ids=["buttons", "rows", "total-rows", "sections"]
)
def test_count_limits(ok: dict[str, Any], bad: dict[str, Any], field: str, says: str) -> None:
    validate_send_request(ok)
    with pytest.raises(SendRequestInvalid) as caught:
        validate_send_request(bad)
    assert caught.value.field == field and says in caught.value.message


REJECTED = [
    (_set(_buttons(2), (*BUTTON, "title"), "Option 1"), "interactive.action", "button titles must be unique"),
    (_set(_buttons(2), (*BUTTON, "id"), "b1"), "interactive.action", "button ids must be unique"),
    (_set(_list([2]), (*ROW, "id"), "s0r1"), "interactive.action", "row ids must be unique"),
    (
        _set(_list([1, 1]), ("interactive", "action", "sections", 1, "title"), None),
        "interactive.action",
        "needs a title",
    ),
    (_buttons(0), "interactive.action.buttons", "at least 1 item"),
    (_set(_image(), ("image", "id"), "123"), "image", "exactly one of id or link"),
    (_set(_image(), ("image",), {"caption": "x"}), "image", "exactly one of id or link"),
    (_text(""), "text.body", "at least 1 character"),
    (_set(_text(), ("messaging_product",), "sms"), "messaging_product", "'whatsapp'"),
    (_set(_text(), ("to",), ""), "to", "at least 1 character"),
    ({k: v for k, v in _text().items() if k != "to"}, "to", "Field required"),
    (_set(_text(), ("text", "previewurl"), True), "text.previewurl", "Extra inputs"),
    (_set(_text(), ("type",), "carousel"), "type", "Unsupported message type"),
    (_set(_buttons(), ("interactive", "type"), "product"), "interactive.type", "Unsupported interactive"),
    (_set(_text(), ("context",), {"message_id": ""}), "context.message_id", "at least 1 character"),
    ({"messaging_product": "whatsapp", "status": "read"}, "message_id", "Field required"),
    (["not", "an", "object"], "", "JSON object"),
]


@pytest.mark.parametrize(("body", "field", "says"), REJECTED, ids=[f"{r[1]}:{r[2]}" for r in REJECTED])
def test_rejected_requests_name_the_field(body: Any, field: str, says: str) -> None:
    with pytest.raises(SendRequestInvalid) as caught:
        validate_send_request(body)
    assert caught.value.code == 100 and caught.value.field == field
    assert says in caught.value.message


# ---------------------------------------------------------------- builders


def test_build_text_is_exactly_the_cloud_api_shape() -> None:
    assert build_payload(Text("Karibu!"), "254700000001", reply_to="wamid.IN") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "254700000001",
        "context": {"message_id": "wamid.IN"},
        "type": "text",
        "text": {"body": "Karibu!", "preview_url": False},
    }


def test_build_buttons_is_exactly_the_cloud_api_shape() -> None:
    reply = Buttons("Pay now?", (Button("pay", "Pay"), Button("cancel", "Cancel")))
    assert build_payload(reply, "254700000001") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "254700000001",
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "Pay now?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "pay", "title": "Pay"}},
                    {"type": "reply", "reply": {"id": "cancel", "title": "Cancel"}},
                ]
            },
        },
    }


def test_build_list_puts_rows_in_one_section_and_omits_empty_descriptions() -> None:
    reply = ListMenu("Pick a show", "Shows", (Row("s1", "Friday night", "KES 500"), Row("s2", "Saturday")))
    payload = build_payload(reply, "254700000001")
    assert payload["interactive"] == {
        "type": "list",
        "body": {"text": "Pick a show"},
        "action": {
            "button": "Shows",
            "sections": [
                {
                    "rows": [
                        {"id": "s1", "title": "Friday night", "description": "KES 500"},
                        {"id": "s2", "title": "Saturday"},
                    ]
                }
            ],
        },
    }


@pytest.mark.parametrize(
    ("kwargs", "image"),
    [
        ({"image_id": "987"}, {"id": "987", "caption": "Your ticket"}),
        (
            {"image_link": "https://x.example/qr.png"},
            {"link": "https://x.example/qr.png", "caption": "Your ticket"},
        ),
    ],
)
def test_build_image_by_id_or_link(kwargs: dict[str, str], image: dict[str, str]) -> None:
    payload = build_payload(Image("qr:TKT-1", "Your ticket"), "254700000001", **kwargs)
    assert (payload["type"], payload["image"]) == ("image", image)


LIMIT_REPLIES = [
    Text("x" * 4096),
    Buttons("b" * 1024, tuple(Button(f"{n}" * 256, f"{n}" * 20) for n in range(3))),
    ListMenu("l" * 1024, "m" * 20, tuple(Row(f"{n:0200d}", "t" * 23 + str(n), "d" * 72) for n in range(10))),
    Image("qr:X", "c" * 1024),
]


@pytest.mark.parametrize("reply", LIMIT_REPLIES, ids=["text", "buttons", "list", "image"])
def test_builders_round_trip_at_the_limits(reply: Any) -> None:
    payload = build_payload(reply, "254700000001", image_id="1")
    assert (
        validate_send_request(json.loads(json.dumps(payload))).model_dump(
            exclude_none=True, exclude_unset=True
        )
        == payload
    )


@pytest.mark.parametrize(
    ("reply", "field"),
    [
        (Text("x" * 4097), "text.body"),
        (Buttons("b", (Button("a", "x" * 21),)), "interactive.action.buttons[0].reply.title"),
        (Buttons("b", tuple(Button(str(n), str(n)) for n in range(4))), "interactive.action.buttons"),
        (
            ListMenu("l", "m", tuple(Row(str(n), str(n)) for n in range(11))),
            "interactive.action.sections[0].rows",
        ),
        (Image("qr:X"), "image"),
    ],
    ids=["text", "button-title", "four-buttons", "eleven-rows", "image-without-source"],
)
def test_builders_refuse_replies_over_the_limits(reply: Any, field: str) -> None:
    with pytest.raises(SendRequestInvalid) as caught:
        build_payload(reply, "254700000001")
    assert caught.value.field == field


def test_build_mark_read_and_template_validate() -> None:
    assert isinstance(validate_send_request(build_mark_read("wamid.A", typing=True)), ob.MarkRead)
    payload = build_template(
        "254700000001",
        "ticket_reminder",
        "en",
        [{"type": "body", "parameters": [{"type": "text", "text": "Friday"}]}],
    )
    assert payload["template"]["language"] == {"code": "en"}


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize(
    "name", ["resp_success_01.json", "resp_success_02.json", "resp_success_03.json", "resp_success_06.json"]
)
def test_success_answers_give_the_wamid(name: str) -> None:
    result = parse_response(200, _load(name))
    assert isinstance(result, SendResult) and result.wamid and result.wamid.startswith("wamid.")


def test_mark_read_answer() -> None:
    result = parse_response(200, _load("resp_mark_read_01.json"))
    assert isinstance(result, SendResult) and result.success is True and result.wamid is None


@pytest.mark.parametrize(
    ("name", "http_status", "code", "subcode", "action"),
    [
        ("resp_error_190_01.json", 401, 190, None, "token_expired"),
        ("resp_error_http400_01.json", 400, 100, None, "permanent"),
        ("resp_error_http401_01.json", 401, 190, 463, "token_expired"),
        ("resp_error_http403_01.json", 403, 200, 1349174, "permanent"),
        ("resp_error_http429_01.json", 429, 4, 2446079, "retry"),
        ("resp_error_http500_01.json", 500, 2, None, "retry"),
        ("error_object_131047_01.json", 400, 131047, None, "permanent"),
        ("error_object_131053_01.json", 400, 131053, None, "retry"),
        ("error_object_190_01.json", 400, 190, 463, "token_expired"),
    ],
)
def test_error_answers(name: str, http_status: int, code: int, subcode: int | None, action: str) -> None:
    error = parse_response(http_status, _load(name))
    assert isinstance(error, ApiError)
    assert (error.code, error.subcode, error.http_status, error.action) == (
        code,
        subcode,
        http_status,
        action,
    )
    assert error.message


def test_error_details_and_transience_are_kept() -> None:
    error = ApiError.from_body(_load("error_object_131047_01.json"), 400)
    assert "24 hours" in (error.details or "")
    assert ApiError.from_body(_load("resp_error_http500_01.json"), 500).is_transient is True


@pytest.mark.parametrize(
    ("http_status", "body", "action"),
    [
        (502, "<html>Bad gateway</html>", "retry"),
        (0, None, "retry"),
        (200, {"unexpected": True}, "permanent"),
        (404, {"error": "not an object"}, "permanent"),
    ],
)
def test_unreadable_answers_become_errors(http_status: int, body: Any, action: str) -> None:
    error = parse_response(http_status, body)
    assert isinstance(error, ApiError) and error.code == 0 and error.action == action


@pytest.mark.parametrize(
    ("code", "http_status", "action"),
    [
        (130429, 400, "retry"),
        (131056, 400, "retry"),
        (4, 400, "retry"),
        (80007, 400, "retry"),
        (131048, 400, "retry"),
        (133016, 400, "retry"),
        (131053, 400, "retry"),
        (131057, 400, "retry"),
        (2, 500, "retry"),
        (131000, 503, "retry"),
        (0, 0, "retry"),
        (0, 429, "retry"),
        (0, 408, "retry"),
        (131047, 400, "permanent"),
        (131026, 400, "permanent"),
        (100, 400, "permanent"),
        (131051, 400, "permanent"),
        (131000, 400, "permanent"),
        (200, 403, "permanent"),
        (0, 404, "permanent"),
        (131047, 500, "permanent"),  # the code decides before the status
        (190, 401, "token_expired"),
        (190, 400, "token_expired"),
        (0, 401, "token_expired"),
    ],
)
def test_classify(code: int, http_status: int, action: str) -> None:
    assert classify(code, http_status) == action


def test_classify_honours_is_transient_for_unlisted_codes() -> None:
    assert classify(131000, 400, is_transient=True) == "retry"
    assert classify(131047, 400, is_transient=True) == "permanent"


def test_api_error_is_raisable() -> None:
    with pytest.raises(ApiError, match="131047"):
        raise ApiError.from_body(_load("error_object_131047_01.json"), 400)
