"""The `email` resource: the report and alerts over SMTP (core/email.py does the work).

Each field holds the raw text of one environment variable and is parsed by the settings model through
`EmailSettings.from_env`, as every process's environment is, so a bad value is reported with the variable's name. Bind it with
`email_resource_from_env()`: it passes `dg.EnvVar(...)` for each variable that is set, so the
UI shows variable names, never the password, and unset optional ones keep their defaults
(Dagster fails a run whose `EnvVar` is unset, even for an optional setting).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from warp_sync_pipeline.core.alerts import Notice
from warp_sync_pipeline.core.email import NO_LINKS, DeliveryResult, EmailSettings, send_alert, send_report
from warp_sync_pipeline.core.reconcile.results import Report, TrendPoint
from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.core.web_links import WebLinks

# Resource field -> environment variable.
ENV_VARIABLES: dict[str, str] = {
    "host": "SMTP_HOST",
    "port": "SMTP_PORT",
    "username": "SMTP_USERNAME",
    "password": "SMTP_PASSWORD",
    "starttls": "SMTP_STARTTLS",
    "from_address": "SMTP_FROM",
    "timeout_seconds": "SMTP_TIMEOUT_SECONDS",
    "recipients": "WARP_REPORT_RECIPIENTS",
    "ca_file": "SMTP_CA_FILE",
}


class EmailResource(dg.ConfigurableResource):
    """SMTP delivery of the reconciliation report and failure alerts (STARTTLS, verified)."""

    host: str = ""
    port: str = ""
    username: str = ""
    password: str = ""
    starttls: str = ""
    from_address: str = ""
    timeout_seconds: str = ""
    recipients: str = ""
    ca_file: str = ""

    def settings(self) -> EmailSettings:
        """Parsed and validated; raises `SettingsError` naming the environment variable."""
        return EmailSettings.from_env({var: getattr(self, name) or "" for name, var in ENV_VARIABLES.items()})

    @property
    def is_configured(self) -> bool:
        """An SMTP host and at least one recipient are set."""
        return self.settings().configured

    def send_report(self, report: Report | Mapping[str, Any], *, timeout_seconds: float | None = None,
                    links: WebLinks = NO_LINKS, trend: Sequence[TrendPoint] = ()) -> DeliveryResult:
        """Email the report (a Report, or its JSON) to WARP_REPORT_RECIPIENTS, linked through `links`, with the
        `trend` of the last runs."""
        return send_report(report, self.settings(), timeout_seconds=timeout_seconds, links=links, trend=trend)

    def send_alert(self, notice: Notice, *, timeout_seconds: float | None = None) -> DeliveryResult:
        """Email an alert notice (core.alerts) to WARP_REPORT_RECIPIENTS."""
        return send_alert(notice, self.settings(), timeout_seconds=timeout_seconds)


def email_resource_from_env(environ: Mapping[str, str] | None = None) -> EmailResource:
    """The resource bound to the environment variables that are set (as `dg.EnvVar`)."""
    env = os.environ if environ is None else environ
    load_settings(env)  # a malformed value stops the code location now, naming the variable
    bound = {name: dg.EnvVar(var) for name, var in ENV_VARIABLES.items() if env.get(var, "").strip()}
    return EmailResource(**bound)
