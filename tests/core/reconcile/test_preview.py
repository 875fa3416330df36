"""A rule draft's preview from one pull: both plans from the same frames, compared field by field, including a
draft that maps a column the live rules do not."""

from __future__ import annotations

import sqlalchemy as sa

from tests.plugins.reconcile import rules_of
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile import (
    build_plan,
    compute_differences,
    fetch_property_history,
    history_needed,
    hubspot_properties,
    pull_hubspot_companies,
    pull_warp_customers,
)
from warp_sync_pipeline.core.reconcile.preview import preview_draft, rules_for_pull
from warp_sync_pipeline.core.rule_drafts import create_draft, draft_rules, get_draft, set_rule
from warp_sync_pipeline.devstack.demo_seed import SeededDemo


def test_a_draft_mapping_a_new_column_is_previewed_from_one_pull(
    engine: sa.Engine, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE customers ADD COLUMN employees integer"))
        conn.execute(sa.text("UPDATE customers SET employees = 10 WHERE ban IN (SELECT ban FROM customers "
                             "ORDER BY ban LIMIT 5)"))
    hubspot_client.create_property({"name": "warp_employees", "label": "Employees", "type": "number",
                                    "fieldType": "number", "groupName": "companyinformation"})
    create_draft(engine, "employees", "ana")
    set_rule(engine, "employees", "employees", hubspot_property="warp_employees", direction="WARP_TO_HUBSPOT",
             strategy="WARP_WINS", field_type="integer")
    live = rules_of(engine)
    with engine.connect() as conn:
        draft = draft_rules(conn, get_draft(conn, "employees"))
    pull = rules_for_pull(live, draft)
    assert "employees" in pull and "employees" not in live
    warp = pull_warp_customers(engine, pull, page_size=300)
    hubspot = pull_hubspot_companies(hubspot_client, hubspot_properties(pull))
    differences = compute_differences(warp, hubspot, live)
    ids, props = history_needed(differences, live)
    history = fetch_property_history(hubspot_client, ids, props)
    plan = build_plan(differences, history, live)
    preview = preview_draft("employees", ["employees: added"], warp=warp, hubspot=hubspot,
                            live_differences=differences, live_history=history, live_plan=plan, live=live,
                            draft=draft, fetch_history=lambda i, p: fetch_property_history(hubspot_client, i, p))
    # The live plan never touches the new column; the draft writes the five values HubSpot lacks, and otherwise
    # plans exactly what the live rules do.
    assert preview.fields["employees"]["live"]["to_hubspot"] == 0
    assert preview.fields["employees"]["draft"]["to_hubspot"] == 5
    assert preview.records_total == 5 and {r["draft"] for r in preview.records} == {"WRITE_TO_HUBSPOT"}
    assert all(sides["live"] == sides["draft"] for name, sides in preview.fields.items() if name != "employees")
