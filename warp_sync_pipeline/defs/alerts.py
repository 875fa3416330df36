"""Alerts for every flow (core/alerts.py does the work), by email and by an outgoing webhook.

- `run_failure_alert_sensor` and `run_canceled_alert_sensor` watch every job of this code location: a failed or
  cancelled run (or one whose process died, failed by `run_monitoring`) alerts as `run_failed:<job>`; a
  reconciliation run's row is marked failed first. They see runs from schedules, sensors, the UI and the shell
  (`warp-sync reconcile` submits through the run queue).
- `warp_alerts_sensor` reads the other conditions from PostgreSQL each tick (dead letters, events given up on,
  failed ERROR checks, lag, a missed nightly, an unsent report, the brake, a long pause, the daily quota) and
  resolves a job's run alert once a later run of the job succeeded.
Each condition is announced once per WARP_ALERT_REPEAT_MINUTES while it lasts and once when it clears. Sensor
evaluations must finish within 60 s: SMTP and the webhook get 5-second timeouts and deliveries stop after 40 s.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import sqlalchemy as sa

from warp_sync_pipeline.core.alerts import (
    RUN_FAILED,
    AlertSettings,
    Announced,
    Channels,
    Condition,
    announce,
    firing_keys,
    observe,
    run_failed,
    run_recovered,
)
from warp_sync_pipeline.core.reconciliation_runs import mark_failed
from warp_sync_pipeline.core.settings import SettingsError, load_settings
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource
from warp_sync_pipeline.runs import (
    dry_run_from_tags,
    failure_messages,
    is_reconciliation_run,
    request_id_from_tags,
)

# Per SMTP operation and webhook call; a handful of them stay well under a sensor's 60 s.
SENSOR_TIMEOUT_SECONDS = 5.0
RECONCILIATION_FAILED = ("The reconciliation run did not finish; nothing after the failing step was done. Its run "
                         "record is marked failed. The next scheduled run will try again, or start one by hand.")


def _failure_reason(context: dg.RunFailureSensorContext) -> str:
    return "\n".join(failure_messages(context.instance, context.dagster_run.run_id))


def _channels(email: EmailResource, webhook_url: str | None, log: dg.DagsterLogManager) -> Channels:
    try:
        configured = email.is_configured
    except SettingsError:
        # A malformed setting must not stop the rest: the send raises it, and the problem is reported.
        configured = True
    if not configured:
        log.info("Email is not configured (SMTP_HOST, WARP_REPORT_RECIPIENTS): alerts go to the webhook only")
    return Channels(
        send_email=(lambda notice: email.send_alert(notice, timeout_seconds=SENSOR_TIMEOUT_SECONDS))
        if configured else None,
        webhook_url=webhook_url,
        timeout_s=SENSOR_TIMEOUT_SECONDS,
    )


def _announce(engine: sa.Engine, conditions: list[Condition], email: EmailResource, log: dg.DagsterLogManager,
              settings: AlertSettings) -> Announced:
    channels = _channels(email, settings.webhook_url, log)
    outcome = announce(engine, conditions, channels, repeat=settings.repeat)
    for notice in outcome.sent:
        log.info(f"Sent: {notice.subject}")
    if outcome.problems and not channels.configured:
        log.warning(f"{'; '.join(outcome.problems)}: {len(outcome.waiting)} notice(s) not sent")
    elif outcome.problems:
        # Raised so the tick shows it; what was not delivered is tried again at the next tick.
        raise RuntimeError("; ".join(outcome.problems))
    return outcome


def _run_ended(context: dg.RunStatusSensorContext, db: DatabaseResource, email: EmailResource, *,
               cancelled: bool, reason: str) -> None:
    run = context.dagster_run
    what_happened = ""
    if is_reconciliation_run(run.job_name, run.tags):
        record = mark_failed(db.engine, run.run_id, ("Run cancelled: " if cancelled else "Run failed: ") + reason,
                             request_id=request_id_from_tags(run.tags), dry_run=dry_run_from_tags(run.tags))
        context.log.info(f"Reconciliation run {run.run_id}: row is {record.status}")
        what_happened = RECONCILIATION_FAILED
    condition = run_failed(run.job_name, run.run_id, cancelled=cancelled, reason=reason,
                           dry_run=dry_run_from_tags(run.tags), request_id=request_id_from_tags(run.tags),
                           what_happened=what_happened)
    _announce(db.engine, [condition], email, context.log, AlertSettings.from_settings())


def alert_sensor_interval() -> int:
    """WARP_ALERT_SENSOR_INTERVAL_SECONDS, read when the definitions load; shared by the three sensors."""
    return load_settings().alert_sensor_interval_seconds


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=alert_sensor_interval(),
    description="Alerts on a failed run of any job (one alert per job per interval); a failed reconciliation run's "
                "row is marked failed.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, db: DatabaseResource, email: EmailResource) -> None:
    # Returns None, not a SkipReason: a returned value would end the tick after this one run.
    _run_ended(context, db, email, cancelled=False, reason=_failure_reason(context))


@dg.run_status_sensor(
    name="run_canceled_alert_sensor",
    run_status=dg.DagsterRunStatus.CANCELED,
    minimum_interval_seconds=alert_sensor_interval(),
    description="Alerts on a cancelled run of any job; a cancelled reconciliation run counts as failed.",
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def run_canceled_alert_sensor(context: dg.RunStatusSensorContext, db: DatabaseResource, email: EmailResource) -> None:
    message = (context.dagster_event.message or "").strip() or "the run was cancelled"
    _run_ended(context, db, email, cancelled=True, reason=message)


def _run_alerts(instance: dg.DagsterInstance, engine: sa.Engine) -> tuple[list[Condition], list[str]]:
    """The jobs whose run alert fires: (recovered, as conditions that resolve it: their latest finished run
    succeeded; still failing, by key: the run-status sensors announce their failures, not this sensor)."""
    recovered, failing = [], []
    for key in firing_keys(engine, RUN_FAILED):
        job = key.removeprefix(RUN_FAILED)
        [latest] = instance.get_runs(dg.RunsFilter(job_name=job, statuses=[
            dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]), limit=1) or [None]
        if latest is not None and latest.status == dg.DagsterRunStatus.SUCCESS:
            recovered.append(run_recovered(job, latest.run_id))
        else:
            failing.append(key)
    return recovered, failing


@dg.sensor(
    name="warp_alerts_sensor",
    minimum_interval_seconds=alert_sensor_interval(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts (email and WARP_ALERT_WEBHOOK_URL) on dead letters, failed webhook events, failed ERROR "
                "checks, lag, a missed nightly, an unsent report, the brake, a long HubSpot pause and the daily "
                "quota; says when each clears.",
)
def warp_alerts_sensor(context: dg.SensorEvaluationContext, db: DatabaseResource,
                       email: EmailResource) -> dg.SkipReason:
    settings = AlertSettings.from_settings()
    recovered, failing = _run_alerts(context.instance, db.engine)
    conditions = observe(db.engine, settings, now=datetime.now(UTC)) + recovered
    firing = [c.key for c in conditions if c.firing] + failing
    outcome = _announce(db.engine, conditions, email, context.log, settings)
    return dg.SkipReason(f"{len(firing)} condition(s) firing ({', '.join(firing) or 'none'}); "
                         f"{len(outcome.sent)} notice(s) sent.")
