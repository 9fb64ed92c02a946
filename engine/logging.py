"""structlog, configured once per process: JSON lines in production, readable console output otherwise.

Every line goes through the same renderer: structlog's own, and the standard library's (uvicorn, asyncio,
aio-pika, warnings) through a ProcessorFormatter on the root logger; in JSON mode an uncaught exception is one
JSON line too. Per-event ids are bound with structlog's contextvars (``bound_contextvars``) where an event starts
(engine/consumer.py, engine/inbound.py, engine/sender.py), so every line logged while it runs carries them.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType

import structlog

from engine.settings import Settings

_configured = False


class _Stderr:
    """Whatever sys.stderr is when a line is written (a test's capture may replace it after configuration)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


class _StderrHandler(logging.StreamHandler):
    def __init__(self) -> None:
        super().__init__(_Stderr())


def configure_logging(settings: Settings) -> None:
    global _configured
    if _configured:
        return
    level = getattr(logging, settings.log_level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.json_logs
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.WARNING))  # libraries' info lines are noise; their warnings are not
    logging.captureWarnings(True)
    if settings.json_logs:
        sys.excepthook = _log_uncaught
    _configured = True


def _log_uncaught(kind: type[BaseException], err: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, err, tb)
        return
    get_logger("uncaught").critical("uncaught exception", exc_info=(kind, err, tb))


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def masked(contact: str | None) -> str | None:
    """A phone number as logs show it: enough to tell contacts apart in an incident, not to dial them."""
    if not contact:
        return contact
    if len(contact) <= 6:
        return "*" * len(contact)
    return f"{contact[:4]}{'*' * (len(contact) - 7)}{contact[-3:]}"
