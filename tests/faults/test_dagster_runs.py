"""Runs of the flows on the running Dagster stack (code server, daemon, webserver), their processes killed with
real signals mid-call: the run must end FAILED, not STARTED forever, and the flow must resume with no operator.

Each flow's run is started by its own sensor, as in production; the sandbox holds the run's first HubSpot call,
so the run is mid-call when its process dies. The stack's budgets are short (tests/plugins/dagster_stack.py,
FLOW_SETTINGS): maximum runtimes of 11 s (drain) and 12 s (webhooks), run monitoring every 2 s.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.plugins.dagster_stack import DagsterStack
from tests.plugins.sandbox import SandboxHandle
from tests.plugins.signing import object_event
from warp_sync_pipeline.core.db import make_engine
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.webhooks import store_batch
from warp_sync_pipeline.defs.inbound import hubspot_webhook_events_job
from warp_sync_pipeline.defs.outbound import DRAIN_JOB_NAME

BAN = "ZT-500000001"


@dataclass(frozen=True)
class Flow:
    job: str
    held_call: str  # the HubSpot endpoint (sandbox counter name) the run's first call goes to
    prepare: Callable[[sa.Engine, str], None]  # work for the flow's sensor to find, given the company id
    done: Callable[[sa.Engine, SandboxHandle, str], bool]  # the work reached its destination, once


def _one(engine: sa.Engine, sql: str, **params: object) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def _queue_a_status_change(engine: sa.Engine, company: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name, status, external_ids, hubspot_link_status) VALUES "
            "(:ban, 'Held Up Ltd', 'ACTIVE', jsonb_build_object('hubspot_company_id', CAST(:c AS text)), 'linked')"),
            {"ban": BAN, "c": company})
    with engine.begin() as conn:  # the trigger queues the change
        conn.execute(sa.text("UPDATE customers SET status = 'SUSPENDED'"))


def _status_sent(engine: sa.Engine, sandbox: SandboxHandle, company: str) -> bool:
    [values] = [c["properties"] for c in sandbox.control.all_companies() if c["id"] == company]
    return values.get("warp_status") == "SUSPENDED" and _one(engine, "SELECT status FROM hubspot_sync_queue") == [
        ("done",)]


def _store_a_creation_event(engine: sa.Engine, company: str) -> None:
    # An unlinked customer whose BAN the new company carries: applying the event reads the company and links it.
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO customers (ban, company_name, status) VALUES (:ban, 'Held Up Ltd', "
                             "'ACTIVE')"), {"ban": BAN})
    store_batch(engine, [object_event("company.creation", int(company))])


def _linked(engine: sa.Engine, sandbox: SandboxHandle, company: str) -> bool:
    return _one(engine, "SELECT external_ids->>'hubspot_company_id', hubspot_link_status FROM customers") == [
        (company, "linked")] and _one(engine, "SELECT status FROM hubspot_webhook_events") == [("processed",)]


FLOWS = {
    "drain": Flow(DRAIN_JOB_NAME, "POST /crm/v3/objects/companies/batch/update", _queue_a_status_change,
                  _status_sent),
    "webhooks": Flow(hubspot_webhook_events_job.name, "GET /crm/v3/objects/companies/{companyId}",
                     _store_a_creation_event, _linked),
}


def _wait_for(predicate: Callable[[], object], timeout_s: float, what: str, stack: DagsterStack) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout_s} s\n{stack.log_tails()}")


def _alive(pid: int) -> bool:
    """Running, not a zombie left for a parent that is gone (state Z in /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _run_held_mid_call(flow: Flow, stack: DagsterStack, engine: sa.Engine,
                       sandbox: SandboxHandle) -> tuple[str, str, int]:
    """The flow's work prepared, its sensor's run holding the first HubSpot call; returns (company id, run id, the
    run worker's pid)."""
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10) as client:
        client.ensure_properties()
    [company] = sandbox.control.seed([{"name": "Held Up Ltd", "warp_ban": BAN, "warp_status": "ACTIVE"}])
    sandbox.control.set_faults(timeout={"calls": 1, "hold_seconds": 30, "endpoint": flow.held_call})
    flow.prepare(engine, company)
    _wait_for(lambda: sandbox.control.counters()["by_endpoint"].get(flow.held_call, 0) >= 1, 60,
              f"no {flow.job} run reached HubSpot", stack)
    [(run_id, _)] = _wait_for(lambda: stack.runs(flow.job, ["STARTED"]), 10, f"no {flow.job} run is STARTED", stack)
    worker = stack.run_worker_pid(run_id)
    assert worker is not None, stack.log_tails()
    return company, run_id, worker


@pytest.fixture
def stack_engine(stack_database: str) -> sa.Engine:
    engine = make_engine(stack_database, poolclass=sa.pool.NullPool)
    yield engine
    engine.dispose()


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
def test_a_run_whose_worker_is_killed_fails_at_once_and_the_next_run_finishes_the_work(
    flow: Flow, dagster_stack: DagsterStack, stack_engine: sa.Engine, stack_sandbox: SandboxHandle
) -> None:
    company, run_id, worker = _run_held_mid_call(flow, dagster_stack, stack_engine, stack_sandbox)

    os.kill(worker, signal.SIGKILL)

    # The code server saw its child die and says so: no waiting for the maximum runtime.
    assert dagster_stack.wait_for_run(run_id, timeout_s=15) == "FAILURE"
    assert not [m for m in dagster_stack.run_messages(run_id) if "maximum runtime" in m]
    stack_sandbox.control.clear_faults()  # the held call is answered 504 and applied nothing
    _wait_for(lambda: flow.done(stack_engine, stack_sandbox, company), 60, "the work was not finished after the dead run",
              dagster_stack)


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
def test_a_run_killed_with_its_code_server_is_failed_by_its_maximum_runtime_and_the_flow_resumes(
    flow: Flow, dagster_stack: DagsterStack, stack_engine: sa.Engine, stack_sandbox: SandboxHandle
) -> None:
    company, run_id, worker = _run_held_mid_call(flow, dagster_stack, stack_engine, stack_sandbox)

    dagster_stack.kill_code_server()  # its process group: the server and the run's worker
    _wait_for(lambda: not _alive(worker), 5, "the run worker outlived its code server's process group", dagster_stack)
    # Nobody reports the death: the run stays STARTED until run monitoring finds it past its maximum runtime.
    assert dagster_stack.run_status(run_id) == "STARTED"
    dagster_stack.start_code_server()  # as a supervisor would; the dead run is not its business

    assert dagster_stack.wait_for_run(run_id, timeout_s=40) == "FAILURE"
    assert [m for m in dagster_stack.run_messages(run_id) if "maximum runtime" in m], dagster_stack.run_messages(run_id)
    stack_sandbox.control.clear_faults()
    # No operator: the flow's sensor starts the next run, which takes the work once the dead claim lapses.
    _wait_for(lambda: flow.done(stack_engine, stack_sandbox, company), 60, "the flow did not resume after the dead run",
              dagster_stack)


@pytest.mark.parametrize("flow", FLOWS.values(), ids=FLOWS.keys())
def test_a_run_whose_whole_dagster_stack_restarts_is_failed_by_its_maximum_runtime_and_the_flow_resumes(
    flow: Flow, dagster_stack: DagsterStack, stack_engine: sa.Engine, stack_sandbox: SandboxHandle
) -> None:
    company, run_id, worker = _run_held_mid_call(flow, dagster_stack, stack_engine, stack_sandbox)

    # The host restarts: code server (with the run's worker), daemon and webserver all die at once.
    dagster_stack.kill_everything()
    _wait_for(lambda: not _alive(worker), 5, "the run worker outlived the stack", dagster_stack)
    stack_sandbox.control.clear_faults()
    dagster_stack.start_everything()
    # The restarted stack knows nothing of the dead run but its STARTED record; the new daemon's run monitoring
    # fails it past its maximum runtime (its message says so: nobody reported the death), and the flow's sensor
    # starts the next run. No STARTED check here: on a slow start the new daemon may already have failed it.
    assert dagster_stack.wait_for_run(run_id, timeout_s=40) == "FAILURE"
    assert [m for m in dagster_stack.run_messages(run_id) if "maximum runtime" in m], dagster_stack.run_messages(run_id)
    _wait_for(lambda: flow.done(stack_engine, stack_sandbox, company), 60,
              "the flow did not resume after the stack's restart", dagster_stack)
