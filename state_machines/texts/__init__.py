"""Merges the per-module text tables into one catalogue; a key defined twice is an error at import."""

from __future__ import annotations

import importlib
import pkgutil

CATALOGUE: dict[str, dict[str, str]] = {}

for _info in pkgutil.iter_modules(__path__):
    _texts: dict[str, dict[str, str]] = importlib.import_module(f"{__name__}.{_info.name}").TEXTS
    _clash = CATALOGUE.keys() & _texts.keys()
    if _clash:
        raise RuntimeError(f"text keys defined twice: {sorted(_clash)}")
    CATALOGUE.update(_texts)
