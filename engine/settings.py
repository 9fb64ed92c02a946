"""All configuration, read once from the environment. Nothing else in the project reads os.environ."""

from __future__ import annotations

import socket
import sys
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AnyUrl, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.resources import CHECKOUT, PACKAGE_DIR

# The source checkout when running from one; installed, the folder that holds the package (site-packages).
PROJECT_ROOT = CHECKOUT or PACKAGE_DIR.parent


def default_data_dir() -> Path:
    """A checkout keeps its embedded database in .data/ beside the code; an installed package in the user's data
    directory (never inside site-packages)."""
    if CHECKOUT is not None:
        return CHECKOUT / ".data"
    import platformdirs

    return Path(platformdirs.user_data_dir("chatnation", appauthor=False))


DEV_CALLBACK_SECRET = "dev-callback-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    environment: Literal["development", "production", "test"] = "development"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # PostgreSQL. DATABASE_URL is the owner's connection (migrations, cross-tenant jobs); the engine's
    # tenant work runs as APP_DB_ROLE, which row-level security applies to. Unset: the embedded server.
    database_url: str | None = None
    app_db_role: str = "chatnation_app"
    app_db_password: str = "chatnation_app"
    data_dir: Path = Field(default_factory=default_data_dir)
    db_pool_size: int = Field(10, ge=1, le=200)

    # RabbitMQ. RABBITMQ_URL may list several nodes of a cluster, comma-separated (or RABBITMQ_URLS does): the
    # engine connects to the first that answers and, when the connection is lost, to the next (engine/broker.py).
    # rabbitmq_url is the first of the list; broker_urls the whole list.
    rabbitmq_url: AnyUrl = AnyUrl("amqp://guest:guest@127.0.0.1:5672/")
    rabbitmq_urls: str = ""
    broker_prefix: str = Field("chatnation", pattern=r"^[a-z][a-z0-9_.-]{0,40}$")
    inbound_shards: int = Field(8, ge=1, le=256)
    outbound_shards: int = Field(8, ge=1, le=256)
    publish_timeout_seconds: float = Field(5.0, gt=0)
    # Deliveries before the broker parks a message that keeps killing its worker. Generous: every crash of a
    # worker also counts a delivery for each message it had prefetched but not started.
    delivery_limit: int = Field(20, ge=1, le=100)
    handler_attempts: int = Field(3, ge=1, le=20)
    # Inbound events of different contacts of one organisation applied in one transaction, a savepoint each, one
    # commit for all (engine/inbound_batch.py); 1: one transaction per event. At most 24: each event takes up to
    # two subtransactions and PostgreSQL's per-backend cache holds 64. The window is how long a batch waits
    # for more events once its first arrived.
    inbound_batch_size: int = Field(1, ge=1, le=24)
    inbound_batch_window_ms: float = Field(2.0, ge=0, le=100)
    # Status webhooks (sent, delivered, read) of one organisation applied set-based, one statement and one commit
    # for a batch (engine/status_batch.py; three per message a broadcast sends); 1: one call each. The window
    # is how long a batch waits for more once its first arrived (statuses are not waited for by anyone).
    status_batch_size: int = Field(64, ge=1, le=500)
    status_batch_window_ms: float = Field(20.0, ge=0, le=1000)
    # The management HTTP API (unacked counts, rates); unset: RABBITMQ_URL's host, port 15672, same login.
    rabbitmq_management_url: AnyUrl | None = None

    # WhatsApp Cloud API
    whatsapp_app_secret: str = "dev-app-secret"
    whatsapp_verify_token: str = "dev-verify-token"
    whatsapp_api_base_url: AnyUrl = AnyUrl("http://127.0.0.1:8090")
    whatsapp_api_version: str = Field("v23.0", pattern=r"^v\d+\.\d+$")
    send_rate_per_second: float = Field(80.0, gt=0)
    # Meta's pair limit to one user: about 1 message per 6 s on average, with bursts of up to 45 borrowed from
    # future quota (../shared/whatsapp/reference.md). A person who is chatting gets every reply at once; past
    # the burst Meta answers 131056, which the sender backs off 4^n s.
    pair_rate_burst: int = Field(45, ge=1)
    pair_rate_per_second: float = Field(1 / 6, gt=0)
    # Meta batches webhooks up to 3 MB: a smaller cap refuses a real batch on every retry, for days
    max_webhook_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    # Every organisation's message templates fetched again this often by the relay role (0: only by hand,
    # `chatnation templates sync`); the template webhooks keep them current in between.
    template_sync_seconds: int = Field(3600, ge=0)

    # M-Pesa Daraja
    mpesa_base_url: AnyUrl = AnyUrl("http://127.0.0.1:8091")
    mpesa_consumer_key: str = "dev-consumer-key"
    mpesa_consumer_secret: str = "dev-consumer-secret"
    mpesa_shortcode: str = "174379"
    mpesa_passkey: str = "dev-passkey"
    mpesa_callback_url: AnyUrl = AnyUrl("http://127.0.0.1:8080/payments/mpesa/callback")
    # The callback URL's path carries this deployment secret and a per-request one (docs/tickets.md);
    # production requires a secret of its own, at least 32 characters (production_problems).
    mpesa_callback_secret: str = Field(DEV_CALLBACK_SECRET, min_length=8, pattern=r"^[A-Za-z0-9_-]+$")
    # Optional: callbacks only from these networks (comma-separated CIDRs, e.g. Safaricom's); X-Forwarded-For
    # is believed only when the direct peer is one of TRUSTED_PROXY_CIDRS.
    mpesa_callback_allowed_cidrs: str = ""
    trusted_proxy_cidrs: str = ""
    mpesa_query_attempts: int = Field(4, ge=1, le=20)  # STK Push Query tries per check (tenacity)
    mpesa_query_backoff_seconds: float = Field(0.5, gt=0)  # doubled after each try, at most 8 s
    mpesa_reconcile_interval_seconds: float = Field(30.0, gt=0)  # how often open requests are re-queried
    mpesa_reconcile_give_up_hours: float = Field(48.0, gt=0)  # unanswered longer: left to people
    token_price_kes: Decimal = Field(
        Decimal("1.00"), gt=0
    )  # what one wallet token costs by M-Pesa (wallet buy)

    # OpenAI (optional: without a key the knowledge base uses PostgreSQL full-text search)
    openai_api_key: str | None = None
    openai_base_url: AnyUrl | None = None
    openai_chat_model: str = "gpt-4o-mini"
    openai_embedding_model: str = "text-embedding-3-small"
    openai_transcription_model: str = "gpt-4o-mini-transcribe"  # voice notes (audio/transcriptions)
    openai_timeout_seconds: float = Field(8.0, gt=0)

    # E-mail (optional): the tickets a buyer asked for by e-mail, with their QR codes attached (engine/mailer.py).
    # Unset SMTP_HOST: the ticket flow does not ask for an e-mail address.
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_from: str = "ChatNation Tickets <tickets@chatnation.local>"
    smtp_timeout_seconds: float = Field(15.0, gt=0)
    # HypeCards (docs/hypecards.md): the colour emoji font (Debian's fonts-noto-color-emoji), the cards role
    hypecard_emoji_font: Path = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
    hypecard_slow_seconds: int = Field(
        20, ge=1
    )  # a card not there by then: the user is told, the job re-queued
    hypecard_give_up_seconds: int = Field(600, ge=10)  # still not rendered: the user is told it failed
    hypecard_render_nice: int = Field(10, ge=0, le=19)  # the cards role yields the CPU to conversations
    hypecard_concurrency: int = Field(
        4, ge=1, le=64
    )  # cards one process works on at once (downloads, uploads)

    # Processes
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8080, ge=0, le=65535)
    metrics_port: int = Field(9100, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"  # workers' /metrics, /healthz, /readyz; 0.0.0.0 in containers
    # The gateway's /metrics, on METRICS_HOST: never on the public webhook port (0: not served)
    gateway_metrics_port: int = Field(9101, ge=0, le=65535)
    shutdown_grace_seconds: float = Field(20.0, gt=0)
    # The host name a worker's heartbeat carries (`chatnation workers`, docs/scaling.md): the machine's by default
    worker_host: str = Field(default_factory=socket.gethostname, min_length=1, max_length=200)
    # The gateway closes a connection whose request head (or body) has not fully arrived in time (gateway_http.py)
    gateway_header_timeout_seconds: float = Field(5.0, gt=0)
    gateway_body_timeout_seconds: float = Field(10.0, gt=0)

    # Broadcasts and the scheduler role (docs/broadcasts.md)
    broadcast_batch_size: int = Field(200, ge=1, le=5000)  # recipients per fan-out transaction
    broadcast_in_flight: int = Field(1000, ge=1)  # queued and not yet sent, per broadcast, at most
    # The REST API (`chatnation api`, engine/api/, docs/api.md): its own port, never the webhook's
    api_host: str = "127.0.0.1"
    api_port: int = Field(8081, ge=0, le=65535)
    api_rate_per_minute: float = Field(600.0, gt=0)  # requests per key, per API process
    api_rate_burst: int = Field(60, ge=1)
    api_auth_failures_per_minute: int = Field(20, ge=1)  # refused authentications per client address
    api_operator_key: str | None = None  # the operator console's key (/console); unset: no console
    # Event webhooks to the CRM (engine/webhooks.py): sent by the relay role
    webhook_timeout_seconds: float = Field(10.0, gt=0)
    webhook_max_attempts: int = Field(
        12, ge=1, le=50
    )  # then the delivery is failed (redeliver sends it again)
    webhook_backoff_seconds: float = Field(10.0, gt=0)  # the first retry's delay, doubling up to an hour
    webhook_concurrency: int = Field(20, ge=1, le=500)  # deliveries one relay process has in flight

    @model_validator(mode="before")
    @classmethod
    def _broker_list(cls, data: object) -> object:
        """RABBITMQ_URL with commas is the list; RABBITMQ_URLS alone is the list too, its first the main URL."""
        if not isinstance(data, dict):
            return data
        url, more = data.get("rabbitmq_url"), data.get("rabbitmq_urls")
        listed = [u.strip() for u in str(url).split(",") if u.strip()] if isinstance(url, str) else []
        if isinstance(more, str):
            listed += [u.strip() for u in more.split(",") if u.strip()]
        if not listed or (url is not None and not isinstance(url, str)):
            return data
        return {**data, "rabbitmq_url": listed[0], "rabbitmq_urls": ",".join(dict.fromkeys(listed))}

    @field_validator("rabbitmq_urls")
    @classmethod
    def _amqp_urls(cls, v: str) -> str:
        for part in v.split(","):
            if part.strip() and not part.strip().startswith(("amqp://", "amqps://")):
                raise ValueError(f"{part.strip()!r} is not an amqp:// URL")
        return v

    @property
    def broker_urls(self) -> list[str]:
        """Every broker address, the main one first (a cluster's nodes, tried in this order)."""
        more = [str(AnyUrl(u.strip())) for u in self.rabbitmq_urls.split(",") if u.strip()]
        return list(dict.fromkeys([str(self.rabbitmq_url), *more]))

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return v or None

    @field_validator("mpesa_callback_allowed_cidrs", "trusted_proxy_cidrs")
    @classmethod
    def _cidrs(cls, v: str) -> str:
        import ipaddress

        for part in v.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names the bad network
        return v

    @property
    def json_logs(self) -> bool:
        if self.log_format == "auto":
            return self.environment == "production"
        return self.log_format == "json"


class SettingsError(SystemExit):
    """Start-up stops with one line naming the bad variable."""


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    name = "_".join(str(p) for p in first["loc"]).upper() or "settings"
    return f"configuration error: {name}: {first['msg']}"


# The secrets production requires (docs/operations.md, "Secrets production requires"): each must be set, and not
# to what the repository ships (the development default, anyone can read it) nor the example Secret's placeholder.
_PRODUCTION_SECRETS = (
    "whatsapp_app_secret",  # signs every webhook: with the default, anyone can post messages for any tenant
    "whatsapp_verify_token",
    "app_db_password",
    "mpesa_consumer_key",
    "mpesa_consumer_secret",
    "mpesa_passkey",
    "mpesa_callback_secret",  # in the callback URL's path: the first proof that a Daraja callback is Daraja's
)
_PLACEHOLDER = "change-me"  # deploy/k8s/secret.example.yaml


def production_problems(s: Settings) -> list[str]:
    """What production refuses in ``s``: each required secret unset or still at its development default, by
    variable name (empty outside production, so development and tests run with no settings at all)."""
    if s.environment != "production":
        return []
    problems = []
    for name in _PRODUCTION_SECRETS:
        value = getattr(s, name)
        default = Settings.model_fields[name].default
        if not value:
            problems.append(f"{name.upper()} is unset")
        elif value == default:
            problems.append(f"{name.upper()} has its development default")
        elif value.lower().startswith(_PLACEHOLDER):
            problems.append(f"{name.upper()} has the example's placeholder")
    if s.mpesa_callback_secret != DEV_CALLBACK_SECRET and len(s.mpesa_callback_secret) < 32:
        problems.append("MPESA_CALLBACK_SECRET is shorter than 32 characters")
    broker = s.rabbitmq_url
    if broker == Settings.model_fields["rabbitmq_url"].default or broker.password in ("guest", None):
        problems.append("RABBITMQ_URL has the development login (guest) or none")
    elif broker.password and broker.password.lower().startswith(_PLACEHOLDER):
        problems.append("RABBITMQ_URL has the example's placeholder password")
    return problems


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings every entry point (worker, gateway, simulators, commands) starts from; production refuses
    development secrets here, in one line."""
    try:
        s = Settings()
    except ValidationError as err:
        print(_one_line(err), file=sys.stderr)
        raise SettingsError(2) from None
    problems = production_problems(s)
    if problems:
        print(f"configuration error: ENVIRONMENT=production refuses: {'; '.join(problems)}", file=sys.stderr)
        raise SettingsError(2)
    return s
