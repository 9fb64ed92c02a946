"""Expected failures of any command — a duplicate, something not found, a service down — as one line on stderr
and exit status 1, instead of a traceback. Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from types import TracebackType
from urllib.parse import urlsplit

import aio_pika
import aiormq
import asyncpg
import httpx

FAILED = 1


class NotFound(LookupError):
    """A command was asked about something that does not exist (an organisation, a survey, a parked message)."""


class Refused(RuntimeError):
    """A command will not do what it was asked, for a reason it states."""


class Duplicate(RuntimeError):
    """What a command was to create exists already."""


def one_line(err: BaseException) -> str | None:
    """What to tell the operator about ``err``, or None when it is not an expected failure."""
    if isinstance(err, NotFound):
        return f"not found: {err}"
    if isinstance(err, Refused):
        return f"refused: {err}"
    if isinstance(err, Duplicate):
        return f"already exists: {err}"
    if isinstance(err, asyncpg.UniqueViolationError):
        return f"already exists: {_duplicate(err)}"
    if isinstance(err, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError):
        return f"the database refused the login at {_database()}: {_first_line(err)}"
    if isinstance(err, asyncpg.InvalidCatalogNameError):
        return f"no such database at {_database()}: {_first_line(err)}"
    if isinstance(err, aiormq.exceptions.ChannelNotFoundEntity):
        return f"not found in RabbitMQ: {_broker_entity(err)}"
    if isinstance(err, aio_pika.exceptions.ProbableAuthenticationError):
        return f"RabbitMQ refused the login at {_broker()}"
    from engine.broker_admin import ParkingReadsUnsafe
    from engine.migrate import MigrationEdited, MigrationsMissing
    from engine.resources import ResourceMissing

    if isinstance(err, MigrationEdited | MigrationsMissing | ResourceMissing | ParkingReadsUnsafe):
        return f"refused: {err}"
    if isinstance(err, OSError | TimeoutError | asyncpg.PostgresConnectionError | aiormq.AMQPConnectionError):
        return _unreachable(err)
    return None


def main_guard(run: Callable[[], object]) -> None:
    """Run the command line; expected failures end it with one line and status 1."""
    try:
        run()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as err:
        message = one_line(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(FAILED)


# ------------------------------------------------------------------------------------------------ details


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _duplicate(err: asyncpg.UniqueViolationError) -> str:
    """'organizations with whatsapp_phone_id 'pn1'' from the key PostgreSQL reports; under row-level security
    it reports no key (the other row may be another tenant's), so then the constraint says what."""
    table = getattr(err, "table_name", None) or "a row"
    found = re.match(r"Key \((.+)\)=\((.*)\) already exists", getattr(err, "detail", None) or "")
    if found:
        return f"{table} with {found[1]} {found[2]!r}"
    constraint = getattr(err, "constraint_name", None)
    return f"{table} with the same values (constraint {constraint})" if constraint else _first_line(err)


def _broker_entity(err: BaseException) -> str:
    text = _first_line(err)
    queue = re.search(r"no queue '([^']+)'", text)
    if queue:
        return (
            f"no queue {queue[1]!r} (nothing has declared BROKER_PREFIX's queues on this broker yet: start a "
            "worker or the gateway once, or check BROKER_PREFIX)"
        )
    return text


def _frames(err: BaseException) -> Iterator[str]:
    """The module of every frame the error and its causes passed through."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb: TracebackType | None = current.__traceback__
        while tb is not None:
            yield str(tb.tb_frame.f_globals.get("__name__", ""))
            tb = tb.tb_next
        current = current.__cause__ or current.__context__


def _unreachable(err: BaseException) -> str:
    """Which service did not answer, told by where the error came from."""
    modules = list(_frames(err))
    reason = _first_line(err) if str(err).strip() else type(err).__name__
    if isinstance(err, aiormq.AMQPConnectionError) or any(
        m.startswith(("aiormq", "aio_pika")) for m in modules
    ):
        return f"cannot reach RabbitMQ at {_broker()}: {reason}"
    if isinstance(err, asyncpg.PostgresConnectionError) or any(m.startswith("asyncpg") for m in modules):
        return f"cannot reach the database at {_database()}: {reason}"
    if any(m.startswith(("httpx", "httpcore")) for m in modules) or isinstance(err, httpx.HTTPError):
        return f"an HTTP service did not answer: {reason}"
    return f"{type(err).__name__}: {reason}"


def _where(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or parts.query or "local socket"
    return f"{host}:{parts.port}" if parts.port else host


def _database() -> str:
    from engine.settings import get_settings

    url = get_settings().database_url
    return _where(url) if url else "the embedded server"


def _broker() -> str:
    from engine.settings import get_settings

    return _where(str(get_settings().rabbitmq_url))
