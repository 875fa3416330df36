"""Pauses of the flows that call HubSpot: one shared state in PostgreSQL (`hubspot_pauses`, sql/013).

A failure of HubSpot as a whole, rather than of one record, is no reason to spend a row's or an event's
attempts: the queue drain and the webhook processor open a pause for its cause, put their work back as it was,
and end without failing. While a pause is open the sensors and the nightly schedule skip, naming it and the
next probe time. When the probe time comes, the next run asks HubSpot one cheap question (a one-company page)
before anything else; one process probes at a time (the probe is claimed by moving `next_probe_at` on). A
good answer closes every pause and the run goes on; a bad one keeps the pause and doubles the wait.

The causes:
- `hubspot_outage`: connection errors, 5xx answers or 429s that outlasted the client's own retries (for a
  5xx on a batch, only when a probe right after fails too: otherwise it was that batch's records);
- `token_refused`: 401/403 (a revoked or rotated HUBSPOT_ACCESS_TOKEN);
- `daily_quota`: HubSpot's daily request cap (a 429 whose policy is DAILY). The account's quota, shared by every
  app of it, resets at midnight in the account's time zone: this pause's first probe is then (`resetsAt` of
  the account's usage, else midnight in its time zone), not 30 s later.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot import (
    AuthFailed,
    HubSpotClient,
    HubSpotError,
    OutcomeUnknown,
    Priority,
    RateLimited,
    ServiceUnavailable,
)
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings

log = logging.getLogger("warp_sync.pauses")


class PauseCause(StrEnum):
    OUTAGE = "hubspot_outage"
    TOKEN_REFUSED = "token_refused"
    DAILY_QUOTA = "daily_quota"


@dataclass(frozen=True)
class PauseSettings:
    probe_after_s: float = DEFAULTS.pause_probe_seconds  # the first probe this long after a pause opens
    probe_max_s: float = DEFAULTS.pause_probe_max_seconds  # each failed probe doubles the wait, up to this
    probe_timeout_s: float = DEFAULTS.pause_probe_timeout_seconds  # the probe's own time budget, retries included

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PauseSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> PauseSettings:
        return cls(
            probe_after_s=settings.pause_probe_seconds,
            probe_max_s=settings.pause_probe_max_seconds,
            probe_timeout_s=settings.pause_probe_timeout_seconds,
        )

    def probe_delay(self, failed_probes: int) -> timedelta:
        return timedelta(seconds=min(self.probe_max_s, self.probe_after_s * 2 ** max(0, failed_probes)))


@dataclass(frozen=True)
class Pause:
    cause: PauseCause
    reason: str
    opened_by: str
    opened_at: datetime
    next_probe_at: datetime
    probes: int
    probe_due: bool

    def describe(self) -> str:
        return (f"HubSpot flows paused ({self.cause.value}, since {self.opened_at.isoformat(timespec='seconds')}, "
                f"opened by {self.opened_by}): {self.reason}; next probe at "
                f"{self.next_probe_at.isoformat(timespec='seconds')}")


def pause_cause(exc: BaseException) -> PauseCause | None:
    """The pause a HubSpot failure calls for, or None when it concerns the request or its records only."""
    if isinstance(exc, AuthFailed):
        return PauseCause.TOKEN_REFUSED
    if isinstance(exc, RateLimited):
        return PauseCause.DAILY_QUOTA if exc.daily else PauseCause.OUTAGE
    if isinstance(exc, ServiceUnavailable):
        return PauseCause.OUTAGE
    if isinstance(exc, OutcomeUnknown) and not exc.property_errors:
        return PauseCause.OUTAGE
    return None


_COLUMNS = "cause, reason, opened_by, opened_at, next_probe_at, probes, next_probe_at <= clock_timestamp() AS due"


def _pause(row: sa.Row) -> Pause:
    return Pause(PauseCause(row.cause), row.reason, row.opened_by, row.opened_at, row.next_probe_at, row.probes,
                 bool(row.due))


def open_pauses(bind: sa.Engine | sa.Connection) -> list[Pause]:
    """Every open pause, the one that lasts longest first."""
    query = sa.text(f"SELECT {_COLUMNS} FROM hubspot_pauses ORDER BY next_probe_at DESC")
    if isinstance(bind, sa.Engine):
        with bind.connect() as conn:
            return [_pause(r) for r in conn.execute(query)]
    return [_pause(r) for r in bind.execute(query)]


def sensor_skip(pauses: list[Pause]) -> Pause | None:
    """Of the open pauses, the one a sensor skips for: none has its probe due yet (a due probe needs a run)."""
    if not pauses or any(p.probe_due for p in pauses):
        return None
    return pauses[0]


def open_pause(engine: sa.Engine, cause: PauseCause, reason: str, *, opened_by: str,
               settings: PauseSettings, resume_at: datetime | None = None) -> Pause:
    """Open the pause for `cause` (or note the newer reason on the open one; its probe time is kept, or moved
    later to `resume_at`). `resume_at`: when HubSpot says the cause ends (the daily quota's reset)."""
    with engine.begin() as conn:
        row = conn.execute(
            sa.text(
                "INSERT INTO hubspot_pauses (cause, reason, opened_by, next_probe_at) "
                "VALUES (:cause, :reason, :by, "
                "        coalesce(CAST(:resume_at AS timestamptz), clock_timestamp() + CAST(:after AS interval))) "
                "ON CONFLICT (cause) DO UPDATE SET reason = EXCLUDED.reason, updated_at = clock_timestamp(), "
                "  next_probe_at = CASE WHEN CAST(:resume_at AS timestamptz) IS NULL THEN hubspot_pauses.next_probe_at "
                "                       ELSE greatest(hubspot_pauses.next_probe_at, EXCLUDED.next_probe_at) END "
                f"RETURNING {_COLUMNS}, xmax = 0 AS opened"
            ),
            {"cause": cause.value, "reason": reason[:1000], "by": opened_by, "after": settings.probe_delay(0),
             "resume_at": resume_at},
        ).one()
    pause = _pause(row)
    if row.opened:
        log.error("%s", pause.describe())
    return pause


def pause_for(engine: sa.Engine, hubspot: HubSpotClient, cause: PauseCause, seen: str, *, opened_by: str,
              settings: PauseSettings) -> Pause:
    """Open the pause `cause` calls for, having seen `seen`. The daily quota's lasts until HubSpot resets it."""
    if cause is PauseCause.DAILY_QUOTA:
        try:
            quota = _prober(hubspot, settings).daily_quota()
        except HubSpotError:
            quota = None
        if quota is not None:
            usage = f", {quota.used:,} of {quota.limit:,} calls used" if quota.limit and quota.used else ""
            return open_pause(
                engine, cause, f"{seen} (HubSpot's daily request quota: the account's, shared by every app of it"
                f"{usage}); it resets at {quota.resets_at.isoformat(timespec='seconds')}",
                opened_by=opened_by, settings=settings, resume_at=quota.resets_at)
    return open_pause(engine, cause, seen, opened_by=opened_by, settings=settings)


def close_pauses(engine: sa.Engine, *, why: str) -> list[PauseCause]:
    with engine.begin() as conn:
        closed = [PauseCause(c) for c in conn.execute(sa.text("DELETE FROM hubspot_pauses RETURNING cause")).scalars()]
    if closed:
        log.warning("HubSpot flows resumed (%s closed): %s", ", ".join(c.value for c in closed), why)
    return closed


def admit(engine: sa.Engine, hubspot: HubSpotClient, *, flow: str, settings: PauseSettings) -> Pause | None:
    """Before a run calls HubSpot: None when it may (no pause, or this run's probe just closed them all), else
    the pause that ends the run. Makes the probe when one is due and no other process has claimed it."""
    pauses = open_pauses(engine)
    if not pauses:
        return None
    if not _claim_probe(engine, settings):
        return pauses[0]
    try:
        _prober(hubspot, settings).list_companies(limit=1)
    except HubSpotError as exc:
        cause = pause_cause(exc) or PauseCause.OUTAGE
        log.warning("HubSpot probe by %s failed: %s", flow, type(exc).__name__)
        pause_for(engine, hubspot, cause, f"the probe failed ({_error_text(exc)})", opened_by=flow, settings=settings)
        return open_pauses(engine)[0]
    close_pauses(engine, why=f"HubSpot answered {flow}'s probe")
    return None


def confirmed_cause(error: HubSpotError, hubspot: HubSpotClient, settings: PauseSettings) -> PauseCause | None:
    """The pause `error` calls for, once confirmed: a refused token, the daily cap and 429s speak for themselves;
    a 5xx or a lost answer may be one request's own, so HubSpot counts as down only if a probe fails too."""
    cause = pause_cause(error)
    if cause is None or isinstance(error, RateLimited | AuthFailed):
        return cause
    try:
        _prober(hubspot, settings).list_companies(limit=1)
    except HubSpotError as probe_error:
        return pause_cause(probe_error) or PauseCause.OUTAGE
    return None


def _prober(hubspot: HubSpotClient, settings: PauseSettings) -> HubSpotClient:
    """The client a probe asks with: its own short deadline, and at sync priority, so the share of the daily
    quota kept for creates never stops the one call that learns whether the day has turned."""
    return hubspot.with_priority(Priority.SYNC).with_deadline(settings.probe_timeout_s)


def _claim_probe(engine: sa.Engine, settings: PauseSettings) -> bool:
    """Move every due pause's probe time on (doubling), so this process alone probes now."""
    with engine.begin() as conn:
        claimed = conn.execute(
            sa.text(
                "UPDATE hubspot_pauses SET probes = probes + 1, updated_at = clock_timestamp(), "
                "next_probe_at = clock_timestamp() + make_interval(secs => least(:max_s, :after_s * power(2, probes + 1))) "
                "WHERE next_probe_at <= clock_timestamp() RETURNING cause"
            ),
            {"max_s": settings.probe_max_s, "after_s": settings.probe_after_s},
        ).all()
    return bool(claimed)


def _error_text(exc: HubSpotError) -> str:
    status = f" {exc.status}" if exc.status else ""
    return f"{type(exc).__name__}{status}"
