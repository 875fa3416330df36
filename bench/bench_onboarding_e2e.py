"""Day one end to end against the sandbox: the preview job and the execution job on a generated world.

    .venv/bin/python bench/bench_onboarding_e2e.py [--customers 100000]

Generates the world of `bench_onboarding_match.py` (known truth; half as many prospects), loads the customers
into a private PostgreSQL (fsync on) and the companies into the sandbox (its own process, rate limit off), then
materializes the onboarding preview and, after approving it with creates, runs `onboarding_execute_job`, timing
both and counting HubSpot calls by the sandbox's counters against the issue's bounds: the preview ceil(N/100)
list pages + ceil(S/50) history reads for the sample; the execution ceil(C/100) creates + ceil(D/50) history reads
+ 2 ceil(W/100) for the written companies + one read per conflict or lost answer. The execution plans on the
preview's pull while it is young enough for a plan; older, it reads the linked companies again (ceil(L/100) more).
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

from bench_reconcile import _start_sandbox  # noqa: E402

from hubspot_sandbox.control import SandboxControl  # noqa: E402
from warp_sync_pipeline.core.db import make_engine, with_database  # noqa: E402
from warp_sync_pipeline.core.hubspot import HubSpotClient  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.core.onboarding.matching import (  # noqa: E402
    ADDITIONAL_DOMAINS,
    BAN,
    COMPANY_BAN,
    COMPANY_NAME,
    DOMAIN,
    EMAIL,
    NAME,
    OBJECT_SOURCE,
    WEBSITE,
)
from warp_sync_pipeline.core.onboarding.previews import approve_preview  # noqa: E402
from warp_sync_pipeline.devstack.localpg import ensure_database, throwaway_server  # noqa: E402
from warp_sync_pipeline.devstack.onboarding_world import World, generate  # noqa: E402

TOKEN = "pat-bench"
SEED_CHUNK = 5_000
PROPERTIES = {COMPANY_BAN: "warp_ban", COMPANY_NAME: "name", DOMAIN: "domain", WEBSITE: "website",
              ADDITIONAL_DOMAINS: "hs_additional_domains", OBJECT_SOURCE: "hs_object_source"}


def load_customers(engine: sa.Engine, world: World) -> None:
    rows = [{"ban": ban, "name": name if isinstance(name, str) and name.strip() else f"Customer {n}",
             "email": email if isinstance(email, str) else None}
            for n, (ban, name, email) in enumerate(zip(world.customers[BAN], world.customers[NAME],
                                                       world.customers[EMAIL], strict=True))]
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name, status, contact_email) "
            "SELECT b, n, 'ACTIVE', e FROM unnest(CAST(:bans AS text[]), CAST(:names AS text[]), "
            "CAST(:emails AS text[])) AS v(b, n, e)"),
            {"bans": [r["ban"] for r in rows], "names": [r["name"] for r in rows], "emails": [r["email"] for r in rows]})


def load_companies(control: SandboxControl, world: World) -> None:
    companies = world.companies
    for start in range(0, len(companies), SEED_CHUNK):
        chunk = companies.iloc[start:start + SEED_CHUNK]
        control.seed([{prop: value for column, prop in PROPERTIES.items()
                       if isinstance(value := row[column], str) and value.strip()} for _, row in chunk.iterrows()])


def main() -> int:
    import dagster as dg

    from warp_sync_pipeline.defs.onboarding import (
        onboarding_execute_job,
        onboarding_hubspot_companies,
        onboarding_preview,
        onboarding_warp_customers,
    )
    from warp_sync_pipeline.resources.database import DatabaseResource
    from warp_sync_pipeline.resources.hubspot import HubSpotResource
    from warp_sync_pipeline.resources.parquet_io import ParquetIOManager

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()

    world = generate(args.customers, prospects_share=0.02)
    with throwaway_server("bench", use_test_server=False) as (admin, _description):
        frames = Path(tempfile.mkdtemp(prefix="bench-onboarding-"))
        sandbox, base_url = _start_sandbox(TOKEN)
        try:
            ensure_database(admin, "bench")
            url = with_database(admin, "bench")
            engine = make_engine(url)
            upgrade(engine)
            with HubSpotClient(base_url, TOKEN) as client, SandboxControl(base_url) as control:
                client.ensure_properties()
                started = time.perf_counter()
                load_customers(engine, world)
                load_companies(control, world)
                print(f"loaded {len(world.customers):,} customers and {len(world.companies):,} companies in "
                      f"{time.perf_counter() - started:.1f} s; load average {os.getloadavg()[0]:.2f}")
                resources = {
                    "db": DatabaseResource(url=url),
                    "hubspot": HubSpotResource(base_url=base_url, access_token=TOKEN, database_url=url,
                                               requests_per_10s=100_000),
                    "parquet_io_manager": ParquetIOManager(base_dir=str(frames)),
                }
                with dg.instance_for_test() as instance:
                    control.reset_counters()
                    started = time.perf_counter()
                    preview = dg.materialize([onboarding_warp_customers, onboarding_hubspot_companies,
                                              onboarding_preview], resources=resources, instance=instance)
                    preview_wall, preview_calls = time.perf_counter() - started, control.counters()
                    assert preview.success
                    with engine.connect() as conn:
                        preview_id, summary = conn.execute(sa.text(
                            "SELECT id, summary FROM onboarding_previews ORDER BY id DESC LIMIT 1")).one()
                    n, s = len(world.companies), summary["portal"]["sampled_companies"]
                    print(f"preview: {preview_wall:.1f} s; HubSpot calls {preview_calls['total']} (bound "
                          f"ceil(N/100)+ceil(S/50) = {math.ceil(n / 100) + math.ceil(s / 50)}, N={n:,}, S={s})")
                    print("counts:", summary["counts"])
                    approve_preview(engine, preview_id, actor="bench", max_age=timedelta(hours=24),
                                    create_missing=True, set_domain=False)
                    control.reset_counters()
                    started = time.perf_counter()
                    execution = onboarding_execute_job.execute_in_process(
                        resources=resources, instance=instance,
                        run_config={"ops": {"execute_onboarding": {"config": {"preview_id": preview_id}}}})
                    execute_wall, calls = time.perf_counter() - started, control.counters()
                report = execution.output_for_node("execute_onboarding")
                created = report["created"] + report["adopted"]
                linked = report["linked"] + created
                print(f"execution: {execute_wall:.1f} s; {report['linked']:,} linked, {created:,} created; rules: "
                      f"{report['rules']}")
                print(f"HubSpot calls {calls['total']}: creates ceil(C/100) = {math.ceil(created / 100)}; planned on "
                      f"{report['rules'].get('planned_on')} (a fresh read of the linked companies would be "
                      f"ceil(L/100) = {math.ceil(linked / 100)} more)")
                for endpoint, count in sorted(calls["by_endpoint"].items()):
                    print(f"  {endpoint}: {count}")
            engine.dispose()
        finally:
            sandbox.terminate()
            sandbox.wait(timeout=30)
            shutil.rmtree(frames, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
