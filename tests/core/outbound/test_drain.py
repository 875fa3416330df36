"""The drain (core.outbound.drain_queue) against the sandbox over HTTP, without Dagster."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest
import sqlalchemy as sa

from tests.plugins.outbound import api_calls, company_values, fast_drain, queue_rows
from warp_sync_pipeline.core.field_state import read_field_state
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.leases import acquire_customers, release_customers
from warp_sync_pipeline.core.normalize import comparable, to_hubspot_iso
from warp_sync_pipeline.core.outbound import (
    QueueStatus,
    claim_due_rows,
    count_due,
    drain_queue,
    purge_finished,
    queue_status,
    retry_stopped,
)
from warp_sync_pipeline.core.pauses import PauseCause, open_pauses

BATCH_UPDATE = "POST /crm/v3/objects/companies/batch/update"
BATCH_READ = "POST /crm/v3/objects/companies/batch/read"


def amount(sandbox, company: str, prop: str) -> str:  # noqa: ANN001
    return comparable("current_balance", company_values(sandbox, company)[prop])


def _update(engine: sa.Engine, customer: UUID, sql_set: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE customers SET {sql_set} WHERE id = :id"), {"id": customer, **params})


def _customer(engine: sa.Engine, customer: UUID) -> dict:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM customers WHERE id = :id"), {"id": customer}).mappings().one())


def _audit(engine: sa.Engine, **where: str) -> list[dict]:
    clause = " AND ".join(f"{k} = :{k}" for k in where) or "true"
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.text(f"SELECT * FROM hubspot_sync_log WHERE trigger = 'queue' AND {clause} ORDER BY id"), where
        ).mappings()]


def test_a_thousand_updates_over_300_customers_take_three_batch_updates_and_three_reads(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    linked = make_linked(300)
    updates = []
    for n in range(1000):
        customer, _ = linked[n % 300]
        kind = (n + n // 300) % 4  # each customer gets a mix of one-way and two-way fields
        if kind == 0:
            updates.append(("current_balance = :v", {"v": n}))
        elif kind == 1:
            updates.append(("company_name = :v", {"v": f"Renamed {n}"}))
        elif kind == 2:
            updates.append(("contact_email = :v", {"v": f"ops{n}@linked.example"}))
        else:
            updates.append(("status = :v", {"v": "SUSPENDED" if n % 8 == 3 else "CLOSED"}))
        updates[-1][1]["id"] = customer
    with engine.begin() as conn:
        for sql_set, params in updates:
            conn.execute(sa.text(f"UPDATE customers SET {sql_set} WHERE id = :id"), params)
    assert len(queue_rows(engine)) == 300  # one pending row per customer, fields merged
    sandbox.control.reset_counters()

    report = drain_queue(engine, warp_hubspot, settings=fast_drain())

    assert api_calls(sandbox, BATCH_UPDATE) <= 3 and api_calls(sandbox, BATCH_READ) <= 3
    assert (report.batch_updates, report.batch_reads) == (3, 3)
    assert api_calls(sandbox) == api_calls(sandbox, BATCH_UPDATE) + api_calls(sandbox, BATCH_READ)
    assert (report.claimed, report.sent, report.succeeded, report.retried, report.dead) == (300, 300, 300, 0, 0)
    assert {r["status"] for r in queue_rows(engine)} == {"done"}
    by_company = {c["id"]: c["properties"] for c in sandbox.control.all_companies()}
    for customer, company in linked:
        row = _customer(engine, customer)
        props = by_company[company]
        assert props["name"] == row["company_name"]
        assert props["warp_contact_email"] == row["contact_email"]
        assert props["warp_status"] == row["status"]
        assert comparable("current_balance", props["warp_current_balance"]) == f"{row['current_balance']:.2f}"


def test_a_reps_credit_limit_survives_a_warp_change_of_current_balance(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {"warp_credit_limit": "2500"})
    _update(engine, customer, "current_balance = 99.5")
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.succeeded == 1 and report.fields_sent == 1
    props = company_values(sandbox, company)
    assert comparable("credit_limit", props["warp_credit_limit"]) == "2500.00"
    assert comparable("current_balance", props["warp_current_balance"]) == "99.50"


def test_when_both_sides_changed_credit_limit_hubspot_wins_and_warp_takes_its_value(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {"warp_credit_limit": "2500"})
    _update(engine, customer, "credit_limit = 1800, current_balance = 5")
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert (report.written_to_warp, report.settled, report.fields_sent) == (1, 1, 1)
    assert amount(sandbox, company, "warp_credit_limit") == "2500.00"
    assert str(_customer(engine, customer)["credit_limit"]) == "2500.00"
    assert [r["status"] for r in queue_rows(engine)] == ["done"]  # WARP's write was not queued back
    (decision,) = _audit(engine, warp_field="credit_limit")
    assert (decision["reason"], decision["direction"], decision["outcome"]) == (
        "CONFLICT_HUBSPOT_WINS", "HUBSPOT_TO_WARP", "applied")


def test_latest_wins_reads_history_only_when_it_needs_the_time(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    (older, newer) = make_linked(2)
    # Customer 1: the rep renamed first, WARP after: WARP is newer and its name goes out.
    sandbox.control.rep_edit(older[1], {"name": "Rep Name A"},
                             timestamp=to_hubspot_iso(datetime.now(UTC) - timedelta(minutes=5)))
    _update(engine, older[0], "company_name = 'Warp Name A'")
    # Customer 2: the rep's rename is timed after WARP's change: HubSpot is newer and WARP takes it.
    _update(engine, newer[0], "company_name = 'Warp Name B'")
    sandbox.control.rep_edit(newer[1], {"name": "Rep Name B"},
                             timestamp=to_hubspot_iso(datetime.now(UTC) + timedelta(minutes=5)))
    sandbox.control.reset_counters()
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert api_calls(sandbox, BATCH_READ) == 2  # the values, then history for the two conflicts
    assert company_values(sandbox, older[1])["name"] == "Warp Name A"
    assert company_values(sandbox, newer[1])["name"] == "Rep Name B"
    assert _customer(engine, newer[0])["company_name"] == "Rep Name B"
    assert report.written_to_warp == 1 and report.fields_sent == 1
    reasons = {r["customer_id"]: r["reason"] for r in _audit(engine, warp_field="company_name")}
    assert reasons == {older[0]: "CONFLICT_LATEST_WINS_WARP_NEWER",
                       newer[0]: "CONFLICT_LATEST_WINS_HUBSPOT_NEWER_OR_TIE"}


def test_reading_one_fields_history_keeps_hubspots_values_of_the_other_fields(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    # Both sides changed the name (LATEST_WINS, HubSpot's time unknown: its history is read) and the credit limit
    # (HUBSPOT_WINS: WARP takes HubSpot's value). The history read holds the name alone; the credit limit must
    # still be decided and written from the first read (it was written to WARP as NULL, the audit saying 2500).
    ((customer, company),) = make_linked(1)
    sandbox.control.rep_edit(company, {"warp_credit_limit": "2500", "name": "Rep Name"},
                             timestamp=to_hubspot_iso(datetime.now(UTC) - timedelta(minutes=5)))
    _update(engine, customer, "credit_limit = 1800, company_name = 'Warp Name'")
    sandbox.control.reset_counters()

    report = drain_queue(engine, warp_hubspot, settings=fast_drain())

    assert api_calls(sandbox, BATCH_READ) == 2  # the values, then the name's history
    row = _customer(engine, customer)
    assert (str(row["credit_limit"]), row["company_name"]) == ("2500.00", "Warp Name")
    assert company_values(sandbox, company)["name"] == "Warp Name"  # WARP's rename is the later one
    assert report.written_to_warp == 1
    with engine.connect() as conn:
        state = read_field_state(conn, [customer], ["credit_limit"])[(customer, "credit_limit")]
    assert (state.agreed.value, state.warp.value, state.hubspot.value) == ("2500.00",) * 3


def test_an_outage_pauses_the_flows_without_spending_attempts_and_the_first_good_probe_resumes_them(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    (first, second) = make_linked(2)
    _update(engine, first[0], "current_balance = 11")
    _update(engine, second[0], "status = 'SUSPENDED'")
    sandbox.control.set_faults(outage={"seconds": 120})
    settings = fast_drain()

    # Before: each outage drain spent an attempt (30 s backoff, doubling), and three dead-lettered every row.
    for _ in range(4):
        report = drain_queue(engine, warp_hubspot, settings=settings)
        assert report.paused and report.pause_cause == "hubspot_outage"
        assert (report.retried, report.dead, report.succeeded) == (0, 0, 0)
        _probe_due_now(engine)
    rows = queue_rows(engine)
    assert {r["status"] for r in rows} == {"pending"} and {r["attempts"] for r in rows} == {0}
    assert {r["last_error_code"] for r in rows} == {"HUBSPOT_UNAVAILABLE"}
    (pause,) = open_pauses(engine)
    assert pause.probes == 3  # the first drain opened it; each later one probed and failed

    sandbox.control.clear_faults()
    report = drain_queue(engine, warp_hubspot, settings=settings)
    assert report.succeeded == 2 and not report.paused and open_pauses(engine) == []
    assert amount(sandbox, first[1], "warp_current_balance") == "11.00"
    assert company_values(sandbox, second[1])["warp_status"] == "SUSPENDED"


def test_a_5xx_for_one_batch_while_hubspot_answers_is_the_records_own_failure_and_spends_attempts(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    (first, late) = make_linked(2)
    _update(engine, first[0], "current_balance = 11")
    # Only the batch update fails; the probe (a page of companies) is answered: not an outage.
    sandbox.control.set_faults(outage={"seconds": 120, "endpoint": "POST /crm/v3/objects/companies/batch/update"})
    settings = fast_drain()
    for attempt in (1, 2):
        report = drain_queue(engine, warp_hubspot, settings=settings)
        assert (report.retried, report.dead, report.paused) == (1, 0, False)
        assert queue_rows(engine)[0]["attempts"] == attempt
    _update(engine, late[0], "current_balance = 33")
    report = drain_queue(engine, warp_hubspot, settings=settings)
    assert (report.dead, report.retried) == (1, 1)
    (dead,) = [r for r in queue_rows(engine) if r["status"] == "dead"]
    assert dead["customer_id"] == first[0] and dead["attempts"] == 3 and dead["last_error_code"] == "HUBSPOT_UNAVAILABLE"
    assert open_pauses(engine) == []

    sandbox.control.clear_faults()
    assert drain_queue(engine, warp_hubspot, settings=settings).succeeded == 1
    assert amount(sandbox, late[1], "warp_current_balance") == "33.00"
    assert retry_stopped(engine) == 1
    assert drain_queue(engine, warp_hubspot, settings=settings).succeeded == 1
    assert amount(sandbox, first[1], "warp_current_balance") == "11.00"
    assert queue_status(engine).counts[QueueStatus.DEAD] == 0


def test_two_drains_at_once_never_send_a_row_twice(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    linked = make_linked(120)
    with engine.begin() as conn:
        for n, (customer, _) in enumerate(linked):
            conn.execute(sa.text("UPDATE customers SET current_balance = :v WHERE id = :id"), {"v": n + 1, "id": customer})
    sandbox.control.set_faults(latency_ms=150)
    reports = []
    settings = fast_drain(claim_size=20)

    def run(name: str) -> None:
        reports.append(drain_queue(engine, warp_hubspot, settings=settings, holder=name))

    threads = [threading.Thread(target=run, args=(f"drain:{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.claimed for r in reports) == 120 and sum(r.sent for r in reports) == 120
    assert all(r.claimed > 0 for r in reports)  # both took part
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_write_ledger")).scalar_one() == 120
    assert len(_audit(engine, outcome="applied")) == 120
    assert {r["status"] for r in queue_rows(engine)} == {"done"}


def test_a_killed_drains_rows_are_reclaimed_when_their_lease_expires(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    _update(engine, customer, "current_balance = 77")
    # A drain claims the row and dies before sending.
    (claimed,) = claim_due_rows(engine, token=uuid4(), limit=10, lease=timedelta(milliseconds=300))
    assert claimed.customer_id == customer
    with engine.connect() as conn:
        assert count_due(conn) == 0
    _update(engine, customer, "status = 'CLOSED'")  # a newer change while the row is claimed
    time.sleep(0.35)
    with engine.connect() as conn:
        assert count_due(conn) == 2  # the new pending row, and the expired claim
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.claimed == 1 and report.succeeded == 1  # merged back into one row
    props = company_values(sandbox, company)
    assert comparable("current_balance", props["warp_current_balance"]) == "77.00" and props["warp_status"] == "CLOSED"
    (row,) = queue_rows(engine)
    assert row["status"] == "done" and row["attempts"] == 0 and "lease_expired" in row["reasons"]


def test_a_deleted_companys_row_is_parked_and_never_recreated(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    (marked, vanished) = make_linked(2)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET hubspot_link_status = 'deleted' WHERE id = :id"), {"id": marked[0]})
    sandbox.control.rep_delete(vanished[1])  # deleted in HubSpot, not yet known to WARP
    _update(engine, marked[0], "current_balance = 1")
    _update(engine, vanished[0], "current_balance = 2")
    companies_before = len(sandbox.control.all_companies())
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.parked == 2 and report.sent == 1  # the marked one is parked without a call
    rows = {r["customer_id"]: r for r in queue_rows(engine)}
    assert rows[marked[0]]["status"] == "parked" and rows[marked[0]]["last_error_code"] == "COMPANY_DELETED"
    assert rows[vanished[0]]["status"] == "parked" and rows[vanished[0]]["last_error_code"] == "COMPANY_NOT_FOUND"
    assert len(sandbox.control.all_companies()) == companies_before
    assert api_calls(sandbox, "POST /crm/v3/objects/companies") == 0
    assert {s.code for s in queue_status(engine).stopped} == {"COMPANY_DELETED", "COMPANY_NOT_FOUND"}


def test_a_401_pauses_the_flows_without_spending_attempts_and_a_good_probe_resumes_them(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    linked = make_linked(3)
    for customer, _ in linked:
        _update(engine, customer, "current_balance = 5, company_name = company_name || ' x'")
    sandbox.control.configure(access_token="rotated-token")
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.paused and report.pause_cause == "token_refused"
    assert "HUBSPOT_ACCESS_TOKEN" in (report.pause_reason or "")
    assert (report.retried, report.dead, report.deferred) == (0, 0, 3)
    rows = queue_rows(engine)
    assert [r["status"] for r in rows] == ["pending"] * 3
    assert {r["attempts"] for r in rows} == {0} and {r["last_error_code"] for r in rows} == {"HUBSPOT_AUTH_FAILED"}
    (pause,) = open_pauses(engine)
    assert pause.cause is PauseCause.TOKEN_REFUSED and not pause.probe_due

    # Until the probe is due, a drain sends nothing (not even a probe).
    calls = api_calls(sandbox)
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.paused and report.claimed == 0 and api_calls(sandbox) == calls

    # The probe comes due while the token is still refused: the pause stays, the wait doubles.
    _probe_due_now(engine)
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.paused and report.claimed == 0 and api_calls(sandbox) == calls + 1
    (pause,) = open_pauses(engine)
    assert pause.probes == 1

    # The token fixed, the next probe is answered: the pause closes and the same drain sends.
    sandbox.control.configure(access_token=sandbox.access_token)
    _probe_due_now(engine)
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.succeeded == 3 and not report.paused
    assert open_pauses(engine) == []


def _probe_due_now(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_pauses SET next_probe_at = now() - interval '1 second'"))


def test_a_401_on_the_batch_update_voids_its_ledger_entries(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, _),) = make_linked(1)
    _update(engine, customer, "current_balance = 5")  # one-way: no read, straight to the update
    sandbox.control.configure(access_token="rotated-token")
    report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert report.paused and report.batch_updates == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT array_agg(DISTINCT status) FROM hubspot_write_ledger")).scalar_one() == ["voided"]


def test_a_customer_another_writer_holds_waits_without_an_attempt(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    (held, free) = make_linked(2)
    _update(engine, held[0], "current_balance = 8")
    _update(engine, free[0], "current_balance = 9")
    lease = acquire_customers(engine, [held[0]], holder="webhook-apply:test")
    try:
        report = drain_queue(engine, warp_hubspot, settings=fast_drain())
    finally:
        release_customers(engine, lease.acquired, lease.token)
    assert (report.deferred, report.succeeded) == (1, 1)
    (waiting,) = [r for r in queue_rows(engine) if r["status"] == "pending"]
    assert waiting["customer_id"] == held[0] and waiting["attempts"] == 0
    assert amount(sandbox, free[1], "warp_current_balance") == "9.00"


def test_success_records_agreed_values_and_audits_each_field(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable  # noqa: ANN001
) -> None:
    ((customer, company),) = make_linked(1)
    _update(engine, customer, "contact_email = 'New@Linked.Example', services = '{\"voice\": false, \"messaging\": true, \"data\": false}'")
    drain_queue(engine, warp_hubspot, settings=fast_drain(), run_id="run-123")
    props = company_values(sandbox, company)
    assert props["warp_contact_email"] == "New@Linked.Example" and props["warp_services"] == "messaging"
    with engine.connect() as conn:
        agreed = dict(conn.execute(sa.text(
            "SELECT warp_field, agreed_value FROM hubspot_field_state WHERE customer_id = :c "
            "AND warp_field IN ('contact_email', 'services')"), {"c": customer}).all())
        ledger = conn.execute(sa.text("SELECT company_id, hubspot_property, value FROM hubspot_write_ledger "
                                      "ORDER BY hubspot_property")).all()
    assert agreed == {"contact_email": "new@linked.example", "services": "messaging"}
    assert [tuple(r) for r in ledger] == [(company, "warp_contact_email", "new@linked.example"),
                                          (company, "warp_services", "messaging")]
    entries = _audit(engine, outcome="applied")
    assert {e["warp_field"] for e in entries} == {"contact_email", "services"}
    assert {e["dagster_run_id"] for e in entries} == {"run-123"}


def test_done_rows_are_purged_after_the_retention(
    engine: sa.Engine, warp_hubspot: HubSpotClient, make_linked: Callable
) -> None:
    ((customer, _),) = make_linked(1)
    _update(engine, customer, "current_balance = 4")
    drain_queue(engine, warp_hubspot, settings=fast_drain())
    assert purge_finished(engine, older_than=timedelta(days=1)) == 0
    assert purge_finished(engine, older_than=timedelta(0)) == 1
    assert queue_rows(engine) == []


@pytest.mark.parametrize("form", ["whole_batch", "multi_status", "multi_status_200"])
def test_one_company_of_a_hundred_deleted_without_a_webhook_parks_one_and_writes_the_other_99(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable, form: str,  # noqa: ANN001
) -> None:
    # HubSpot refuses a whole batch update for one missing company (its usual form), or reports it per input.
    sandbox.control.configure(batch_write_errors=form)
    linked = make_linked(100)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET current_balance = 7"))
    (gone_customer, gone_company) = linked[37]
    warp_hubspot.archive_company(gone_company)  # deleted in HubSpot; its webhook never came
    sandbox.control.reset_counters()

    report = drain_queue(engine, warp_hubspot, settings=fast_drain())

    # Before: the whole-batch 404 marked all 100 not found, and the drain parked them all.
    assert (report.succeeded, report.parked, report.retried, report.dead) == (99, 1, 0, 0)
    (parked,) = [r for r in queue_rows(engine) if r["status"] == "parked"]
    assert parked["customer_id"] == gone_customer and parked["last_error_code"] == "COMPANY_NOT_FOUND"
    # Whole batch: the refused call, then the 99 again; per input: one call.
    assert api_calls(sandbox, "POST /crm/v3/objects/companies/batch/update") == (2 if form == "whole_batch" else 1)
    live = {c["id"]: c for c in sandbox.control.all_companies() if not c.get("archived")}
    assert len(live) == 99
    assert all(Decimal(c["properties"]["warp_current_balance"]) == 7 for c in live.values())


@pytest.mark.parametrize("field_sql", ["current_balance = 12", "contact_email = 'books@acme.example'"])
def test_a_merge_whose_webhook_was_lost_is_followed_by_the_next_drain(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable, field_sql: str,  # noqa: ANN001
) -> None:
    # A rep merged the customer's company into another; HubSpot made a new company, and its webhook never came.
    ((customer, company),) = make_linked(1)
    other = warp_hubspot.create_company({"name": "Acquirer Ltd"})
    merged_into = sandbox.control.rep_merge(other.id, company)["id"]
    _update(engine, customer, field_sql)  # one-way (written, answered by the merged record) or two-way (read first)

    report = drain_queue(engine, warp_hubspot, settings=fast_drain())

    # Before: the read keyed the merged record by its new id, the old one came back "not found", and the row
    # was parked COMPANY_NOT_FOUND with the link never healed.
    assert (report.succeeded, report.parked) == (1, 0)
    row = _customer(engine, customer)
    assert (row["external_ids"]["hubspot_company_id"], row["hubspot_link_status"]) == (merged_into, "linked")
    with engine.connect() as conn:
        [audit] = conn.execute(sa.text(
            "SELECT action, old_value, new_value, details FROM hubspot_sync_log WHERE action = 'LINK_REPOINTED'"
        )).mappings().all()
    assert (audit["old_value"], audit["new_value"]) == (company, merged_into)
    assert audit["details"]["survivor"] == merged_into
    values = company_values(sandbox, merged_into)
    assert Decimal(values.get("warp_current_balance") or 0) == 12 or values.get("warp_contact_email") == \
        "books@acme.example"


def test_two_customers_whose_companies_were_merged_go_to_review_and_are_parked(
    engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, make_linked: Callable,  # noqa: ANN001
) -> None:
    ((first, first_company), (second, second_company)) = make_linked(2)
    sandbox.control.rep_merge(first_company, second_company)
    _update(engine, first, "contact_email = 'a@first.example'")  # two-way: read, so the merge is seen

    report = drain_queue(engine, warp_hubspot, settings=fast_drain())

    assert (report.succeeded, report.parked) == (0, 1)
    assert {_customer(engine, c)["hubspot_link_status"] for c in (first, second)} == {"review"}
    (parked,) = queue_rows(engine)
    assert (parked["status"], parked["last_error_code"]) == ("parked", "LINK_NEEDS_REVIEW")
