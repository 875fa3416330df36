"""The HubSpot request budget, shared by every process through PostgreSQL.

HubSpot counts requests per app in a rolling 10-second window (100 by default; higher tiers get
more) and search separately (5 a second). Every process that calls HubSpot takes a token here
before each request, so together they stay under the limit.

Why SQL of our own rather than pyrate-limiter's PostgresBucket: that bucket needs psycopg 3 and
psycopg_pool (a second driver beside psycopg2), rejects a caller outright whenever another holds
its table lock, and has one fixed capacity per bucket. The reserved share needs one shared window
read with two capacities (a bulk caller sees fewer tokens than a sync caller), which is one
comparison in SQL (sql/003_hubspot_rate_budget.sql) and not expressible with its buckets.
Waiting between attempts uses tenacity. When PostgreSQL cannot be reached, requests go out unmetered (with a
warning) rather than not at all: HubSpot's own 429s remain the limit.

Tokens are taken in AUTOCOMMIT on a connection of their own, so a take never joins, waits on, or is
rolled back with a caller's transaction. Given an Engine, the budget uses an AUTOCOMMIT view of that
engine's pool (a receiver worker keeps to two pools); given a URL, it opens a small pool of its own.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
import tenacity

from warp_sync_pipeline.core.db import database_unreachable, make_engine
from warp_sync_pipeline.core.hubspot.errors import BudgetExhausted, DailyShareReserved
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings

log = logging.getLogger("warp_sync.hubspot.budget")

# At most one warning this often while requests go out unmetered.
UNMETERED_WARNING_INTERVAL_S = 60.0
# How often a process shares, and re-reads, the daily quota it saw (sooner when little is left).
DAILY_SHARE_INTERVAL_S = 5.0

TAKE = sa.text("SELECT hubspot_rate_budget_take(:bucket, :capacity, :window_ms, :priority)")


class Priority(StrEnum):
    """`sync`: a caller waiting on the answer (a create); `bulk`: pulls, drains, reconciliation."""

    SYNC = "sync"
    BULK = "bulk"


class Bucket(StrEnum):
    BURST = "burst"  # HubSpot's rolling 10-second budget (every endpoint but search)
    SEARCH = "search"  # search's own per-second limit


@dataclass(frozen=True)
class BudgetSettings:
    requests_per_window: int = DEFAULTS.hubspot_requests_per_10s
    window_seconds: float = 10.0
    search_per_second: int = DEFAULTS.hubspot_search_per_second
    # Share of each window only sync callers may use: bulk callers stop at the rest.
    reserved_share: float = DEFAULTS.hubspot_reserved_share
    # Added to each window: a token is taken a moment before HubSpot sees the request.
    margin_ms: int = DEFAULTS.hubspot_budget_margin_ms
    # Share of the account's daily quota kept for synchronous callers (creates): bulk callers stop once no more
    # than this is left. The quota is the account's, shared with every other app of it.
    daily_reserved_share: float = DEFAULTS.hubspot_daily_reserved_share

    def __post_init__(self) -> None:
        if self.requests_per_window < 1 or self.search_per_second < 1:
            raise ValueError("request limits must be at least 1")
        if not 0 <= self.reserved_share < 1:
            raise ValueError("reserved_share must be in [0, 1)")
        if self.window_seconds <= 0 or self.margin_ms < 0:
            raise ValueError("window_seconds must be positive and margin_ms not negative")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BudgetSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> BudgetSettings:
        return cls(
            requests_per_window=settings.hubspot_requests_per_10s,
            search_per_second=settings.hubspot_search_per_second,
            reserved_share=settings.hubspot_reserved_share,
            margin_ms=settings.hubspot_budget_margin_ms,
            daily_reserved_share=settings.hubspot_daily_reserved_share,
        )

    def capacity(self, bucket: Bucket, priority: Priority) -> int:
        total = self.requests_per_window if bucket is Bucket.BURST else self.search_per_second
        if priority is Priority.SYNC:
            return total
        return max(1, math.floor(total * (1 - self.reserved_share)))

    def window_ms(self, bucket: Bucket) -> int:
        base = self.window_seconds * 1000 if bucket is Bucket.BURST else 1000
        return int(base + self.margin_ms)


def daily_quota_seen(conn: sa.Connection) -> tuple[int, int] | None:
    """(limit, remaining) of the account's daily quota as any process last saw it within a day, if it did."""
    row = conn.execute(sa.text("SELECT daily_limit, remaining FROM hubspot_daily_quota "
                               "WHERE observed_at > clock_timestamp() - interval '1 day'")).first()
    return (row.daily_limit, row.remaining) if row is not None else None


class RequestBudget:
    """Takes request tokens from the shared window, waiting (up to a deadline) when it is full."""

    def __init__(self, engine_or_url: sa.Engine | str, settings: BudgetSettings | None = None) -> None:
        self.settings = settings or BudgetSettings()
        self._owns_engine = not isinstance(engine_or_url, sa.Engine)
        if isinstance(engine_or_url, sa.Engine):
            self._engine = engine_or_url.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._engine = make_engine(engine_or_url, isolation_level="AUTOCOMMIT", pool_size=1, max_overflow=4)
        self._last_unmetered_warning = -math.inf
        # The daily quota as last seen (limit, remaining, when read or written here), refreshed every few seconds.
        self._daily: tuple[int, int] | None = None
        self._daily_checked = -math.inf
        self._daily_written = -math.inf

    @property
    def engine(self) -> sa.Engine:
        """The AUTOCOMMIT engine tokens are taken on (a view of the caller's pool when given an Engine)."""
        return self._engine

    def try_take(self, bucket: Bucket, priority: Priority) -> float:
        """One attempt: 0.0 when a token was taken, else the seconds until one may free up."""
        with self._engine.connect() as conn:
            wait = conn.execute(
                TAKE,
                {
                    "bucket": bucket.value,
                    "capacity": self.settings.capacity(bucket, priority),
                    "window_ms": self.settings.window_ms(bucket),
                    "priority": priority.value,
                },
            ).scalar_one()
        return float(wait)

    def acquire(self, bucket: Bucket, priority: Priority, *, deadline: float) -> float:
        """Take a token, sleeping while the window is full; return the seconds waited.

        `deadline` is a `time.monotonic()` instant. Raises BudgetExhausted (nothing sent) when no
        token can be had before it.
        """
        started = time.monotonic()

        def past_deadline(state: tenacity.RetryCallState) -> bool:
            return time.monotonic() + state.upcoming_sleep >= deadline

        def give_up(state: tenacity.RetryCallState) -> float:
            raise BudgetExhausted(
                f"no HubSpot request token ({bucket.value}, {priority.value}) within the time budget; "
                f"waited {time.monotonic() - started:.2f}s",
                attempts=state.attempt_number,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(lambda wait: wait > 0),
            # The database says when the oldest token leaves the window; a little jitter keeps
            # waiting processes from asking at the same instant.
            wait=lambda state: state.outcome.result() + random.uniform(0.002, 0.02),
            stop=past_deadline,
            retry_error_callback=give_up,
        )
        if time.monotonic() >= deadline:
            raise BudgetExhausted("the time budget ran out before a HubSpot request could be sent")
        if priority is Priority.BULK:
            self._keep_daily_reserve()
        try:
            retrying(self.try_take, bucket, priority)
        except sa.exc.DBAPIError as exc:
            cause = database_unreachable(exc)
            if cause is None:
                raise
            # The budget is a courtesy among our own processes; HubSpot's 429s still pace us. A request that
            # must go out while PostgreSQL is away (archiving the company of a create that failed because of
            # it) goes unmetered rather than not at all.
            self._warn_unmetered(cause)
            return time.monotonic() - started
        waited = time.monotonic() - started
        if waited > 0.5:
            log.info("waited %.2fs for a HubSpot %s token (%s)", waited, bucket.value, priority.value)
        return waited

    def note_daily(self, limit: int, remaining: int) -> None:
        """What HubSpot's last answer said of the account's daily quota; shared (throttled) through PostgreSQL."""
        self._daily = (limit, remaining)
        now = time.monotonic()
        reserve = limit * self.settings.daily_reserved_share
        if now - self._daily_written < DAILY_SHARE_INTERVAL_S and remaining > 2 * reserve:
            return
        self._daily_written = self._daily_checked = now
        try:
            with self._engine.connect() as conn:
                conn.execute(sa.text(
                    "INSERT INTO hubspot_daily_quota (daily_limit, remaining) VALUES (:limit, :remaining) "
                    "ON CONFLICT (singleton) DO UPDATE SET daily_limit = EXCLUDED.daily_limit, "
                    "remaining = EXCLUDED.remaining, observed_at = clock_timestamp()"),
                    {"limit": limit, "remaining": remaining})
        except sa.exc.DBAPIError as exc:
            if database_unreachable(exc) is None:
                raise

    def note_rate_limited(self, *, daily: bool) -> None:
        """Count one 429 from HubSpot (per day and kind, shared through PostgreSQL for /metrics). Never raises for
        an unreachable database: counting must not turn a 429 into another failure."""
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.text(
                    "INSERT INTO hubspot_rate_limit_hits (kind, hits) VALUES (:kind, 1) ON CONFLICT (day, kind) "
                    "DO UPDATE SET hits = hubspot_rate_limit_hits.hits + 1, last_at = clock_timestamp()"),
                    {"kind": "daily" if daily else "interval"})
        except sa.exc.DBAPIError as exc:
            if database_unreachable(exc) is None:
                raise

    def daily_left(self) -> tuple[int, int] | None:
        """(limit, remaining) of the account's daily quota as last seen by any process today, if seen."""
        self._read_daily()
        return self._daily

    def daily_reserve(self, limit: int) -> int:
        """Calls of the daily quota kept for synchronous creates."""
        return int(limit * self.settings.daily_reserved_share)

    def _read_daily(self) -> None:
        """What any process last saw of the daily quota today (shared through PostgreSQL by note_daily)."""
        self._daily_checked = time.monotonic()
        try:
            with self._engine.connect() as conn:
                seen = daily_quota_seen(conn)
        except sa.exc.DBAPIError as exc:
            if database_unreachable(exc) is None:
                raise
            return
        if seen is not None:
            self._daily = seen

    def _keep_daily_reserve(self) -> None:
        """Bulk callers stop while the account's daily quota left is within the creates' share."""
        if time.monotonic() - self._daily_checked >= DAILY_SHARE_INTERVAL_S:
            self._read_daily()
        if self._daily is None:
            return
        limit, remaining = self._daily
        reserve = self.daily_reserve(limit)
        if limit and remaining <= reserve:
            raise DailyShareReserved(
                f"HubSpot's daily quota has {remaining:,} of {limit:,} calls left, within the "
                f"{self.settings.daily_reserved_share:.0%} kept for creates (HUBSPOT_DAILY_RESERVED_SHARE)",
                daily=True)

    def _warn_unmetered(self, cause: str) -> None:
        now = time.monotonic()
        if now - self._last_unmetered_warning >= UNMETERED_WARNING_INTERVAL_S:
            self._last_unmetered_warning = now
            log.warning("the HubSpot request budget's database is unreachable (%s): sending unmetered", cause)

    def in_use(self, bucket: Bucket = Bucket.BURST) -> int:
        """Tokens currently inside the window (for tests and monitoring)."""
        window = self.settings.window_ms(bucket)
        with self._engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(*) FROM hubspot_rate_budget WHERE bucket = :bucket "
                        "AND taken_at > clock_timestamp() - make_interval(secs => :window_ms / 1000.0)"
                    ),
                    {"bucket": bucket.value, "window_ms": window},
                ).scalar_one()
            )

    def close(self) -> None:
        if self._owns_engine:  # a shared pool is its owner's to close
            self._engine.dispose()
