"""engine/mpesa.py: the callback's secrets and source, Daraja's STK Push Query answers, the database's rule that
a confirmed payment stays paid, and one OAuth token shared by concurrent requests (against the simulator)."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import httpx
import pytest
from pydantic import AnyUrl

from engine import mpesa
from engine.settings import Settings
from simulators.mpesa import MpesaSimulator


def test_callback_url_carries_both_secrets_in_its_path() -> None:
    s = Settings(
        mpesa_callback_url="https://hooks.example.com/payments/mpesa/callback/",
        mpesa_callback_secret="d" * 32,
    )
    org = uuid.uuid4()
    token = mpesa.new_callback_token(org)
    assert (
        mpesa.callback_url(s, token)
        == f"https://hooks.example.com/payments/mpesa/callback/{'d' * 32}/{token}"
    )
    assert mpesa.token_org(token) == org and token != mpesa.new_callback_token(org)
    assert mpesa.token_org(f"{org.hex}-short") is None and mpesa.token_org(uuid.uuid4().hex) is None
    assert mpesa.token_org("zz" * 16 + "-" + "x" * 32) is None
    assert mpesa.token_hash(token) == mpesa.token_hash(token) and len(mpesa.token_hash(token)) == 32
    assert mpesa.deployment_secret_ok(s, "d" * 32) and not mpesa.deployment_secret_ok(s, "d" * 31)


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "seen"),
    [
        ("196.201.214.200", None, "", "196.201.214.200"),
        (
            "203.0.113.9",
            "196.201.214.200",
            "",
            "203.0.113.9",
        ),  # not from our proxy: the header is not believed
        ("10.0.0.5", "196.201.214.200", "10.0.0.0/8", "196.201.214.200"),
        (
            "10.0.0.5",
            "196.201.214.200, 203.0.113.9",
            "10.0.0.0/8",
            "203.0.113.9",
        ),  # the client wrote the first
        ("10.0.0.5", "196.201.214.200, 10.0.0.7", "10.0.0.0/8", "196.201.214.200"),  # two of our proxies
        (None, "196.201.214.200", "10.0.0.0/8", None),
    ],
)
def test_the_callers_address(peer: str | None, forwarded: str | None, proxies: str, seen: str | None) -> None:
    assert mpesa.client_address(peer, forwarded, proxies) == seen


def test_the_source_allow_list() -> None:
    open_to_all = Settings()
    assert mpesa.source_allowed(open_to_all, None) and mpesa.source_allowed(open_to_all, "8.8.8.8")
    safaricom = Settings(mpesa_callback_allowed_cidrs="196.201.214.0/24, 196.201.213.0/24")
    assert mpesa.source_allowed(safaricom, "196.201.213.44")
    assert not mpesa.source_allowed(safaricom, "8.8.8.8") and not mpesa.source_allowed(safaricom, None)


@pytest.mark.parametrize(
    ("status", "body", "state", "code"),
    [
        (
            200,
            {"ResponseCode": "0", "ResultCode": "0", "ResultDesc": "ok", "MerchantRequestID": "m"},
            "paid",
            0,
        ),
        (
            200,
            {"ResponseCode": "0", "ResultCode": "1032", "ResultDesc": "Request cancelled by user"},
            "failed",
            1032,
        ),
        (
            500,
            {"errorCode": "500.001.1001", "errorMessage": "The transaction is being processed"},
            "pending",
            None,
        ),
        (503, {}, "unreachable", None),
        (
            400,
            {"errorCode": "400.002.02", "errorMessage": "Bad Request - Invalid CheckoutRequestID"},
            "unreachable",
            None,
        ),
        (200, {"ResponseCode": "0", "ResultCode": "zero"}, "unreachable", None),
    ],
)
def test_stk_query_answers(status: int, body: dict[str, object], state: str, code: int | None) -> None:
    answer = mpesa.read_query_answer(status, body)
    assert (answer.state, answer.result_code) == (state, code)
    assert answer.final == (state in ("paid", "failed"))


def test_whole_shillings() -> None:
    from decimal import Decimal

    assert mpesa.whole_shillings(Decimal("2500.00")) == 2500 and mpesa.whole_shillings(Decimal("10.01")) == 11


async def test_a_paid_request_stays_paid(owner_pool: asyncpg.Pool, make_org) -> None:  # type: ignore[no-untyped-def]
    org, _ = await make_org("Final")
    async with owner_pool.acquire() as conn:
        request = await conn.fetchval(
            """INSERT INTO payment_requests (organization_id, purpose, phone, amount, account_reference, status,
                                             receipt)
               VALUES ($1, 'tokens', '254700000001', 100, 'TOKENS', 'paid', 'REAL0001') RETURNING id""",
            org,
        )
        with pytest.raises(asyncpg.CheckViolationError, match="is paid"):
            await conn.execute("UPDATE payment_requests SET status = 'failed' WHERE id = $1", request)
        await conn.execute("UPDATE payment_requests SET receipt = 'FORGED0001' WHERE id = $1", request)
        assert (
            await conn.fetchval("SELECT receipt FROM payment_requests WHERE id = $1", request) == "REAL0001"
        )


async def test_concurrent_requests_share_one_oauth_token(settings: Settings) -> None:
    """Twenty payments starting at once ask Daraja for one token, not twenty (the client's token lock)."""
    sim = MpesaSimulator("ck", "cs", "174379", "passkey")
    base = await sim.start()
    try:
        daraja = settings.model_copy(
            update={"mpesa_base_url": AnyUrl(base), "mpesa_consumer_key": "ck", "mpesa_consumer_secret": "cs"}
        )
        async with httpx.AsyncClient(timeout=5) as http:
            client = mpesa.DarajaClient(http, daraja)
            tokens = await asyncio.gather(*(client._access_token() for _ in range(20)))
            assert len(set(tokens)) == 1
            assert len(sim._tokens) == 1  # the simulator issued one
            assert await client._access_token() == tokens[0]  # and it is kept until it nearly expires
    finally:
        await sim.stop()
