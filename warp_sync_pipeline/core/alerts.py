"""Alerts: the conditions someone must act on, announced once per interval while they last and once more when they
clear, by email and by an outgoing webhook.

A condition is a fact read from PostgreSQL (dead-lettered queue rows, webhook events given up on, a failed ERROR
check, lag, a missed nightly, an unsent report, the brake, a long HubSpot pause, the daily quota near its end) or
told by a run-status sensor (a failed or cancelled run of a job). `observe` reads the first kind in one short
transaction; `announce` compares what is observed with what was last announced (`warp_alerts`), delivers the notices
due, and records only those delivered, so a notice that could not go out is tried again at the next tick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import httpx
import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot.budget import daily_quota_seen
from warp_sync_pipeline.core.metrics import oldest_due_seconds, queue_rows, webhook_event_states
from warp_sync_pipeline.core.pauses import open_pauses
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings

RUN_FAILED = "run_failed:"
CHECK_FAILED = "check_failed:"
# Lines of detail a webhook message carries (the email carries them all).
WEBHOOK_DETAIL_LINES = 12
MAX_DETAIL_CHARS = 4000


class NoticeKind(StrEnum):
    ALERT = "ALERT"
    REMINDER = "STILL FIRING"
    RESOLVED = "RESOLVED"


@dataclass(frozen=True)
class Condition:
    """One alert condition as observed now. `title` is one line of our own words, numbers and identifiers (it goes
    into a mail subject); `detail` says what to do."""

    key: str
    firing: bool
    title: str = ""
    detail: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notice:
    """A message due about a condition: it started firing, still fires after the repeat interval, or cleared."""

    key: str
    kind: NoticeKind
    title: str
    detail: tuple[str, ...]
    since: datetime

    @property
    def subject(self) -> str:
        return f"[warp-sync] {self.kind.value}: {self.title}"

    def text(self, max_lines: int | None = None) -> str:
        lines = [self.subject]
        if self.kind is not NoticeKind.ALERT:
            lines.append(f"Firing since {self.since.astimezone(UTC).isoformat(timespec='seconds')}.")
        detail = list(self.detail if max_lines is None else self.detail[:max_lines])
        if max_lines is not None and len(self.detail) > max_lines:
            detail.append(f"... ({len(self.detail) - max_lines} more lines in the email)")
        return "\n".join(lines + detail)


@dataclass(frozen=True)
class AlertSettings:
    repeat: timedelta = timedelta(minutes=DEFAULTS.alert_repeat_minutes)
    lag: timedelta = timedelta(minutes=DEFAULTS.alert_lag_minutes)
    pause: timedelta = timedelta(minutes=DEFAULTS.alert_pause_minutes)
    quota_share: float = DEFAULTS.alert_quota_share
    missed_nightly: timedelta = timedelta(hours=DEFAULTS.reconcile_freshness_hours)
    webhook_url: str | None = None

    @classmethod
    def from_settings(cls, settings: WarpSettings | None = None) -> AlertSettings:
        settings = settings or load_settings()
        return cls(
            repeat=timedelta(minutes=settings.alert_repeat_minutes),
            lag=timedelta(minutes=settings.alert_lag_minutes),
            pause=timedelta(minutes=settings.alert_pause_minutes),
            quota_share=settings.alert_quota_share,
            missed_nightly=timedelta(hours=settings.reconcile_freshness_hours),
            webhook_url=settings.alert_webhook_url,
        )


# --- conditions -------------------------------------------------------------------------------------------------
def run_failed(job_name: str, run_id: str, *, cancelled: bool, reason: str, dry_run: bool = False,
               request_id: str | None = None, what_happened: str = "") -> Condition:
    """A failed or cancelled run of `job_name` (one condition per job: repeated failures of a job that runs every
    minute are one alert per interval, and it resolves when a run of the job succeeds)."""
    status = "cancelled" if cancelled else "failed"
    detail = [what_happened] if what_happened else []
    detail += [f"Job:     {job_name}", f"Run id:  {run_id}", f"Status:  {status}"]
    detail += ["Dry run: yes"] if dry_run else []
    detail += [f"Request: {request_id}"] if request_id else []
    detail += ["", "Reason:", *[f"  {line}" for line in (reason or "no reason given").splitlines()]]
    return Condition(f"{RUN_FAILED}{job_name}", True, f"{job_name} {status} - run {run_id[:8]}", tuple(detail))


def run_recovered(job_name: str, run_id: str) -> Condition:
    return Condition(f"{RUN_FAILED}{job_name}", False, f"{job_name} runs again",
                     (f"Run {run_id} of {job_name} succeeded.",))


def observe(engine: sa.Engine, settings: AlertSettings, *, now: datetime | None = None) -> list[Condition]:
    """Every condition read from PostgreSQL, firing or not (a condition that is not firing resolves its alert)."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn, conn.begin():
        return [
            _dead_letters(queue_rows(conn)["dead"]), _events_given_up(webhook_event_states(conn)["given_up"]),
            *_failed_checks(conn),
            *_lags(conn, settings), _missed_nightly(conn, settings, now), _missed_sweep(conn, settings, now),
            *_last_nightly(conn), _paused(conn, settings, now), _daily_quota(conn, settings),
        ]


def _dead_letters(count: int) -> Condition:
    return Condition("queue_dead_letters", count > 0, f"{count:,} queue row(s) dead-lettered",
                     ("Changes that could not be sent to HubSpot after every retry.",
                      "`warp-sync queue status` lists them with their errors; `warp-sync queue retry` sends them "
                      "again once the cause is fixed."))


def _events_given_up(count: int) -> Condition:
    return Condition("webhook_events_failed", count > 0, f"{count:,} webhook event(s) given up on",
                     ("HubSpot changes that could not be applied to WARP after every attempt.",
                      "`warp-sync events status` lists them; `warp-sync events retry` applies them again."))


def _failed_checks(conn: sa.Connection) -> list[Condition]:
    """Each recorded check: firing while its latest result failed at ERROR (a WARN result clears it)."""
    rows = conn.execute(sa.text("SELECT asset, check_name, severity, passed, description, run_id "
                                "FROM warp_check_results ORDER BY asset, check_name")).all()
    return [Condition(f"{CHECK_FAILED}{r.asset}.{r.check_name}", r.severity == "ERROR" and not r.passed,
                      f"check {r.asset}.{r.check_name} failed", (r.description or "No description.", f"Run: {r.run_id}"))
            for r in rows]


def _age(oldest: datetime | None, now: datetime) -> timedelta:
    return now - oldest if oldest is not None else timedelta(0)


def _minutes(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 60:,.0f} min"


def _lags(conn: sa.Connection, settings: AlertSettings) -> list[Condition]:
    """The queue's and the webhook events' lag: the oldest due one waiting longer than WARP_ALERT_LAG_MINUTES (the
    same reading /metrics serves)."""
    flows = (("queue_lag", "queue row", "Changes to HubSpot are not leaving the queue", "queue drain"),
             ("webhook_lag", "webhook event", "HubSpot's changes are not reaching WARP", "webhook processor"))
    return [Condition(key, age > settings.lag, f"the oldest due {what} has waited {_minutes(age)}",
                      (f"{symptom} (limit {_minutes(settings.lag)}).",
                       f"Is the {job} running (its sensor, its runs), or is HubSpot paused?"))
            for (key, what, symptom, job), age in zip(flows, map(_seconds, oldest_due_seconds(conn)), strict=True)]


def _seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def _missed_nightly(conn: sa.Connection, settings: AlertSettings, now: datetime) -> Condition:
    last = conn.execute(sa.text("SELECT max(finished_at) FROM hubspot_reconciliation_runs "
                                "WHERE status = 'succeeded' AND NOT dry_run")).scalar_one()
    installed = conn.execute(sa.text("SELECT min(applied_at) FROM warp_schema_migrations")).scalar_one()
    since = last or installed
    missed = since is not None and now - since > settings.missed_nightly
    when = f"since {last.isoformat(timespec='minutes')}" if last else "ever"
    return Condition("nightly_missed", missed, f"no nightly reconciliation has succeeded {when}",
                     (f"The last successful (not dry) run is older than {settings.missed_nightly.total_seconds() / 3600:g} h.",
                      "Is the schedule running, is HubSpot paused, did the last runs fail?"))


# The nightly is incremental most nights; a full sweep is due once a week (WARP_RECONCILE_FULL_SWEEP_WEEKDAY).
SWEEP_EVERY = timedelta(days=7)


def _missed_sweep(conn: sa.Connection, settings: AlertSettings, now: datetime) -> Condition:
    """No succeeded, non-dry full sweep within a week and the nightly's slack: the orphans, duplicates and drift an
    incremental run cannot see go unjudged, and deletions missed by webhooks linger."""
    last = conn.execute(sa.text("SELECT max(finished_at) FROM hubspot_reconciliation_runs "
                                "WHERE status = 'succeeded' AND NOT dry_run AND mode = 'full'")).scalar_one()
    installed = conn.execute(sa.text("SELECT min(applied_at) FROM warp_schema_migrations")).scalar_one()
    since = last or installed
    limit = SWEEP_EVERY + settings.missed_nightly
    missed = since is not None and now - since > limit
    when = f"since {last.isoformat(timespec='minutes')}" if last else "ever"
    return Condition("full_sweep_missed", missed, f"no full reconciliation sweep has succeeded {when}",
                     (f"A full sweep is due every week (WARP_RECONCILE_FULL_SWEEP_WEEKDAY); the last is older than "
                      f"{limit.total_seconds() / 86400:g} days.",
                      "Incremental runs cannot judge orphans, duplicates or drift: run `warp-sync reconcile` (a full "
                      "sweep) or check why the sweep day's run failed."))


def _last_nightly(conn: sa.Connection) -> list[Condition]:
    """The latest finished nightly's report email and brake."""
    row = conn.execute(sa.text("SELECT run_id, email_outcome FROM hubspot_reconciliation_runs "
                               "WHERE status = 'succeeded' AND email_outcome IS NOT NULL "
                               "ORDER BY finished_at DESC LIMIT 1")).first()
    unsent = row is not None and row.email_outcome.startswith("failed")
    latest = conn.execute(sa.text("SELECT run_id, braked FROM hubspot_reconciliation_runs "
                                  "WHERE status = 'succeeded' AND NOT dry_run ORDER BY finished_at DESC LIMIT 1")).first()
    return [
        Condition("report_unsent", unsent, f"the report of run {row.run_id[:8] if row else ''} was not emailed",
                  (f"Delivery: {row.email_outcome if row else ''}.",
                   "The report is in hubspot_reconciliation_runs and on the reconciliation_report asset.")),
        Condition("brake_tripped", bool(latest and latest.braked),
                  f"the brake stopped run {latest.run_id[:8] if latest else ''}",
                  ("The plan would have changed more records than WARP_RECONCILE_MAX_CHANGE_SHARE allows; nothing "
                   "was written.", "Read the report; if the plan is right, run `warp-sync reconcile "
                   "--allow-mass-write`.")),
    ]


def _paused(conn: sa.Connection, settings: AlertSettings, now: datetime) -> Condition:
    pauses = open_pauses(conn)
    oldest = min((pause.opened_at for pause in pauses), default=None)
    age = _age(oldest, now)
    return Condition("hubspot_paused", bool(pauses) and age >= settings.pause,
                     f"HubSpot flows paused for {_minutes(age)}", tuple(pause.describe() for pause in pauses))


def _daily_quota(conn: sa.Connection, settings: AlertSettings) -> Condition:
    seen = daily_quota_seen(conn)
    low = seen is not None and seen[0] > 0 and seen[1] < seen[0] * settings.quota_share
    left = f"{seen[1]:,} of {seen[0]:,}" if seen else "unknown"
    return Condition("daily_quota_low", low, f"HubSpot's daily quota nearly spent: {left} calls left",
                     ("Bulk work (the nightly, drains) stops at the share kept for creates; the quota resets at "
                      "midnight in the account's time zone.",))


# --- check results (recorded by the assets) ---------------------------------------------------------------------
@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    check_name: str
    severity: str  # ERROR | WARN
    passed: bool
    description: str = ""
    found: tuple[str, ...] = ()  # what it found (duplicate BANs), for telling new findings from known ones


def record_check_results(engine: sa.Engine, run_id: str, outcomes: Iterable[CheckOutcome]) -> None:
    """Keep each check's latest result (open-source Dagster has no alert hook for checks)."""
    rows = [{"asset": o.asset, "check_name": o.check_name, "severity": o.severity, "passed": o.passed,
             "description": o.description[:MAX_DETAIL_CHARS], "run_id": run_id, "found": json.dumps(list(o.found))}
            for o in outcomes]
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO warp_check_results (asset, check_name, severity, passed, description, run_id, found) "
            "VALUES (:asset, :check_name, :severity, :passed, :description, :run_id, CAST(:found AS jsonb)) "
            "ON CONFLICT (asset, check_name) DO UPDATE SET severity = EXCLUDED.severity, passed = EXCLUDED.passed, "
            "description = EXCLUDED.description, run_id = EXCLUDED.run_id, found = EXCLUDED.found, "
            "recorded_at = now()"), rows)


def previously_found(engine: sa.Engine, asset: str, check_name: str) -> set[str]:
    """What the check found when it last ran (empty when it never ran)."""
    with engine.connect() as conn:
        found = conn.execute(sa.text("SELECT found FROM warp_check_results WHERE asset = :asset AND "
                                     "check_name = :check_name"), {"asset": asset, "check_name": check_name}
                             ).scalar_one_or_none()
    return {str(value) for value in found or []}


# --- announcing ---------------------------------------------------------------------------------------------------
def firing_keys(engine: sa.Engine, prefix: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT key FROM warp_alerts WHERE firing AND starts_with(key, :prefix)"),
                                 {"prefix": prefix}).scalars())


def due_notices(engine: sa.Engine, observed: Sequence[Condition], *, repeat: timedelta,
                now: datetime | None = None) -> list[Notice]:
    """What to announce: conditions that started firing, still fire after `repeat`, or cleared."""
    now = now or datetime.now(UTC)
    with engine.connect() as conn:
        state = {row.key: row for row in conn.execute(
            sa.text("SELECT key, firing, title, fired_at, notified_at FROM warp_alerts WHERE key = ANY(:keys)"),
            {"keys": [c.key for c in observed]})}
    notices = []
    for condition in observed:
        last = state.get(condition.key)
        if condition.firing and (last is None or not last.firing):
            notices.append(Notice(condition.key, NoticeKind.ALERT, condition.title, condition.detail, now))
        elif condition.firing and last.notified_at <= now - repeat:
            notices.append(Notice(condition.key, NoticeKind.REMINDER, condition.title, condition.detail,
                                  last.fired_at or now))
        elif not condition.firing and last is not None and last.firing:
            notices.append(Notice(condition.key, NoticeKind.RESOLVED, last.title, condition.detail,
                                  last.fired_at or now))
    return notices


def record_sent(engine: sa.Engine, notices: Iterable[Notice], *, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    rows = [{"key": n.key, "firing": n.kind is not NoticeKind.RESOLVED, "title": n.title,
             "detail": "\n".join(n.detail)[:MAX_DETAIL_CHARS], "fired_at": n.since, "now": now} for n in notices]
    if not rows:
        return
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO warp_alerts AS a (key, firing, title, detail, fired_at, notified_at, resolved_at) "
            "VALUES (:key, :firing, :title, :detail, :fired_at, :now, CASE WHEN :firing THEN NULL ELSE :now END) "
            "ON CONFLICT (key) DO UPDATE SET firing = EXCLUDED.firing, detail = EXCLUDED.detail, "
            "notified_at = EXCLUDED.notified_at, resolved_at = EXCLUDED.resolved_at, "
            # A resolved alert keeps the title it fired with; a new firing starts its own time.
            "title = CASE WHEN EXCLUDED.firing THEN EXCLUDED.title ELSE a.title END, "
            "fired_at = CASE WHEN EXCLUDED.firing AND a.firing THEN a.fired_at ELSE EXCLUDED.fired_at END"), rows)


@dataclass
class Channels:
    """Where notices go: `send_email` (None when email is not configured) and an outgoing webhook."""

    send_email: Callable[[Notice], object] | None = None
    webhook_url: str | None = None
    timeout_s: float = 5.0

    @property
    def configured(self) -> bool:
        return self.send_email is not None or bool(self.webhook_url)


@dataclass
class Announced:
    sent: list[Notice] = field(default_factory=list)
    waiting: list[Notice] = field(default_factory=list)  # not delivered: tried again at the next tick
    problems: list[str] = field(default_factory=list)


def deliver(notices: Sequence[Notice], channels: Channels, *, budget_s: float = 40.0) -> Announced:
    """Send each notice to every channel; a notice counts as sent when one channel took it. Stops starting new
    notices after `budget_s` (a sensor tick has 60 s); those wait for the next tick."""
    outcome = Announced()
    deadline = time.monotonic() + budget_s
    with httpx.Client(timeout=channels.timeout_s) as client:
        for notice in notices:
            if time.monotonic() > deadline:
                outcome.waiting.append(notice)
                continue
            delivered = False
            if channels.send_email is not None:
                try:
                    channels.send_email(notice)
                    delivered = True
                except Exception as exc:  # noqa: BLE001 - every channel is tried; the problem is reported
                    code = getattr(exc, "code", None) or type(exc).__name__
                    outcome.problems.append(f"email for {notice.key}: {code}: {str(exc)[:200]}")
            if channels.webhook_url:
                try:
                    client.post(channels.webhook_url, json={"text": notice.text(WEBHOOK_DETAIL_LINES)}
                                ).raise_for_status()
                    delivered = True
                except httpx.HTTPError as exc:
                    outcome.problems.append(f"webhook for {notice.key}: {type(exc).__name__}")
            (outcome.sent if delivered else outcome.waiting).append(notice)
    return outcome


def announce(engine: sa.Engine, observed: Sequence[Condition], channels: Channels, *, repeat: timedelta,
             now: datetime | None = None) -> Announced:
    """Deliver the notices due for `observed` and record the ones that went out."""
    now = now or datetime.now(UTC)
    notices = due_notices(engine, observed, repeat=repeat, now=now)
    if not notices:
        return Announced()
    if not channels.configured:
        return Announced(waiting=notices, problems=["no alert channel is configured (SMTP_HOST and "
                                                    "WARP_REPORT_RECIPIENTS, or WARP_ALERT_WEBHOOK_URL)"])
    outcome = deliver(notices, channels)
    record_sent(engine, outcome.sent, now=now)
    return outcome
