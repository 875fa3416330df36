"""The Dagster side: the assets materialized together (as the job runs them) against a real database, the
sandbox and an aiosmtpd server; the run row, the report in the UI and by email, the checks, the dry run."""

# No `from __future__ import annotations`: kept like the other Dagster test modules.
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.core.reconcile.test_writeback import _snapshot
from tests.plugins.reconcile import DEMO_CUSTOMERS
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline.core import reconciliation_runs as runs
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.reconcile.results import Report, WriteBackSummary, from_stored
from warp_sync_pipeline.defs.reconciliation import (
    RECONCILIATION_ASSETS,
    ReconciliationSettings,
)
from warp_sync_pipeline.devstack.demo_seed import SCRIPT_NAME, SeededDemo, seed_demo
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _resources(database_url: str, sandbox: Any, smtp: SmtpCatcher | None, frames: Path,
               settings: ReconciliationSettings | None = None) -> dict[str, Any]:
    email = EmailResource()
    if smtp is not None:
        env = smtp.environ()
        email = EmailResource(host=env["SMTP_HOST"], port=env["SMTP_PORT"], starttls=env["SMTP_STARTTLS"],
                              from_address=env["SMTP_FROM"], recipients=env["WARP_REPORT_RECIPIENTS"],
                              timeout_seconds=env["SMTP_TIMEOUT_SECONDS"])
    return {
        "db": DatabaseResource(url=database_url),
        "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token, max_attempts=3,
                                   time_budget_seconds=20, request_timeout_seconds=5),
        "email": email,
        "parquet_io_manager": ParquetIOManager(base_dir=str(frames)),
        "reconciliation": settings or ReconciliationSettings(),
    }


def _materialize(instance: dg.DagsterInstance, resources: dict[str, Any], **tags: str) -> dg.ExecuteInProcessResult:
    return dg.materialize(RECONCILIATION_ASSETS, resources=resources, instance=instance,
                          tags={"warp/flow": "reconciliation", **tags}, raise_on_error=False)


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def _metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    [materialization] = result.asset_materializations_for_node(node)
    return dict(materialization.metadata)


def _report_markdown(result: dg.ExecuteInProcessResult) -> str:
    [materialization] = result.asset_materializations_for_node("reconciliation_report")
    return materialization.metadata["report"].value


def test_the_assets_reconcile_record_the_run_and_report_in_the_ui_and_by_email(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, smtp_server: SmtpCatcher,
    demo: SeededDemo, tmp_path: Path,
) -> None:
    result = _materialize(instance, _resources(database_url, sandbox, smtp_server, tmp_path),
                          **{"warp/reconcile-request": "17"})
    assert result.success
    run_id = result.run_id

    record = runs.get_run(engine, run_id)
    assert record.status == "succeeded" and record.request_id == "17" and record.dry_run is False
    assert record.counts["customers_pulled"] == DEMO_CUSTOMERS
    assert record.counts["changes_written_to_hubspot"] == record.counts["changes_planned_to_hubspot"] > 0
    assert record.counts["changes_written_to_warp"] == record.counts["changes_planned_to_warp"] > 0
    assert record.counts["write_errors"] == 0 and record.counts["duplicate_bans"] == 1
    assert record.report["sections"] and record.finished_at is not None
    assert instance.get_run_by_id(run_id).tags["warp/dry-run"] == "false"

    # The UI: the report as Markdown metadata without names or values (Dagster's event log keeps everything
    # forever); the run row keeps them, HubSpot's markup escaped. Counts as numbers (charted).
    markdown = _report_markdown(result)
    assert "script" not in markdown and "Names and values are left out here" in markdown
    assert "| BAN | Field | Reason |" in markdown
    assert "<script>" not in record.report_markdown and "&lt;script&gt;" in record.report_markdown
    [materialization] = result.asset_materializations_for_node("reconciliation_report")
    assert isinstance(materialization.metadata["changes_written_to_warp"], dg.IntMetadataValue)
    # The plan's preview: ids, BAN, field and reason only.
    [plan] = result.asset_materializations_for_node("reconciliation_plan")
    preview = plan.metadata["preview"].value
    assert [c.name for c in preview.schema.columns] == ["kind", "customer_id", "ban", "company_id", "field", "action",
                                                         "reason"]
    assert preview.records and "script" not in str(preview.records)
    [pull] = result.asset_materializations_for_node("warp_customers")
    assert isinstance(pull.metadata["pulled_at"], dg.TimestampMetadataValue)
    assert "dagster/column_schema" in pull.metadata

    # The email: both parts, the summary first, HubSpot's markup escaped in the HTML.
    [message] = smtp_server.wait_for(1)
    assert re.fullmatch(r"\[warp-sync\] Reconciliation: 1 needs review, \d+ changes written, 0 errors - run \w{8}",
                        message["Subject"]), message["Subject"]
    assert SCRIPT_NAME not in message["Subject"]
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    assert SCRIPT_NAME in text  # plain text shows the value as it is
    # Customers by BAN and name, never by UUID, in what people read (the run row's JSON keeps the ids).
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    assert not uuid.search(text.replace(run_id, "")) and not uuid.search(html.replace(run_id, ""))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert text.index("SUMMARY") < text.index("Customers read from WARP") < text.index("CHANGES WRITTEN TO HUBSPOT")

    # The frames went through the Parquet IO manager with what the next steps need to know about them.
    stored = pd.read_parquet(tmp_path / "runs" / result.run_id / "assets" / "reconciliation_plan.parquet")
    assert {"pulled_at", "planned_at", "rules", "counts", "brake"} <= set(stored.attrs)
    assert stored.attrs["brake"]["records_compared"] == record.counts["pairs_compared"]
    # The typed results too: stored once as JSON, read back (as the report asset's annotated inputs were, which
    # Dagster type-checked) as the same type, losing nothing.
    stored_json = {node: json.loads((tmp_path / "runs" / result.run_id / "assets" / f"{node}.json").read_text())
                   for node in ("hubspot_writeback", "warp_writeback", "reconciliation_report")}
    loaded = {node: from_stored(value) for node, value in stored_json.items()}
    assert isinstance(loaded["hubspot_writeback"], WriteBackSummary) and loaded["hubspot_writeback"].side == "hubspot"
    assert isinstance(loaded["warp_writeback"], WriteBackSummary) and loaded["warp_writeback"].side == "warp"
    assert isinstance(loaded["reconciliation_report"], Report)
    assert {node: value.to_json() for node, value in loaded.items()} == stored_json
    assert loaded["reconciliation_report"].counts == record.counts
    assert loaded["hubspot_writeback"].applied == record.counts["changes_written_to_hubspot"]
    assert loaded["warp_writeback"].links.applied == record.counts["customers_linked_by_ban"] > 0

    checks = _checks(result)
    assert checks == {
        "hubspot_companies:unique_warp_ban": False,  # the demo has a duplicate
        "field_differences:every_customer_linked": False,  # and orphans
        "field_differences:drift_below_limit": True,
        "hubspot_writeback:without_errors": True,
        "warp_writeback:without_errors": True,
        "reconciliation_report:emailed": True,
    }


def test_every_check_passes_on_clean_data(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient,
    tmp_path: Path,
) -> None:
    seed_demo(engine, client=hubspot_client, seed_companies=sandbox.control.seed, customers=200, with_cases=False)
    result = _materialize(instance, _resources(database_url, sandbox, None, tmp_path))
    assert result.success
    assert set(_checks(result).values()) == {True} and len(_checks(result)) == 6
    [materialization] = result.asset_materializations_for_node("reconciliation_report")
    assert materialization.metadata["email"].value == "not configured"


def test_a_report_that_was_not_emailed_fails_its_check_and_leaves_the_run_green(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient,
    tmp_path: Path,
) -> None:
    seed_demo(engine, client=hubspot_client, seed_companies=sandbox.control.seed, customers=50, with_cases=False)
    resources = _resources(database_url, sandbox, None, tmp_path)
    # Nothing listens on port 1: the delivery fails.
    resources["email"] = EmailResource(host="127.0.0.1", port="1", starttls="false", recipients="ops@example.com",
                                       timeout_seconds="2")
    result = _materialize(instance, resources)
    assert result.success
    assert _checks(result)["reconciliation_report:emailed"] is False


def test_the_checks_fail_on_data_made_to_fail_them(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, demo: SeededDemo,
    tmp_path: Path,
) -> None:
    # A HubSpot write refused, a WARP write refused by the database, drift over a tiny limit.
    sandbox.control.configure(batch_write_errors="multi_status")  # the refusal reported per input (see test_writeback)
    sandbox.control.set_faults(validation={"property": "warp_status", "calls": 1, "code": "INVALID_OPTION"})
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE customers ADD CONSTRAINT test_no_net60 CHECK (payment_terms <> 'NET60') "
                             "NOT VALID"))
    settings = ReconciliationSettings(max_drift_share=0.001)
    result = _materialize(instance, _resources(database_url, sandbox, None, tmp_path, settings))
    assert result.success  # failed writes are in the summaries, not exceptions
    checks = _checks(result)
    assert checks.pop("reconciliation_report:emailed") is True  # email is not configured here
    assert set(checks.values()) == {False}
    warp = result.output_for_node("warp_writeback")
    [failed] = [r for r in warp.records if r.outcome == "failed"]
    assert failed.field == "payment_terms" and failed.code == "PG_23514"
    assert warp.applied == warp.planned - 1  # the other rows of the chunk landed
    hubspot = result.output_for_node("hubspot_writeback")
    refused = [r for r in hubspot.records if r.outcome == "failed"]
    assert refused and {(r.field, r.code) for r in refused} == {("status", "INVALID_OPTION")}
    record = runs.get_run(engine, result.run_id)
    assert record.counts["write_errors"] == len(refused) + 1
    assert any(f"{len(refused) + 1} writes failed" in alert for alert in record.report["alerts"])


def test_a_dry_run_is_recorded_and_says_so_and_changes_nothing(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, smtp_server: SmtpCatcher,
    demo: SeededDemo, tmp_path: Path,
) -> None:
    before = _snapshot(engine, sandbox)
    settings = ReconciliationSettings(dry_run=True)
    result = _materialize(instance, _resources(database_url, sandbox, smtp_server, tmp_path, settings))
    assert result.success
    assert _snapshot(engine, sandbox) == before
    record = runs.get_run(engine, result.run_id)
    assert record.status == "succeeded" and record.dry_run is True
    assert record.counts["changes_written_to_hubspot"] == 0 and record.counts["changes_planned_to_hubspot"] > 0
    assert instance.get_run_by_id(result.run_id).tags["warp/dry-run"] == "true"
    assert "Dry run" in _report_markdown(result)
    [message] = smtp_server.wait_for(1)
    assert "(dry run)" in message["Subject"]


def test_a_run_tagged_as_a_dry_run_is_one_whatever_its_config(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, demo: SeededDemo,
    tmp_path: Path,
) -> None:
    before = _snapshot(engine, sandbox)
    result = _materialize(instance, _resources(database_url, sandbox, None, tmp_path), **{"warp/dry-run": "true"})
    assert result.success and _snapshot(engine, sandbox) == before
    assert runs.get_run(engine, result.run_id).dry_run is True


def test_the_brake_alerts_in_the_report_and_the_email(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, smtp_server: SmtpCatcher,
    demo: SeededDemo, tmp_path: Path,
) -> None:
    before = _snapshot(engine, sandbox)
    settings = ReconciliationSettings(max_change_share=0.001)
    result = _materialize(instance, _resources(database_url, sandbox, smtp_server, tmp_path, settings))
    assert result.success and _snapshot(engine, sandbox) == before
    record = runs.get_run(engine, result.run_id)
    assert len(record.report["alerts"]) == 1 and "brake" in record.report["alerts"][0]
    [message] = smtp_server.wait_for(1)
    assert ", none written, 0 errors - run " in message["Subject"]  # the brake: planned, not written
    assert "brake stopped the write-back" in message.get_body(preferencelist=("plain",)).get_content()


def test_a_mapping_changed_between_the_two_pulls_stops_the_diff(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, demo: SeededDemo,
    tmp_path: Path,
) -> None:
    # The WARP pull runs under one mapping, the HubSpot pull under another: the frames describe different fields,
    # and the diff refuses them rather than compare them (issue 14).
    resources = _resources(database_url, sandbox, None, tmp_path)
    first = dg.materialize(RECONCILIATION_ASSETS, selection=["reconciliation_scope", "warp_customers"], resources=resources,
                           instance=instance, tags={"warp/flow": "reconciliation"}, raise_on_error=False)
    assert first.success
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'HUBSPOT_WINS' "
                             "WHERE warp_field = 'company_name'"))
    second = dg.materialize(RECONCILIATION_ASSETS, selection=["hubspot_companies", "field_differences"],
                            resources=resources, instance=instance, tags={"warp/flow": "reconciliation"},
                            raise_on_error=False)
    assert not second.success
    [failure] = [e for e in second.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "RULES_CHANGED_MID_RUN" in failure.step_failure_data.error.message


def test_a_run_under_a_rule_draft_is_a_dry_run_that_compares_both_plans_on_one_pull(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, smtp_server: SmtpCatcher,
    demo: SeededDemo, tmp_path: Path,
) -> None:
    from warp_sync_pipeline.core.rule_drafts import create_draft, preview_of_run, set_rule

    create_draft(engine, "email-warp-wins", "ana")
    # The demo's contact_email is MANUAL: under WARP_WINS its conflicts become writes to HubSpot.
    set_rule(engine, "email-warp-wins", "contact_email", strategy="WARP_WINS")
    before = _snapshot(engine, sandbox)
    settings = ReconciliationSettings(rule_draft="email-warp-wins")  # no dry_run: the draft makes it one
    result = _materialize(instance, _resources(database_url, sandbox, smtp_server, tmp_path, settings))
    assert result.success
    assert _snapshot(engine, sandbox) == before  # nothing written, whatever the config said
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags["warp/dry-run"] == "true" and tags["warp/rule-draft"] == "email-warp-wins"

    stored = preview_of_run(engine, result.run_id)
    email_field = stored.summary["fields"]["contact_email"]
    live_conflicts = email_field["live"]["conflicts"]
    assert live_conflicts > 0 and email_field["draft"]["conflicts"] == 0
    assert email_field["draft"]["to_hubspot"] == email_field["live"]["to_hubspot"] + live_conflicts
    moved = [r for r in stored.summary["records"] if r["field"] == "contact_email"]
    assert len(moved) == live_conflicts and {(r["live"], r["draft"]) for r in moved} == {
        ("OPEN_CONFLICT", "WRITE_TO_HUBSPOT")}
    # Other fields are treated alike by both rule sets.
    assert stored.summary["records_total"] == live_conflicts

    [preview] = result.asset_materializations_for_node("rule_draft_preview")
    markdown = preview.metadata["preview"].value
    assert "contact_email: strategy MANUAL -> WARP_WINS" in markdown
    assert "@" not in markdown  # counts only in Dagster's event log: no values
    [message] = smtp_server.wait_for(1)
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "RECORDS RULE DRAFT EMAIL-WARP-WINS WOULD TREAT DIFFERENTLY" in text
    assert "a conflict for a person" in text and "written to HubSpot: " in text


def test_an_incremental_run_reconciles_what_moved_and_moves_the_watermark_only_when_it_may(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, demo: SeededDemo,
    tmp_path: Path,
) -> None:
    from warp_sync_pipeline.core.reconcile.incremental import read_watermark

    def materialize(**settings: Any) -> dg.ExecuteInProcessResult:
        result = _materialize(instance, _resources(database_url, sandbox, None, tmp_path,
                                                   ReconciliationSettings(**settings)))
        assert result.success
        return result

    # No good run yet: asked for incremental, the run sweeps in full, and starts the watermark.
    first = materialize(mode="incremental", allow_mass_write=True)
    assert instance.get_run_by_id(first.run_id).tags["warp/reconcile-mode"] == "full"
    assert read_watermark(engine).run_id == first.run_id
    with engine.begin() as conn:
        customer, company, limit = conn.execute(sa.text(
            "UPDATE customers SET credit_limit = credit_limit + 1 WHERE id = (SELECT id FROM customers "
            "WHERE hubspot_link_status = 'linked' ORDER BY ban LIMIT 1) "
            "RETURNING id::text, external_ids ->> 'hubspot_company_id', credit_limit")).one()

    second = materialize(mode="incremental")
    assert instance.get_run_by_id(second.run_id).tags["warp/reconcile-mode"] == "incremental"
    record = runs.get_run(engine, second.run_id)
    assert record.mode == "incremental" and record.counts["customers_pulled"] < DEMO_CUSTOMERS // 10
    assert record.counts["changes_written_to_hubspot"] >= 1
    assert any(note.startswith("An incremental run: it reconciled the ") for note in record.report["notes"])
    company_now = next(c for c in sandbox.control.all_companies() if c["id"] == company)
    assert Decimal(company_now["properties"]["warp_credit_limit"]) == limit
    assert read_watermark(engine).run_id == second.run_id
    # Each step says what it cost in HubSpot requests, by kind, and together they are what HubSpot received.
    cost = {node: _metadata(second, node)["hubspot_requests_by_kind"].value
            for node in ("reconciliation_scope", "hubspot_companies", "hubspot_property_history", "hubspot_writeback")}
    assert {kind.rsplit("/", 1)[-1] for kind in cost["reconciliation_scope"]} == {"search"}
    assert {kind.rsplit("/", 1)[-1] for kind in cost["hubspot_companies"]} == {"read"}  # counterparts, 100 a call
    assert any(kind.endswith("batch/update") for kind in cost["hubspot_writeback"])

    # A dry run reconciles nothing for good: the watermark stays where the last real run left it.
    materialize(mode="incremental", dry_run=True)
    assert read_watermark(engine).run_id == second.run_id
    # A change of the rules makes the next run a full sweep.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'company_name'"))
    assert read_watermark(engine) is None
    third = materialize(mode="incremental", allow_mass_write=True)
    assert runs.get_run(engine, third.run_id).mode == "full"


def test_the_schedule_sweeps_in_full_on_its_weekday_and_incrementally_otherwise() -> None:
    from datetime import datetime

    from warp_sync_pipeline.defs.reconciliation import nightly_mode

    sunday, monday = datetime(2026, 12, 6, 2), datetime(2026, 12, 7, 2)
    assert (nightly_mode(sunday), nightly_mode(monday)) == ("full", "incremental")  # the default sweep day: 6


def test_a_full_sweep_by_export_reconciles_as_the_list_does_and_falls_back_to_the_list_when_it_fails(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, sandbox: Any, demo: SeededDemo,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def dry_run(source: str) -> tuple[dict[str, Any], dict[str, int]]:
        monkeypatch.setenv("WARP_RECONCILE_SWEEP_SOURCE", source)
        result = _materialize(instance, _resources(database_url, sandbox, None, tmp_path,
                                                   ReconciliationSettings(dry_run=True)))
        assert result.success
        return _metadata(result, "hubspot_companies"), runs.get_run(engine, result.run_id).counts

    monkeypatch.setenv("WARP_RECONCILE_EXPORT_POLL_SECONDS", "0.01")
    sandbox.control.configure(export_status_polls=1)
    by_export, export_counts = dry_run("export")
    assert by_export["source"].value == "export"
    assert by_export["hubspot_requests"].value == 3  # start, one PENDING, COMPLETE
    by_list, list_counts = dry_run("list")
    assert by_list["source"].value == "list API"
    assert by_list["hubspot_requests"].value >= DEMO_CUSTOMERS // 100
    assert export_counts == list_counts
    # An export HubSpot will not start (a 503 past every retry): the sweep reads the list API and says why.
    sandbox.control.set_faults(outage={"calls": 10, "endpoint": "POST /crm/v3/exports/export/async"})
    fell_back, fallback_counts = dry_run("export")
    assert fell_back["source"].value.startswith("list API (the export failed: ")
    assert fallback_counts == list_counts
