"""Run-status sensors for the nightly reconciliation: a failed or cancelled run is marked `failed`
in `hubspot_reconciliation_runs` (with the reason) and the admins get an alert email.

They watch every job of this code location and act only on reconciliation runs (tag
`warp/flow=reconciliation`, or the job `reconciliation_job`), so they need no reference to the
job. A run whose process died is failed by `run_monitoring` (dagster.yaml), which the failure
sensor then sees. Sensor evaluations must finish within 60 s: SMTP gets a short timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dagster as dg

from warp_sync_pipeline.core.email import FailureAlert
from warp_sync_pipeline.core.reconciliation_runs import handle_failed_run
from warp_sync_pipeline.core.settings import SettingsError
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource
from warp_sync_pipeline.runs import (
    dry_run_from_tags,
    is_reconciliation_run,
    request_id_from_tags,
    root_error_message,
)

# Per SMTP operation; a handful of them (connect, EHLO, STARTTLS, login, send) stay well under 60 s.
SENSOR_SMTP_TIMEOUT_SECONDS = 5.0
# Step errors quoted in the reason, at most (the rest is in the run's event log).
MAX_STEP_ERRORS = 5


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    parts = [(context.failure_event.message or "").strip()]
    for event in context.get_step_failure_events()[:MAX_STEP_ERRORS]:
        error = getattr(event.event_specific_data, "error", None)
        message = root_error_message(error) if error is not None else ""
        parts.append(f"{event.step_key}: {message or 'no error message'}")
    return "\n".join(p for p in parts if p)


def _alert_sender(email: EmailResource, log: logging.Logger) -> Callable[[FailureAlert], object] | None:
    try:
        configured = email.is_configured
    except SettingsError:
        # A malformed setting must not stop the row being marked: the send raises it afterwards.
        configured = True
    if not configured:
        log.warning("Email is not configured (SMTP_HOST, WARP_REPORT_RECIPIENTS): no alert sent")
        return None
    return lambda alert: email.send_failure_alert(alert, timeout_seconds=SENSOR_SMTP_TIMEOUT_SECONDS)


def _handle(
    context: dg.RunStatusSensorContext, db: DatabaseResource, email: EmailResource, *, cancelled: bool, reason: str
) -> None:
    run = context.dagster_run
    if not is_reconciliation_run(run.job_name, run.tags):
        return
    outcome = handle_failed_run(
        db.engine,
        run_id=run.run_id,
        job_name=run.job_name,
        request_id=request_id_from_tags(run.tags),
        dry_run=dry_run_from_tags(run.tags),
        cancelled=cancelled,
        reason=reason,
        send_alert=_alert_sender(email, context.log),
    )
    status = outcome.record.status if outcome.record else "unknown"
    context.log.info(
        f"Reconciliation run {run.run_id} {'cancelled' if cancelled else 'failed'}: row is {status}, "
        f"alert {'sent' if outcome.alert_sent else 'not sent'}"
    )


@dg.run_failure_sensor(
    name="reconciliation_run_failure_sensor",
    description="Marks a failed reconciliation run (or one whose process died) as failed and emails the admins.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def reconciliation_run_failure_sensor(
    context: dg.RunFailureSensorContext, db: DatabaseResource, email: EmailResource
) -> None:
    # Returns None, not a SkipReason: a returned value would end the tick after this one run.
    _handle(context, db, email, cancelled=False, reason=_failure_reason(context))


@dg.run_status_sensor(
    name="reconciliation_run_canceled_sensor",
    run_status=dg.DagsterRunStatus.CANCELED,
    description="Marks a cancelled reconciliation run as failed (cancelled counts as failed) and emails the admins.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def reconciliation_run_canceled_sensor(
    context: dg.RunStatusSensorContext, db: DatabaseResource, email: EmailResource
) -> None:
    message = (context.dagster_event.message or "").strip() or "the run was cancelled"
    _handle(context, db, email, cancelled=True, reason=message)
