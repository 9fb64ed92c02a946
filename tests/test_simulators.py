"""The WhatsApp and M-Pesa simulators over real HTTP (httpx against uvicorn on free local ports)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.whatsapp.outbound import ApiError, build_payload, parse_response
from engine.whatsapp.webhook import inbound_to_event_fields, parse_envelope, split_envelope
from simulators import ServerRunner
from simulators.mpesa import MpesaSimulator, stk_password
from simulators.whatsapp import SimulatedUser, WebhookPoster, WhatsAppSimulator
from state_machines.base import Button, Buttons, Text

PNID, TOKEN, SECRET = "106540352242922", "token-abc", "app-secret-xyz"
USER = "254712345678"


class Receiver:
    """A tiny HTTP endpoint recording raw bodies and headers; answers with scripted statuses, then 200."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, dict[str, str]]] = []
        self.statuses: list[int] = []
        self.runner = ServerRunner(Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))
        self.url = ""

    async def _hook(self, request: Request) -> Response:
        self.received.append((await request.body(), dict(request.headers)))
        return Response(status_code=self.statuses.pop(0) if self.statuses else 200)

    def bodies(self) -> list[Any]:
        return [json.loads(body) for body, _ in self.received]

    async def wait(self, count: int, timeout: float = 5) -> list[Any]:
        await _eventually(lambda: len(self.received) >= count, timeout)
        return self.bodies()


async def _eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    rec.url = await rec.runner.start() + "/hook"
    yield rec
    await rec.runner.stop()


@pytest_asyncio.fixture(scope="module")
async def wa_started() -> AsyncIterator[WhatsAppSimulator]:
    sim = WhatsAppSimulator({PNID: TOKEN})
    await sim.start()
    yield sim
    await sim.stop()


@pytest_asyncio.fixture
async def wa(wa_started: WhatsAppSimulator, receiver: Receiver) -> AsyncIterator[WhatsAppSimulator]:
    wa_started.clear()
    wa_started.faults.clear()
    wa_started.rate_per_second = None
    wa_started.tokens = {PNID: TOKEN}
    receiver.received.clear()
    receiver.statuses.clear()
    yield wa_started
    wa_started.report_statuses(None)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def _send(
    http: httpx.AsyncClient,
    sim: WhatsAppSimulator,
    body: dict[str, Any],
    token: str = TOKEN,
    pnid: str = PNID,
) -> httpx.Response:
    return await http.post(
        f"{sim.base_url}/v23.0/{pnid}/messages", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def _text(to: str = USER, body: str = "Karibu") -> dict[str, Any]:
    return build_payload(Text(body), to)


# ---------------------------------------------------------------- WhatsApp: the send endpoint


async def test_accepted_message_is_answered_and_recorded(
    wa: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    before = time.time()
    response = await _send(http, wa, _text())
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp" and body["contacts"] == [{"input": USER, "wa_id": USER}]
    wamid = body["messages"][0]["id"]
    sent = parse_response(200, body)
    assert wamid.startswith("wamid.SIM") and not isinstance(sent, ApiError) and sent.wamid == wamid
    (recorded,) = (await http.get(f"{wa.base_url}/_sim/messages", params={"to": USER})).json()
    assert (recorded["wamid"], recorded["to"], recorded["phone_number_id"]) == (wamid, USER, PNID)
    assert recorded["payload"] == _text() and before <= recorded["received_at"] <= time.time()


@pytest.mark.parametrize(
    ("headers", "pnid", "status", "code"),
    [
        ({}, PNID, 401, 190),
        ({"Authorization": "Bearer wrong"}, PNID, 401, 190),
        ({"Authorization": f"Basic {TOKEN}"}, PNID, 401, 190),
        ({"Authorization": f"Bearer {TOKEN}"}, "999", 400, 100),
    ],
    ids=["no-token", "wrong-token", "not-bearer", "unknown-number"],
)
async def test_token_is_checked_per_number(
    wa: WhatsAppSimulator, http: httpx.AsyncClient, headers: dict[str, str], pnid: str, status: int, code: int
) -> None:
    response = await http.post(f"{wa.base_url}/v23.0/{pnid}/messages", json=_text(), headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert wa.messages() == []


async def test_tokens_can_be_set_over_http(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    assert (await _send(http, wa, _text(), token="t2", pnid="555")).status_code == 400
    await http.post(f"{wa.base_url}/_sim/tokens", json={"555": "t2"})
    assert (await _send(http, wa, _text(), token="t2", pnid="555")).status_code == 200


async def test_limits_are_rejected_with_code_100(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    body = build_payload(Buttons("Pick", tuple(Button(str(n), str(n)) for n in range(3))), USER)
    body["interactive"]["action"]["buttons"].append({"type": "reply", "reply": {"id": "3", "title": "3"}})
    response = await _send(http, wa, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (
        error["code"] == 100 and "interactive.action.buttons" in error["message"] and "3" in error["message"]
    )
    assert wa.messages() == []


async def test_invalid_json_is_rejected(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    response = await http.post(
        f"{wa.base_url}/v23.0/{PNID}/messages", content=b"{nope", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert (response.status_code, response.json()["error"]["code"]) == (400, 100)


async def test_scripted_faults_are_served_in_order_then_success(
    wa: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    faults = [{"status": 429, "code": 130429}, {"status": 500}, {"status": 400, "code": 131047}]
    assert (await http.post(f"{wa.base_url}/_sim/faults", json=faults)).json()["faults"] == faults
    answers = [await _send(http, wa, _text()) for _ in range(4)]
    assert [(a.status_code, a.json().get("error", {}).get("code")) for a in answers] == [
        (429, 130429),
        (500, 2),
        (400, 131047),
        (200, None),
    ]
    actions = [parse_response(a.status_code, a.json()) for a in answers[:3]]
    assert [a.action for a in actions if isinstance(a, ApiError)] == ["retry", "retry", "permanent"]
    assert len(wa.messages()) == 1


async def test_delay_fault_then_normal_answer(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    await http.post(f"{wa.base_url}/_sim/faults", json=[{"delay": 0.3}])
    started = time.monotonic()
    response = await _send(http, wa, _text())
    assert response.status_code == 200 and time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):  # a client with a shorter timeout sees a timeout
        await http.post(f"{wa.base_url}/_sim/faults", json=[{"delay": 1.0}])
        await http.post(
            f"{wa.base_url}/v23.0/{PNID}/messages",
            json=_text(),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=0.2,
        )
    # ... yet the message was accepted: a timed-out send may still reach the user (why senders dedupe).
    assert len(await wa.wait_for_messages(2, timeout=3)) == 2


async def test_fault_for_one_recipient_leaves_others_alone(
    wa: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    await http.post(
        f"{wa.base_url}/_sim/faults", json=[{"status": 400, "code": 131056, "to": "254700000009"}]
    )
    assert (await _send(http, wa, _text(USER))).status_code == 200
    assert (await _send(http, wa, _text("254700000009"))).json()["error"]["code"] == 131056


async def test_rate_rule_answers_130429_beyond_the_rate(
    wa: WhatsAppSimulator, http: httpx.AsyncClient
) -> None:
    await http.post(f"{wa.base_url}/_sim/faults", json={"rate": 2})
    codes = [(await _send(http, wa, _text())).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    await http.delete(f"{wa.base_url}/_sim/faults")
    assert (await _send(http, wa, _text())).status_code == 200


async def test_mark_as_read_answers_success(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN1"}
    response = await _send(http, wa, body)
    assert response.json() == {"success": True}
    assert [r["message_id"] for r in (await http.get(f"{wa.base_url}/_sim/reads")).json()] == ["wamid.IN1"]
    assert wa.messages() == []


async def test_recorded_messages_filter_and_clear(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    await _send(http, wa, _text(USER, "one"))
    await _send(http, wa, _text("254700000002", "two"))
    listed = (await http.get(f"{wa.base_url}/_sim/messages", params={"to": "254700000002"})).json()
    assert [m["payload"]["text"]["body"] for m in listed] == ["two"]
    assert len((await http.get(f"{wa.base_url}/_sim/messages")).json()) == 2
    await http.delete(f"{wa.base_url}/_sim/messages")
    assert (await http.get(f"{wa.base_url}/_sim/messages")).json() == []


async def test_wait_for_messages(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    waiting = asyncio.create_task(wa.wait_for_messages(2, to=USER, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await _send(http, wa, _text(USER, "a"))
    await _send(http, wa, _text("254700000002", "other"))
    await _send(http, wa, _text(USER, "b"))
    assert [m["payload"]["text"]["body"] for m in await waiting] == ["a", "b"]
    with pytest.raises(TimeoutError, match="2 of 3"):
        await wa.wait_for_messages(3, to=USER, timeout=0.2)


async def test_media_upload_then_send_by_id(wa: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    response = await http.post(
        f"{wa.base_url}/v23.0/{PNID}/media",
        headers={"Authorization": f"Bearer {TOKEN}"},
        data={"messaging_product": "whatsapp", "type": "image/png"},
        files={"file": ("qr.png", png, "image/png")},
    )
    media_id = response.json()["id"]
    downloaded = await http.get(f"{wa.base_url}/_sim/media/{media_id}")
    assert downloaded.content == png and downloaded.headers["content-type"] == "image/png"
    body = {"messaging_product": "whatsapp", "to": USER, "type": "image", "image": {"id": media_id}}
    assert (await _send(http, wa, body)).status_code == 200
    missing = await http.post(
        f"{wa.base_url}/v23.0/{PNID}/media",
        headers={"Authorization": f"Bearer {TOKEN}"},
        data={"messaging_product": "whatsapp"},
    )
    assert missing.json()["error"]["code"] == 100


# ---------------------------------------------------------------- WhatsApp: the user's side


def _verify(body: bytes, headers: dict[str, str]) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers["x-hub-signature-256"], expected)


async def test_simulated_user_posts_signed_envelopes(wa: WhatsAppSimulator, receiver: Receiver) -> None:
    poster = WebhookPoster(receiver.url, SECRET)
    user = SimulatedUser(poster, PNID, "15550783881", USER, "Wanjiku")
    said = await user.say("Habari, café?")
    tapped = await user.tap_button("pay", "Pay now", context_id="wamid.OUT1")
    picked = await user.pick_row("vip", "VIP", "KES 2,000")
    await poster.aclose()
    assert [p.response.status_code for p in (said, tapped, picked)] == [200, 200, 200]
    assert (
        said.message_id.startswith("wamid.SIMU")
        and len({said.message_id, tapped.message_id, picked.message_id}) == 3
    )
    parts = []
    for body, headers in receiver.received:
        assert _verify(body, headers) and headers["content-type"] == "application/json"
        assert body == json.dumps(json.loads(body), separators=(",", ":")).encode()  # compact, \u-escaped
        parts += split_envelope(parse_envelope(json.loads(body)))
    assert b"caf\\u00e9" in receiver.received[0][0]
    assert [(p.external_id, p.wa_id, p.contact_name, p.phone_number_id) for p in parts] == [
        (m.message_id, USER, "Wanjiku", PNID) for m in (said, tapped, picked)
    ]
    assert [inbound_to_event_fields(p.payload) for p in parts] == [
        ("text", "Habari, café?", None),
        ("interactive", "Pay now", "pay"),
        ("interactive", "VIP", "vip"),
    ]
    assert parts[1].payload["context"]["id"] == "wamid.OUT1"


async def test_escaped_slashes_are_signed_as_sent(wa: WhatsAppSimulator, receiver: Receiver) -> None:
    poster = WebhookPoster(receiver.url, SECRET, escape_slashes=True)
    await SimulatedUser(poster, PNID, "15550783881", USER).say("see https://example.com/a")
    await poster.aclose()
    ((body, headers),) = receiver.received
    assert b"https:\\/\\/example.com\\/a" in body and _verify(body, headers)
    assert json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"].endswith("/a")


async def test_a_wrong_signature_can_be_forced(wa: WhatsAppSimulator, receiver: Receiver) -> None:
    poster = WebhookPoster(receiver.url, SECRET)
    await poster.post({"object": "whatsapp_business_account", "entry": []}, signature="sha256=00")
    await poster.aclose()
    assert not _verify(*receiver.received[0])


async def test_statuses_for_accepted_messages(
    wa: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    poster = WebhookPoster(receiver.url, SECRET)
    wa.report_statuses(poster, ("sent", "delivered", "read"))
    wamid = (await _send(http, wa, _text())).json()["messages"][0]["id"]
    await receiver.wait(3)
    await SimulatedUser(poster, PNID, "", USER).acknowledge(wamid, ("failed",))
    await poster.aclose()
    parts = [
        p
        for body, headers in receiver.received
        if _verify(body, headers)
        for p in split_envelope(parse_envelope(json.loads(body)))
    ]
    assert [(p.kind, p.external_id, p.wa_id) for p in parts] == [
        ("status", f"{wamid}:{s}", USER) for s in ("sent", "delivered", "read", "failed")
    ]
    assert parts[-1].payload["errors"][0]["code"] == 131026


# ---------------------------------------------------------------- M-Pesa


@pytest_asyncio.fixture(scope="module")
async def mpesa_started() -> AsyncIterator[MpesaSimulator]:
    sim = MpesaSimulator("ck", "cs", "174379", "passkey", callback_delay=0.05)
    await sim.start()
    yield sim
    await sim.stop()


@pytest_asyncio.fixture
async def mpesa(mpesa_started: MpesaSimulator, receiver: Receiver) -> MpesaSimulator:
    mpesa_started.outcomes = {"*": "success"}
    mpesa_started.query_modes = {"*": "auto"}
    receiver.received.clear()
    receiver.statuses.clear()
    return mpesa_started


async def _token(http: httpx.AsyncClient, sim: MpesaSimulator) -> str:
    auth = base64.b64encode(b"ck:cs").decode()
    response = await http.get(
        f"{sim.base_url}/oauth/v1/generate",
        params={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {auth}"},
    )
    assert response.json()["expires_in"] == "3599"
    return response.json()["access_token"]


def _stk(callback_url: str, phone: str = USER, amount: Any = 500, **overrides: Any) -> dict[str, Any]:
    timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
    body = {
        "BusinessShortCode": "174379",
        "Password": stk_password("174379", "passkey", timestamp),
        "Timestamp": timestamp,
        "TransactionType": "CustomerPayBillOnline",
        "Amount": amount,
        "PartyA": phone,
        "PartyB": "174379",
        "PhoneNumber": phone,
        "CallBackURL": callback_url,
        "AccountReference": "TKT-7Q2M9X",
        "TransactionDesc": "Tickets",
    }
    return body | overrides


async def _push(
    http: httpx.AsyncClient, sim: MpesaSimulator, body: dict[str, Any], token: str | None = None
) -> httpx.Response:
    token = token or await _token(http, sim)
    return await http.post(
        f"{sim.base_url}/mpesa/stkpush/v1/processrequest",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.mark.parametrize(
    ("params", "auth", "error_code"),
    [
        ({"grant_type": "client_credentials"}, b"ck:wrong", "400.008.01"),
        ({"grant_type": "password"}, b"ck:cs", "400.008.02"),
        ({}, b"ck:cs", "400.008.02"),
    ],
)
async def test_oauth_rejects(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, params: dict[str, str], auth: bytes, error_code: str
) -> None:
    response = await http.get(
        f"{mpesa.base_url}/oauth/v1/generate",
        params=params,
        headers={"Authorization": "Basic " + base64.b64encode(auth).decode()},
    )
    assert (response.status_code, response.json()["errorCode"]) == (400, error_code)


async def test_stk_push_needs_a_token(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    response = await _push(http, mpesa, _stk(receiver.url), token="made-up")
    assert (response.status_code, response.json()["errorCode"]) == (401, "404.001.03")


@pytest.mark.parametrize(
    ("outcome", "result_code"),
    [("success", 0), ("insufficient_funds", 1), ("cancelled", 1032), ("timeout", 1037)],
)
async def test_stk_push_then_callback(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver, outcome: str, result_code: int
) -> None:
    await http.post(f"{mpesa.base_url}/_sim/outcomes", json={USER: outcome})
    response = await _push(http, mpesa, _stk(receiver.url, amount="500"))
    accepted = response.json()
    assert response.status_code == 200 and accepted["ResponseCode"] == "0"
    assert accepted["ResponseDescription"] == "Success. Request accepted for processing"
    assert accepted["CheckoutRequestID"].startswith("ws_CO_") and accepted["MerchantRequestID"]
    (callback,) = await receiver.wait(1)
    result = callback["Body"]["stkCallback"]
    assert (result["CheckoutRequestID"], result["MerchantRequestID"], result["ResultCode"]) == (
        accepted["CheckoutRequestID"],
        accepted["MerchantRequestID"],
        result_code,
    )
    if result_code == 0:
        items = {i["Name"]: i["Value"] for i in result["CallbackMetadata"]["Item"]}
        assert items["Amount"] == 500 and items["PhoneNumber"] == int(USER)
        assert items["MpesaReceiptNumber"].startswith("SIM") and len(str(items["TransactionDate"])) == 14
    else:
        assert "CallbackMetadata" not in result and result["ResultDesc"]


async def _query(
    http: httpx.AsyncClient, sim: MpesaSimulator, token: str, checkout_id: str
) -> httpx.Response:
    timestamp = datetime.now().strftime("%Y%m%d%H%M%S")
    return await http.post(
        f"{sim.base_url}/mpesa/stkpushquery/v1/query",
        json={
            "BusinessShortCode": "174379",
            "Password": stk_password("174379", "passkey", timestamp),
            "Timestamp": timestamp,
            "CheckoutRequestID": checkout_id,
        },
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_no_callback_outcome_and_stk_query(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await http.post(f"{mpesa.base_url}/_sim/outcomes", json={USER: ["no_callback", "success"]})
    token = await _token(http, mpesa)
    lost = (await _push(http, mpesa, _stk(receiver.url), token)).json()["CheckoutRequestID"]
    paid = (await _push(http, mpesa, _stk(receiver.url), token)).json()["CheckoutRequestID"]
    (callback,) = await receiver.wait(1)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1 and callback["Body"]["stkCallback"]["CheckoutRequestID"] == paid
    assert (await _query(http, mpesa, token, lost)).json()["errorCode"] == "500.001.1001"
    answer = (await _query(http, mpesa, token, paid)).json()
    assert (answer["ResponseCode"], answer["ResultCode"], answer["CheckoutRequestID"]) == ("0", "0", paid)
    assert answer["MerchantRequestID"] == callback["Body"]["stkCallback"]["MerchantRequestID"]


async def test_stk_query_checks_the_password_and_the_id(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    token = await _token(http, mpesa)
    checkout = (await _push(http, mpesa, _stk(receiver.url), token)).json()["CheckoutRequestID"]
    wrong = await http.post(
        f"{mpesa.base_url}/mpesa/stkpushquery/v1/query",
        json={
            "BusinessShortCode": "174379",
            "Password": "x",
            "Timestamp": "20261202101500",
            "CheckoutRequestID": checkout,
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert (wrong.status_code, wrong.json()["errorMessage"]) == (400, "Bad Request - Invalid Password")
    unknown = await _query(http, mpesa, token, "ws_CO_nope")
    assert unknown.json()["errorMessage"] == "Bad Request - Invalid CheckoutRequestID"


async def test_stk_query_says_processing_until_the_customer_answered_then_what_they_did(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await http.post(f"{mpesa.base_url}/_sim/outcomes", json={USER: ["lost_callback", "cancelled"]})
    token = await _token(http, mpesa)
    mpesa.callback_delay = 0.5  # the customer takes half a second to answer
    try:
        paid = (await _push(http, mpesa, _stk(receiver.url), token)).json()["CheckoutRequestID"]
        cancelled = (await _push(http, mpesa, _stk(receiver.url), token)).json()["CheckoutRequestID"]
        assert (await _query(http, mpesa, token, paid)).json()["errorCode"] == "500.001.1001"
    finally:
        mpesa.callback_delay = 0.05
    await receiver.wait(1)  # the cancelled one's callback; the paid one's is lost
    await asyncio.sleep(0.1)
    assert [
        json.loads(body)["Body"]["stkCallback"]["CheckoutRequestID"] for body, _ in receiver.received
    ] == [cancelled]
    assert (await _query(http, mpesa, token, paid)).json()["ResultCode"] == "0"
    assert (await _query(http, mpesa, token, cancelled)).json()["ResultCode"] == "1032"


@pytest.mark.parametrize(
    ("mode", "status", "field", "value"),
    [
        ("paid", 200, "ResultCode", "0"),
        ("failed", 200, "ResultCode", "1032"),
        ("processing", 500, "errorCode", "500.001.1001"),
        ("unreachable", 503, None, None),
    ],
)
async def test_stk_query_can_be_told_what_to_say(
    mpesa: MpesaSimulator,
    http: httpx.AsyncClient,
    receiver: Receiver,
    mode: str,
    status: int,
    field: str | None,
    value: str | None,
) -> None:
    token = await _token(http, mpesa)
    checkout = (await _push(http, mpesa, _stk(receiver.url), token)).json()["CheckoutRequestID"]
    assert (await http.post(f"{mpesa.base_url}/_sim/query", json={USER: mode})).status_code == 200
    try:
        answer = await _query(http, mpesa, token, checkout)
        assert answer.status_code == status
        if field is None:
            assert not answer.headers["content-type"].startswith("application/json")
        else:
            assert answer.json()[field] == value
    finally:
        mpesa.set_query({USER: "auto"})
    bad = await http.post(f"{mpesa.base_url}/_sim/query", json={USER: "maybe"})
    assert bad.status_code == 400


async def test_callback_is_retried_until_200(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [500, 503]
    checkout = (await _push(http, mpesa, _stk(receiver.url))).json()["CheckoutRequestID"]
    bodies = await receiver.wait(3)
    assert bodies[0] == bodies[1] == bodies[2]
    (record,) = [
        r
        for r in (await http.get(f"{mpesa.base_url}/_sim/requests")).json()
        if r["checkout_request_id"] == checkout
    ]
    assert [d["status"] for d in record["deliveries"]] == [500, 503, 200]


async def test_callback_can_be_resent_as_a_duplicate_or_changed(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    checkout = (await _push(http, mpesa, _stk(receiver.url))).json()["CheckoutRequestID"]
    (first,) = await receiver.wait(1)
    resent = await http.post(f"{mpesa.base_url}/_sim/callback/{checkout}")
    assert resent.json()["status"] == 200
    changed = await http.post(f"{mpesa.base_url}/_sim/callback/{checkout}", json={"outcome": "cancelled"})
    assert changed.json()["status"] == 200
    bodies = await receiver.wait(3)
    assert bodies[1] == first and bodies[2]["Body"]["stkCallback"]["ResultCode"] == 1032
    assert (await http.post(f"{mpesa.base_url}/_sim/callback/ws_CO_nope")).status_code == 404


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Amount", 0),
        ("Amount", -5),
        ("Amount", 1.5),
        ("Amount", "1.5"),
        ("Amount", True),
        ("PhoneNumber", "0712345678"),
        ("PhoneNumber", "25471234567"),
        ("PartyA", "+254712345678"),
        ("Password", "d3Jvbmc="),
        ("Timestamp", "2026-11-25"),
        ("Timestamp", "20261345000000"),
        ("TransactionType", "Pay"),
        ("CallBackURL", "ftp://x"),
        ("BusinessShortCode", "600000"),
        ("PartyB", "abc"),
        ("AccountReference", "X" * 13),
        ("TransactionDesc", "Y" * 14),
        ("TransactionDesc", ""),
    ],
)
async def test_invalid_stk_fields_are_rejected(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver, field: str, value: Any
) -> None:
    response = await _push(http, mpesa, _stk(receiver.url, **{field: value}))
    body = response.json()
    assert response.status_code == 400 and body["errorCode"] == "400.002.02"
    assert body["errorMessage"] == f"Bad Request - Invalid {field}" and body["requestId"]


async def test_safaricom_1xx_numbers_and_limits_at_the_boundary(
    mpesa: MpesaSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    body = _stk(
        receiver.url, phone="254112345678", amount=1, AccountReference="X" * 12, TransactionDesc="Y" * 13
    )
    assert (await _push(http, mpesa, body)).status_code == 200


async def test_unknown_outcome_is_refused(mpesa: MpesaSimulator, http: httpx.AsyncClient) -> None:
    response = await http.post(f"{mpesa.base_url}/_sim/outcomes", json={USER: "maybe"})
    assert response.status_code == 400 and mpesa.outcomes == {"*": "success"}


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize("which", ["whatsapp", "mpesa", "openai"])
async def test_command_line_runner_serves_and_stops_on_sigterm(which: str, http: httpx.AsyncClient) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators", which, "--port", "0", stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()  # type: ignore[union-attr]
        base_url = line.rsplit(" ", 1)[-1].strip()
        assert line.startswith(f"{which} simulator listening on http://127.0.0.1:")
        assert (await http.get(f"{base_url}/_sim/health")).json() == {"ok": True}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
