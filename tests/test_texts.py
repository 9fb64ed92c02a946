"""The text catalogue: complete in both languages, same placeholders, no missing and no unused keys."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from state_machines.i18n import LANGUAGES, MissingText, t, tn
from state_machines.texts import CATALOGUE

CODE = Path(__file__).resolve().parent.parent / "state_machines"
KEY_LITERAL = re.compile(
    r"""["']((?:common|menu|survey|poll|tickets|checkin|knowledge|my_tickets)\.[a-z0-9_]+)["']"""
)
MY_PREFIXES = ("common.", "menu.", "survey.", "poll.", "knowledge.", "my_tickets.")
PLURAL_FORMS = ("_one", "_other")


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _keys_in_code() -> dict[str, str]:
    """Every quoted catalogue-looking key in the state machines -> the file it is in; a key read with ``tn``
    stands for its plural forms."""
    found: dict[str, str] = {}
    for path in CODE.glob("*.py"):
        for key in KEY_LITERAL.findall(path.read_text(encoding="utf-8")):
            plural = [key + form for form in PLURAL_FORMS if key + form in CATALOGUE]
            for each in plural or [key]:
                found.setdefault(each, path.name)
    return found


def test_plural_texts_have_every_form() -> None:
    stems = {key.removesuffix("_one") for key in CATALOGUE if key.endswith("_one")}
    assert stems  # there are some
    for stem in stems:
        assert all(stem + form in CATALOGUE for form in PLURAL_FORMS), stem
        assert "{count}" in CATALOGUE[stem + "_other"]["en"], stem  # "one" may say "a ticket"


@pytest.mark.parametrize(
    ("key", "language", "count", "expected"),
    [
        ("poll.results", "en", 1, "Results so far (1 vote):"),
        ("poll.results", "en", 2, "Results so far (2 votes):"),
        ("poll.results", "en", 0, "Results so far (0 votes):"),
        ("poll.results", "sw", 1, "Matokeo hadi sasa (kura 1):"),
        ("survey.intro", "en", 1, "1 question. Send MENU to pause at any time; you can continue later."),
        ("survey.intro", "sw", 1, "Swali 1. Tuma MWANZO kusimama wakati wowote; unaweza kuendelea baadaye."),
        (
            "survey.intro",
            "sw",
            4,
            "Maswali 4. Tuma MWANZO kusimama wakati wowote; unaweza kuendelea baadaye.",
        ),
        ("tickets.quantity_over_remaining", "en", 1, "Sorry, only 1 ticket is left."),
        ("tickets.quantity_over_remaining", "en", 3, "Sorry, only 3 tickets are left."),
        ("tickets.quantity_over_remaining", "sw", 1, "Samahani, imebaki tiketi 1 tu."),
        ("tickets.quantity_over_remaining", "sw", 3, "Samahani, zimebaki tiketi 3 tu."),
        ("my_tickets.summary", "en", 1, "🎟 Your ticket for an upcoming event:"),
        ("my_tickets.summary", "en", 2, "🎟 Your 2 tickets for upcoming events:"),
    ],
)
def test_counted_texts_agree_with_their_number(key: str, language: str, count: int, expected: str) -> None:
    assert tn(key, language, count) == expected


@pytest.mark.parametrize("key", sorted(CATALOGUE))
def test_every_text_exists_in_every_language_with_the_same_placeholders(key: str) -> None:
    entry = CATALOGUE[key]
    assert set(entry) == set(LANGUAGES), f"{key}: languages {sorted(entry)}"
    assert all(entry[lang].strip() for lang in LANGUAGES), f"{key}: empty text"
    assert _placeholders(entry["en"]) == _placeholders(entry["sw"]), key


def test_every_key_used_in_code_exists() -> None:
    used = _keys_in_code()
    assert len(used) > 40  # the scan really finds the keys
    missing = {key: where for key, where in used.items() if key not in CATALOGUE}
    assert missing == {}


def test_every_text_of_the_menu_survey_and_poll_is_used() -> None:
    used = _keys_in_code()
    unused = [key for key in CATALOGUE if key.startswith(MY_PREFIXES) and key not in used]
    assert unused == []


def test_unknown_keys_fail_loudly_and_unknown_languages_fall_back_to_english() -> None:
    with pytest.raises(MissingText):
        t("survey.no_such_text", "en")
    assert t("survey.yes", "fr") == "Yes"
    assert t("poll.invalid", "sw", count=4) == "Tafadhali jibu kwa nambari kutoka 1 hadi 4."
