"""The webhook gateway process: `python webhook_gateway.py` serves WhatsApp webhooks and M-Pesa callbacks.

Everything it does lives in engine/gateway_app.py; this file only starts uvicorn (engine/gateway_http.py) with
the settings.
"""

from __future__ import annotations

import importlib.util

import uvicorn
from starlette.applications import Starlette

from engine.gateway_app import create_app as _create_app
from engine.gateway_http import server_config
from engine.logging import configure_logging, get_logger
from engine.metrics import start_metrics_server
from engine.settings import Settings, get_settings


def create_app(settings: Settings) -> Starlette:
    return _create_app(settings)


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "auto"
    get_logger("gateway").info(
        "gateway_starting",
        host=settings.gateway_host,
        port=settings.gateway_port,
        metrics=f"{settings.metrics_host}:{settings.gateway_metrics_port}",
        loop=loop,
    )
    if settings.gateway_metrics_port:  # apart from the webhook port, which faces the internet
        start_metrics_server(settings.gateway_metrics_port, settings.metrics_host)
    # uvicorn with the gateway's header and body read deadlines (engine/gateway_http.py)
    uvicorn.Server(server_config(create_app(settings), settings, loop=loop)).run()


if __name__ == "__main__":
    main()
