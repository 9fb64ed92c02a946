"""engine.whatsapp.webhook against every captured payload in ../shared/whatsapp/payloads, plus edge cases."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from engine.whatsapp import webhook as wh
from engine.whatsapp.webhook import inbound_to_event_fields, parse_envelope, split_envelope
from tests.helpers import shared_dir

SHARED = shared_dir() / "whatsapp"
PAYLOADS = sorted((SHARED / "payloads").glob("*.json"))
SHA_ID = re.compile(r"^sha256:[0-9a-f]{64}$")


def _load(name: str) -> dict[str, Any]:
    return json.loads((SHARED / "payloads" / name).read_text())


def _expected_parts(raw: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(kind, wa_id, external_id or "") per part, computed from the raw JSON independently of the module."""
    expected = []
    for entry in raw["entry"]:
        for change in entry["changes"]:
            value = change["value"]
            messages, statuses = value.get("messages", []), value.get("statuses", [])
            if change["field"] != "messages" or not (messages or statuses):
                expected.append(("error" if value.get("errors") else "other", "", ""))
                continue
            contacts = value.get("contacts", [])
            for m in messages:
                wa_id = m.get("from") or (contacts[0].get("wa_id", "") if len(contacts) == 1 else "")
                expected.append(("message", wa_id, m["id"]))
            expected.extend(("status", s["recipient_id"], f"{s['id']}:{s['status']}") for s in statuses)
    return expected


def test_the_shared_payloads_are_there() -> None:
    assert len(PAYLOADS) >= 80, SHARED


@pytest.mark.parametrize("path", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_every_captured_payload_parses_and_splits(path: Path) -> None:
    raw = json.loads(path.read_text())
    parts = split_envelope(parse_envelope(raw))
    expected = _expected_parts(raw)
    assert [(p.kind, p.wa_id) for p in parts] == [(kind, wa_id) for kind, wa_id, _ in expected]
    for part, (kind, _, external_id) in zip(parts, expected, strict=True):
        if kind in ("message", "status"):
            assert part.external_id == external_id
            assert (
                part.phone_number_id == raw["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"]
            )
            assert isinstance(part.timestamp, int)
        else:
            assert SHA_ID.match(part.external_id)
            assert part.timestamp is None
    assert parts == split_envelope(parse_envelope(copy.deepcopy(raw))), "ids must be stable"


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("text_02.json", wh.TextMessage),
        ("button_reply_02.json", wh.InteractiveMessage),
        ("list_reply_05.json", wh.InteractiveMessage),
        ("nfm_reply_03.json", wh.InteractiveMessage),
        ("button_02.json", wh.ButtonMessage),
        ("image_05.json", wh.ImageMessage),
        ("voice_02.json", wh.AudioMessage),
        ("video_02.json", wh.VideoMessage),
        ("document_02.json", wh.DocumentMessage),
        ("sticker_03.json", wh.StickerMessage),
        ("location_04.json", wh.LocationMessage),
        ("contacts_02.json", wh.ContactsMessage),
        ("reaction_02.json", wh.ReactionMessage),
        ("order_02.json", wh.OrderMessage),
        ("system_01.json", wh.SystemMessage),
        ("edit_01.json", wh.EditMessage),
        ("revoke_01.json", wh.RevokeMessage),
        ("unsupported_02.json", wh.UnsupportedMessage),
        ("unsupported_04.json", wh.UnsupportedMessage),  # older "unknown" type
        ("errors_02.json", wh.InteractiveMessage),  # interactive without its body, errors instead
    ],
)
def test_messages_get_their_typed_model(name: str, model: type) -> None:
    env = parse_envelope(_load(name))
    assert type(env.entry[0].changes[0].value.messages[0]) is model


def test_typed_fields_are_readable() -> None:
    message = parse_envelope(_load("list_reply_05.json")).entry[0].changes[0].value.messages[0]
    assert isinstance(message, wh.InteractiveMessage) and message.interactive is not None
    chosen = message.interactive.list_reply
    assert chosen is not None
    assert chosen.id == "priority_express"
    assert chosen.description == "Next Day to 2 Days"
    audio = parse_envelope(_load("voice_02.json")).entry[0].changes[0].value.messages[0]
    assert isinstance(audio, wh.AudioMessage)
    assert audio.audio.voice is True
    unsupported = parse_envelope(_load("unsupported_05.json")).entry[0].changes[0].value.messages[0]
    assert unsupported.errors[0].code == 131051
    status = parse_envelope(_load("status_failed_02.json")).entry[0].changes[0].value.statuses[0]
    assert (status.status, status.errors[0].code) == ("failed", 130472)
    sent = parse_envelope(_load("status_sent_03.json")).entry[0].changes[0].value.statuses[0]
    assert sent.biz_opaque_callback_data == "some data" and (sent.pricing or {})["category"] == "service"


def _with_message(message: dict[str, Any]) -> dict[str, Any]:
    raw = _load("text_04.json")
    raw["entry"][0]["changes"][0]["value"]["messages"] = [message]
    return raw


@pytest.mark.parametrize(
    "message",
    [
        {
            "from": "254700000001",
            "id": "wamid.A",
            "timestamp": "1700000000",
            "type": "poll",
            "poll": {"q": 1},
        },
        {"from": "254700000001", "id": "wamid.A", "timestamp": "1700000000", "type": "text"},  # no body
        {"from": "254700000001", "id": "wamid.A", "timestamp": "1700000000", "type": "image", "image": "x"},
        {"from": "254700000001", "id": "wamid.A", "timestamp": "1700000000"},  # no type at all
    ],
    ids=["new-type", "text-without-body", "image-not-object", "no-type"],
)
def test_odd_messages_parse_as_unknown_and_are_kept_whole(message: dict[str, Any]) -> None:
    env = parse_envelope(_with_message(message))
    assert type(env.entry[0].changes[0].value.messages[0]) is wh.UnknownMessage
    (part,) = split_envelope(env)
    assert (part.kind, part.external_id, part.wa_id, part.payload) == (
        "message",
        "wamid.A",
        "254700000001",
        message,
    )


def test_business_scoped_user_without_phone_number() -> None:
    (part,) = split_envelope(parse_envelope(_load("text_bsuid_04.json")))
    assert (part.wa_id, part.user_id, part.contact_name) == ("", "BSUID_123", "NAME")


def test_system_message_has_no_contact() -> None:
    (part,) = split_envelope(parse_envelope(_load("system_01.json")))
    assert (part.wa_id, part.contact_name) == ("972987654321", None)


def test_multiple_contacts_match_by_wa_id() -> None:
    raw = _load("text_04.json")
    value = raw["entry"][0]["changes"][0]["value"]
    value["contacts"] = [
        {"profile": {"name": "Amina"}, "wa_id": "254700000001"},
        {"profile": {"name": "Baraka"}, "wa_id": "254700000002"},
    ]
    value["messages"] = [
        dict(value["messages"][0], id="wamid.1", **{"from": "254700000002"}),
        dict(value["messages"][0], id="wamid.2", **{"from": "254700000001"}),
    ]
    assert [(p.wa_id, p.contact_name) for p in split_envelope(parse_envelope(raw))] == [
        ("254700000002", "Baraka"),
        ("254700000001", "Amina"),
    ]


def test_messages_and_statuses_in_one_change_keep_envelope_order() -> None:
    raw = _load("text_04.json")
    value = raw["entry"][0]["changes"][0]["value"]
    value["statuses"] = _load("status_read_01.json")["entry"][0]["changes"][0]["value"]["statuses"]
    raw["entry"].append(_load("status_sent_02.json")["entry"][0])
    parts = split_envelope(parse_envelope(raw))
    assert [p.external_id for p in parts] == [
        value["messages"][0]["id"],
        "wamid.xyzxyz:read",
        "wamid.xyzxyz:sent",
    ]


def test_error_only_value_is_one_error_part() -> None:
    raw = _load("text_04.json")
    value = raw["entry"][0]["changes"][0]["value"]
    del value["messages"], value["contacts"]
    value["errors"] = [{"code": 131000, "title": "Something went wrong"}]
    (part,) = split_envelope(parse_envelope(raw))
    assert (part.kind, part.payload) == ("error", value)
    assert SHA_ID.match(part.external_id)


def test_other_parts_differ_by_content() -> None:
    a = split_envelope(parse_envelope(_load("group_lifecycle_01.json")))[0]
    b = split_envelope(parse_envelope(_load("group_participants_01.json")))[0]
    assert a.external_id != b.external_id and a.field == "group_lifecycle_update"


def test_placeholder_timestamp_is_none() -> None:
    (part,) = split_envelope(
        parse_envelope(
            _with_message(
                {
                    "from": "254700000001",
                    "id": "wamid.A",
                    "timestamp": "TIMESTAMP",
                    "type": "text",
                    "text": {"body": "hi"},
                }
            )
        )
    )
    assert part.timestamp is None


@pytest.mark.parametrize(
    "raw",
    [
        [],
        "whatsapp",
        {},
        {"object": "whatsapp_business_account"},
        {"entry": []},
        {"object": "whatsapp_business_account", "entry": {}},
        {"object": 1, "entry": []},
        {"object": None, "entry": []},
        {"object": "whatsapp_business_account", "entry": [{"id": "1"}]},
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": {}}]},
        {"object": "whatsapp_business_account", "entry": ["x"]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {}}]}]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": []}]}]},
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"field": "messages", "value": {"messages": {}}}]}],
        },
    ],
    ids=[
        "list",
        "string",
        "empty",
        "no-entry",
        "no-object",
        "entry-not-list",
        "object-int",
        "object-null",
        "no-changes",
        "changes-not-list",
        "entry-item-not-object",
        "no-field",
        "no-value",
        "value-not-object",
        "messages-not-list",
    ],
)
def test_non_envelopes_are_rejected(raw: Any) -> None:
    with pytest.raises(ValidationError):
        parse_envelope(raw)


def test_empty_entry_list_is_an_envelope_with_nothing_in_it() -> None:
    assert split_envelope(parse_envelope({"object": "whatsapp_business_account", "entry": []})) == []


def test_split_works_on_a_model_built_without_parse_envelope() -> None:
    raw = _load("text_multiple_01.json")
    parts = split_envelope(wh.WebhookEnvelope.model_validate(raw))
    assert [p.payload["text"]["body"] for p in parts] == ["MESSAGE_BODY", "MESSAGE_BODY2"]


def _msg(kind: str, body: Any = None, **extra: Any) -> dict[str, Any]:
    message = {"from": "254700000001", "id": "wamid.X", "timestamp": "1700000000", "type": kind, **extra}
    if body is not None:
        message[kind] = body
    return message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (_msg("text", {"body": "Habari"}), ("text", "Habari", None)),
        (
            _msg("interactive", {"type": "button_reply", "button_reply": {"id": "yes", "title": "Ndiyo"}}),
            ("interactive", "Ndiyo", "yes"),
        ),
        (
            _msg(
                "interactive",
                {"type": "list_reply", "list_reply": {"id": "r2", "title": "VIP", "description": "d"}},
            ),
            ("interactive", "VIP", "r2"),
        ),
        (
            _msg("interactive", {"type": "nfm_reply", "nfm_reply": {"body": "Sent", "response_json": "{}"}}),
            ("interactive", "", None),
        ),
        (_msg("interactive"), ("interactive", "", None)),
        (
            _msg("button", {"payload": "STOP", "text": "Stop promotions"}),
            ("button", "Stop promotions", "STOP"),
        ),
        (_msg("image", {"id": "1", "caption": "my receipt"}), ("image", "my receipt", None)),
        (_msg("image", {"id": "1"}), ("image", "", None)),
        (_msg("video", {"id": "1", "caption": "clip"}), ("video", "clip", None)),
        (_msg("document", {"id": "1", "caption": "cv", "filename": "cv.pdf"}), ("document", "cv", None)),
        (_msg("audio", {"id": "1", "voice": True}), ("audio", "", None)),
        (_msg("sticker", {"id": "1"}), ("sticker", "", None)),
        (_msg("location", {"latitude": -1.28, "longitude": 36.82}), ("location", "", None)),
        (_msg("reaction", {"message_id": "wamid.Y", "emoji": "👍"}), ("reaction", "", None)),
        (_msg("unsupported", errors=[{"code": 131051}]), ("unsupported", "", None)),
        (_msg("poll", {"question": "?"}), ("poll", "", None)),
        (_msg("text", "not-an-object"), ("text", "", None)),
        ({"id": "wamid.X"}, ("unknown", "", None)),
    ],
)
def test_inbound_to_event_fields(message: dict[str, Any], expected: tuple[str, str, str | None]) -> None:
    assert inbound_to_event_fields(message) == expected


@pytest.mark.parametrize("path", PAYLOADS, ids=[p.name for p in PAYLOADS])
def test_event_fields_never_fail_on_captured_messages(path: Path) -> None:
    for part in split_envelope(parse_envelope(json.loads(path.read_text()))):
        if part.kind == "message":
            kind, text, choice = inbound_to_event_fields(part.payload)
            assert kind == part.payload["type"] and isinstance(text, str)
            assert choice is None or isinstance(choice, str)
