"""Run a simulator as its own process.

    python -m simulators whatsapp --port 8090 [--token PHONE_NUMBER_ID=TOKEN ...]
                                  [--gateway-url URL --statuses sent,delivered,read]
    python -m simulators mpesa --port 8091 [--callback-delay 0.2]
    python -m simulators openai --port 8092 [--api-key sk-test]   (OPENAI_BASE_URL=http://127.0.0.1:8092/v1)

Credentials default to the engine's settings (environment), so a dev stack agrees without flags.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

from engine.settings import get_settings
from simulators.mpesa import MpesaSimulator
from simulators.openai_server import OpenAISimulator
from simulators.whatsapp import WebhookPoster, WhatsAppSimulator


def _parser() -> argparse.ArgumentParser:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m simulators")
    sub = parser.add_subparsers(dest="which", required=True)
    wa = sub.add_parser("whatsapp", help="WhatsApp Cloud API simulator")
    wa.add_argument("--host", default="127.0.0.1")
    wa.add_argument("--port", type=int, default=8090)
    wa.add_argument(
        "--token",
        action="append",
        default=[],
        metavar="PHONE_NUMBER_ID=TOKEN",
        help="accepted token per number ('*' for any number); none given: any bearer token",
    )
    wa.add_argument("--gateway-url", help="post status webhooks for accepted messages to this URL")
    wa.add_argument("--app-secret", default=settings.whatsapp_app_secret)
    wa.add_argument("--statuses", default="sent,delivered,read")
    mp = sub.add_parser("mpesa", help="M-Pesa Daraja simulator")
    mp.add_argument("--host", default="127.0.0.1")
    mp.add_argument("--port", type=int, default=8091)
    mp.add_argument("--consumer-key", default=settings.mpesa_consumer_key)
    mp.add_argument("--consumer-secret", default=settings.mpesa_consumer_secret)
    mp.add_argument("--shortcode", default=settings.mpesa_shortcode)
    mp.add_argument("--passkey", default=settings.mpesa_passkey)
    mp.add_argument("--callback-delay", type=float, default=0.2)
    oa = sub.add_parser("openai", help="OpenAI-compatible simulator (embeddings, chat, transcriptions)")
    oa.add_argument("--host", default="127.0.0.1")
    oa.add_argument("--port", type=int, default=8092)
    oa.add_argument("--api-key", default=settings.openai_api_key or "sk-test")
    return parser


def _whatsapp(args: argparse.Namespace) -> tuple[WhatsAppSimulator, WebhookPoster | None]:
    tokens = dict(item.split("=", 1) for item in args.token)
    sim = WhatsAppSimulator(tokens, accept_any_token=not tokens)
    poster = None
    if args.gateway_url:
        poster = WebhookPoster(args.gateway_url, args.app_secret)
        sim.report_statuses(poster, [s for s in args.statuses.split(",") if s])
    return sim, poster


async def _serve(args: argparse.Namespace) -> None:
    poster = None
    sim: WhatsAppSimulator | MpesaSimulator | OpenAISimulator
    if args.which == "whatsapp":
        sim, poster = _whatsapp(args)
    elif args.which == "openai":
        sim = OpenAISimulator(api_key=args.api_key)
    else:
        sim = MpesaSimulator(
            args.consumer_key,
            args.consumer_secret,
            args.shortcode,
            args.passkey,
            callback_delay=args.callback_delay,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await sim.start(args.host, args.port)
    print(f"{args.which} simulator listening on {url}", flush=True)
    if args.which == "openai":
        print(f"set OPENAI_BASE_URL={url}/v1 OPENAI_API_KEY={args.api_key}", flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()
        if poster is not None:
            await poster.aclose()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(_parser().parse_args()))


if __name__ == "__main__":
    main()
