"""Runs on the running Dagster stack (code server, daemon, webserver), followed through a killed process.

The run goes through the run queue like a sensor's: the daemon dequeues it, the code server starts its worker
process. Killing that process with SIGKILL (a real signal, nothing patched) must leave the run FAILED, not
STARTED forever: a run stuck in STARTED would keep every later drain waiting behind the one-run-at-a-time checks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.sandbox import SandboxHandle
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.defs.outbound import DRAIN_JOB_NAME

BATCH_UPDATE = "POST /crm/v3/objects/companies/batch/update"


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (read from /proc before it dies: its children are then re-parented)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                # The parent pid is the second field after the command name, which may hold spaces.
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _wait_for(predicate, timeout_s: float, what: str, stack: DagsterStack) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout_s} s\n{stack.log_tails()}")


def test_a_run_whose_worker_is_killed_is_failed_by_the_instance(
    dagster_stack: DagsterStack, stack_database: str, sandbox: SandboxHandle
) -> None:
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10) as client:
        client.ensure_properties()
    [company] = sandbox.control.seed([{"name": "Held Up Ltd", "warp_ban": "ZT-500000001", "warp_status": "ACTIVE"}])
    engine = make_engine(stack_database, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name, status, external_ids, hubspot_link_status) VALUES "
            "('ZT-500000001', 'Held Up Ltd', 'ACTIVE', jsonb_build_object('hubspot_company_id', CAST(:c AS text)), "
            "'linked')"), {"c": company})
    with engine.begin() as conn:  # the trigger queues the change
        conn.execute(sa.text("UPDATE customers SET status = 'SUSPENDED'"))
    engine.dispose()
    # HubSpot holds the drain's batch update, so the run is mid-call when its process dies.
    sandbox.control.set_faults(timeout={"calls": 5, "hold_seconds": 30, "endpoint": BATCH_UPDATE})

    run_id = dagster_stack.launch(DRAIN_JOB_NAME)
    _wait_for(lambda: sandbox.control.counters()["by_endpoint"].get(BATCH_UPDATE, 0) >= 1, 60,
              "the drain did not reach HubSpot", dagster_stack)
    assert dagster_stack.run_status(run_id) == "STARTED"
    worker = dagster_stack.run_worker_pid(run_id)
    assert worker is not None, dagster_stack.log_tails()
    # The drain's step runs in a child process of its own (multiprocess executor), which outlives the worker:
    # it is ended after the test, so it cannot write later (see issue 12).
    below = _descendants(worker)
    try:
        os.kill(worker, signal.SIGKILL)
        assert dagster_stack.wait_for_run(run_id, timeout_s=30) == "FAILURE"
    finally:
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
