"""The text catalogue: every text the bot sends, in English and Swahili.

Each module keeps its texts in ``state_machines/texts/<module>.py`` as ``TEXTS = {key: {"en": ..., "sw": ...}}``;
keys are prefixed with the module name so that they never collide. A text that counts something has one key
per plural form, ``<key>_one`` and ``<key>_other``, and is read with ``tn``.
"""

from __future__ import annotations

from state_machines.texts import CATALOGUE

LANGUAGES = ("en", "sw")
DEFAULT_LANGUAGE = "en"


class MissingText(KeyError):
    pass


def t(key: str, language: str, **values: object) -> str:
    """The text for ``key`` in ``language`` (English when the language is unknown), with values filled in."""
    try:
        entry = CATALOGUE[key]
    except KeyError:
        raise MissingText(key) from None
    template = entry.get(language) or entry[DEFAULT_LANGUAGE]
    return template.format(**values)


def plural_form(count: int) -> str:
    """The CLDR plural category of ``count`` in English and Swahili: both have "one" (1) and "other"."""
    return "one" if count == 1 else "other"


def tn(key: str, language: str, count: int, **values: object) -> str:
    """The text for ``key`` in the plural form ``count`` takes (``<key>_one`` / ``<key>_other``); ``count``
    is also a value of the template."""
    return t(f"{key}_{plural_form(count)}", language, count=count, **values)
