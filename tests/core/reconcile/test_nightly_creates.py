"""Customers other writers inserted get their company from the nightly when WARP_RECONCILE_CREATE_MISSING is on,
through the same create step as the onboarding, and under the brake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tests.plugins.reconcile import run_flow
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile import ReconcileOptions, build_report
from warp_sync_pipeline.core.reconcile.options import BRAKED
from warp_sync_pipeline.core.reconcile.results import NOT_WRITTEN


def _linked(engine: sa.Engine, customer: Any) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT external_ids ->> 'hubspot_company_id' FROM customers WHERE id = :c"),
                            {"c": customer}).scalar()


def test_the_nightly_creates_a_company_for_a_customer_other_writers_inserted(
        engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, make_customer: Callable[..., Any]) -> None:
    hubspot_client.ensure_properties()
    customer = make_customer("Inserted By Billing Ltd", contact_email="ops@billing.example", credit_limit=250)
    run = run_flow(engine, hubspot_client, ReconcileOptions(create_missing=True, allow_mass_write=True))
    assert run.hubspot_summary is not None
    created = run.hubspot_summary.creates
    assert (created.planned, created.applied) == (1, 1)
    [company] = sandbox.control.all_companies()
    assert _linked(engine, customer) == company["id"]
    assert company["properties"]["warp_credit_limit"] == "250" and company["properties"]["warp_ban"]
    assert not company["properties"].get("domain")  # a domain only when a person chose it (the onboarding)
    report = build_report(run_id="test-run", dry_run=False, plan=run.plan, hubspot=run.hubspot_summary,
                          warp=run.warp_summary)
    assert report.counts["companies_created"] == 1
    # The next night finds it linked: nothing more is made.
    again = run_flow(engine, hubspot_client, ReconcileOptions(create_missing=True, allow_mass_write=True))
    assert again.hubspot_summary is not None and again.hubspot_summary.creates.planned == 0
    assert len(sandbox.control.all_companies()) == 1


def test_creates_count_toward_the_brake_and_stay_off_by_default(
        engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, make_customer: Callable[..., Any]) -> None:
    hubspot_client.ensure_properties()
    customer = make_customer("Inserted By Billing Ltd")
    off = run_flow(engine, hubspot_client, ReconcileOptions(allow_mass_write=True))
    assert off.hubspot_summary is not None and off.hubspot_summary.creates.planned == 0
    twin = make_customer("Twin Ban Ltd")
    with engine.connect() as conn:
        twin_ban = conn.execute(sa.text("SELECT ban FROM customers WHERE id = :c"), {"c": twin}).scalar_one()
    sandbox.control.seed([{"name": "Twin", "warp_ban": twin_ban}, {"name": "Twin (copy)", "warp_ban": twin_ban}])
    braked = run_flow(engine, hubspot_client, ReconcileOptions(create_missing=True))
    assert braked.hubspot_summary is not None and braked.hubspot_summary.status == BRAKED
    # Only the customer without any company is to be created; the one whose BAN two companies hold waits for a person.
    assert [(r.customer_id, r.outcome) for r in braked.hubspot_summary.creates.records] == [(str(customer),
                                                                                            NOT_WRITTEN)]
    assert len(sandbox.control.all_companies()) == 2 and _linked(engine, customer) is None
