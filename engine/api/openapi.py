"""``python -m engine.api.openapi > docs/openapi.json``: the API's OpenAPI 3.1 document, as committed."""

from __future__ import annotations

import json

from engine.api.app import create_app
from engine.settings import Settings


def document() -> str:
    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=False) + "\n"


if __name__ == "__main__":
    print(document(), end="")
