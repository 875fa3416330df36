"""Property changes through the field rules: the original note's cases in HubSpot's real payload format."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
import sqlalchemy as sa

from tests.plugins.inbound import (
    at,
    customer_row,
    event_rows,
    field_state,
    ms,
    queue_rows,
    reason_codes,
    set_agreed,
    sync_log,
)
from tests.plugins.signing import property_change


def test_credit_limit_raised_in_hubspot_lands_in_warp(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    # The original note: a sales rep raises credit_limit 5000 -> 10000 in HubSpot.
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("5000"))
    set_agreed(engine, customer, "credit_limit", "5000.00", at(8))
    store([property_change(company, "warp_credit_limit", "10000", occurredAt=ms(at(9, 5)))])

    summary = process()

    assert customer_row(engine, customer)["credit_limit"] == Decimal("10000.00")
    assert (summary.processed, summary.ignored, summary.failed) == (1, 0, 0)
    [event] = event_rows(engine)
    assert event["status"] == "processed" and event["lease_token"] is None
    assert event["result"]["action"] == "WRITE_TO_WARP"
    [entry] = sync_log(engine, customer)
    assert (entry["warp_field"], entry["hubspot_property"], entry["direction"]) == (
        "credit_limit", "warp_credit_limit", "HUBSPOT_TO_WARP")
    assert (entry["old_value"], entry["new_value"], entry["outcome"]) == ("5000.00", "10000.00", "applied")
    assert entry["reason"] == "ONLY_HUBSPOT_CHANGED" and entry["dagster_run_id"] == "test-run"
    state = field_state(engine, customer, "credit_limit")
    assert (state["agreed_value"], state["warp_value"], state["hubspot_value"]) == ("10000.00",) * 3
    assert state["hubspot_changed_at"] == at(9, 5)
    # Applied with the no-echo marker: nothing is queued back to HubSpot.
    assert queue_rows(engine, customer) == []


@pytest.mark.parametrize("warp_minute", [0, 10])
def test_credit_limit_conflict_goes_to_hubspot_whatever_the_times(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable,
    warp_minute: int,
) -> None:
    # Both sides moved from 5000: the rule (HUBSPOT_WINS) decides, not the clock.
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("7500"))
    set_agreed(engine, customer, "credit_limit", "5000.00", at(8), warp=("7500.00", at(9, warp_minute)))
    store([property_change(company, "warp_credit_limit", "10000", occurredAt=ms(at(9, 5)))])

    process()

    assert customer_row(engine, customer)["credit_limit"] == Decimal("10000.00")
    [entry] = sync_log(engine, customer)
    assert (entry["reason"], entry["old_value"], entry["new_value"]) == ("CONFLICT_HUBSPOT_WINS", "7500.00", "10000.00")
    assert queue_rows(engine, customer) == []


def test_company_name_conflict_latest_wins_gives_hubspots_newer_value_and_logs_the_conflict(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    # 9:00 a user renames the customer in WARP; 9:05 a sales rep renames the company in HubSpot.
    company = new_company_id()
    customer = make_customer("Acme Corporation", company_id=company)
    set_agreed(engine, customer, "company_name", "Acme", at(8), warp=("Acme Corporation", at(9, 0)))
    store([property_change(company, "name", "Acme Corp Inc", occurredAt=ms(at(9, 5)))])

    process()

    assert customer_row(engine, customer)["company_name"] == "Acme Corp Inc"
    [entry] = sync_log(engine, customer)
    assert entry["reason"] == "CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE"
    assert (entry["action"], entry["old_value"], entry["new_value"]) == (
        "WRITE_TO_WARP", "Acme Corporation", "Acme Corp Inc")
    assert queue_rows(engine, customer) == []


def test_company_name_conflict_with_warp_newer_queues_warps_value(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer("Acme Corporation", company_id=company)
    set_agreed(engine, customer, "company_name", "Acme", at(8), warp=("Acme Corporation", at(9, 10)))
    store([property_change(company, "name", "Acme Corp Inc", occurredAt=ms(at(9, 5)))])

    process()

    assert customer_row(engine, customer)["company_name"] == "Acme Corporation"
    [entry] = sync_log(engine, customer)
    assert (entry["reason"], entry["direction"]) == ("CONFLICT_LATEST_WINS_WARP_NEWER", "WARP_TO_HUBSPOT")
    [queued] = queue_rows(engine, customer)
    assert queued["status"] == "pending" and queued["fields"] == ["company_name"]
    assert field_state(engine, customer, "company_name")["hubspot_value"] == "Acme Corp Inc"


@pytest.mark.parametrize(
    ("hubspot_property", "warp_field", "hubspot_value", "warp_value"),
    [("warp_status", "status", "SUSPENDED", "ACTIVE"), ("warp_ban", "ban", "ZT-999999999", None)],
)
def test_a_hubspot_edit_of_a_warp_owned_field_is_reverted(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable,
    hubspot_property: str, warp_field: str, hubspot_value: str, warp_value: str | None,
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company)
    before = customer_row(engine, customer)
    set_agreed(engine, customer, warp_field, warp_value or before[warp_field], at(8))
    store([property_change(company, hubspot_property, hubspot_value, occurredAt=ms(at(9)))])

    summary = process()

    after = customer_row(engine, customer)
    assert after[warp_field] == before[warp_field] and after["updated_at"] == before["updated_at"]
    [entry] = sync_log(engine, customer)
    assert (entry["reason"], entry["action"], entry["direction"]) == (
        "HUBSPOT_DRIFT_REVERTED", "WRITE_TO_HUBSPOT", "WARP_TO_HUBSPOT")
    assert (entry["old_value"], entry["new_value"]) == (hubspot_value, before[warp_field])
    assert entry["details"]["queued"] is True
    # WARP's value goes back out through the outbox.
    [queued] = queue_rows(engine, customer)
    assert (queued["fields"], queued["reasons"], queued["status"]) == ([warp_field], ["drift_revert"], "pending")
    assert summary.actions["WRITE_TO_HUBSPOT"] == 1 and summary.reasons["HUBSPOT_DRIFT_REVERTED"] == 1
    assert field_state(engine, customer, warp_field)["hubspot_value"] == hubspot_value


def test_payment_terms_flow_in_from_hubspot(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    store([property_change(company, "warp_payment_terms", "NET45", occurredAt=ms(at(9)))])

    process()

    assert customer_row(engine, customer)["payment_terms"] == "NET45"
    [entry] = sync_log(engine, customer)
    assert (entry["reason"], entry["old_value"], entry["new_value"]) == ("ONE_WAY_FROM_HUBSPOT", "NET30", "NET45")


def test_a_manual_rule_opens_one_review_row_and_writes_nothing(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'contact_email'"))
    company = new_company_id()
    customer = make_customer(company_id=company, contact_email="b@acme.example")
    set_agreed(engine, customer, "contact_email", "a@acme.example", at(8), warp=("b@acme.example", at(9)))
    store([property_change(company, "warp_contact_email", "c@acme.example", occurredAt=ms(at(9, 5)))])

    process()

    assert customer_row(engine, customer)["contact_email"] == "b@acme.example"
    assert queue_rows(engine, customer) == []
    with engine.connect() as conn:
        [conflict] = conn.execute(sa.text("SELECT * FROM hubspot_conflicts WHERE customer_id = :id"),
                                  {"id": customer}).mappings().all()
    assert (conflict["status"], conflict["reason"], conflict["detected_by"]) == (
        "open", "CONFLICT_MANUAL_REVIEW", "webhook")
    assert (conflict["agreed_value"], conflict["warp_value"], conflict["hubspot_value"]) == (
        "a@acme.example", "b@acme.example", "c@acme.example")
    [entry] = sync_log(engine, customer)
    assert (entry["outcome"], entry["details"]["conflict_id"]) == ("conflict", conflict["id"])

    # A later edit updates the same review row; HubSpot coming round to WARP's value settles it.
    store([property_change(company, "warp_contact_email", "d@acme.example", occurredAt=ms(at(9, 6)))])
    process()
    store([property_change(company, "warp_contact_email", "B@acme.example", occurredAt=ms(at(9, 7)))])
    process()
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT status, hubspot_value, version, detection_count FROM hubspot_conflicts "
                                    "WHERE customer_id = :id"), {"id": customer}).all()
    assert [tuple(r) for r in rows] == [("superseded", "d@acme.example", 3, 2)]
    assert customer_row(engine, customer)["contact_email"] == "b@acme.example"
    assert field_state(engine, customer, "contact_email")["agreed_value"] == "b@acme.example"


def test_events_that_cannot_be_applied_are_ignored_with_their_reason(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("5000"))
    set_agreed(engine, customer, "company_name", "Acme Telecom", at(8))
    before = customer_row(engine, customer)
    store([
        property_change(company, "domain", "acme.example", occurredAt=ms(at(9, 1))),
        property_change(new_company_id(), "warp_credit_limit", "1", occurredAt=ms(at(9, 2))),
        property_change(company, "warp_credit_limit", "12.345", occurredAt=ms(at(9, 3))),
        property_change(company, "name", "   ", occurredAt=ms(at(9, 4))),
    ])

    summary = process()

    assert reason_codes(engine) == ["UNMAPPED_PROPERTY", "UNKNOWN_COMPANY", "INVALID_VALUE", "INVALID_VALUE"]
    assert [e["status"] for e in event_rows(engine)] == ["ignored"] * 4
    assert (summary.ignored, summary.processed, summary.failed) == (4, 0, 0)
    assert customer_row(engine, customer) == before
    entries = sync_log(engine, customer)
    assert [(e["warp_field"], e["outcome"], e["error_code"]) for e in entries] == [
        ("credit_limit", "skipped", "AMOUNT_TOO_PRECISE"), ("company_name", "skipped", "VALUE_REQUIRED")]
    assert "AMOUNT_TOO_PRECISE" in event_rows(engine)[2]["reason"]
