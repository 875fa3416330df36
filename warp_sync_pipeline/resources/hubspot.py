"""The `hubspot` resource: warp-sync's HubSpot client, built once per run.

Secrets and URLs arrive as `dg.EnvVar`s (the UI shows the variable's name, never its value); when a run sets
the resource up, every value, resolved, goes through the settings model like any process's environment, so a
bad one fails the run naming its variable. The request budget is shared through `database_url` with every other
process calling HubSpot.
"""

from __future__ import annotations

from collections.abc import Mapping

import dagster as dg
from pydantic import Field, PrivateAttr, field_validator

from warp_sync_pipeline.core.hubspot import (
    API_VERSIONS,
    DEFAULT_BASE_URL,
    HubSpotClient,
    HubSpotSettings,
    Priority,
    api_version,
    client_from_settings,
)
from warp_sync_pipeline.core.settings import load_settings

# The core's defaults, shown in the Dagster UI as the fields' defaults.
_DEFAULTS = HubSpotSettings(base_url=DEFAULT_BASE_URL, access_token="")

# Resource field -> environment variable (every field but `priority`, which no variable sets).
ENV_VARIABLES: dict[str, str] = {
    "base_url": "HUBSPOT_BASE_URL",
    "access_token": "HUBSPOT_ACCESS_TOKEN",
    "database_url": "WARP_DATABASE_URL",
    "requests_per_10s": "HUBSPOT_REQUESTS_PER_10S",
    "search_per_second": "HUBSPOT_SEARCH_PER_SECOND",
    "reserved_share": "HUBSPOT_RESERVED_SHARE",
    "daily_reserved_share": "HUBSPOT_DAILY_RESERVED_SHARE",
    "budget_margin_ms": "HUBSPOT_BUDGET_MARGIN_MS",
    "time_budget_seconds": "HUBSPOT_TIME_BUDGET_SECONDS",
    "request_timeout_seconds": "HUBSPOT_REQUEST_TIMEOUT_SECONDS",
    "max_attempts": "HUBSPOT_MAX_ATTEMPTS",
    "api_version": "HUBSPOT_API_VERSION",
}


class HubSpotResource(dg.ConfigurableResource):
    """HubSpot's CRM API through warp-sync's client (request budget, retries, typed errors)."""

    base_url: str = Field(default=DEFAULT_BASE_URL, description="HubSpot API root (HUBSPOT_BASE_URL).")
    access_token: str = Field(description="Private-app token (HUBSPOT_ACCESS_TOKEN).")
    database_url: str | None = Field(
        default=None, description="Database holding the shared request budget; None: no shared budget."
    )
    requests_per_10s: int = Field(default=_DEFAULTS.budget.requests_per_window,
                                  description="HubSpot's rolling 10-second request limit.")
    search_per_second: int = Field(default=_DEFAULTS.budget.search_per_second,
                                   description="HubSpot's search requests per second.")
    reserved_share: float = Field(
        default=_DEFAULTS.budget.reserved_share, description="Share of each window that only synchronous callers may use."
    )
    daily_reserved_share: float = Field(
        default=_DEFAULTS.budget.daily_reserved_share,
        description="Share of the account's daily quota kept for creates: bulk callers stop there.",
    )
    budget_margin_ms: int = Field(default=_DEFAULTS.budget.margin_ms, description="Added to each budget window (ms).")
    priority: str = Field(default=Priority.BULK.value, description="'bulk' for runs, 'sync' for a waiting caller.")
    time_budget_seconds: float = Field(default=_DEFAULTS.time_budget_s,
                                       description="Longest one call may take, retries included.")
    request_timeout_seconds: float = Field(default=_DEFAULTS.request_timeout_s,
                                           description="Network timeout of one HTTP request.")
    max_attempts: int = Field(default=_DEFAULTS.max_attempts, description="Attempts per call for retryable failures.")
    api_version: str = Field(
        default=_DEFAULTS.api_version,
        description=f"HubSpot API version whose paths are called (HUBSPOT_API_VERSION): {', '.join(API_VERSIONS)}.",
    )

    @field_validator("api_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        api_version(value)  # the versions module's rule: ValueError naming the versions it knows
        return value

    _client: HubSpotClient | None = PrivateAttr(default=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HubSpotResource:
        """The binding used by the code location: URLs and the token as EnvVars, limits parsed now by the settings
        model (one parser, one set of defaults), so a bad value stops the code location from loading."""
        settings = load_settings(environ)
        parsed = HubSpotSettings.from_settings(settings, require_token=False)
        return cls(
            # HUBSPOT_BASE_URL is optional: unset means HubSpot's real API.
            base_url=dg.EnvVar("HUBSPOT_BASE_URL") if settings.hubspot_base_url else DEFAULT_BASE_URL,
            access_token=dg.EnvVar("HUBSPOT_ACCESS_TOKEN"),
            database_url=dg.EnvVar("WARP_DATABASE_URL"),
            requests_per_10s=parsed.budget.requests_per_window,
            search_per_second=parsed.budget.search_per_second,
            reserved_share=parsed.budget.reserved_share,
            daily_reserved_share=parsed.budget.daily_reserved_share,
            budget_margin_ms=parsed.budget.margin_ms,
            time_budget_seconds=parsed.time_budget_s,
            request_timeout_seconds=parsed.request_timeout_s,
            max_attempts=parsed.max_attempts,
            api_version=parsed.api_version,
        )

    def build_client(self) -> HubSpotClient:
        """The client of the resolved values, each through the settings model as a process's environment goes:
        SettingsError names a bad (or empty) one's variable."""
        values = {variable: str(getattr(self, name)) for name, variable in ENV_VARIABLES.items()
                  if getattr(self, name) is not None}
        settings = load_settings(values)
        return client_from_settings(HubSpotSettings.from_settings(settings), settings.database_url,
                                    Priority(self.priority))

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._client = self.build_client()

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self) -> HubSpotClient:
        if self._client is None:
            # Used outside a run (a test building the resource directly).
            self._client = self.build_client()
        return self._client
