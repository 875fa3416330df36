"""Linking by BAN at day-one scale: `links.link_unlinked` against a million unlinked customers.

    .venv/bin/python bench/bench_link_by_ban.py [--customers 1000000] [--linked 200000] [--chunks 20]

Starts a throwaway private PostgreSQL (fsync on; or the server WARP_TEST_DATABASE_URL names), migrates a
database, loads --customers customers of which --linked already hold a company (freshly loaded, not analysed: the
state a day-one import leaves), then links --chunks chunks of 500 unlinked customers to new companies, as the
nightly and the onboarding do, each chunk in its own transaction. Baseline, in the same run: the statement before
it repeated the partial unique index's predicate in its probe (the planner then cannot use the index and scans
`customers` for each pair), on chunks of 50, rolled back. The ratio compares milliseconds per link.
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
from warp_sync_pipeline.core.links import LinkStatus, link_unlinked  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.devstack.localpg import ensure_database, throwaway_server  # noqa: E402

CHUNK = 500
BASELINE_CHUNK = 50
FIRST_COMPANY = 40_000_000_001

# The statement before issue 14's fix: the probe lacks the index's predicate (`external_ids ? 'hubspot_company_id'`).
BASELINE = sa.text(
    """
    UPDATE customers AS c
    SET external_ids = c.external_ids || jsonb_build_object('hubspot_company_id', v.company_id),
        hubspot_link_status = :linked
    FROM unnest(CAST(:ids AS uuid[]), CAST(:companies AS text[])) AS v(id, company_id)
    WHERE c.id = v.id
      AND NOT (c.external_ids ? 'hubspot_company_id')
      AND c.hubspot_link_status = :unlinked
      AND NOT EXISTS (SELECT 1 FROM customers o WHERE o.external_ids ->> 'hubspot_company_id' = v.company_id)
    RETURNING c.id::text
    """
)


def load(engine: sa.Engine, customers: int, linked: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            """
            INSERT INTO customers (ban, company_name, status, external_ids, hubspot_link_status)
            SELECT 'ZT-' || lpad(n::text, 9, '0'), 'Customer ' || n, 'ACTIVE',
                   CASE WHEN n <= :linked THEN jsonb_build_object('hubspot_company_id', (:first + n)::text)
                        ELSE '{}'::jsonb END,
                   CASE WHEN n <= :linked THEN 'linked' ELSE 'unlinked' END
            FROM generate_series(1, :customers) AS n
            """
        ), {"customers": customers, "linked": linked, "first": FIRST_COMPANY})


def unlinked_ids(engine: sa.Engine, count: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            "SELECT id::text FROM customers WHERE hubspot_link_status = 'unlinked' LIMIT :n"), {"n": count}).scalars())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--linked", type=int, default=200_000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--baseline-chunks", type=int, default=3)
    args = parser.parse_args()

    with throwaway_server("bench") as (admin_url, durability):
        name = f"warp_bench_link_{uuid.uuid4().hex[:8]}"
        ensure_database(admin_url, name)
        engine = make_engine(with_database(admin_url, name))
        upgrade(engine)
        started = time.perf_counter()
        load(engine, args.customers, args.linked)
        print(f"loaded {args.customers:,} customers ({args.linked:,} linked) in {time.perf_counter() - started:.1f} s; "
              f"PostgreSQL: {durability}; load average {os.getloadavg()[0]:.2f}")
        ids = unlinked_ids(engine, args.chunks * CHUNK + args.baseline_chunks * BASELINE_CHUNK)
        company = FIRST_COMPANY + args.customers + 1

        baseline_ms: list[float] = []
        for n in range(args.baseline_chunks):
            chunk = ids[args.chunks * CHUNK + n * BASELINE_CHUNK:][:BASELINE_CHUNK]
            pairs = {"ids": chunk, "companies": [str(company + 900_000 + n * BASELINE_CHUNK + i)
                                                 for i in range(len(chunk))],
                     "linked": LinkStatus.LINKED.value, "unlinked": LinkStatus.UNLINKED.value}
            with engine.connect() as conn:
                began = time.perf_counter()
                done = conn.execute(BASELINE, pairs).scalars().all()
                baseline_ms.append((time.perf_counter() - began) * 1000 / len(done))
                conn.rollback()

        link_ms: list[float] = []
        for n in range(args.chunks):
            chunk = ids[n * CHUNK:(n + 1) * CHUNK]
            pairs = list(zip(chunk, (str(company + n * CHUNK + i) for i in range(len(chunk))), strict=True))
            with engine.begin() as conn:
                began = time.perf_counter()
                done = link_unlinked(conn, pairs)
                link_ms.append((time.perf_counter() - began) * 1000 / len(done))

        ours, theirs = statistics.median(link_ms), statistics.median(baseline_ms)
        print(f"link_unlinked: {args.chunks} chunks of {CHUNK}, median {ours:.3f} ms per link "
              f"({ours * CHUNK:.0f} ms per chunk)")
        print(f"baseline (no index predicate): {args.baseline_chunks} chunks of {BASELINE_CHUNK}, median "
              f"{theirs:.1f} ms per link ({theirs * BASELINE_CHUNK / 1000:.1f} s per chunk)")
        print(f"ratio (baseline / link_unlinked, per link): {theirs / ours:.0f}x; load average after "
              f"{os.getloadavg()[0]:.2f}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
