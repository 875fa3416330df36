"""The incremental nightly's scope against the real database and the sandbox: what moved on either side since the
watermark (search windows split past the results cap, webhook events, WARP's change times), each record's
counterpart, and the carried records; an incremental plan equals the full plan for every change in its window."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from tests.plugins.reconcile import ReconcileOptions, plan_only, rules_of, run_flow
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile import (
    build_plan,
    compute_differences,
    fetch_property_history,
    history_needed,
    hubspot_properties,
    pull_warp_customers,
)
from warp_sync_pipeline.core.reconcile.frames import CHANGE, KIND
from warp_sync_pipeline.core.reconcile.incremental import (
    INCREMENTAL,
    Watermark,
    advance_watermark,
    carry,
    find_scope,
    read_watermark,
    search_changed,
    settle_carried,
)
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, VALUE
from warp_sync_pipeline.core.reconcile.pull import read_hubspot_companies
from warp_sync_pipeline.devstack.demo_seed import SeededDemo

NO_LAG = {"overlap": timedelta(seconds=5), "index_lag": timedelta(0), "warp_margin": timedelta(seconds=5)}


def _changes(plan: pd.DataFrame) -> set[tuple[str, str, str, str]]:
    rows = plan[plan[KIND] == CHANGE]
    return {(r["customer_id"], r[FIELD], r[ACTION], str(r[VALUE])) for r in rows.to_dict("records")}


def test_the_search_splits_a_window_past_the_cap_and_finds_every_change(
    sandbox, hubspot_client: HubSpotClient, demo: SeededDemo  # noqa: ANN001
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = sorted(c["id"] for c in sandbox.control.all_companies() if not c.get("archived"))[:40]
    for position, company in enumerate(ids):
        hubspot_client.update_company(company, {"warp_credit_limit": str(777_000 + position)})
        time.sleep(0.002)  # spread the changes over the window, as a day's edits are
    sweep = search_changed(hubspot_client, start, datetime.now(UTC) + timedelta(seconds=1), cap=15)
    assert sweep.ids == set(ids)
    assert sweep.windows >= 3  # 40 changes, at most 15 a window
    assert sweep.calls >= sweep.windows


def test_an_incremental_plan_equals_the_full_plan_for_every_change_in_its_window(
    engine: sa.Engine, sandbox, hubspot_client: HubSpotClient, demo: SeededDemo  # noqa: ANN001
) -> None:
    run_flow(engine, hubspot_client, ReconcileOptions(allow_mass_write=True))  # a full sweep settles the demo
    settled_at = datetime.now(UTC)
    advance_watermark(engine, Watermark(settled_at, settled_at, "sweep", "full"))
    time.sleep(0.05)
    with engine.begin() as conn:
        moved_in_warp = list(conn.execute(sa.text(
            "UPDATE customers SET credit_limit = credit_limit + 100 WHERE ban IN "
            "(SELECT ban FROM customers WHERE hubspot_link_status = 'linked' ORDER BY ban LIMIT 7) "
            "RETURNING id::text")).scalars())
        linked = list(conn.execute(sa.text(
            "SELECT external_ids ->> 'hubspot_company_id' FROM customers WHERE hubspot_link_status = 'linked' "
            "ORDER BY ban DESC")).scalars())
    active = {c["id"] for c in sandbox.control.all_companies() if not c.get("archived")}
    moved_in_hubspot = [company for company in linked if company in active][:5]
    for position, company in enumerate(moved_in_hubspot):  # values no company holds: each write is a change
        hubspot_client.update_company(company, {"warp_credit_limit": str(888_000 + position)})

    rules = rules_of(engine)
    scope = find_scope(engine, hubspot_client, read_watermark(engine), started_at=datetime.now(UTC), **NO_LAG)
    assert set(moved_in_warp) <= scope.customer_ids and set(moved_in_hubspot) <= scope.company_ids
    assert len(scope.customer_ids) < 100  # not the population
    warp = pull_warp_customers(engine, rules, only=scope.customer_ids)
    hubspot = read_hubspot_companies(hubspot_client, scope.company_ids, hubspot_properties(rules))
    differences = compute_differences(warp, hubspot, rules)
    ids, props = history_needed(differences, rules)
    incremental = build_plan(differences, fetch_property_history(hubspot_client, ids, props), rules)

    full = plan_only(engine, hubspot_client).plan
    in_scope = full[full["customer_id"].isin(scope.customer_ids)]
    assert _changes(incremental) == _changes(in_scope)
    # What the full plan holds beyond the scope is what no window saw move (the demo's standing cases a person has to
    # settle): never one of the records changed since the sweep.
    assert not {c for c, *_ in _changes(full) - _changes(in_scope)} & set(moved_in_warp)
    assert scope.describe()["changed_in_warp"] >= 7 and scope.churn >= 5


def test_carried_records_come_back_until_a_run_settles_them(
    engine: sa.Engine, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    now = datetime.now(UTC)
    advance_watermark(engine, Watermark(now, now, "r1", INCREMENTAL))
    with engine.connect() as conn:
        customer, company = conn.execute(sa.text(
            "SELECT id::text, external_ids ->> 'hubspot_company_id' FROM customers "
            "WHERE hubspot_link_status = 'linked' ORDER BY ban LIMIT 1")).one()
    carry(engine, "r1", [(customer, None, "SKIPPED_CHANGED_SINCE_PULL")])
    scope = find_scope(engine, hubspot_client, read_watermark(engine), started_at=datetime.now(UTC), **NO_LAG)
    assert customer in scope.customer_ids and company in scope.company_ids and scope.carried == 1
    settle_carried(engine, [customer], [], before=datetime.now(UTC))
    later = find_scope(engine, hubspot_client, read_watermark(engine), started_at=datetime.now(UTC), **NO_LAG)
    assert later.carried == 0
    # The watermark never moves backwards.
    advance_watermark(engine, Watermark(now - timedelta(days=1), now - timedelta(days=1), "old", INCREMENTAL))
    assert read_watermark(engine).hubspot_through == now


def test_when_nothing_moved_an_incremental_run_reads_and_plans_nothing(
    engine: sa.Engine, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    later = datetime.now(UTC) + timedelta(minutes=1)  # a watermark past every change the demo made
    advance_watermark(engine, Watermark(later, later, "sweep", "full"))
    scope = find_scope(engine, hubspot_client, read_watermark(engine), started_at=later, **NO_LAG)
    assert scope.customer_ids == frozenset() and scope.company_ids == frozenset()
    rules = rules_of(engine)
    warp = pull_warp_customers(engine, rules, only=scope.customer_ids)
    hubspot = read_hubspot_companies(hubspot_client, scope.company_ids, hubspot_properties(rules))
    plan = build_plan(compute_differences(warp, hubspot, rules), fetch_property_history(hubspot_client, [], []), rules)
    assert len(warp) == len(hubspot) == 0 and _changes(plan) == set()
