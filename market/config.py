"""Typed settings, read once from config/default.toml, config/local.toml and MARKET_* variables.

Why a typed object rather than ``app.config`` lookups: every setting is declared once (in
``config/default.toml``, with its comment), validated once at start-up, and handed to the code
that needs it. A typo in a file is refused; a wrong type is refused with the key's name.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from market.accounts.settings import AccountsSettings, MailSettings
from market.costing.settings import CostingSettings
from market.errors import ConfigurationError
from market.sharing.settings import SharingSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "default.toml"
LOCAL_CONFIG = PROJECT_ROOT / "config" / "local.toml"
ENV_PREFIX = "MARKET_"

# Values that must never be used as a secret outside development.
PLACEHOLDER_SECRETS = frozenset({"change-me", "changeme", "secret", "dev", "development", "test"})

# OWASP Password Storage Cheat Sheet minimum for argon2id (m=19 MiB, t=2, p=1).
ARGON2_FLOOR_MEMORY_KIB = 19 * 1024
ARGON2_FLOOR_TIME_COST = 2


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AppSettings(_Section):
    secret_key: str = ""
    max_content_length: int = Field(default=1 << 30, gt=0)
    max_json_bytes: int = Field(default=1 << 20, gt=0)


class DatabaseSettings(_Section):
    url: str = ""
    sqlite_busy_timeout_ms: int = Field(default=5000, ge=0)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=5000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    threads: int = Field(default=4, ge=1)
    access_log: bool = False
    proxy_hops: int = Field(default=0, ge=0)


class SecuritySettings(_Section):
    secure_cookies: bool = False
    token_ttl_hours: int = Field(default=24, gt=0)
    session_ttl_hours: int = Field(default=12, gt=0)
    argon2_memory_kib: int = Field(default=65536, ge=ARGON2_FLOOR_MEMORY_KIB)
    argon2_time_cost: int = Field(default=3, ge=ARGON2_FLOOR_TIME_COST)
    argon2_parallelism: int = Field(default=4, ge=1)


class RateLimitSettings(_Section):
    storage_uri: str = "memory://"
    login: str = "5 per minute"


class VaultSettings(_Section):
    key_dir: str = ""
    min_key_version: int = Field(default=1, ge=1)
    segment_size: int = Field(default=1 << 20, ge=1 << 10, le=64 << 20)


class CatalogSettings(_Section):
    storage_dir: str = ""
    max_upload_bytes: int = Field(default=1 << 30, gt=0)
    max_in_memory_bytes: int = Field(default=256 << 20, gt=0)
    max_decoded_bytes: int = Field(default=1 << 30, gt=0)
    max_cells: int = Field(default=200_000_000, gt=0)
    max_columns: int = Field(default=1000, ge=1, le=10_000)
    max_categories: int = Field(default=1000, ge=2, le=10_000)
    max_metadata_bytes: int = Field(default=256 << 10, ge=1024)
    page_size: int = Field(default=20, ge=1, le=200)


class QueueSettings(_Section):
    backend: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str = "redis://127.0.0.1:6379/0"
    worker_threads: int = Field(default=1, ge=1, le=64)
    worker_class: str = Field(default="cpu", max_length=40)
    poll_max_delay_s: float = Field(default=0.25, gt=0, le=60)


class TradingSettings(_Section):
    quote_ttl_minutes: int = Field(default=30, ge=1)
    heartbeat_s: float = Field(default=10, gt=0)
    lease_s: float = Field(default=120, gt=0)
    accountant: Literal["rdp", "prv", "pld"] = "rdp"
    holdout_fraction: float = Field(default=0.2, ge=0, lt=0.9)
    holdout_max_rows: int = Field(default=2000, ge=1)
    max_parameters: int = Field(default=5_000_000, ge=1)
    max_physical_batch_size: int = Field(default=256, ge=1)
    models_dir: str = ""
    prepared_cache_mb: int = Field(default=512, ge=0)
    prepared_cache_ttl_s: float = Field(default=900, gt=0)

    def holdout(self) -> dict[str, Any]:
        """``plan_run``'s held-out terms: every plan of this service holds out alike."""
        return {
            "holdout_fraction": self.holdout_fraction,
            "holdout_max_rows": self.holdout_max_rows,
        }


class AuditSettings(_Section):
    origin: str = Field(default="localhost/market/audit", min_length=1, pattern=r"^[^\s]+$")
    signing_key_file: str = ""
    checkpoint_every: int = Field(default=100, ge=1)
    page_size: int = Field(default=100, ge=1)
    max_page_size: int = Field(default=1000, ge=1)


class OpsSettings(_Section):
    heartbeat_s: float = Field(default=5, gt=0)
    worker_stale_s: float = Field(default=30, gt=0)
    queue_lag_max_s: float = Field(default=900, gt=0)
    worker_restart_backoff_s: float = Field(default=1, gt=0)
    worker_restart_backoff_max_s: float = Field(default=60, gt=0)
    partial_max_age_s: float = Field(default=900, ge=0)
    sweep_every_minutes: int = Field(default=10, ge=1, le=59)


class Settings(_Section):
    """Every setting of the marketplace; see config/default.toml for what each one means."""

    home: Path = Field(default=Path("instance"), validate_default=True)
    env: Literal["development", "production"] = "development"
    app: AppSettings = AppSettings()
    database: DatabaseSettings = DatabaseSettings()
    server: ServerSettings = ServerSettings()
    security: SecuritySettings = SecuritySettings()
    ratelimit: RateLimitSettings = RateLimitSettings()
    vault: VaultSettings = VaultSettings()
    catalog: CatalogSettings = CatalogSettings()
    queue: QueueSettings = QueueSettings()
    trading: TradingSettings = TradingSettings()
    audit: AuditSettings = AuditSettings()
    ops: OpsSettings = OpsSettings()
    accounts: AccountsSettings = AccountsSettings()
    mail: MailSettings = MailSettings()
    sharing: SharingSettings = SharingSettings()
    # No code defaults: every coefficient is declared, with its source, in default.toml.
    costing: CostingSettings

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def database_url(self) -> str:
        """The configured URL, or SQLite inside the instance folder."""
        return self.database.url or f"sqlite:///{self.home / 'market.db'}"

    @property
    def key_dir(self) -> Path:
        return (
            Path(self.vault.key_dir).expanduser().resolve()
            if self.vault.key_dir
            else self.home / "keys"
        )

    @property
    def storage_dir(self) -> Path:
        if self.catalog.storage_dir:
            return Path(self.catalog.storage_dir).expanduser().resolve()
        return self.home / "datasets"

    @property
    def models_dir(self) -> Path:
        if self.trading.models_dir:
            return Path(self.trading.models_dir).expanduser().resolve()
        return self.home / "models"

    @property
    def outbox_dir(self) -> Path:
        if self.mail.outbox_dir:
            return Path(self.mail.outbox_dir).expanduser().resolve()
        return self.home / "outbox"

    @property
    def queue_file(self) -> Path:
        return self.home / "queue.db"

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret_key"

    def secret_key(self) -> str:
        """The signing key: explicit in production, else the instance's random key."""
        if self.app.secret_key:
            return self.app.secret_key
        try:
            return self.secret_key_file.read_text().strip()
        except FileNotFoundError as exc:
            raise ConfigurationError(
                f"no secret key: run `market init` to create {self.secret_key_file}, "
                "or set MARKET_APP_SECRET_KEY"
            ) from exc


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from exc


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """MARKET_DATABASE_URL -> {"database": {"url": ...}}; MARKET_HOME -> {"home": ...}.

    Nested sections nest the same way: MARKET_COSTING_ESTIMATE_CALIBRATE ->
    {"costing": {"estimate": {"calibrate": ...}}}. Variables that name no setting are
    ignored: other tools (tests, CI) use the prefix too.
    """
    values: dict[str, Any] = {}
    for name, raw in environ.items():
        if name.startswith(ENV_PREFIX):
            _place(Settings, name[len(ENV_PREFIX) :].lower(), raw, values)
    return values


def _place(model: type[BaseModel], key: str, raw: str, into: dict[str, Any]) -> bool:
    """Put ``raw`` where ``key`` (underscore-joined field names) points inside ``model``;
    False, leaving ``into`` as it was, when it names no setting."""
    field = model.model_fields.get(key)
    if field is not None and not _is_section(field.annotation):
        into[key] = raw
        return True
    for name, candidate in model.model_fields.items():
        section = candidate.annotation
        if key.startswith(name + "_") and _is_section(section):
            inner = into.get(name, {})
            if _place(section, key[len(name) + 1 :], raw, inner):  # type: ignore[arg-type]
                into[name] = inner
                return True
    return False


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def load_settings(
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    default_file: Path = DEFAULT_CONFIG,
    local_file: Path = LOCAL_CONFIG,
) -> Settings:
    """Read the layered configuration once and validate it.

    ``overrides`` (a nested dict, used by tests and ``create_app(config=...)``) wins over all.
    """
    data = _read_toml(default_file)
    data = _merge(data, _read_toml(local_file))
    data = _merge(data, _from_environment(os.environ if environ is None else environ))
    if overrides:
        data = _merge(data, overrides)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from exc
    _refuse_unsafe_production(settings)
    return settings


def _refuse_unsafe_production(settings: Settings) -> None:
    if not settings.is_production:
        return
    key = settings.app.secret_key
    if not key:
        raise ConfigurationError("production needs MARKET_APP_SECRET_KEY to be set")
    if key.lower() in PLACEHOLDER_SECRETS or len(key) < 32:
        raise ConfigurationError(
            "production refuses a placeholder or short secret key (need 32+ random characters)"
        )
    if not settings.security.secure_cookies:
        raise ConfigurationError("production needs security.secure_cookies = true (HTTPS)")


def new_secret_key() -> str:
    """A random signing key for a new instance."""
    return secrets.token_urlsafe(48)
