"""Write-backs against the real database and the sandbox: both sides agree afterwards, a second run changes
nothing, edits made after the pull survive, the dry run and the brake write nothing, the global switch."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from tests.plugins.reconcile import plan_only, rules_of, run_flow
from warp_sync_pipeline.core.decision import Action
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable
from warp_sync_pipeline.core.reconcile import ReconcileOptions, write_to_hubspot, write_to_warp
from warp_sync_pipeline.core.reconcile.frames import BAN, CHANGE, KIND
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD
from warp_sync_pipeline.core.reconcile.writeback import APPLIED, HUBSPOT_CHANGED, SKIPPED, WARP_CHANGED
from warp_sync_pipeline.devstack.demo_seed import SCRIPT_NAME, SeededDemo


def _comparable(field: str, value: object) -> str | None:
    try:
        return comparable(field, value)
    except InvalidFieldValue:
        return None


def side_by_side(engine: sa.Engine, sandbox: Any) -> dict[str, dict[str, tuple[str | None, str | None]]]:
    """For every linked customer: field -> (WARP's comparable value, HubSpot's), read independently of the
    reconciliation code (rows from SQL, companies from the sandbox's own listing, the scalar normaliser)."""
    rules = rules_of(engine)
    companies = {c["id"]: c for c in sandbox.control.all_companies() if not c.get("archived")}
    out: dict[str, dict[str, tuple[str | None, str | None]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT *, external_ids ->> 'hubspot_company_id' AS company_id FROM customers "
            "WHERE hubspot_link_status = 'linked'")).mappings().all()
    for row in rows:
        company = companies.get(row.company_id)
        if company is None:
            continue
        out[row.ban] = {
            field: (_comparable(field, row[field]), _comparable(field, company["properties"].get(rule.hubspot_property)))
            for field, rule in rules.items()
        }
    return out


def differing(view: dict[str, dict[str, tuple[str | None, str | None]]]) -> set[tuple[str, str]]:
    return {(ban, field) for ban, fields in view.items() for field, (w, h) in fields.items() if w is None or w != h}


def test_after_a_run_both_sides_agree_except_open_manual_conflicts_and_a_second_run_changes_nothing(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    before = differing(side_by_side(engine, sandbox))
    first = run_flow(engine, hubspot_client)
    assert first.hubspot_summary.failed == 0 and first.warp_summary.errors == 0
    expected = {(r.ban, r.field) for r in demo.data.expected_changes if r.action in (Action.WRITE_TO_HUBSPOT.value,
                                                                                   Action.WRITE_TO_WARP.value)}
    assert {(r.ban, r.field) for r in first.hubspot_summary.records + first.warp_summary.records
            if r.outcome == APPLIED} == expected

    still = differing(side_by_side(engine, sandbox))
    left_alone = {(r.ban, r.field) for r in demo.data.expected_changes
                  if r.action in (Action.OPEN_CONFLICT.value, Action.SKIP_INVALID.value)}
    assert still == left_alone  # the MANUAL conflict waits for a person; the invalid value is reported
    assert still < before
    # Agreements are counted in the report, not audited one by one (a first night would hold customers x fields).
    assert first.warp_summary.agreements_recorded > 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_log WHERE trigger = 'reconciliation' "
                                    "AND outcome = 'in_sync'")).scalar_one() == 0
    with engine.connect() as conn:
        open_conflicts = conn.execute(sa.text(
            "SELECT c.ban, k.warp_field FROM hubspot_conflicts k JOIN customers c ON c.id = k.customer_id "
            "WHERE k.status = 'open'")).all()
    manual = {(r.ban, r.field) for r in demo.data.expected_changes if r.action == Action.OPEN_CONFLICT.value}
    assert set(map(tuple, open_conflicts)) == manual

    # The markup HubSpot held is now WARP's company name, stored as text.
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM customers WHERE company_name = :n"),
                            {"n": SCRIPT_NAME}).scalar_one() == 1

    sandbox.control.reset_counters()
    second = run_flow(engine, hubspot_client, run_id="second-run")
    changes = second.plan[second.plan[KIND] == CHANGE]
    assert set(changes[ACTION]) <= {Action.OPEN_CONFLICT.value, Action.SKIP_INVALID.value}
    assert second.hubspot_summary.planned == 0 and second.warp_summary.planned == 0
    counters = sandbox.control.counters()["by_endpoint"]
    assert not any("batch/update" in endpoint for endpoint in counters)
    assert differing(side_by_side(engine, sandbox)) == left_alone
    # The second detection updated the open conflict instead of opening another.
    assert second.warp_summary.conflicts_opened == 0
    assert second.warp_summary.conflicts_updated == len(manual)


def _snapshot(engine: sa.Engine, sandbox: Any) -> tuple[object, ...]:
    with engine.connect() as conn:
        tables = tuple(
            conn.execute(sa.text(f"SELECT to_jsonb(t)::text FROM {table} t ORDER BY 1")).scalars().all()
            for table in ("customers", "hubspot_field_state", "hubspot_conflicts", "hubspot_write_ledger")
        )
    return (*tables, sandbox.control.all_companies(include_history=True))


def _row(plan: Any, action: str, field: str) -> dict[str, Any]:
    rows = plan[(plan[KIND] == CHANGE) & (plan[ACTION] == action) & (plan[FIELD] == field)]
    assert len(rows), f"the demo plan has no {action} for {field}"
    return rows.iloc[0].to_dict()


def test_edits_made_after_the_pull_survive_and_are_reported_as_skipped(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    run = plan_only(engine, hubspot_client)
    rules = rules_of(engine)
    to_warp = _row(run.plan, Action.WRITE_TO_WARP.value, "payment_terms")
    to_hubspot = _row(run.plan, Action.WRITE_TO_HUBSPOT.value, "status")
    warp_moved = _row(run.plan, Action.WRITE_TO_HUBSPOT.value, "credit_limit")
    # Between the pull and the write-back: a PATCH in WARP, a rep in HubSpot, another WARP change.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET payment_terms = 'NET45' WHERE id = :id"),
                     {"id": to_warp["customer_id"]})
        conn.execute(sa.text("UPDATE customers SET credit_limit = 99999.99 WHERE id = :id"),
                     {"id": warp_moved["customer_id"]})
    sandbox.control.rep_edit(to_hubspot["company_id"], {"warp_status": "CLOSED"})

    options = ReconcileOptions()
    hub = write_to_hubspot(run.plan, client=hubspot_client, engine=engine, rules=rules, options=options,
                           run_id="r", enabled=True)
    warp = write_to_warp(run.plan, engine=engine, rules=rules, options=options, run_id="r", enabled=True)

    def outcome(summary: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
        [record] = [r for r in summary.records if r.ban == row[BAN] and r.field == row[FIELD]]
        return record

    assert (outcome(warp, to_warp).outcome, outcome(warp, to_warp).code) == (SKIPPED, WARP_CHANGED)
    assert (outcome(hub, to_hubspot).outcome, outcome(hub, to_hubspot).code) == (SKIPPED, HUBSPOT_CHANGED)
    assert (outcome(hub, warp_moved).outcome, outcome(hub, warp_moved).code) == (SKIPPED, WARP_CHANGED)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT payment_terms FROM customers WHERE id = :id"),
                            {"id": to_warp["customer_id"]}).scalar_one() == "NET45"
    companies = {c["id"]: c for c in sandbox.control.all_companies()}
    assert companies[to_hubspot["company_id"]]["properties"]["warp_status"] == "CLOSED"
    assert companies[warp_moved["company_id"]]["properties"]["warp_credit_limit"] == warp_moved["hubspot_raw"]
    # Everything else was written.
    assert hub.failed == warp.failed == 0
    assert hub.applied == hub.planned - 2 and warp.applied == warp.planned - 1


def test_a_dry_run_changes_nothing_on_either_side(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    before = _snapshot(engine, sandbox)
    run = run_flow(engine, hubspot_client, ReconcileOptions(dry_run=True))
    assert _snapshot(engine, sandbox) == before
    for summary in (run.hubspot_summary, run.warp_summary):
        assert summary.status == "dry_run"
        assert summary.planned > 0 and {r.outcome for r in summary.records} == {"dry_run"}
    assert run.warp_summary.conflicts.records and run.warp_summary.conflicts_opened == 0


def test_the_brake_stops_a_plan_that_would_change_too_much(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    before = _snapshot(engine, sandbox)
    run = run_flow(engine, hubspot_client, ReconcileOptions(max_change_share=0.005))
    assert _snapshot(engine, sandbox) == before
    for summary in (run.hubspot_summary, run.warp_summary):
        assert summary.status == "braked"
        assert "brake" in summary.reason and "0.5%" in summary.reason
        assert {r.outcome for r in summary.records} == {"not_written"}

    allowed = run_flow(engine, hubspot_client, ReconcileOptions(max_change_share=0.005, allow_mass_write=True))
    assert allowed.hubspot_summary.status == "written" and allowed.hubspot_summary.applied > 0
    assert allowed.warp_summary.applied > 0


def test_the_global_switch_turns_write_backs_off(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    before = _snapshot(engine, sandbox)
    run = run_flow(engine, hubspot_client, enabled=False)
    assert _snapshot(engine, sandbox) == before
    assert run.hubspot_summary.status == run.warp_summary.status == "disabled"
    assert "WARP_WRITEBACK_ENABLED" in run.hubspot_summary.reason


def test_a_plan_older_than_allowed_is_refused(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    run = plan_only(engine, hubspot_client)
    run.plan.attrs["pulled_at"] = "2020-01-01T00:00:00+00:00"
    before = _snapshot(engine, sandbox)
    rules = rules_of(engine)
    hub = write_to_hubspot(run.plan, client=hubspot_client, engine=engine, rules=rules,
                           options=ReconcileOptions(max_plan_age_hours=3), run_id="r", enabled=True)
    warp = write_to_warp(run.plan, engine=engine, rules=rules, options=ReconcileOptions(max_plan_age_hours=3),
                         run_id="r", enabled=True)
    assert hub.status == warp.status == "stale_plan"
    assert "3 hours" in hub.reason
    del run.plan.attrs["pulled_at"]  # a plan that does not say how old it is counts as too old
    assert write_to_warp(run.plan, engine=engine, rules=rules, options=ReconcileOptions(), run_id="r",
                         enabled=True).status == "stale_plan"
    assert _snapshot(engine, sandbox) == before


def test_warp_writes_carry_the_no_echo_marker_and_hubspot_writes_are_in_the_ledger_first(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    # A trigger of the test's own records what each customers UPDATE saw of the marker.
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE seen_origin (customer_id uuid, origin text)"))
        conn.execute(sa.text(
            "CREATE FUNCTION record_origin() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO seen_origin VALUES (NEW.id, current_setting('warp_sync.origin', true)); RETURN NEW; END $$"))
        conn.execute(sa.text("CREATE TRIGGER record_origin AFTER UPDATE ON customers FOR EACH ROW "
                             "EXECUTE FUNCTION record_origin()"))
    run = run_flow(engine, hubspot_client)
    with engine.connect() as conn:
        origins = conn.execute(sa.text("SELECT DISTINCT origin FROM seen_origin")).scalars().all()
        updated = conn.execute(sa.text("SELECT count(DISTINCT customer_id) FROM seen_origin")).scalar_one()
        ledger = conn.execute(sa.text(
            "SELECT company_id, hubspot_property, value, status FROM hubspot_write_ledger")).all()
    assert origins == ["hubspot"]
    assert updated == len({r.customer_id for r in run.warp_summary.records if r.outcome == APPLIED}
                          | {r.customer_id for r in run.warp_summary.links.records
                             if r.outcome == APPLIED})
    applied = [r for r in run.hubspot_summary.records if r.outcome == APPLIED]
    assert {(c, p) for c, p, _, _ in ledger} == {(r.company_id, r.hubspot_property) for r in applied}
    assert {status for *_, status in ledger} == {"pending"}  # awaiting their webhook echo
    rules = rules_of(engine)
    for company_id, prop, value, _ in ledger:
        [record] = [r for r in applied if (r.company_id, r.hubspot_property) == (company_id, prop)]
        assert value == comparable(rules.warp_field(prop), record.new)


def test_a_refused_hubspot_write_is_a_failed_record_and_its_ledger_entry_is_voided(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    # One write refused, reported per input (the forced refusal takes one call: a whole-batch answer would be
    # bisected into calls that pass; test_companies covers bisecting).
    sandbox.control.configure(batch_write_errors="multi_status")
    sandbox.control.set_faults(validation={"property": "warp_current_balance", "calls": 1, "code": "INVALID_NUMBER"})
    run = run_flow(engine, hubspot_client)
    failed = [r for r in run.hubspot_summary.records if r.outcome == "failed"]
    assert [(r.field, r.code) for r in failed] == [("current_balance", "INVALID_NUMBER")]
    assert run.hubspot_summary.errors == 1
    assert run.hubspot_summary.applied == run.hubspot_summary.planned - 1
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text(
            "SELECT hubspot_property, status FROM hubspot_write_ledger WHERE hubspot_property = 'warp_current_balance'"
        )).all())
        logged = conn.execute(sa.text(
            "SELECT outcome, error_code FROM hubspot_sync_log WHERE warp_field = 'current_balance' "
            "AND trigger = 'reconciliation'")).all()
    assert statuses == {"warp_current_balance": "voided"}
    assert ("failed", "INVALID_NUMBER") in [tuple(r) for r in logged]


@pytest.mark.parametrize("value, enabled", [("", True), ("false", False), ("0", False), ("true", True)])
def test_the_switch_reads_warp_writeback_enabled(value: str, enabled: bool) -> None:
    from warp_sync_pipeline.core.reconcile import writeback_enabled

    assert writeback_enabled({"WARP_WRITEBACK_ENABLED": value}) is enabled


def test_hubspot_calls_stay_within_pages_history_and_two_per_hundred_writes(
    engine: sa.Engine, sandbox: Any, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    import math

    sandbox.control.reset_counters()
    run = run_flow(engine, hubspot_client)
    calls = sandbox.control.counters()
    n = len(run.hubspot)
    d = len(set(run.history.company_id))
    w = len({r.company_id for r in run.hubspot_summary.records})
    assert d > 0 and w > 0
    budget = math.ceil(n / 100) + math.ceil(d / 50) + 2 * math.ceil(w / 100)
    assert calls["total"] <= budget, calls["by_endpoint"]


def test_conflicts_the_nightly_opens_carry_both_sides_change_times(
    engine: sa.Engine, hubspot_client: HubSpotClient, demo: SeededDemo
) -> None:
    run_flow(engine, hubspot_client)
    with engine.connect() as conn:
        opened = conn.execute(sa.text(
            "SELECT warp_field, warp_changed_at, hubspot_changed_at FROM hubspot_conflicts "
            "WHERE detected_by = 'reconciliation'")).all()
    assert opened, "the demo has MANUAL conflicts"
    # The review page says when each side changed (the pull reads MANUAL fields' times as LATEST_WINS ones).
    assert all(row.warp_changed_at is not None and row.hubspot_changed_at is not None for row in opened), opened
