"""Tables for people: the ids an operator copies are never cut, however narrow the terminal; nothing to show
says so."""

from __future__ import annotations

import uuid

import pytest

from engine.cli import common


@pytest.fixture
def narrow() -> object:
    before = common.console._width
    common.console.width = 80
    yield common.console
    common.console._width = before


def test_ids_are_printed_whole_in_80_columns(capsys: pytest.CaptureFixture[str], narrow: object) -> None:
    rows = [
        {
            "id": f"wamid.HBgMMjU0NzAwMDAwMDAxFQIAEhgg{uuid.uuid4().hex.upper()}",
            "reason": "parked",
            "error": "Park: unknown phone_number_id 'pn-with-a-long-name' " * 3,
            "original_queue": "chatnation.inbound.007",
            "organization_id": str(uuid.uuid4()),
            "attempts": 1,
        }
        for _ in range(3)
    ]
    common.emit(rows, as_json=False, title="parked")
    out = capsys.readouterr().out
    for row in rows:
        for column in ("id", "organization_id", "original_queue"):
            assert str(row[column]) in out, column
    assert "…" not in out  # nothing is cut short: long text folds onto more lines


def test_nothing_to_show_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    common.emit([], as_json=False, title="0 parked message(s)", empty="no parked messages")
    assert capsys.readouterr().out == "no parked messages\n"
    common.emit([], as_json=False, title="organisations")
    assert capsys.readouterr().out == "organisations: none\n"
    common.emit([], as_json=True)
    assert capsys.readouterr().out == "[]\n"
