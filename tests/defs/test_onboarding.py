"""Day one in Dagster: the preview job against a real database and the sandbox, writing nothing to either side."""

# No `from __future__ import annotations`: kept like the other Dagster test modules.
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.normalize import to_hubspot
from warp_sync_pipeline.core.onboarding.previews import approve_preview, decide_candidate
from warp_sync_pipeline.core.reconcile.frames import BAN_PROPERTY
from warp_sync_pipeline.defs.onboarding import (
    onboarding_execute_job,
    onboarding_hubspot_companies,
    onboarding_preview,
    onboarding_warp_customers,
)
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager

ASSETS = [onboarding_warp_customers, onboarding_hubspot_companies, onboarding_preview]
OTHER_APP = "777"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _resources(database_url: str, sandbox: Any, frames: Path) -> dict[str, Any]:
    return {
        "db": DatabaseResource(url=database_url),
        "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token, max_attempts=3,
                                   time_budget_seconds=20, request_timeout_seconds=5),
        "parquet_io_manager": ParquetIOManager(base_dir=str(frames)),
    }


def _warp_rows(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT * FROM customers ORDER BY id")).all()]


def _day_one(engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient,
             make_customer: Callable[..., Any]) -> dict[str, str]:
    """An existing WARP and an existing portal, a customer of each kind; returns kind -> customer id."""
    hubspot_client.ensure_properties()
    seed = sandbox.control.seed
    ids: dict[str, str] = {}
    with engine.connect() as conn:
        taken = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()
    assert taken == 0
    by_ban = make_customer("Acme Telecom Ltd", contact_email="ops@acme-telecom.example", credit_limit=5000)
    ban = _ban(engine, by_ban)
    company = hubspot_client.create_company({"name": "Acme Telecom", "warp_ban": ban, "warp_credit_limit": "7000"})
    sandbox.control.integration_edit(company.id, {"warp_credit_limit": "7500"}, app_id=OTHER_APP)
    ids["ban"] = str(by_ban)
    ids["auto"] = str(make_customer("Quintara Systems Ltd", contact_email="it@quintara.example"))
    sandbox.control.contact_company("someone@quintara.example", name="Quintara Systems")
    ids["review"] = str(make_customer("Northwind Traders", contact_email="northwind.traders@gmail.com"))
    seed([{"name": "Nortwind Traders Inc"}])
    ids["cluster_a"] = str(make_customer("Vantor Group (Berlin)", contact_email="billing@vantor.example"))
    ids["cluster_b"] = str(make_customer("Vantor Group (Munich)", contact_email="finance@vantor.example"))
    seed([{"name": "Vantor Group", "domain": "vantor.example"}])
    ids["none"] = str(make_customer("Lonely Customer Plc", contact_email="hello@lonely.example"))
    twin = make_customer("Twin Ban Ltd", contact_email="a@twin.example")
    seed([{"name": "Twin Ban", "warp_ban": _ban(engine, twin)}, {"name": "Twin Ban (copy)",
                                                                  "warp_ban": _ban(engine, twin)}])
    ids["duplicate"] = str(twin)
    [linked_company] = seed([{"name": "Already Linked"}])
    ids["linked"] = str(make_customer("Already Linked", company_id=linked_company))
    seed([{"name": "Prospect Without Customer", "domain": "prospect.example"}])
    return ids


def _ban(engine: sa.Engine, customer_id: Any) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT ban FROM customers WHERE id = :id"), {"id": customer_id}).scalar_one()


def test_the_preview_matches_every_kind_stores_it_and_writes_nothing(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any,
    hubspot_client: HubSpotClient, make_customer: Callable[..., Any], tmp_path: Path,
) -> None:
    ids = _day_one(engine, sandbox, hubspot_client, make_customer)
    warp_before = _warp_rows(engine)
    hubspot_before = sandbox.control.all_companies(include_history=True)

    result = dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path), instance=instance,
                            tags={"warp/flow": "onboarding"})
    assert result.success

    # Nothing written to either side.
    assert _warp_rows(engine) == warp_before
    assert sandbox.control.all_companies(include_history=True) == hubspot_before

    with engine.connect() as conn:
        preview = conn.execute(sa.text("SELECT id, status, summary, run_id FROM onboarding_previews")).one()
        rows = conn.execute(sa.text(
            "SELECT customer_id::text, category, company_id FROM onboarding_candidates WHERE preview_id = :id"
        ), {"id": preview.id}).all()
    assert preview.status == "ready" and preview.run_id == result.run_id
    category = {customer: kind for customer, kind, _ in rows if customer}
    assert category[ids["ban"]] == "linked_by_ban"
    assert category[ids["auto"]] == "auto_link"
    assert category[ids["review"]] == "review"
    assert category[ids["cluster_a"]] == category[ids["cluster_b"]] == "many_to_one"
    assert category[ids["none"]] == "no_candidate"
    assert category[ids["duplicate"]] == "duplicate_ban"
    assert ids["linked"] not in category  # linked already: counted, not a candidate
    assert sum(1 for customer, kind, _ in rows if kind == "company_alone") == 1

    summary = preview.summary
    assert summary["counts"]["already_linked"] == 1 and summary["counts"]["auto_link"] == 1
    assert summary["portal"]["ban_property"] == "unique"
    assert summary["portal"]["shared"] == ["warp_credit_limit"]  # warp-sync's app and app 777 both write it
    outcomes = {(o["field"], o["kind"]) for o in summary["fields"]}
    assert ("credit_limit", "change") in outcomes  # 5000 in WARP, 7500 in HubSpot: HUBSPOT_WINS decides
    assert ("company_name", "change") in outcomes or ("company_name", "agreement") in outcomes

    [materialization] = result.asset_materializations_for_node("onboarding_preview")
    markdown = materialization.metadata["summary"].value
    assert _ban(engine, ids["ban"]) in markdown
    assert "Acme" not in markdown and "@" not in markdown  # names and emails stay out of Dagster's event log
    assert materialization.metadata["count_many_to_one"].value == 2
    assert json.loads(json.dumps(materialization.metadata["field_outcomes"].value))


def test_a_new_preview_supersedes_one_not_yet_approved(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any,
    hubspot_client: HubSpotClient, make_customer: Callable[..., Any], tmp_path: Path,
) -> None:
    hubspot_client.ensure_properties()
    make_customer("Solo Customer", contact_email="solo@solo.example")
    for _ in range(2):
        assert dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path),
                              instance=instance).success
    with engine.connect() as conn:
        statuses = conn.execute(sa.text("SELECT status FROM onboarding_previews ORDER BY id")).scalars().all()
        newest = conn.execute(sa.text("SELECT max(id) FROM onboarding_previews")).scalar_one()
    assert statuses == ["superseded", "ready"]
    # An approved preview is superseded by a newer one too, and then no longer executes.
    approve_preview(engine, newest, actor="carol", max_age=timedelta(hours=24), create_missing=False,
                    set_domain=False)
    assert dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path), instance=instance).success
    stale = _execute(database_url, sandbox, tmp_path, instance, newest)
    assert not stale.success and "PREVIEW_NOT_APPROVED" in str(stale.all_events)


def _execute(database_url: str, sandbox: Any, frames: Path, instance: dg.DagsterInstance, preview: int,
             **config: Any) -> dg.ExecuteInProcessResult:
    return onboarding_execute_job.execute_in_process(
        resources=_resources(database_url, sandbox, frames), instance=instance, raise_on_error=False,
        run_config={"ops": {"execute_onboarding": {"config": {"preview_id": preview, **config}}}})


def _links(engine: sa.Engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(
            "SELECT id::text, external_ids ->> 'hubspot_company_id' FROM customers")).all())


def test_an_approved_preview_executes_once_and_makes_one_company_per_ban(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any,
    hubspot_client: HubSpotClient, make_customer: Callable[..., Any], tmp_path: Path,
) -> None:
    ids = _day_one(engine, sandbox, hubspot_client, make_customer)
    assert dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path), instance=instance).success
    with engine.connect() as conn:
        preview = conn.execute(sa.text("SELECT max(id) FROM onboarding_previews")).scalar_one()
        row_of = {kind: conn.execute(sa.text(
            "SELECT id FROM onboarding_candidates WHERE preview_id = :p AND customer_id = :c"),
            {"p": preview, "c": ids[kind]}).scalar_one() for kind in ("review", "cluster_a")}
    # Not approved yet: the job refuses.
    refused = _execute(database_url, sandbox, tmp_path, instance, preview)
    assert not refused.success and "PREVIEW_NOT_APPROVED" in str(refused.all_events)
    # A person links the review candidate, and picks the Berlin account to hold the Vantor company.
    for row in row_of.values():
        decide_candidate(engine, preview, row, "confirmed", actor="carol", max_age=timedelta(hours=24))
    approve_preview(engine, preview, actor="carol", max_age=timedelta(hours=24), create_missing=True,
                    set_domain=False)
    # The create's answer is lost after HubSpot made the companies: the run finds them by their BAN.
    sandbox.control.set_faults(after_success={"calls": 1, "mode": "drop",
                                              "endpoint": "POST /crm/v3/objects/companies/batch/create"})
    result = _execute(database_url, sandbox, tmp_path, instance, preview)
    assert result.success, str(result.all_events)
    report = result.output_for_node("execute_onboarding")
    assert (report["linked"], report["created"] + report["adopted"], report["create_failed"]) == (4, 2, 0)

    links = _links(engine)
    assert links[ids["ban"]] and links[ids["auto"]] and links[ids["review"]]
    # The cluster: the picked account holds the organisation's company, the other got a company of its own.
    vantor = next(c["id"] for c in sandbox.control.all_companies() if c["properties"].get("name") == "Vantor Group")
    assert links[ids["cluster_a"]] == vantor and links[ids["cluster_b"]] not in (None, vantor)
    assert links[ids["duplicate"]] is None
    lonely_ban = _ban(engine, ids["none"])
    made = [c for c in sandbox.control.all_companies() if c["properties"].get("warp_ban") == lonely_ban]
    assert len(made) == 1 and links[ids["none"]] == made[0]["id"]
    assert not made[0]["properties"].get("domain")  # the approver did not choose domains
    with engine.connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM onboarding_previews WHERE id = :p"), {"p": preview}).scalar()
        audited = conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_log WHERE trigger = 'onboarding' "
                                       "AND outcome = 'applied'")).scalar_one()
    assert status == "executed" and audited == 6

    # The field rules ran on the linked pairs: HubSpot's credit limit won (HUBSPOT_WINS) and agreed values are on
    # record, so the first nightly finds them in sync instead of tripping the brake.
    with engine.connect() as conn:
        credit = conn.execute(sa.text("SELECT credit_limit FROM customers WHERE id = :c"), {"c": ids["ban"]}).scalar()
        agreed = conn.execute(sa.text("SELECT count(*) FROM hubspot_field_state WHERE customer_id = :c "
                                      "AND agreed_value IS NOT NULL"), {"c": ids["ban"]}).scalar_one()
    assert credit == 7500 and agreed >= 3
    assert report["rules"]["hubspot"] in ("written", "nothing_to_write") and report["rules"]["warp_failed"] == 0
    assert report["rules"]["planned_on"] == "preview pull"  # HubSpot not read again for the plan

    # Executed: a second run refuses, and nothing was made twice.
    again = _execute(database_url, sandbox, tmp_path, instance, preview)
    assert not again.success
    assert sum(c["properties"].get("warp_ban") == lonely_ban for c in sandbox.control.all_companies()) == 1


def test_a_run_resumes_after_one_that_died_after_hubspot_made_companies(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any,
    hubspot_client: HubSpotClient, make_customer: Callable[..., Any], tmp_path: Path,
) -> None:
    hubspot_client.ensure_properties()
    orphans = [str(make_customer(f"Orphan Number{n} Ltd", contact_email=f"x@orphan{n}.example")) for n in range(5)]
    assert dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path), instance=instance).success
    with engine.connect() as conn:
        preview = conn.execute(sa.text("SELECT max(id) FROM onboarding_previews")).scalar_one()
    approve_preview(engine, preview, actor="carol", max_age=timedelta(hours=24), create_missing=True,
                    set_domain=True)
    # What a run killed after HubSpot's answer but before linking leaves: companies with the BANs, no links.
    for customer in orphans[:2]:
        hubspot_client.create_company({"name": "made by the dead run", "warp_ban": _ban(engine, customer)})
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE onboarding_previews SET status = 'executing' WHERE id = :p"), {"p": preview})
    result = _execute(database_url, sandbox, tmp_path, instance, preview)
    assert result.success, str(result.all_events)
    report = result.output_for_node("execute_onboarding")
    assert (report["created"], report["adopted"]) == (3, 2)
    links = _links(engine)
    for customer in orphans:
        ban = _ban(engine, customer)
        holders = [c for c in sandbox.control.all_companies() if c["properties"].get("warp_ban") == ban]
        assert len(holders) == 1 and links[customer] == holders[0]["id"]
    fresh = [c for c in sandbox.control.all_companies() if c["properties"].get("name", "").startswith("Orphan")]
    assert {c["properties"].get("domain") for c in fresh} == {f"orphan{n}.example" for n in range(2, 5)}


def test_the_execution_is_held_to_what_the_approver_saw(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any,
    hubspot_client: HubSpotClient, make_customer: Callable[..., Any], tmp_path: Path,
) -> None:
    hubspot_client.ensure_properties()
    customers = [make_customer(f"Steady Customer{n} Ltd", credit_limit=100, contact_email=f"a@steady{n}.example")
                 for n in range(15)]
    with engine.connect() as conn:
        rules = load_rules(conn)
        rows = conn.execute(sa.text("SELECT * FROM customers")).mappings().all()
    # Each company holds exactly what WARP holds, field by field.
    sandbox.control.seed([{BAN_PROPERTY: row["ban"], **{rule.hubspot_property: to_hubspot(rule.spec, row[name])
                                                          for name, rule in rules.items()}} for row in rows])
    assert dg.materialize(ASSETS, resources=_resources(database_url, sandbox, tmp_path), instance=instance).success
    with engine.connect() as conn:
        preview, brake = conn.execute(sa.text(
            "SELECT id, summary -> 'brake' FROM onboarding_previews ORDER BY id DESC LIMIT 1")).one()
    assert brake["records_to_change"] == 0  # what the approver sees: every field already agrees
    approve_preview(engine, preview, actor="carol", max_age=timedelta(hours=24), create_missing=False,
                    set_domain=False)
    # Between approval and execution, twelve credit limits change in WARP: more than the preview allows.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET credit_limit = 900 WHERE id = ANY(CAST(:ids AS uuid[]))"),
                     {"ids": [str(c) for c in customers[:12]]})
    result = _execute(database_url, sandbox, tmp_path, instance, preview)
    assert not result.success and "more than the 10 the approved preview allows" in str(result.all_events)
    with engine.connect() as conn:
        limits = conn.execute(sa.text("SELECT credit_limit FROM customers")).scalars().all()
    assert sorted(limits) == [100] * 3 + [900] * 12  # no field written either way
    assert {c["properties"]["warp_credit_limit"] for c in sandbox.control.all_companies()} == {"100.00"}
    assert all(_links(engine)[str(c)] for c in customers)  # the links were made
