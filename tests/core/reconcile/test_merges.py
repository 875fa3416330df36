"""A merge whose webhook was lost is healed by the nightly (issue 13): HubSpot's merges make a new company, and
the customer linked to a merged-away id follows it through the same function the merge webhook uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from tests.plugins.reconcile import plan_only, rules_of, run_flow
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile import ReconcileOptions, build_report, write_to_warp
from warp_sync_pipeline.core.reconcile.frames import (
    COMPANY_ID,
    COMPANY_MERGED,
    COMPANY_MISSING,
    KIND,
    MERGED_FROM,
)
from warp_sync_pipeline.core.reconcile.writeback import APPLIED, DRY_RUN, LINK_CHANGED, SKIPPED


def _link(engine: sa.Engine, customer: Any) -> tuple[str | None, str]:
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT external_ids ->> 'hubspot_company_id' AS company, hubspot_link_status "
                                   "FROM customers WHERE id = :id"), {"id": customer}).one()
    return row.company, row.hubspot_link_status


def _audit(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT customer_id, action, old_value, new_value, trigger, dagster_run_id AS run_id, details "
            "FROM hubspot_sync_log "
            "WHERE reason = 'company.merge' ORDER BY id")).mappings()]


def _linked_then_merged(sandbox: Any, hubspot: HubSpotClient, make_customer: Callable[..., Any], name: str,
                        ban: str) -> tuple[Any, Any, Any, str]:
    """(customer, its company, the other company, the company the merge made): a rep merged the customer's
    company with one no customer holds, and the merge webhook never arrived."""
    hubspot.ensure_properties()
    company = hubspot.create_company({"name": name, "warp_ban": ban})
    customer = make_customer(name, ban=ban, company_id=company.id)
    other = hubspot.create_company({"name": f"{name} Rival"})
    return customer, company, other, sandbox.control.rep_merge(company.id, other.id)["id"]


def test_the_nightly_moves_a_customer_to_the_company_its_merge_made_and_reports_it(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, make_customer: Callable[..., Any],
) -> None:
    customer, company, bystander, merged_into = _linked_then_merged(sandbox, hubspot_client, make_customer,
                                                                    "Initech", "ZT-500000101")

    dry = plan_only(engine, hubspot_client)
    [row] = dry.plan[dry.plan[KIND] == COMPANY_MERGED].to_dict("records")
    assert (row[COMPANY_ID], sorted(row[MERGED_FROM].split(";"))) == (merged_into, sorted([company.id, bystander.id]))
    assert not (dry.plan[KIND] == COMPANY_MISSING).any()  # before: reported as linked to a missing company

    run = run_flow(engine, hubspot_client, run_id="night-1")
    assert _link(engine, customer) == (merged_into, "linked")
    [record] = run.warp_summary.merges.records
    assert (record.outcome, record.new) == (APPLIED, merged_into)
    [audit] = _audit(engine)
    assert (audit["action"], audit["old_value"], audit["new_value"]) == ("LINK_REPOINTED", company.id, merged_into)
    assert (audit["trigger"], audit["run_id"], audit["details"]["found_by"]) == ("reconciliation", "night-1",
                                                                                "reconciliation")
    report = build_report(run_id="night-1", dry_run=False, plan=run.plan, hubspot=run.hubspot_summary,
                          warp=run.warp_summary)
    assert report.counts["customers_following_merges"] == 1
    [section] = [s for s in report.sections if s.title == "Merges followed"]
    assert section.rows == [["ZT-500000101", "Initech", merged_into, APPLIED, merged_into]]  # by BAN and name
    with engine.connect() as conn:  # the link was written as HubSpot's: nothing queued back
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_queue")).scalar_one() == 0

    # The next night compares the customer with its new company, and nothing is left to follow.
    second = plan_only(engine, hubspot_client)
    assert not second.plan[KIND].isin([COMPANY_MERGED, COMPANY_MISSING]).any()


def test_two_customers_whose_companies_were_merged_both_go_to_review(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, make_customer: Callable[..., Any],
) -> None:
    hubspot_client.ensure_properties()
    first = hubspot_client.create_company({"name": "Alpha", "warp_ban": "ZT-500000102"})
    second = hubspot_client.create_company({"name": "Beta", "warp_ban": "ZT-500000103"})
    customers = [make_customer("Alpha", ban="ZT-500000102", company_id=first.id),
                 make_customer("Beta", ban="ZT-500000103", company_id=second.id)]
    sandbox.control.rep_merge(first.id, second.id)

    run = run_flow(engine, hubspot_client)

    assert {_link(engine, c)[1] for c in customers} == {"review"}  # never two customers on one company
    records = run.warp_summary.merges.records
    assert len(records) == 2 and records[0].outcome == APPLIED and records[0].new == "review"
    # The second row finds the work done by the first.
    assert (records[1].outcome, records[1].code) == (SKIPPED, "MERGE_ALREADY_FOLLOWED")
    assert sorted(a["action"] for a in _audit(engine)) == ["LINK_REVIEW", "LINK_REVIEW"]


def test_a_dry_run_only_plans_it_and_a_link_moved_since_the_pull_is_left_alone(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, make_customer: Callable[..., Any],
) -> None:
    customer, company, _, _ = _linked_then_merged(sandbox, hubspot_client, make_customer, "Gamma", "ZT-500000104")

    dry = run_flow(engine, hubspot_client, ReconcileOptions(dry_run=True))
    assert [r.outcome for r in dry.warp_summary.merges.records] == [DRY_RUN]
    assert _link(engine, customer) == (company.id, "linked")

    with engine.begin() as conn:  # a person re-linked the customer after the pull
        conn.execute(sa.text("UPDATE customers SET external_ids = '{\"hubspot_company_id\": \"777\"}' "
                             "WHERE id = :id"), {"id": customer})
    summary = write_to_warp(dry.plan, engine=engine, rules=rules_of(engine), options=ReconcileOptions(),
                            run_id="late", enabled=True)
    [record] = summary.merges.records
    assert (record.outcome, record.code) == (SKIPPED, LINK_CHANGED)
    assert _link(engine, customer) == ("777", "linked")
    assert _audit(engine) == []
