"""Recording field state: upsert_field_state (INSERT ... SELECT FROM unnest(arrays)) vs a multi-row VALUES baseline.

    .venv/bin/python bench/bench_field_state.py [--customers 20000] [--repeat 3]

Starts a throwaway private PostgreSQL (fsync and synchronous_commit on, as in production; or the server
WARP_TEST_DATABASE_URL names), migrates a database, inserts --customers customers, then records the state of
all eight seeded fields of every customer (agreed, WARP and HubSpot parts, as the nightly write-back and the
demo seed do): once through upsert_field_state, once through the baseline, alternating, each on an empty
table (TRUNCATE between runs) in one transaction. The baseline is the statement upsert_field_state built
before: the same ON CONFLICT rules as a SQLAlchemy `insert().values([...])` of 1,000 rows per statement,
which SQLAlchemy compiles anew for every chunk. The run checks both leave the same rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warp_sync_pipeline.core.db import make_engine, with_database  # noqa: E402
from warp_sync_pipeline.core.field_state import (  # noqa: E402
    PARTS,
    FieldStateUpdate,
    StateValue,
    upsert_field_state,
)
from warp_sync_pipeline.core.fields import SEEDED_RULES  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.core.normalize import comparable  # noqa: E402
from warp_sync_pipeline.core.sync_tables import field_state  # noqa: E402
from warp_sync_pipeline.devstack.localpg import ensure_database, throwaway_server  # noqa: E402

TIME_COLUMN = {"agreed": "agreed_at", "warp": "warp_changed_at", "hubspot": "hubspot_changed_at"}
BASELINE_ROWS_PER_STATEMENT = 1000
VALUES = {"ban": "ZT-100000001", "company_name": "Northwind Telecom", "status": "ACTIVE", "credit_limit": "5000.00",
          "current_balance": "120.50", "services": "voice;data", "payment_terms": "NET30",
          "contact_email": "billing@northwind.example"}


def baseline_upsert(conn: sa.Connection, updates: list[FieldStateUpdate]) -> None:
    """The former statement: one multi-row VALUES ... ON CONFLICT per 1,000 rows (every part given here)."""
    rows = []
    for update in updates:
        row: dict[str, object] = {"customer_id": update.customer_id, "warp_field": update.warp_field}
        for part in PARTS:
            state = getattr(update, part)
            row[f"{part}_value"] = comparable(update.warp_field, state.value)
            row[TIME_COLUMN[part]] = state.at
        rows.append(row)
    for start in range(0, len(rows), BASELINE_ROWS_PER_STATEMENT):
        stmt = pg_insert(field_state).values(rows[start:start + BASELINE_ROWS_PER_STATEMENT])
        current, excluded = field_state.c, stmt.excluded
        changes: dict[str, object] = {"updated_at": sa.func.now()}
        for part in PARTS:
            stored_at, new_at = current[TIME_COLUMN[part]], excluded[TIME_COLUMN[part]]
            take = sa.or_(stored_at.is_(None), new_at.is_(None), new_at >= stored_at)
            changes[f"{part}_value"] = sa.case((take, excluded[f"{part}_value"]), else_=current[f"{part}_value"])
            changes[TIME_COLUMN[part]] = sa.case((take, new_at), else_=stored_at)
        conn.execute(stmt.on_conflict_do_update(index_elements=[current.customer_id, current.warp_field],
                                                set_=changes))


def snapshot(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT customer_id, warp_field, agreed_value, agreed_at, warp_value, warp_changed_at, hubspot_value, "
            "hubspot_changed_at FROM hubspot_field_state ORDER BY customer_id, warp_field"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with throwaway_server("bench") as (admin_url, durability):
        name = f"warp_bench_field_state_{uuid.uuid4().hex[:8]}"
        ensure_database(admin_url, name)
        engine = make_engine(with_database(admin_url, name))
        upgrade(engine)
        with engine.begin() as conn:
            ids = [str(i) for i in conn.execute(sa.text(
                "INSERT INTO customers (ban, company_name, status) "
                "SELECT 'ZT-' || lpad(n::text, 9, '0'), 'Customer ' || n, 'ACTIVE' "
                "FROM generate_series(100000001, 100000000 + :n) AS n RETURNING id"), {"n": args.customers}).scalars()]
        at = datetime.now(UTC) - timedelta(hours=1)
        updates = [FieldStateUpdate(cid, rule.warp_field, agreed=StateValue(VALUES[rule.warp_field], at),
                                    warp=StateValue(VALUES[rule.warp_field], at),
                                    hubspot=StateValue(VALUES[rule.warp_field], at))
                   for cid in ids for rule in SEEDED_RULES]

        def timed(write) -> float:  # noqa: ANN001
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE hubspot_field_state"))
            started = time.perf_counter()
            with engine.begin() as conn:
                write(conn)
            return time.perf_counter() - started

        times: dict[str, list[float]] = {"unnest": [], "values": []}
        results = {}
        for _ in range(args.repeat):
            times["unnest"].append(timed(lambda conn: upsert_field_state(conn, updates)))
            results["unnest"] = snapshot(engine)
            times["values"].append(timed(lambda conn: baseline_upsert(conn, updates)))
            results["values"] = snapshot(engine)
        assert results["unnest"] == results["values"], "the two statements left different rows"
        engine.dispose()
        sa_engine = make_engine(admin_url)
        with sa_engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        sa_engine.dispose()

    print(f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, SQLAlchemy {sa.__version__}; "
          f"PostgreSQL: {durability}")
    print(f"{len(updates):,} field-state updates ({args.customers:,} customers x {len(SEEDED_RULES)} fields), "
          f"{args.repeat} runs each, alternating")
    for label, values in times.items():
        print(f"  {label:7s} best {min(values):.3f} s  median {statistics.median(values):.3f} s  "
              f"({len(updates) / statistics.median(values):,.0f} updates/s)")
    ratio = statistics.median(times["values"]) / statistics.median(times["unnest"])
    print(f"  ratio (values / unnest, medians): {ratio:.1f}x; both left the same {len(results['unnest']):,} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
