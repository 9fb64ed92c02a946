"""The text catalogue: every text the bot sends, in English and Swahili.

Each module keeps its texts in ``state_machines/texts/<module>.py`` as ``TEXTS = {key: {"en": ..., "sw": ...}}``;
keys are prefixed with the module name so that they never collide.
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
