"""The text catalogue: complete in both languages, same placeholders, no missing and no unused keys."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from state_machines.i18n import LANGUAGES, MissingText, t
from state_machines.texts import CATALOGUE

CODE = Path(__file__).resolve().parent.parent / "state_machines"
KEY_LITERAL = re.compile(r"""["']((?:common|menu|survey|poll|tickets|checkin)\.[a-z0-9_]+)["']""")
MY_PREFIXES = ("common.", "menu.", "survey.", "poll.")


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _keys_in_code() -> dict[str, str]:
    """Every quoted catalogue-looking key in the state machines -> the file it is in."""
    found: dict[str, str] = {}
    for path in CODE.glob("*.py"):
        for key in KEY_LITERAL.findall(path.read_text(encoding="utf-8")):
            found.setdefault(key, path.name)
    return found


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
