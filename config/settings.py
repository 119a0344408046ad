"""Process settings: environment variables (prefix ``CASCADE_``, nested with ``__``) and ``.env``.

Secrets live here and nowhere else; cascades are data and live in YAML
(:mod:`config.cascades`). Invalid settings stop startup with one clear message
(:func:`load_settings`).
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from config.variables import json_hint, suggestion, unknown_variables, variable_name
from providers.base import Channel
from providers.sandbox import SandboxBehaviour, SandboxConfig

log = logging.getLogger("cascade.settings")

#: Shipped cascades; ``CASCADE_CASCADES_DIR`` points elsewhere.
SHIPPED_CASCADES = Path(__file__).parent / "cascades"

#: Used when no key is configured, in the local environment only.
DEV_API_KEY = "dev-key"

#: What one message costs by default, per channel (sandbox and providers without a cost).
DEFAULT_COSTS: dict[Channel, float] = {
    Channel.PUSH: 0.0,
    Channel.TELEGRAM: 0.0,
    Channel.WHATSAPP: 0.005,
    Channel.VIBER: 0.003,
    Channel.VK: 0.0,
    Channel.EMAIL: 0.0005,
    Channel.SMS: 0.05,
}


class SandboxSettings(BaseModel):
    """The sandbox provider: on by default so a fresh install works without accounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    seed: int = 0
    outbox: Path | None = None
    channels: dict[Channel, SandboxBehaviour] = Field(default_factory=dict)
    scenarios: dict[str, Literal["ok", "rejected", "invalid", "not_sent", "unknown", "config"]] = (
        Field(default_factory=dict)
    )
    latency_ms: float = Field(default=0.0, ge=0.0)  #: every sandbox answer takes this long

    def provider_config(self) -> SandboxConfig:
        return SandboxConfig(
            seed=self.seed,
            outbox=self.outbox,
            channels=self.channels,
            scenarios=self.scenarios,
            latency_ms=self.latency_ms,
        )


class Settings(BaseSettings):
    """Everything a Cascade process needs to start."""

    model_config = SettingsConfigDict(
        env_prefix="CASCADE_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
    )

    environment: Literal["local", "production"] = "local"
    data_dir: Path = Path("data")
    database_url: str = ""  #: default: SQLite file ``<data_dir>/cascade.db``
    redis_url: str = "redis://127.0.0.1:6379/0"  #: locks, demotion, rate limits (and broker)
    #: Celery broker; empty: the Redis above. ``amqp://user:pass@host:5672/vhost`` for RabbitMQ.
    broker_url: str = ""
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    receipt_secret: SecretStr = SecretStr("")  #: signs per-attempt receipt tokens
    cascades_dir: Path = SHIPPED_CASCADES
    public_url: str = "http://127.0.0.1:8000"  #: how providers reach our webhooks
    #: Rewrite URLs in messages to signed ``<public_url>/l/<token>`` links; a click is
    #: recorded and confirms (``wait_for: clicked``). See :mod:`dispatcher.links`.
    link_tracking: bool = False
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    api_workers: int = Field(default=1, ge=1, le=64)  #: API processes (``dispatcher api``)
    flower_port: int = Field(default=5555, ge=1, le=65535)
    #: Flower's listening address; beyond localhost it requires ``flower_password``.
    flower_address: str = "127.0.0.1"
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr("")
    #: Task rows Flower keeps (memory and its state file grow with it).
    flower_max_tasks: int = Field(default=50_000, ge=100)
    log_format: Literal["text", "json"] = "text"  #: one line per record, or JSON objects
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: Where prefork children, beat and the API write Prometheus samples (multiprocess
    #: mode); ``<data_dir>/metrics`` when empty. One directory per host.
    metrics_dir: Path | None = None
    #: Port on which ``dispatcher worker`` / ``beat`` serve this host's /metrics (0: off).
    metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_concurrency: int = Field(default=2, ge=1)
    worker_pool: Literal["prefork", "threads"] = "prefork"  #: threads for I/O-bound channels
    db_pool_size: int = Field(default=5, ge=1, le=1000)  #: PostgreSQL connections per process
    #: most sends one transaction claims (or records) for the threads arriving together
    batch_size: int = Field(default=100, ge=1, le=10_000)
    #: most attempts of one channel one Celery message wakes a worker for (1: one each);
    #: a worker sends a group's attempts concurrently (see dispatcher/send_groups.py)
    send_group: int = Field(default=32, ge=1, le=1000)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    sweep_interval: float = Field(default=1.0, gt=0)  #: seconds between beat sweeps
    sweep_batch: int = Field(default=500, ge=1)
    republish_after: float = Field(default=30.0, gt=0)  #: a pending attempt's doorbell is lost
    sending_stale_after: float = Field(default=120.0, gt=0)  #: a claim older is "unknown"
    send_time_limit: float = Field(default=60.0, gt=0)  #: Celery hard limit per send task
    #: Workers send Celery task events (Flower's task list) from the start. False: only
    #: once a monitor asks (Flower does every 5 s), saving their CPU while nobody watches.
    task_events: bool = True
    record_retry_for: float = Field(default=30.0, ge=0)  #: seconds to retry recording a send
    max_send_tries: int = Field(default=5, ge=1)  #: "not sent" retries before giving up a step
    retry_backoff: float = Field(default=5.0, gt=0)  #: first retry delay, doubled each try
    max_per_day: dict[str, int] = Field(default_factory=dict)  #: global cap per category

    costs: dict[Channel, float] = Field(default_factory=lambda: dict(DEFAULT_COSTS))
    #: Providers per channel in priority order, e.g. ``{"sms": ["twilio", "smsru:1"]}``.
    channels: dict[Channel, list[str]] = Field(default_factory=dict)
    #: Per-provider settings, validated by each provider's own config model.
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    demote_after_failures: int = Field(default=3, ge=1)
    demote_window: float = Field(default=60.0, gt=0)
    demote_cooldown: float = Field(default=300.0, gt=0)
    #: Receipts this many times slower than usual (median, recent vs baseline) demote too.
    demote_slow_factor: float = Field(default=3.0, gt=1)
    demote_slow_floor: float = Field(default=30.0, ge=0)  #: seconds slower, at least
    demote_slow_min_samples: int = Field(default=20, ge=1)
    demote_slow_window: float = Field(default=600.0, gt=0)  #: recent window, seconds
    latency_check_every: float = Field(default=60.0, gt=0)  #: seconds between checks
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    #: Global rate limit per channel for providers without their own ``RATE_LIMIT``
    #: (the sandbox included): messages/s, e.g. ``{"telegram": 30, "whatsapp": "80/10"}``.
    rate_limits: dict[Channel, Any] = Field(default_factory=dict)
    throttle_max_wait: float = Field(default=1.0, ge=0)  #: longer: the attempt is rescheduled
    #: Adaptive order: an engagement observation this many seconds old counts half.
    engagement_half_life: float = Field(default=30 * 86400.0, ge=3600)
    #: Adaptive order: the population's rate counts as this many attempts of a customer.
    engagement_prior_strength: float = Field(default=5.0, ge=0)
    #: Adaptive order: what an hour of waiting for a confirmation is worth, in the units
    #: of ``costs`` (0.01: five hours of waiting are worth one default-priced SMS).
    engagement_cost_per_hour: float = Field(default=0.01, ge=0)
    #: Adaptive order: seconds an API process reuses the population's rates per channel.
    engagement_population_refresh: float = Field(default=300.0, gt=0)
    broadcast_batch: int = Field(default=1000, ge=1)  #: customers planned per fan-out task
    broadcast_lanes: int = Field(default=4, ge=1)  #: fan-out batches of one broadcast at once
    broadcast_stalled_after: float = Field(default=60.0, gt=0)  #: fan-out restarted by sweep
    max_broadcast_body_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("api_keys")
    @classmethod
    def _keys_long_enough(cls, value: list[SecretStr]) -> list[SecretStr]:
        for key in value:
            if len(key.get_secret_value()) < 8:
                raise ValueError("each API key must be at least 8 characters")
        return value

    @property
    def effective_api_keys(self) -> list[str]:
        keys = [key.get_secret_value() for key in self.api_keys]
        return keys or ([DEV_API_KEY] if self.environment == "local" else [])

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'cascade.db').resolve()}"

    @property
    def effective_metrics_dir(self) -> Path:
        return (self.metrics_dir or self.data_dir / "metrics").resolve()

    @property
    def effective_receipt_secret(self) -> str:
        secret = self.receipt_secret.get_secret_value()
        return secret or "|".join(self.effective_api_keys)

    @property
    def effective_broker_url(self) -> str:
        return self.broker_url or self.redis_url

    def production_problems(self) -> list[str]:
        """Insecure defaults refused outside local use (the template's idea), all at once."""
        if self.environment != "production":
            return []
        problems = []
        if not self.api_keys:
            problems.append("CASCADE_API_KEYS: set it in production (the dev key is refused)")
        if not self.receipt_secret.get_secret_value():
            problems.append("CASCADE_RECEIPT_SECRET: set it in production")
        return problems


class SettingsError(Exception):
    """Settings are invalid; the message names the variable."""


#: pydantic's error types for a value that should have been JSON (a list or a map).
_JSON_ERRORS = {"list_type", "dict_type", "json_invalid", "json_type", "tuple_type"}
_SOURCE_FIELD = re.compile(r'field "([a-z_]+)"')


def _error_line(error: Any) -> str:
    name = variable_name(error["loc"])
    line = f"{name}: {str(error['msg']).removeprefix('Value error, ')}"
    if error["type"] in _JSON_ERRORS:
        line += f" ({json_hint(error['loc'])})"
    elif close := suggestion(name, Settings):
        line += f" (did you mean {close}?)"
    return line


def _variable_names(overrides: dict[str, Any]) -> list[str]:
    """Every variable this process was given: the environment and the ``.env`` file."""
    names = list(os.environ)
    env_file = overrides.get("_env_file", Settings.model_config.get("env_file"))
    if isinstance(env_file, str | Path) and Path(env_file).is_file():
        names += [name for name in dotenv_values(env_file) if name]
    return names


def load_settings(**overrides: Any) -> Settings:
    """Build settings or raise :class:`SettingsError` naming every bad variable at once.

    Unknown ``CASCADE_*`` variables (typos) are logged as warnings with a suggestion.
    """
    for warning in unknown_variables(_variable_names(overrides), Settings):
        log.warning("%s", warning)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [_error_line(error) for error in exc.errors()]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
    except SourceError as exc:
        # pydantic-settings could not decode a JSON-valued variable.
        found = _SOURCE_FIELD.search(str(exc))
        field = found.group(1) if found else "?"
        raise SettingsError(
            f"invalid settings:\n  {variable_name([field])}: not valid JSON ({json_hint([field])})"
        ) from None
    problems = settings.production_problems()
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
