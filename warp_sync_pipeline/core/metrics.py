"""The numbers that page people, read from PostgreSQL in one short transaction (the receiver's /metrics serves them).

Most of the work they describe happens in Dagster runs, not in the receiver, so they are read at scrape time rather
than counted in process: queue depth and the age of the oldest due row, webhook events pending and given up on and
the oldest due one, the HubSpot request budget in use, HubSpot's 429s today, the account's daily quota, open pauses.
Every query uses a partial index or a small table, under a statement timeout; `SnapshotCache` keeps a snapshot a
few seconds, so several scrapers (or workers) cost one read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot.budget import Bucket, BudgetSettings, Priority, daily_quota_seen

ACTIVE_QUEUE_STATUSES = ("pending", "claimed", "dead", "parked")


@dataclass(frozen=True)
class OperationalSnapshot:
    read_at: float  # time.time() when read
    queue_rows: dict[str, int]  # by status (pending, claimed, dead, parked; done rows are history)
    queue_oldest_due_seconds: float
    webhook_events_pending: int
    webhook_events_retrying: int
    webhook_events_given_up: int
    webhook_oldest_due_seconds: float
    budget_in_use: dict[str, int]  # tokens inside HubSpot's 10-second window, by priority (sync, bulk)
    budget_capacity: int
    rate_limited_today: dict[str, int]  # HubSpot's 429s since midnight (database time), by kind (daily, interval)
    daily_quota_limit: int | None
    daily_quota_remaining: int | None
    paused_seconds: dict[str, float] = field(default_factory=dict)  # open pauses by cause: how long open


# What "waiting" means for each flow (the alerts' lag and /metrics read the same): a queue row due to be sent, a
# webhook event due to be applied (its retry time, else when it arrived).
QUEUE_OLDEST_DUE = ("SELECT min(next_attempt_at) FROM hubspot_sync_queue "
                    "WHERE status = 'pending' AND next_attempt_at <= now()")
WEBHOOK_OLDEST_DUE = ("SELECT min(COALESCE(next_attempt_at, received_at)) FROM hubspot_webhook_events "
                      "WHERE status = 'pending' AND COALESCE(next_attempt_at, received_at) <= now()")


def _age(conn: sa.Connection, sql: str) -> float:
    return float(conn.execute(sa.text(f"SELECT COALESCE(extract(epoch FROM now() - ({sql})), 0)")).scalar_one())


def queue_rows(conn: sa.Connection) -> dict[str, int]:
    """hubspot_sync_queue rows by active status: one count per partial index (done rows, the bulk of the table,
    are never scanned)."""
    counts = conn.execute(sa.text("SELECT " + ", ".join(
        f"(SELECT count(*) FROM hubspot_sync_queue WHERE status = '{status}')" for status in ACTIVE_QUEUE_STATUSES
    ))).one()
    return dict(zip(ACTIVE_QUEUE_STATUSES, counts, strict=True))


def webhook_event_states(conn: sa.Connection) -> dict[str, int]:
    """Stored webhook events not yet applied: pending, retrying (failed, attempts left) and given up on (failed, none
    left), each counted on its partial index."""
    row = conn.execute(sa.text(
        "SELECT (SELECT count(*) FROM hubspot_webhook_events WHERE status = 'pending') AS pending, "
        "(SELECT count(*) FROM hubspot_webhook_events WHERE status = 'failed' AND next_attempt_at IS NOT NULL) "
        "AS retrying, "
        "(SELECT count(*) FROM hubspot_webhook_events WHERE status = 'failed' AND next_attempt_at IS NULL) "
        "AS given_up")).one()
    return dict(row._mapping)


def oldest_due_seconds(conn: sa.Connection) -> tuple[float, float]:
    """How long the oldest due queue row and the oldest due webhook event have waited (0: none), by the
    database's clock."""
    return _age(conn, QUEUE_OLDEST_DUE), _age(conn, WEBHOOK_OLDEST_DUE)


def read_snapshot(engine: sa.Engine, budget: BudgetSettings | None = None, *,
                  statement_timeout_ms: int = 2000) -> OperationalSnapshot:
    """One read of every figure, in one transaction bounded by `statement_timeout_ms` per statement."""
    budget = budget or BudgetSettings.from_env()
    with engine.connect() as conn, conn.begin():
        conn.execute(sa.text(f"SET LOCAL statement_timeout = {int(statement_timeout_ms)}"))
        queue = queue_rows(conn)
        events = webhook_event_states(conn)
        in_use = {priority.value: 0 for priority in Priority}
        in_use.update({r.priority: r.n for r in conn.execute(sa.text(
            "SELECT priority, count(*) AS n FROM hubspot_rate_budget WHERE bucket = :bucket "
            "AND taken_at > clock_timestamp() - make_interval(secs => :window_ms / 1000.0) GROUP BY priority"),
            {"bucket": Bucket.BURST.value, "window_ms": budget.window_ms(Bucket.BURST)})})
        limited = {"daily": 0, "interval": 0}
        limited.update({r.kind: r.hits for r in conn.execute(sa.text(
            "SELECT kind, hits FROM hubspot_rate_limit_hits WHERE day = current_date"))})
        quota = daily_quota_seen(conn)
        paused = {r.cause: float(r.seconds) for r in conn.execute(sa.text(
            "SELECT cause, extract(epoch FROM clock_timestamp() - opened_at) AS seconds FROM hubspot_pauses"))}
        queue_age, webhook_age = oldest_due_seconds(conn)
        return OperationalSnapshot(
            read_at=time.time(),
            queue_rows=queue,
            queue_oldest_due_seconds=queue_age,
            webhook_events_pending=events["pending"],
            webhook_events_retrying=events["retrying"],
            webhook_events_given_up=events["given_up"],
            webhook_oldest_due_seconds=webhook_age,
            budget_in_use=in_use,
            budget_capacity=budget.capacity(Bucket.BURST, Priority.SYNC),
            rate_limited_today=limited,
            daily_quota_limit=quota[0] if quota else None,
            daily_quota_remaining=quota[1] if quota else None,
            paused_seconds=paused,
        )


class SnapshotCache:
    """The last snapshot for `ttl_s` seconds (thread-safe: one read at a time, the others wait for it)."""

    def __init__(self, read: Callable[[], OperationalSnapshot], ttl_s: float) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._snapshot: OperationalSnapshot | None = None
        self._read_mono = 0.0

    def get(self) -> OperationalSnapshot:
        with self._lock:
            if self._snapshot is None or time.monotonic() - self._read_mono >= self._ttl_s:
                self._snapshot = self._read()
                self._read_mono = time.monotonic()
            return self._snapshot

