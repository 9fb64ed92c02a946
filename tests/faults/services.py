"""Private service instances for the fault suite, so that stopping and restarting them disturbs nothing else on
the machine: a RabbitMQ node of its own (Debian's rabbitmq-server, own node name, ports, data and logs under a
temporary directory) and an embedded PostgreSQL server of its own (pgserver, own data directory)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RABBIT_SCRIPTS = (Path("/usr/lib/rabbitmq/bin"), Path("/usr/local/lib/rabbitmq/bin"))


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_low_port() -> int:
    """A free port below Linux's ephemeral range (32768+), where an outgoing connection cannot take it between
    our check and the broker's bind."""
    while True:
        port = random.randint(20000, 32000)
        if _port_free(port) and _port_free(port + 1):
            return port


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def rabbit_scripts() -> Path | None:
    """The directory of rabbitmq-server/rabbitmqctl that run as the calling user (not Debian's su wrappers)."""
    return next((d for d in RABBIT_SCRIPTS if (d / "rabbitmq-server").exists()), None)


@dataclass
class PrivateRabbit:
    base: Path
    node: str
    port: int
    scripts: Path

    @classmethod
    def create(cls, base: Path, tag: str, also_on: str | None = None) -> PrivateRabbit:
        """``also_on``: an address to listen on besides loopback (the scale test's network lab), where the guest
        user may log in too (RabbitMQ lets it in only over loopback by default)."""
        scripts = rabbit_scripts()
        if scripts is None:
            raise RuntimeError("rabbitmq-server is not installed")
        base.mkdir(parents=True, exist_ok=True)
        port = free_low_port()
        (base / "enabled_plugins").write_text(
            "[].\n"
        )  # none: the management ports would clash with the main node
        conf = f"listeners.tcp.1 = 127.0.0.1:{port}\nlog.console = false\n"
        if also_on:
            conf += f"listeners.tcp.2 = {also_on}:{port}\nloopback_users = none\n"
        (base / "rabbitmq.conf").write_text(conf)
        (base / "rabbitmq-env.conf").write_text("ERL_EPMD_ADDRESS=127.0.0.1\n")
        return cls(base, f"faults-{tag}@localhost", port, scripts)

    @property
    def url(self) -> str:
        return self.url_on("127.0.0.1")

    def url_on(self, address: str) -> str:
        return f"amqp://guest:guest@{address}:{self.port}/"

    def env(self) -> dict[str, str]:
        b = self.base
        return {
            **os.environ,
            "HOME": str(b),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_DIST_PORT": str(self.port + 1),
            "RABBITMQ_MNESIA_BASE": str(b / "mnesia"),
            "RABBITMQ_LOG_BASE": str(b / "log"),
            "RABBITMQ_PID_FILE": str(b / "rabbit.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(b / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(b / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(b / "rabbitmq-env.conf"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    def _ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.scripts / "rabbitmqctl"), "-n", self.node, "-q", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, timeout: float = 90) -> None:
        subprocess.run(
            [str(self.scripts / "rabbitmq-server"), "-detached"],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"private RabbitMQ did not start; see {self.base / 'log'}")
            time.sleep(0.2)
        self._ctl("await_startup", "--timeout", str(int(timeout)))

    def stop(self) -> None:
        self._ctl("stop", str(self.base / "rabbit.pid"))  # waits for the OS process to exit

    def restart(self, down_seconds: float = 0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class PrivatePostgres:
    """An embedded server in a directory of its own; deleted when the session ends."""

    server: object
    pgdata: Path

    @classmethod
    def create(cls, base: Path) -> PrivatePostgres:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver
        base.mkdir(parents=True, exist_ok=True)
        return cls(pgserver.get_server(base / "pg", cleanup_mode="delete"), base / "pg")

    def uri(self, database: str) -> str:
        return self.server.get_uri(database=database)  # type: ignore[attr-defined]

    def _pg_ctl(self, *args: str) -> None:
        from pgserver import pg_ctl  # type: ignore[attr-defined]  # re-exported at run time

        pg_ctl(["-w", *args], pgdata=self.pgdata, user=self.server.system_user)  # type: ignore[attr-defined]

    def destroy(self) -> None:
        """Stop now rather than at interpreter exit (pgserver's own clean-up then finds nothing to do)."""
        if (self.pgdata / "postmaster.pid").exists():
            self._pg_ctl("-m", "fast", "stop")

    def listen(self, address: str, network: str) -> None:
        """Serve TCP on ``address`` (port 5432) as well as the socket, trusting clients from ``network`` (the
        scale test's hosts): restarted with pgserver's options but its no-TCP ``-h ""`` replaced."""
        with (self.pgdata / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {network} trust\n")
        opts = (self.pgdata / "postmaster.opts").read_text().split(" ", 1)[1].strip()
        self._pg_ctl("-m", "fast", "stop")
        opts = opts.replace(f'"-D" "{self.pgdata}"', "").replace('"-h" ""', f'"-h" "{address}"')
        self._pg_ctl("-o", opts, "-l", str(self.pgdata / "log"), "start")

    def uri_on(self, address: str, database: str) -> str:
        return f"postgresql://{self.server.postgres_user}@{address}:5432/{database}"  # type: ignore[attr-defined]

    def restart(self, down_seconds: float = 0) -> None:
        """Stop (fast: connections are cut), stay down, start again with the options it last ran with."""
        opts = (self.pgdata / "postmaster.opts").read_text().split(" ", 1)[1].strip()
        self._pg_ctl("-m", "fast", "stop")
        time.sleep(down_seconds)
        self._pg_ctl("-o", opts.replace(f'"-D" "{self.pgdata}"', ""), "-l", str(self.pgdata / "log"), "start")
