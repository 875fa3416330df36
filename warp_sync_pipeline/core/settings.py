"""One typed source of configuration: every environment variable warp-sync reads, with its default and bounds.

Every process (the Dagster code location and its runs, the receiver, the CLI) reads `WarpSettings` through
`load_settings()`, and each flow's settings class (`DrainSettings.from_env` and the others) takes its fields from
it; the dataclasses' own defaults are `DEFAULTS`, so a default is written once. A bad value raises
`SettingsError` naming the variable. A blank value counts as unset. Every variable is documented in
`.env.example` (a test keeps the two equal). Nothing here has a default secret.

Where values come from: the process environment, into which the CLI and the receiver first load `./.env` with
its values winning, as Dagster's `dg` and `dagster dev` do (`load_dotenv`). A caller may pass a mapping instead
(`load_settings(environ)`): then that mapping is the whole environment, which is how a Dagster resource checks
the values its `dg.EnvVar`s resolved to and how the receiver lays its app config over the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
POSTGRES_DRIVER = "postgresql+psycopg2"


class SettingsError(ValueError):
    """A missing or malformed setting; the message names the environment variable."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


# --- the value types: each check raises ValueError with the problem; load_settings adds the variable -----------


def _switch(raw: object) -> object:
    # Stricter than pydantic's bool (which also takes "t", "y", "f", "n"): the words .env.example names.
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"expected true/false, got {raw!r}")
    return raw


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}; use an IANA name such as Europe/Berlin") from None
    return name


def _web_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("expected a URL starting with http:// or https://")
    return value.rstrip("/") if value else value


def postgres_url(raw: str) -> str:
    """A PostgreSQL URL with the driver named: SQLAlchemy 2.1 would pick psycopg 3 for a bare `postgresql://`.
    ValueError (the problem, without the variable) for anything else."""
    try:
        url = make_url(raw)
    except Exception:  # noqa: BLE001 - SQLAlchemy raises ArgumentError and ValueError alike
        raise ValueError("is not a valid database URL") from None
    if url.get_backend_name() == "postgres":  # Heroku-style alias
        url = url.set(drivername="postgresql")
    if url.get_backend_name() != "postgresql":
        raise ValueError(f"must be a PostgreSQL URL, got backend {url.get_backend_name()!r}")
    if not url.database:
        raise ValueError("names no database")
    return url.set(drivername=POSTGRES_DRIVER).render_as_string(hide_password=False)


def _postgres_url(value: str | None) -> str | None:
    return None if value is None else postgres_url(value)


def _host_name(value: str | None) -> str | None:
    if value is not None and (any(c.isspace() for c in value) or "/" in value):
        raise ValueError("expected a host name or address, without scheme or spaces")
    return value


_OWNER = re.compile(r"^(team:[A-Za-z0-9_-]+|[^@\s,]+@[^@\s,]+)$")


def _owners(value: str) -> str:
    owners = [owner.strip() for owner in value.split(",") if owner.strip()]
    bad = [owner for owner in owners if not _OWNER.match(owner)]
    if bad:
        raise ValueError(f"each owner is an email address or team:NAME, got {', '.join(bad)}")
    return ",".join(owners)


Switch = Annotated[bool, BeforeValidator(_switch)]
Owners = Annotated[str, AfterValidator(_owners)]
Timezone = Annotated[str, AfterValidator(_timezone)]
WebUrl = Annotated[str | None, AfterValidator(_web_url)]
PostgresUrl = Annotated[str | None, AfterValidator(_postgres_url)]
HostName = Annotated[str | None, AfterValidator(_host_name)]


def _secret(alias: str) -> Any:
    return Field(default=None, alias=alias, repr=False)


class WarpSettings(BaseSettings):
    """Every variable warp-sync reads. Fields are named for what they hold; the alias is the variable."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, validate_default=True,
                                      allow_inf_nan=False)

    # --- databases and local state
    database_url: PostgresUrl = Field(default=None, alias="WARP_DATABASE_URL", repr=False)
    dagster_database_url: PostgresUrl = Field(default=None, alias="WARP_DAGSTER_DATABASE_URL", repr=False)
    test_database_url: PostgresUrl = Field(default=None, alias="WARP_TEST_DATABASE_URL", repr=False)
    dagster_home: str | None = Field(default=None, alias="DAGSTER_HOME")
    state_dir: str | None = Field(default=None, alias="WARP_STATE_DIR")
    pg_bindir: str | None = Field(default=None, alias="WARP_PG_BINDIR")
    dagster_ui_url: WebUrl = Field(default=None, alias="WARP_DAGSTER_UI_URL")
    # Who owns warp-sync's assets in the Dagster catalog: team:NAME or email addresses, comma-separated.
    asset_owners: Owners = Field(default="team:warp-sync", alias="WARP_ASSET_OWNERS")
    # The workspace file `warp-sync reconcile` launches runs from (unset: the checkout's workspace.yaml).
    dagster_workspace: str | None = Field(default=None, alias="WARP_DAGSTER_WORKSPACE")
    # The local demo stack's ports (unset: free ones, chosen once and kept in the state folder).
    demo_sandbox_port: int | None = Field(default=None, alias="WARP_DEMO_SANDBOX_PORT", ge=1, le=65535)
    demo_smtp_port: int | None = Field(default=None, alias="WARP_DEMO_SMTP_PORT", ge=1, le=65535)
    demo_receiver_port: int | None = Field(default=None, alias="WARP_DEMO_RECEIVER_PORT", ge=1, le=65535)
    demo_dagster_port: int | None = Field(default=None, alias="WARP_DEMO_DAGSTER_PORT", ge=1, le=65535)
    demo_code_server_port: int | None = Field(default=None, alias="WARP_DEMO_CODE_SERVER_PORT", ge=1, le=65535)
    demo_mailbox_port: int | None = Field(default=None, alias="WARP_DEMO_MAILBOX_PORT", ge=1, le=65535)
    run_margin_seconds: float = Field(default=15.0, alias="WARP_RUN_MARGIN_SECONDS", ge=1.0)

    # --- HubSpot
    hubspot_base_url: WebUrl = Field(default=None, alias="HUBSPOT_BASE_URL")
    hubspot_access_token: str | None = _secret("HUBSPOT_ACCESS_TOKEN")
    hubspot_api_version: str | None = Field(default=None, alias="HUBSPOT_API_VERSION")
    hubspot_time_budget_seconds: float = Field(default=60.0, alias="HUBSPOT_TIME_BUDGET_SECONDS", ge=0.1)
    hubspot_request_timeout_seconds: float = Field(default=30.0, alias="HUBSPOT_REQUEST_TIMEOUT_SECONDS", ge=0.1)
    hubspot_max_attempts: int = Field(default=5, alias="HUBSPOT_MAX_ATTEMPTS", ge=1)
    hubspot_requests_per_10s: int = Field(default=100, alias="HUBSPOT_REQUESTS_PER_10S", ge=1)
    hubspot_search_per_second: int = Field(default=5, alias="HUBSPOT_SEARCH_PER_SECOND", ge=1)
    hubspot_reserved_share: float = Field(default=0.2, alias="HUBSPOT_RESERVED_SHARE", ge=0.0, le=0.9)
    hubspot_budget_margin_ms: int = Field(default=250, alias="HUBSPOT_BUDGET_MARGIN_MS", ge=0)
    hubspot_daily_reserved_share: float = Field(default=0.05, alias="HUBSPOT_DAILY_RESERVED_SHARE", ge=0.0, le=0.5)
    hubspot_client_secret: str | None = _secret("HUBSPOT_CLIENT_SECRET")
    hubspot_client_secret_previous: str | None = _secret("HUBSPOT_CLIENT_SECRET_PREVIOUS")
    hubspot_webhook_target_url: WebUrl = Field(default=None, alias="HUBSPOT_WEBHOOK_TARGET_URL")
    # Where a company's HubSpot record opens (both unset: read once from GET /account-info/v3/details).
    hubspot_portal_id: int | None = Field(default=None, alias="WARP_HUBSPOT_PORTAL_ID", ge=1)
    hubspot_ui_domain: HostName = Field(default=None, alias="WARP_HUBSPOT_UI_DOMAIN")

    # --- the receiver
    api_token: str | None = _secret("WARP_API_TOKEN")
    secret_key: str | None = _secret("WARP_SECRET_KEY")
    public_base_url: WebUrl = Field(default=None, alias="WARP_PUBLIC_BASE_URL")
    max_request_bytes: int = Field(default=1024 * 1024, alias="WARP_MAX_REQUEST_BYTES", ge=1024)
    trusted_proxy_hops: int = Field(default=0, alias="WARP_TRUSTED_PROXY_HOPS", ge=0)
    # How long /metrics reuses what it read from PostgreSQL (several scrapers or workers cost one read).
    metrics_cache_seconds: float = Field(default=5.0, alias="WARP_METRICS_CACHE_SECONDS", ge=0.0)
    db_pool_size: int = Field(default=10, alias="WARP_DB_POOL_SIZE", ge=2)

    # --- creates and pushes
    create_time_budget_seconds: float = Field(default=20.0, alias="WARP_CREATE_TIME_BUDGET_SECONDS", ge=0.5)
    create_cleanup_seconds: float = Field(default=5.0, alias="WARP_CREATE_CLEANUP_SECONDS", ge=0.5)
    idempotency_retention_hours: int = Field(default=72, alias="WARP_IDEMPOTENCY_RETENTION_HOURS", ge=1)
    idempotency_lock_margin_seconds: float = Field(default=30.0, alias="WARP_IDEMPOTENCY_LOCK_MARGIN_SECONDS", ge=1.0)
    push_time_budget_seconds: float = Field(default=10.0, alias="WARP_PUSH_TIME_BUDGET_SECONDS", ge=0.5)
    push_lease_wait_seconds: float = Field(default=2.0, alias="WARP_PUSH_LEASE_WAIT_SECONDS", ge=0.0)
    push_retry_delay_seconds: float = Field(default=30.0, alias="WARP_PUSH_RETRY_DELAY_SECONDS", ge=0.0)

    # --- the outbound queue
    queue_max_attempts: int = Field(default=3, alias="WARP_QUEUE_MAX_ATTEMPTS", ge=1)
    queue_backoff_seconds: float = Field(default=30.0, alias="WARP_QUEUE_BACKOFF_SECONDS", ge=0.0)
    queue_backoff_max_seconds: float = Field(default=900.0, alias="WARP_QUEUE_BACKOFF_MAX_SECONDS", ge=0.0)
    queue_lease_seconds: float = Field(default=150.0, alias="WARP_QUEUE_LEASE_SECONDS", ge=1.0)
    queue_http_budget_seconds: float = Field(default=120.0, alias="WARP_QUEUE_HTTP_BUDGET_SECONDS", ge=1.0)
    queue_run_seconds: float = Field(default=120.0, alias="WARP_QUEUE_RUN_SECONDS", ge=1.0)
    queue_claim_size: int = Field(default=500, alias="WARP_QUEUE_CLAIM_SIZE", ge=1)
    queue_retention_days: int = Field(default=7, alias="WARP_QUEUE_RETENTION_DAYS", ge=1)
    queue_sensor_interval_seconds: int = Field(default=30, alias="WARP_QUEUE_SENSOR_INTERVAL_SECONDS", ge=5)

    # --- pauses (HubSpot down, token refused, daily quota spent)
    pause_probe_seconds: float = Field(default=30.0, alias="WARP_PAUSE_PROBE_SECONDS", ge=1.0)
    pause_probe_max_seconds: float = Field(default=300.0, alias="WARP_PAUSE_PROBE_MAX_SECONDS", ge=1.0)
    pause_probe_timeout_seconds: float = Field(default=10.0, alias="WARP_PAUSE_PROBE_TIMEOUT_SECONDS", ge=0.5)

    # --- alerts (email to WARP_REPORT_RECIPIENTS, and an outgoing webhook)
    alert_webhook_url: WebUrl = Field(default=None, alias="WARP_ALERT_WEBHOOK_URL", repr=False)
    alert_repeat_minutes: float = Field(default=60.0, alias="WARP_ALERT_REPEAT_MINUTES", ge=1.0)
    alert_lag_minutes: float = Field(default=15.0, alias="WARP_ALERT_LAG_MINUTES", gt=0.0)
    alert_pause_minutes: float = Field(default=15.0, alias="WARP_ALERT_PAUSE_MINUTES", ge=0.0)
    alert_quota_share: float = Field(default=0.1, alias="WARP_ALERT_QUOTA_SHARE", ge=0.0, le=1.0)
    alert_sensor_interval_seconds: int = Field(default=30, alias="WARP_ALERT_SENSOR_INTERVAL_SECONDS", ge=5)

    # --- inbound webhooks
    webhook_allow_v1: Switch = Field(default=False, alias="WARP_WEBHOOK_ALLOW_V1")
    webhook_allow_v2: Switch = Field(default=False, alias="WARP_WEBHOOK_ALLOW_V2")
    webhook_max_attempts: int = Field(default=5, alias="WARP_WEBHOOK_MAX_ATTEMPTS", ge=1)
    webhook_lease_seconds: float = Field(default=150.0, alias="WARP_WEBHOOK_LEASE_SECONDS", ge=1.0)
    webhook_retry_seconds: float = Field(default=30.0, alias="WARP_WEBHOOK_RETRY_SECONDS", ge=1.0)
    webhook_run_seconds: float = Field(default=100.0, alias="WARP_WEBHOOK_RUN_SECONDS", ge=1.0)
    # At least three days: the dedupe window must outlast HubSpot's day of retries.
    webhook_retention_days: int = Field(default=3, alias="WARP_WEBHOOK_RETENTION_DAYS", ge=3)
    webhook_failed_retention_days: int = Field(default=30, alias="WARP_WEBHOOK_FAILED_RETENTION_DAYS", ge=3)
    webhook_sensor_interval_seconds: int = Field(default=15, alias="WARP_WEBHOOK_SENSOR_INTERVAL_SECONDS", ge=5)

    # --- the nightly reconciliation
    schedule_timezone: Timezone = Field(default="UTC", alias="WARP_SCHEDULE_TIMEZONE")
    writeback_enabled: Switch = Field(default=True, alias="WARP_WRITEBACK_ENABLED")
    reconcile_create_missing: Switch = Field(default=False, alias="WARP_RECONCILE_CREATE_MISSING")
    reconcile_freshness_hours: float = Field(default=26.0, alias="WARP_RECONCILE_FRESHNESS_HOURS", ge=1.0)
    # The incremental nightly (core/reconcile/incremental.py): the day of the full sweep (0 Monday .. 6 Sunday),
    # the overlap of HubSpot's search windows, how far search lags writes, and WARP's margin for long transactions.
    reconcile_full_sweep_weekday: int = Field(default=6, alias="WARP_RECONCILE_FULL_SWEEP_WEEKDAY", ge=0, le=6)
    reconcile_search_overlap_seconds: float = Field(default=300.0, alias="WARP_RECONCILE_SEARCH_OVERLAP_SECONDS",
                                                    ge=0.0)
    reconcile_index_lag_seconds: float = Field(default=60.0, alias="WARP_RECONCILE_INDEX_LAG_SECONDS", ge=0.0)
    reconcile_warp_margin_seconds: float = Field(default=900.0, alias="WARP_RECONCILE_WARP_MARGIN_SECONDS", ge=0.0)
    # How a full sweep reads HubSpot: the list API (one call per 100 companies) or the CRM Exports API (a handful of
    # calls; the list API is its fallback), and how an export is waited for.
    reconcile_sweep_source: Literal["list", "export"] = Field(default="list", alias="WARP_RECONCILE_SWEEP_SOURCE")
    reconcile_export_poll_seconds: float = Field(default=10.0, alias="WARP_RECONCILE_EXPORT_POLL_SECONDS", gt=0.0)
    reconcile_export_timeout_seconds: float = Field(default=1800.0, alias="WARP_RECONCILE_EXPORT_TIMEOUT_SECONDS",
                                                    gt=0.0)
    reconcile_max_change_share: float = Field(default=0.05, alias="WARP_RECONCILE_MAX_CHANGE_SHARE", ge=0.0, le=1.0)
    reconcile_max_drift_share: float = Field(default=0.05, alias="WARP_RECONCILE_MAX_DRIFT_SHARE", ge=0.0, le=1.0)
    reconcile_max_plan_age_hours: float = Field(default=6.0, alias="WARP_RECONCILE_MAX_PLAN_AGE_HOURS", ge=0.01)
    reconcile_chunk_size: int = Field(default=500, alias="WARP_RECONCILE_CHUNK_SIZE", ge=1)
    reconcile_max_runtime_seconds: float = Field(default=4 * 3600.0, alias="WARP_RECONCILE_MAX_RUNTIME_SECONDS",
                                                  ge=60.0)
    frame_retention_days: int = Field(default=7, alias="WARP_FRAME_RETENTION_DAYS", ge=1)

    # --- onboarding (day one: matching an existing portal's companies to WARP's customers)
    onboarding_own_domains: str | None = Field(default=None, alias="WARP_ONBOARDING_OWN_DOMAINS")
    onboarding_excluded_domains: str | None = Field(default=None, alias="WARP_ONBOARDING_EXCLUDED_DOMAINS")
    onboarding_max_customers_per_domain: int = Field(default=3, alias="WARP_ONBOARDING_MAX_CUSTOMERS_PER_DOMAIN",
                                                     ge=1)
    onboarding_preview_max_age_hours: float = Field(default=24.0, alias="WARP_ONBOARDING_PREVIEW_MAX_AGE_HOURS",
                                                    ge=0.1)

    # --- retention (the daily job)
    audit_retention_days: int = Field(default=365, alias="WARP_AUDIT_RETENTION_DAYS", ge=1)
    retention_max_runtime_seconds: float = Field(default=3600.0, alias="WARP_RETENTION_MAX_RUNTIME_SECONDS", ge=60.0)

    # --- email (the report and failure alerts)
    smtp_host: HostName = Field(default=None, alias="SMTP_HOST")
    # Unset: 587 with STARTTLS, 25 without (EmailSettings decides, it knows both).
    smtp_port: int | None = Field(default=None, alias="SMTP_PORT", ge=1, le=65535)
    smtp_username: str | None = Field(default=None, alias="SMTP_USERNAME")
    smtp_password: str | None = _secret("SMTP_PASSWORD")
    smtp_starttls: Switch = Field(default=True, alias="SMTP_STARTTLS")
    smtp_from: str = Field(default="warp-sync@localhost", alias="SMTP_FROM")
    smtp_timeout_seconds: float = Field(default=10.0, alias="SMTP_TIMEOUT_SECONDS", ge=0.5, le=300.0)
    smtp_ca_file: str | None = Field(default=None, alias="SMTP_CA_FILE")
    report_recipients: str | None = Field(default=None, alias="WARP_REPORT_RECIPIENTS")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Values passed to the constructor first (tests), then the environment load_settings() was given (./.env is
        # already in it, see load_dotenv).
        return (init_settings, _EnvironSource(settings_cls, _ENVIRON.get()))


VARIABLES: Final[frozenset[str]] = frozenset(
    field.alias for field in WarpSettings.model_fields.values() if field.alias is not None
)

_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("warp_settings_environ", default=None)


class _EnvironSource(PydanticBaseSettingsSource):
    """warp-sync's variables from a mapping (the process environment by default), blank values left out."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None) -> None:
        super().__init__(settings_cls)
        source = os.environ if environ is None else environ
        self._values = {name: str(source[name]).strip() for name in VARIABLES
                        if name in source and str(source[name]).strip()}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        alias = field.alias or field_name
        return self._values.get(alias), alias, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


_PROBLEMS: dict[str, str] = {
    "int_parsing": "expected a whole number, got {input!r}",
    "int_from_float": "expected a whole number, got {input!r}",
    "float_parsing": "expected a number, got {input!r}",
    "greater_than_equal": "must be at least {ge}, got {input}",
    "less_than_equal": "must be at most {le}, got {input}",
}


def _settings_error(exc: ValidationError) -> SettingsError:
    first = exc.errors(include_url=False)[0]
    variable = str(first["loc"][0]) if first["loc"] else "settings"
    context = first.get("ctx") or {}
    if first["type"] == "value_error":
        problem = str(context.get("error", first["msg"]))
    else:
        template = _PROBLEMS.get(first["type"])
        problem = template.format(input=first["input"], **context) if template else first["msg"]
    return SettingsError(variable, problem)


def load_settings(environ: Mapping[str, str] | None = None) -> WarpSettings:
    """Every setting, validated; `environ` replaces the process environment when given. SettingsError names the
    first bad variable."""
    token = _ENVIRON.set(environ)
    try:
        return WarpSettings()
    except ValidationError as exc:
        raise _settings_error(exc) from None
    finally:
        _ENVIRON.reset(token)


# The defaults, for the settings dataclasses' own defaults (one place for each).
DEFAULTS: Final[WarpSettings] = load_settings({})


def require(value: str | None, variable: str, hint: str = "see .env.example") -> str:
    """`value`, or SettingsError when the setting a caller needs is unset."""
    if not value:
        raise SettingsError(variable, f"is not set ({hint})")
    return value


def load_dotenv(directory: Path | None = None) -> list[str]:
    """Load `./.env` (of `directory`, the working directory by default) into the process environment the way
    Dagster's `dg`/`dagster dev` load it: its values win over variables already set. The CLI and the receiver call
    this at start, so one checkout runs every process with one configuration. Returns the names loaded."""
    from dotenv import dotenv_values

    path = (directory or Path.cwd()) / ".env"
    if not path.is_file():
        return []
    values = {name: value for name, value in dotenv_values(path).items() if value is not None}
    os.environ.update(values)
    return sorted(values)


def overlaid_environ(
    overrides: Mapping[str, Any], names: Iterable[str], *, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment (as text) with each of `names` that `overrides` sets (not None) laid over it.

    For adapters whose own config (a Flask app's, a test's) may set a variable the environment also sets.
    """
    source = dict(os.environ if environ is None else environ)
    source.update({name: str(overrides[name]) for name in names if overrides.get(name) is not None})
    return source


def project_root() -> Path:
    """The checkout (or the current directory when installed elsewhere)."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Where local state lives: the private PostgreSQL's record, DAGSTER_HOME, logs (WARP_STATE_DIR)."""
    raw = load_settings(environ).state_dir
    return Path(raw).resolve() if raw else project_root() / ".warp-sync"
