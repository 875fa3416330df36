"""Day one under a real kill: the execution's process is killed with SIGKILL while HubSpot holds the answer to a
batch create it has carried out; the next run finds those companies by their BAN and makes none twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from tests.defs.test_onboarding import ASSETS, _ban, _execute, _links, _resources
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.onboarding.previews import approve_preview

EXECUTION = """
import sys
from datetime import timedelta
from warp_sync_pipeline.core.db import database_url_from_env, make_engine
from warp_sync_pipeline.core.fields import load_rules
from warp_sync_pipeline.core.hubspot import client_from_env
from warp_sync_pipeline.core.onboarding.domains import DomainPolicy
from warp_sync_pipeline.core.onboarding.execute import (
    ExecutionReport, begin_execution, create_missing, customers_to_create)

engine = make_engine(database_url_from_env())
preview = int(sys.argv[1])
begin_execution(engine, preview, max_age=timedelta(hours=24))
with engine.connect() as conn:
    rules = load_rules(conn)
print("creating", flush=True)
create_missing(engine, client_from_env(engine), customers_to_create(engine, preview, "no_candidate"), rules, ExecutionReport(),
               set_domain=False, domains=DomainPolicy.bundled(), run_id="killed-run")
print("finished", flush=True)
"""


def test_an_execution_killed_while_hubspot_holds_its_answer_is_resumed_without_duplicates(
    database_url: str, engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient,
    make_customer: Callable[..., Any], tmp_path: Path,
) -> None:
    hubspot_client.ensure_properties()
    orphans = [str(make_customer(f"Killed Run Customer{n} Ltd", contact_email=f"a@killed{n}.example"))
               for n in range(130)]
    with dg.instance_for_test() as instance:
        assert dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path), instance=instance).success
        with engine.connect() as conn:
            preview = conn.execute(sa.text("SELECT max(id) FROM onboarding_previews")).scalar_one()
        approve_preview(engine, preview, actor="carol", max_age=timedelta(hours=24), create_missing=True,
                        set_domain=False)
        # HubSpot makes the first 100 companies and holds its answer; the process dies before it hears back.
        sandbox.control.set_faults(after_success={"calls": 1, "mode": "timeout", "hold_seconds": 30,
                                                  "endpoint": "POST /crm/v3/objects/companies/batch/create"})
        env = {**os.environ, "WARP_DATABASE_URL": database_url, "HUBSPOT_BASE_URL": sandbox.base_url,
               "HUBSPOT_ACCESS_TOKEN": sandbox.access_token, "HUBSPOT_REQUEST_TIMEOUT_SECONDS": "60",
               "HUBSPOT_TIME_BUDGET_SECONDS": "120"}
        process = subprocess.Popen([sys.executable, "-c", EXECUTION, str(preview)], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 30
            while len(sandbox.control.all_companies()) < 100:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "HubSpot never got the batch create"
                time.sleep(0.05)
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(10) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                process.kill()
        sandbox.control.clear_faults()
        assert not any(_links(engine)[customer] for customer in orphans)  # killed before it linked any

        result = _execute(database_url, sandbox, tmp_path, instance, preview)
        assert result.success, str(result.all_events)
        report = result.output_for_node("execute_onboarding")
        assert (report["adopted"], report["created"]) == (100, 30)
    links = _links(engine)
    by_ban: dict[str, list[str]] = {}
    for company in sandbox.control.all_companies():
        by_ban.setdefault(company["properties"].get("warp_ban"), []).append(company["id"])
    for customer in orphans:
        assert by_ban[_ban(engine, customer)] == [links[customer]]
