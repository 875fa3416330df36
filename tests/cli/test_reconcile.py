"""`warp-sync demo-seed` and `warp-sync reconcile` as a person runs them: subprocesses with the stack's
environment (a database, a Dagster instance on PostgreSQL, the sandbox, an SMTP server)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.plugins.database import scratch_database
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core import reconciliation_runs as runs

WARP_SYNC = str(Path(sys.executable).parent / "warp-sync")


@pytest.fixture
def dagster_database_url(pg_admin_url: str) -> Iterator[str]:
    with scratch_database(pg_admin_url, "warp_test_dagster") as url:
        yield url


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WARP_SYNC, *args], env=env, capture_output=True, text=True, timeout=300)


def test_demo_seed_then_reconcile_from_a_shell(
    database_url: str, dagster_database_url: str, engine: sa.Engine, sandbox: Any, smtp_server: SmtpCatcher,
    tmp_path: Path,
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "HUBSPOT_", "SMTP_", "DAGSTER_"))},
        "WARP_DATABASE_URL": database_url,
        "WARP_DAGSTER_DATABASE_URL": dagster_database_url,
        "WARP_STATE_DIR": str(tmp_path / "state"),
        "DAGSTER_HOME": str(tmp_path / "dagster-home"),
        "HUBSPOT_BASE_URL": sandbox.base_url,
        "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
        **smtp_server.environ(),
    }
    seeded = _run(["demo-seed", "--customers", "300"], env)
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "1 x one warp_ban on two companies" in seeded.stdout
    assert "contact_email is settled by MANUAL review" in seeded.stdout

    again = _run(["demo-seed", "--customers", "300"], env)
    assert again.returncode == 2 and "DEMO_DATA_PRESENT" in again.stderr

    dry = _run(["reconcile", "--dry-run"], env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert ": succeeded (dry run) in " in dry.stdout
    assert ["changes", "written", "to", "hubspot", "0"] in [line.split() for line in dry.stdout.splitlines()]

    # 300 customers with every case: the plan changes about 6% of them, past the brake's 5%.
    done = _run(["reconcile", "--allow-mass-write"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    [run_id] = [line.split()[1].rstrip(":") for line in done.stdout.splitlines() if line.strip().startswith("run ")]
    record = runs.get_run(engine, run_id)
    assert record.status == "succeeded" and record.counts["customers_pulled"] == 300
    assert ["customers", "pulled", "300"] in [line.split() for line in done.stdout.splitlines()]
    assert "email:     sent to 2 recipient(s)" in done.stdout
    assert f"/runs/{run_id}" in done.stdout
    assert "ALERT" not in done.stdout
    assert record.counts["changes_written_to_hubspot"] == record.counts["changes_planned_to_hubspot"] > 0
    assert len(smtp_server.wait_for(2)) == 2
    # The frames went to the private folder under DAGSTER_HOME.
    frames = tmp_path / "dagster-home" / "storage" / "frames"
    assert (frames / "warp_customers.parquet").exists()
    assert oct((frames).stat().st_mode & 0o777) == "0o700"
