"""Runs of the flows on the running Dagster stack (code server, daemon, webserver), their processes killed with
real signals mid-call: the run must end FAILED, not STARTED forever, and the flow must resume with no operator.

The drain is started by its own sensor, as in production; the sandbox holds its batch update, so the run is
mid-call when its process dies. The stack's budgets are short (tests/plugins/dagster_stack.py, FLOW_SETTINGS):
a drain's maximum runtime is 8 s and run monitoring looks every 2 s.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.sandbox import SandboxHandle
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.defs.outbound import DRAIN_JOB_NAME

BATCH_UPDATE = "POST /crm/v3/objects/companies/batch/update"
BAN = "ZT-500000001"


def _wait_for(predicate: Callable[[], object], timeout_s: float, what: str, stack: DagsterStack) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout_s} s\n{stack.log_tails()}")


def _queued_change_held_by_hubspot(stack: DagsterStack, database_url: str, sandbox: SandboxHandle) -> str:
    """A linked customer whose status change is queued, and HubSpot holding the drain's first batch update.
    Returns the company id."""
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10) as client:
        client.ensure_properties()
    [company] = sandbox.control.seed([{"name": "Held Up Ltd", "warp_ban": BAN, "warp_status": "ACTIVE"}])
    sandbox.control.set_faults(timeout={"calls": 1, "hold_seconds": 30, "endpoint": BATCH_UPDATE})
    engine = make_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name, status, external_ids, hubspot_link_status) VALUES "
            "(:ban, 'Held Up Ltd', 'ACTIVE', jsonb_build_object('hubspot_company_id', CAST(:c AS text)), 'linked')"),
            {"ban": BAN, "c": company})
    with engine.begin() as conn:  # the trigger queues the change; the drain sensor finds it
        conn.execute(sa.text("UPDATE customers SET status = 'SUSPENDED'"))
    engine.dispose()
    return company


def _started_drain_mid_call(stack: DagsterStack, sandbox: SandboxHandle) -> str:
    _wait_for(lambda: sandbox.control.counters()["by_endpoint"].get(BATCH_UPDATE, 0) >= 1, 60,
              "no drain reached HubSpot", stack)
    [(run_id, _)] = _wait_for(lambda: stack.runs(DRAIN_JOB_NAME, ["STARTED"]), 10, "no drain run is STARTED", stack)
    return run_id


def _alive(pid: int) -> bool:
    """Running, not a zombie left for a parent that is gone (state Z in /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _status_in_hubspot(sandbox: SandboxHandle, company_id: str) -> str | None:
    [company] = [c for c in sandbox.control.all_companies() if c["id"] == company_id]
    return company["properties"].get("warp_status")


def _queue(database_url: str) -> list[str]:
    engine = make_engine(database_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        rows = list(conn.execute(sa.text("SELECT status FROM hubspot_sync_queue")).scalars())
    engine.dispose()
    return rows


def test_a_drain_whose_worker_is_killed_fails_at_once_and_the_next_drain_sends_the_change(
    dagster_stack: DagsterStack, stack_database: str, sandbox: SandboxHandle
) -> None:
    company = _queued_change_held_by_hubspot(dagster_stack, stack_database, sandbox)
    run_id = _started_drain_mid_call(dagster_stack, sandbox)
    worker = dagster_stack.run_worker_pid(run_id)
    assert worker is not None, dagster_stack.log_tails()

    os.kill(worker, signal.SIGKILL)

    # The code server saw its child die and says so: no waiting for the maximum runtime.
    assert dagster_stack.wait_for_run(run_id, timeout_s=15) == "FAILURE"
    sandbox.control.clear_faults()  # the held call is answered 504: not applied
    _wait_for(lambda: _status_in_hubspot(sandbox, company) == "SUSPENDED", 60,
              "the change never reached HubSpot after the dead drain", dagster_stack)
    _wait_for(lambda: _queue(stack_database) == ["done"], 10, "the queue row is not done", dagster_stack)


def test_a_drain_killed_with_its_code_server_is_failed_by_its_maximum_runtime_and_the_flow_resumes(
    dagster_stack: DagsterStack, stack_database: str, sandbox: SandboxHandle
) -> None:
    company = _queued_change_held_by_hubspot(dagster_stack, stack_database, sandbox)
    run_id = _started_drain_mid_call(dagster_stack, sandbox)
    worker = dagster_stack.run_worker_pid(run_id)
    started = time.monotonic()

    dagster_stack.kill_code_server()  # its process group: the server and the run's worker
    assert worker is not None
    _wait_for(lambda: not _alive(worker), 5, "the run worker outlived its code server's process group", dagster_stack)
    dagster_stack.start_code_server()  # as a supervisor would; the dead run is not its business

    # Nobody reports the death: the run stays STARTED until run monitoring sees it past its maximum runtime (8 s).
    assert dagster_stack.run_status(run_id) == "STARTED"
    assert dagster_stack.wait_for_run(run_id, timeout_s=40) == "FAILURE"
    assert time.monotonic() - started >= 5
    sandbox.control.clear_faults()
    # No operator: the drain sensor starts the next run, which takes the row once the dead claim lapses.
    _wait_for(lambda: _status_in_hubspot(sandbox, company) == "SUSPENDED", 60,
              "the flow did not resume after the dead drain", dagster_stack)
    _wait_for(lambda: _queue(stack_database) == ["done"], 10, "the queue row is not done", dagster_stack)
