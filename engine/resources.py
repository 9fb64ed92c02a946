"""Files the engine ships beside its code: the migrations (``sql/``) and the demo content (``demo/``).

Installed, they are package data inside ``engine`` (``engine/sql``, ``engine/demo``: setup.py maps the
repository's top-level folders there); in a source checkout they are those top-level folders themselves.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The source checkout this package runs from, if it does (an installed package has no pyproject.toml beside it).
CHECKOUT: Path | None = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").is_file() else None


class ResourceMissing(RuntimeError):
    """A folder the engine ships is not where the installed package or the checkout should have it."""


def resource_dir(name: str) -> Path:
    """The folder ``name`` (``sql`` or ``demo``): the installed package's copy, else the checkout's."""
    installed = PACKAGE_DIR / name
    if installed.is_dir():
        return installed
    if CHECKOUT is not None and (CHECKOUT / name).is_dir():
        return CHECKOUT / name
    raise ResourceMissing(
        f"{name}/ is missing from the installed package ({installed}): reinstall chatnation"
    )
