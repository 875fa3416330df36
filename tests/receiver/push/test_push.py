"""POST /v1/sync/customers/{id}: the manual push, through the receiver, against the sandbox over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import sqlalchemy as sa
from werkzeug.test import TestResponse

from tests.plugins.outbound import (
    Receiver,
    api_calls,
    company_values,
    fast_drain,
    live_companies,
    queue_rows,
)
from tests.receiver.push.conftest import AUTH
from warp_sync_pipeline.core.auth import issue
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.leases import acquire_customer, release_customer
from warp_sync_pipeline.core.normalize import comparable
from warp_sync_pipeline.core.outbound import drain_queue
from warp_sync_pipeline.core.pauses import PauseCause, open_pauses

BATCH_UPDATE = "POST /crm/v3/objects/companies/batch/update"
BATCH_READ = "POST /crm/v3/objects/companies/batch/read"
OUTBOUND = ["ban", "company_name", "contact_email", "credit_limit", "current_balance", "services", "status"]


def push(receiver: Receiver, customer: object, headers: dict[str, str] | None = None) -> TestResponse:
    return receiver.client.post(f"/v1/sync/customers/{customer}", headers=AUTH if headers is None else headers)


def outcomes(fields: list[dict[str, Any]]) -> dict[str, tuple[str, str | None]]:
    return {f["field"]: (f["outcome"], f["reason"]) for f in fields}


def _update(engine: sa.Engine, customer: UUID, sql_set: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE customers SET {sql_set} WHERE id = :id"), {"id": customer})


def _rows(engine: sa.Engine, sql: str, **params: object) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def _audit(engine: sa.Engine, customer: UUID) -> list[dict[str, Any]]:
    return _rows(engine, "SELECT * FROM hubspot_sync_log WHERE customer_id = :c ORDER BY id", c=customer)


def test_a_push_sends_every_outbound_field_and_decides_a_two_way_field_hubspot_moved(
    engine: sa.Engine, sandbox, push_receiver: Receiver, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {"warp_credit_limit": "2500"})  # two-way, HubSpot moved since agreed
    _update(engine, customer, "current_balance = 42.5")  # queued by the trigger; the push takes it
    sandbox.control.reset_counters()

    response = push(push_receiver, customer)

    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert (data["customer_id"], data["hubspot_company_id"]) == (str(customer), company)
    assert outcomes(data["fields"]) == {
        "ban": ("sent", "ONE_WAY_FROM_WARP"),
        "company_name": ("in_sync", "EQUAL"),
        "status": ("sent", "ONE_WAY_FROM_WARP"),
        "credit_limit": ("warp_updated", "ONLY_HUBSPOT_CHANGED"),
        "current_balance": ("sent", "ONE_WAY_FROM_WARP"),
        "services": ("sent", "ONE_WAY_FROM_WARP"),
        "contact_email": ("in_sync", "EQUAL"),
    }  # payment_terms flows HubSpot -> WARP only: not pushed
    assert (api_calls(sandbox, BATCH_READ), api_calls(sandbox, BATCH_UPDATE)) == (1, 1)
    props = company_values(sandbox, company)
    assert comparable("current_balance", props["warp_current_balance"]) == "42.50"
    assert comparable("credit_limit", props["warp_credit_limit"]) == "2500.00"  # the rep's value was not overwritten
    (warp,) = _rows(engine, "SELECT credit_limit FROM customers WHERE id = :c", c=customer)
    assert str(warp["credit_limit"]) == "2500.00"
    # The trigger's row was merged into the push's claim and finished; WARP's write was not queued back.
    assert [r["status"] for r in queue_rows(engine, customer)] == ["done"]
    assert not _rows(engine, "SELECT * FROM hubspot_customer_leases")
    audit = _audit(engine, customer)
    assert {(r["trigger"], r["actor"]) for r in audit} == {("manual", "bootstrap")}
    assert {r["warp_field"]: r["outcome"] for r in audit} == {
        "ban": "applied", "company_name": "in_sync", "status": "applied", "credit_limit": "applied",
        "current_balance": "applied", "services": "applied", "contact_email": "in_sync"}
    ledger = _rows(engine, "SELECT warp_field, status FROM hubspot_write_ledger WHERE company_id = :c", c=company)
    assert sorted(r["warp_field"] for r in ledger) == ["ban", "current_balance", "services", "status"]
    assert {r["status"] for r in ledger} == {"pending"}  # awaiting their echoes
    state = _rows(engine, "SELECT warp_field, agreed_value FROM hubspot_field_state WHERE customer_id = :c",
                  c=customer)
    agreed = {r["warp_field"]: r["agreed_value"] for r in state}
    assert (agreed["current_balance"], agreed["credit_limit"]) == ("42.50", "2500.00")


def test_a_manual_field_both_sides_changed_opens_a_review_item_and_writes_neither_side(
    engine: sa.Engine, sandbox, push_receiver: Receiver, make_linked: Callable  # noqa: ANN001
) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'contact_email'"))
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {"warp_contact_email": "rep@linked.example"})
    _update(engine, customer, "contact_email = 'warp@linked.example'")

    response = push(push_receiver, customer)

    assert response.status_code == 200, response.json
    assert outcomes(response.json["data"]["fields"])["contact_email"] == ("conflict", "CONFLICT_MANUAL_REVIEW")
    assert company_values(sandbox, company)["warp_contact_email"] == "rep@linked.example"
    (warp,) = _rows(engine, "SELECT contact_email FROM customers WHERE id = :c", c=customer)
    assert warp["contact_email"] == "warp@linked.example"
    (conflict,) = _rows(engine, "SELECT * FROM hubspot_conflicts WHERE customer_id = :c", c=customer)
    assert (conflict["warp_field"], conflict["status"], conflict["detected_by"]) == ("contact_email", "open", "manual")


def test_a_push_under_a_sandbox_outage_reports_the_failure_and_loses_nothing(
    engine: sa.Engine, sandbox, push_receiver: Receiver, warp_hubspot: HubSpotClient,  # noqa: ANN001
    make_linked: Callable,
) -> None:
    ((customer, company),) = make_linked(1)
    _update(engine, customer, "current_balance = 77, status = 'SUSPENDED'")
    with engine.begin() as conn:  # two drain sends of this row had failed already
        conn.execute(sa.text("UPDATE hubspot_sync_queue SET attempts = 2 WHERE customer_id = :c"), {"c": customer})
    before = company_values(sandbox, company)
    sandbox.control.set_faults(outage={"seconds": 60})

    response = push(push_receiver, customer)

    assert response.status_code == 502, response.json
    error = response.json["error"]
    assert (error["code"], error["queued"]) == ("HUBSPOT_SYNC_FAILED", True)
    assert "HUBSPOT_UNAVAILABLE" in error["message"]
    assert sorted(f["field"] for f in error["failed_fields"]) == OUTBOUND
    assert {f["outcome"] for f in error["fields"]} == {"failed"}
    (row,) = queue_rows(engine, customer)
    # Everything is queued for the drain, due at once (no delay in this test), and the push spent no attempt.
    assert (row["status"], row["attempts"], row["last_error_code"]) == ("pending", 2, "HUBSPOT_UNAVAILABLE")
    assert sorted(row["fields"]) == OUTBOUND
    failed = [r for r in _audit(engine, customer) if r["outcome"] == "failed"]
    assert {(r["trigger"], r["actor"], r["error_code"]) for r in failed} == {
        ("manual", "bootstrap", "HUBSPOT_UNAVAILABLE")}
    assert company_values(sandbox, company) == before
    # A probe confirmed HubSpot down: the push paused the flows, as a drain would have.
    (pause,) = open_pauses(engine)
    assert (pause.cause, pause.opened_by) == (PauseCause.OUTAGE, "push:bootstrap")

    sandbox.control.clear_faults()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_pauses SET next_probe_at = now()"))
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert (report.succeeded, report.dead) == (1, 0)
    props = company_values(sandbox, company)
    assert comparable("current_balance", props["warp_current_balance"]) == "77.00"
    assert props["warp_status"] == "SUSPENDED"


def test_a_refused_batch_update_voids_its_ledger_and_queues_only_what_was_to_be_sent(
    engine: sa.Engine, sandbox, push_receiver: Receiver, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {"warp_credit_limit": "2500"})
    sandbox.control.set_faults(outage={"calls": 5, "endpoint": BATCH_UPDATE})

    response = push(push_receiver, customer)

    assert response.status_code == 502, response.json
    fields = outcomes(response.json["error"]["fields"])
    assert fields["credit_limit"] == ("warp_updated", "ONLY_HUBSPOT_CHANGED")  # settled before the send
    assert fields["company_name"] == ("in_sync", "EQUAL")
    assert {name for name, (outcome, _) in fields.items() if outcome == "failed"} == {
        "ban", "current_balance", "services", "status"}
    (row,) = queue_rows(engine, customer)
    assert (row["status"], sorted(row["fields"])) == ("pending", ["ban", "current_balance", "services", "status"])
    ledger = _rows(engine, "SELECT status FROM hubspot_write_ledger WHERE company_id = :c", c=company)
    assert ledger and {r["status"] for r in ledger} == {"voided"}  # a 503 definitely wrote nothing


def test_refusals_write_and_queue_nothing(
    engine: sa.Engine, sandbox, push_receiver: Receiver, make_linked: Callable  # noqa: ANN001
) -> None:
    (deleted, busy) = make_linked(2)
    sandbox.control.reset_counters()
    for missing in (uuid4(), "not-a-uuid"):
        response = push(push_receiver, missing)
        assert (response.status_code, response.json["error"]["code"]) == (404, "NOT_FOUND")

    _update(engine, deleted[0], "hubspot_link_status = 'deleted'")
    response = push(push_receiver, deleted[0])
    assert (response.status_code, response.json["error"]["code"]) == (409, "CUSTOMER_NOT_LINKED")
    assert response.json["error"]["link_status"] == "deleted"

    lease = acquire_customer(engine, busy[0], "drain:someone-else")
    try:
        response = push(push_receiver, busy[0])
        assert (response.status_code, response.json["error"]["code"]) == (409, "CUSTOMER_BUSY")
    finally:
        release_customer(engine, busy[0], lease.token)

    assert not queue_rows(engine) and api_calls(sandbox) == 0


def test_a_company_gone_from_hubspot_is_never_recreated_and_its_fields_are_parked(
    engine: sa.Engine, sandbox, push_receiver: Receiver, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_delete(company)
    companies = len(live_companies(sandbox))

    response = push(push_receiver, customer)

    assert (response.status_code, response.json["error"]["code"]) == (409, "COMPANY_NOT_FOUND")
    assert len(live_companies(sandbox)) == companies
    (row,) = queue_rows(engine, customer)
    assert (row["status"], row["last_error_code"], sorted(row["fields"])) == ("parked", "COMPANY_NOT_FOUND", OUTBOUND)


def test_only_admins_may_push(
    engine: sa.Engine, push_receiver: Receiver, make_linked: Callable
) -> None:
    ((customer, _),) = make_linked(1)
    assert push(push_receiver, customer, headers={}).status_code == 401
    wrong = push(push_receiver, customer, headers={"Authorization": "Bearer not-a-token"})
    assert (wrong.status_code, wrong.json["success"]) == (401, False)
    resolver = issue(engine, "alice", ["resolver"]).token
    refused = push(push_receiver, customer, headers={"Authorization": f"Bearer {resolver}"})
    assert (refused.status_code, refused.json["error"]["code"]) == (403, "FORBIDDEN")
    assert not queue_rows(engine)

    admin = issue(engine, "carol", ["admin"]).token
    assert push(push_receiver, customer, headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert {r["actor"] for r in _audit(engine, customer)} == {"carol"}
