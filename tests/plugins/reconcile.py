"""Fixtures of the reconciliation tests: a client on the suite's sandbox, the demo data seeded into a fresh
database and the sandbox, and the whole flow run through the core services (the Dagster assets call the same)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules, load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient, RetryPolicy
from warp_sync_pipeline.core.reconcile import (
    ReconcileOptions,
    build_plan,
    compute_differences,
    fetch_property_history,
    history_needed,
    hubspot_properties,
    pull_hubspot_companies,
    pull_warp_customers,
    write_to_hubspot,
    write_to_warp,
)
from warp_sync_pipeline.devstack.demo_seed import SeededDemo, seed_demo

FAST_RETRY = RetryPolicy(max_attempts=3, backoff_initial_s=0.05, backoff_max_s=0.2, jitter_s=0.02,
                         rate_limit_wait_s=0.1)
DEMO_CUSTOMERS = 1000


@pytest.fixture
def hubspot_client(sandbox) -> Iterator[HubSpotClient]:  # noqa: ANN001 - the sandbox plugin's handle
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=20, request_timeout_s=5,
                           retry=FAST_RETRY)
    yield client
    client.close()


@pytest.fixture
def demo(engine: sa.Engine, sandbox, hubspot_client: HubSpotClient) -> SeededDemo:  # noqa: ANN001
    """About 1,000 customers and their companies with every kind of difference (contact_email is MANUAL)."""
    return seed_demo(engine, client=hubspot_client, seed_companies=sandbox.control.seed, customers=DEMO_CUSTOMERS)


@dataclass
class CoreRun:
    warp: pd.DataFrame
    hubspot: pd.DataFrame
    differences: pd.DataFrame
    history: pd.DataFrame
    plan: pd.DataFrame
    hubspot_summary: dict[str, Any] | None = None
    warp_summary: dict[str, Any] | None = None


def rules_of(engine: sa.Engine) -> FieldRules:
    with engine.connect() as conn:
        return load_rules(conn)


def plan_only(engine: sa.Engine, client: HubSpotClient) -> CoreRun:
    rules = rules_of(engine)
    warp = pull_warp_customers(engine, rules, page_size=300)
    hubspot = pull_hubspot_companies(client, hubspot_properties(rules))
    differences = compute_differences(warp, hubspot, rules)
    ids, properties = history_needed(differences, rules)
    history = fetch_property_history(client, ids, properties)
    return CoreRun(warp, hubspot, differences, history, build_plan(differences, history, rules))


def run_flow(engine: sa.Engine, client: HubSpotClient, options: ReconcileOptions | None = None,
             *, enabled: bool = True, run_id: str = "test-run") -> CoreRun:
    options = options or ReconcileOptions()
    run = plan_only(engine, client)
    rules = rules_of(engine)
    run.hubspot_summary = write_to_hubspot(run.plan, client=client, engine=engine, rules=rules, options=options,
                                           run_id=run_id, enabled=enabled)
    run.warp_summary = write_to_warp(run.plan, engine=engine, rules=rules, options=options, run_id=run_id,
                                     enabled=enabled)
    return run
