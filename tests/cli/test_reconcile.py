"""`warp-sync reconcile` as a person runs it: a subprocess that submits its run to the Dagster run queue and
follows it. Its successful runs (progress, counts, the run's origin and tags, frames kept by run) are tested where
the demo runs it (tests/cli/test_demo_commands.py); here, on the suite's Dagster stack, a failed one, and without a
daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.database import scratch_database
from tests.plugins.sandbox import SandboxHandle
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core import reconciliation_runs as runs

WARP_SYNC = str(Path(sys.executable).parent / "warp-sync")


def _shell(extra: dict[str, str]) -> dict[str, str]:
    """A shell's environment: none of the suite's own WARP_/HUBSPOT_/SMTP_/DAGSTER_ settings, then `extra`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("WARP_", "HUBSPOT_", "SMTP_", "DAGSTER_"))}
    return {**inherited, **extra}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WARP_SYNC, *args], env=env, capture_output=True, text=True, timeout=300)


def _run_id(output: str) -> str:
    [run_id] = {line.split()[1].rstrip(":") for line in output.splitlines() if line.strip().startswith("run ")}
    return run_id


def test_a_failed_shell_run_exits_with_its_reason_and_alerts_like_any_run(
    dagster_stack: DagsterStack, stack_database: str, stack_sandbox: SandboxHandle, stack_mail: SmtpCatcher,
) -> None:
    stack_sandbox.control.set_faults(outage={"seconds": 120})
    failed = _run(["reconcile", "--dry-run"], _shell(dagster_stack.environment))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    run_id = _run_id(failed.stdout)
    assert f"reconciliation run {run_id} failed: " in failed.stderr and "hubspot_companies: " in failed.stderr
    # The run-failure sensor saw it (a shell run used to be invisible to it): the row is failed, the admins told.
    [alert] = stack_mail.wait_for_subject(run_id[:8], timeout=60)
    assert alert["Subject"] == f"[warp-sync] ALERT: reconciliation_job failed - run {run_id[:8]}"
    engine = sa.create_engine(stack_database)
    try:
        assert runs.get_run(engine, run_id).status == "failed"
    finally:
        engine.dispose()


@pytest.fixture
def dagster_database_url(pg_admin_url: str) -> Iterator[str]:
    with scratch_database(pg_admin_url, "warp_test_dagster") as url:
        yield url


def test_without_a_daemon_the_command_stops_before_submitting(
    database_url: str, dagster_database_url: str, tmp_path: Path,
) -> None:
    env = _shell({"WARP_DATABASE_URL": database_url, "WARP_DAGSTER_DATABASE_URL": dagster_database_url,
                  "WARP_STATE_DIR": str(tmp_path / "state"), "DAGSTER_HOME": str(tmp_path / "dagster-home")})
    refused = _run(["reconcile"], env)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: no Dagster daemon has run on this instance, so a queued run would "
                                     "never start: start it with `make dev`")
    assert len(refused.stderr.splitlines()) == 1
