"""What a /metrics scrape costs PostgreSQL: `core.metrics.read_snapshot` on tables as a busy week leaves them.

    .venv/bin/python bench/bench_metrics_scrape.py [--history 1000000] [--active 1000] [--reads 50]

Starts a throwaway private PostgreSQL (fsync on; or the server WARP_TEST_DATABASE_URL names), migrates a database
and loads --history finished rows into each of hubspot_sync_queue (done) and hubspot_webhook_events (processed),
the seven and three days of history retention keeps, plus --active pending, dead and failed rows, and a full
10-second window of the request budget. Then times --reads uncached snapshots (the median is what one scrape
costs when its cache has expired). Baseline, in the same run: the same figures counted the plain way (status
counts grouped over the whole tables, as `queue status` does), which reads the history on every scrape. The ratio
compares medians; the last line is what a scrape every 15 s costs one core, uncached.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warp_sync_pipeline.core.db import make_engine, with_database  # noqa: E402
from warp_sync_pipeline.core.metrics import read_snapshot  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.devstack.localpg import ensure_database, throwaway_server  # noqa: E402

PLAIN = [
    "SELECT status, count(*) FROM hubspot_sync_queue GROUP BY status",
    "SELECT status, count(*) FILTER (WHERE next_attempt_at IS NULL) FROM hubspot_webhook_events GROUP BY status",
    "SELECT min(next_attempt_at) FROM hubspot_sync_queue WHERE status = 'pending' AND next_attempt_at <= now()",
    "SELECT min(COALESCE(next_attempt_at, received_at)) FROM hubspot_webhook_events WHERE status = 'pending'",
    "SELECT priority, count(*) FROM hubspot_rate_budget WHERE taken_at > clock_timestamp() - interval '10 seconds' "
    "GROUP BY priority",
]


def load(engine: sa.Engine, history: int, active: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name) SELECT 'ZT-' || lpad(g::text, 9, '0'), 'Bench ' || g "
            "FROM generate_series(1, :n) g"), {"n": history + active})
        conn.execute(sa.text(
            "INSERT INTO hubspot_sync_queue (customer_id, fields, reasons, status, finished_at, next_attempt_at) "
            "SELECT id, ARRAY['company_name'], ARRAY['update'], 'done', now() - interval '1 day', "
            "now() - interval '1 day' FROM customers ORDER BY ban LIMIT :n"), {"n": history})
        conn.execute(sa.text(
            "INSERT INTO hubspot_sync_queue (customer_id, fields, reasons, status, attempts, last_error_code, "
            "last_error, next_attempt_at) SELECT id, ARRAY['company_name'], ARRAY['update'], "
            "CASE WHEN n % 10 = 0 THEN 'dead' ELSE 'pending' END, 3, 'X', 'x', now() - interval '1 minute' "
            "FROM (SELECT id, row_number() OVER () AS n FROM customers ORDER BY ban DESC LIMIT :n) s"), {"n": active})
        conn.execute(sa.text(
            "INSERT INTO hubspot_webhook_events (dedupe_key, payload, status, subscription_type, object_id, "
            "occurred_at, received_at, processed_at, reason, next_attempt_at) "
            "SELECT sha256(g::text::bytea), '{}'::jsonb, "
            "CASE WHEN g <= :history THEN 'processed' WHEN g % 10 = 0 THEN 'failed' ELSE 'pending' END, "
            "'company.propertyChange', g::text, now(), now() - interval '1 hour', "
            "CASE WHEN g <= :history THEN now() END, CASE WHEN g > :history AND g % 10 = 0 THEN 'gave up' END, NULL "
            "FROM generate_series(1, :total) g"), {"history": history, "total": history + active})
        conn.execute(sa.text(
            "INSERT INTO hubspot_rate_budget (bucket, taken_at, priority) SELECT 'burst', clock_timestamp(), "
            "CASE WHEN g % 5 = 0 THEN 'sync' ELSE 'bulk' END FROM generate_series(1, 190) g"))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("VACUUM ANALYZE"))


def timed(read: object, reads: int) -> list[float]:
    times = []
    for _ in range(reads):
        began = time.perf_counter()
        read()  # type: ignore[operator]
        times.append((time.perf_counter() - began) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--active", type=int, default=1_000)
    parser.add_argument("--reads", type=int, default=50)
    args = parser.parse_args()
    with throwaway_server("bench") as (admin_url, durability):
        name = f"warp_bench_metrics_{uuid.uuid4().hex[:8]}"
        ensure_database(admin_url, name)
        engine = make_engine(with_database(admin_url, name))
        upgrade(engine)
        started = time.perf_counter()
        load(engine, args.history, args.active)
        print(f"loaded {args.history:,} finished + {args.active:,} active rows in each table in "
              f"{time.perf_counter() - started:.1f} s; PostgreSQL: {durability}; load average {os.getloadavg()[0]:.2f}")
        snapshot = read_snapshot(engine)
        assert snapshot.queue_rows["dead"] == args.active // 10 and snapshot.webhook_events_given_up == args.active // 10

        def plain() -> None:
            with engine.connect() as conn:
                for statement in PLAIN:
                    conn.execute(sa.text(statement)).all()

        ours = timed(lambda: read_snapshot(engine), args.reads)
        baseline = timed(plain, max(5, args.reads // 5))
        engine.dispose()
    ours_ms, base_ms = statistics.median(ours), statistics.median(baseline)
    print(f"snapshot (indexed counts): median {ours_ms:.2f} ms, p90 {sorted(ours)[int(len(ours) * 0.9)]:.2f} ms "
          f"over {len(ours)} reads")
    print(f"baseline (grouped over the tables): median {base_ms:.1f} ms over {len(baseline)} reads")
    print(f"ratio baseline/snapshot: {base_ms / ours_ms:.0f}x")
    print(f"a scrape every 15 s, uncached: {ours_ms / 15_000:.4%} of one core's time in PostgreSQL")
    return 0


if __name__ == "__main__":
    sys.exit(main())
