"""Peak memory of the small runs, as a run pod executes them: the code location loaded, then the job run in one
process (the jobs use the in-process executor), against a migrated database with nothing to do. What a Kubernetes run
pod's memory request for those jobs is sized from (warp_sync_pipeline/runs.py, SMALL_RUN_POD; docs/DEPLOY.md).

    .venv/bin/python bench/bench_run_memory.py [--job hubspot_sync_queue_job] [--job ...]

Each job runs in a fresh subprocess, so one run's imports do not count for the next. The baseline, in the same run,
is the bare interpreter with Dagster imported: the difference is what the code location and the run add.
HUBSPOT_BASE_URL points at a closed port: with an empty queue no run calls HubSpot.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from warp_sync_pipeline.core.db import make_engine, with_database  # noqa: E402
from warp_sync_pipeline.core.migrations import upgrade  # noqa: E402
from warp_sync_pipeline.devstack.localpg import ensure_database, throwaway_server  # noqa: E402

SMALL_JOBS = ["hubspot_sync_queue_job", "hubspot_webhook_events_job", "retention_job"]

RUN = """
import resource, sys
import dagster as dg
from warp_sync_pipeline.definitions import defs
job = defs().resolve_job_def(sys.argv[1])
with dg.instance_for_test() as instance:
    assert job.execute_in_process(instance=instance).success
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
BASELINE = "import resource, dagster; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)"


def peak_mib(code: str, *args: str, env: dict[str, str]) -> int:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True,
                          timeout=600)
    return int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", action="append", help="a job to measure (default: the three small ones)")
    args = parser.parse_args()
    with throwaway_server("bench") as (admin_url, durability):
        url = with_database(admin_url, "run_memory")
        ensure_database(admin_url, "run_memory")
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "HUBSPOT_", "DAGSTER_"))},
               "WARP_DATABASE_URL": url, "HUBSPOT_ACCESS_TOKEN": "unused", "HUBSPOT_BASE_URL": "http://127.0.0.1:9"}
        print(f"# run memory: Python {sys.version.split()[0]}, {durability}")
        baseline = peak_mib(BASELINE, env=env)
        print(f"baseline (Python with Dagster imported): peak RSS {baseline} MiB")
        for job in args.job or SMALL_JOBS:
            peak = peak_mib(RUN, job, env=env)
            print(f"{job}: peak RSS {peak} MiB ({peak - baseline:+} MiB over the baseline)")


if __name__ == "__main__":
    main()
