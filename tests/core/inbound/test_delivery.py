"""At-least-once, unordered delivery: echoes, X->Z->X, out-of-order and duplicate events, a crash in the middle
of a batch, bounded retries, busy customers and lost leases. Applying an event twice or late changes nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from tests import REPO
from tests.plugins.inbound import (
    customer_row,
    event_rows,
    field_state,
    queue_rows,
    reason_codes,
    sync_log,
)
from tests.plugins.signing import now_ms, object_event, property_change
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.inbound import count_due_events, process_events
from warp_sync_pipeline.core.leases import acquire_customer, release_customer
from warp_sync_pipeline.core.ledger import LedgerWrite, record_writes


def _without_source(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("changeSource", "sourceId")}


def _state_values(engine: sa.Engine, customer: Any, field: str) -> dict[str, Any]:
    state = field_state(engine, customer, field) or {}
    return {k: v for k, v in state.items() if k != "updated_at"}


def test_an_echo_of_our_own_write_is_ignored_and_queues_nothing(
    engine: sa.Engine, rules: FieldRules, make_customer: Callable, new_company_id: Callable, store: Callable,
    process: Callable,
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("10000"))
    [entry_id] = record_writes(engine, [LedgerWrite(rules["credit_limit"], Decimal("10000"), company_id=str(company))])
    echo = property_change(company, "warp_credit_limit", "10000", occurredAt=now_ms() + 1000,
                           changeSource="INTEGRATION", sourceId="54321")
    store([echo])
    before = customer_row(engine, customer)

    summary = process()

    assert reason_codes(engine) == ["ECHO"] and summary.ignored == 1
    assert event_rows(engine)[0]["result"]["ledger_entry"] == entry_id
    assert customer_row(engine, customer) == before
    assert queue_rows(engine) == [] and sync_log(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM hubspot_write_ledger")).scalar_one() == "matched"

    # The same change delivered again under another eventId: no entry is left to absorb it, and it is in sync.
    store([{**echo, "eventId": echo["eventId"] + 1}])
    process()
    assert [e["status"] for e in event_rows(engine)] == ["ignored", "processed"]
    assert customer_row(engine, customer) == before
    assert queue_rows(engine) == []
    assert [e["outcome"] for e in sync_log(engine)] == ["in_sync"]


@pytest.mark.parametrize("rep_source", ["CRM_UI", None])
def test_a_reps_x_z_x_edit_is_applied_not_taken_for_an_echo(
    engine: sa.Engine, rules: FieldRules, make_customer: Callable, new_company_id: Callable, store: Callable,
    process: Callable, rep_source: str | None,
) -> None:
    # WARP wrote X = 10000; its echo comes back; then a rep sets Z and X again.
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("10000"))
    record_writes(engine, [LedgerWrite(rules["credit_limit"], Decimal("10000"), company_id=str(company))])
    start = now_ms() + 1000
    echo = property_change(company, "warp_credit_limit", "10000", occurredAt=start, changeSource="INTEGRATION")
    rep = [property_change(company, "warp_credit_limit", value, occurredAt=start + 1000 * n)
           for n, value in ((1, "20000"), (2, "10000"))]
    if rep_source is None:  # HubSpot did not say where the change came from: value, time and count decide
        rep = [_without_source(e) for e in rep]
    store([echo, *rep])

    process()

    assert reason_codes(engine) == ["ECHO", None, None]
    assert customer_row(engine, customer)["credit_limit"] == Decimal("10000.00")
    assert [(e["old_value"], e["new_value"], e["outcome"]) for e in sync_log(engine, customer)] == [
        ("10000.00", "20000.00", "applied"), ("20000.00", "10000.00", "applied")]
    assert queue_rows(engine) == []


def test_events_arriving_out_of_order_in_one_batch_are_applied_in_occurred_at_order(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("5000"))
    start = now_ms()
    store([property_change(company, "warp_credit_limit", "7000", occurredAt=start + 2000),
           property_change(company, "warp_credit_limit", "6000", occurredAt=start + 1000)])

    process()

    assert customer_row(engine, customer)["credit_limit"] == Decimal("7000.00")
    assert [e["new_value"] for e in sync_log(engine, customer)] == ["6000.00", "7000.00"]


def test_a_late_event_older_than_the_last_known_change_is_dropped_as_stale(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("5000"))
    start = now_ms()
    store([property_change(company, "warp_credit_limit", "7000", occurredAt=start + 2000)])
    process()
    state = _state_values(engine, customer, "credit_limit")

    store([property_change(company, "warp_credit_limit", "6000", occurredAt=start + 1000)])
    summary = process()

    assert reason_codes(engine) == ["STALE_EVENT", None]
    assert summary.reasons == {"STALE_EVENT": 1}
    assert customer_row(engine, customer)["credit_limit"] == Decimal("7000.00")
    assert _state_values(engine, customer, "credit_limit") == state
    assert len(sync_log(engine, customer)) == 1


def test_duplicates_are_stored_once_and_a_repeated_change_changes_nothing_more(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    change = property_change(company, "warp_payment_terms", "NET60")
    deletion_elsewhere = object_event("company.deletion", new_company_id())
    store([change, deletion_elsewhere])
    # HubSpot's retry of the same delivery: only attemptNumber differs.
    assert store([{**change, "attemptNumber": 1}, {**deletion_elsewhere, "attemptNumber": 3}]).duplicates == 2
    assert len(event_rows(engine)) == 2

    process()
    after_first = customer_row(engine, customer)
    state = _state_values(engine, customer, "payment_terms")
    assert after_first["payment_terms"] == "NET60"

    # The same change again under a new eventId (HubSpot's rare duplicate), then a run with nothing to do.
    store([{**change, "eventId": change["eventId"] + 7}])
    second = process()
    third = process()

    assert (second.processed, third.claimed) == (1, 0)
    assert customer_row(engine, customer) == after_first
    assert _state_values(engine, customer, "payment_terms") == state
    assert [(e["outcome"], e["reason"]) for e in sync_log(engine, customer)] == [
        ("applied", "ONE_WAY_FROM_HUBSPOT"), ("in_sync", "EQUAL")]
    assert queue_rows(engine) == []


def _crash_script(database_url: str) -> str:
    return (
        "from datetime import timedelta\n"
        "from warp_sync_pipeline.core.db import make_engine\n"
        "from warp_sync_pipeline.core.inbound import InboundSettings, process_events\n"
        f"engine = make_engine({database_url!r})\n"
        "settings = InboundSettings(lease_ttl=timedelta(seconds=2), customer_lease_ttl=timedelta(seconds=2))\n"
        "process_events(engine, settings=settings, run_id='doomed-run')\n"
    )


def test_a_crash_in_the_middle_of_a_batch_loses_nothing_and_applies_nothing_twice(
    engine: sa.Engine, database_url: str, make_customer: Callable, new_company_id: Callable, store: Callable,
    process: Callable,
) -> None:
    companies = [new_company_id() for _ in range(3)]
    customers = [make_customer(company_id=c, credit_limit=Decimal("5000")) for c in companies]
    start = now_ms()
    store([property_change(c, "warp_credit_limit", "6000", occurredAt=start + n) for n, c in enumerate(companies)])

    # Hold the second customer's row, so the processor stops inside that event's transaction; then kill it.
    blocker = engine.connect()
    blocker.begin()
    blocker.execute(sa.text("SELECT 1 FROM customers WHERE id = :id FOR UPDATE"), {"id": customers[1]})
    proc = subprocess.Popen([sys.executable, "-c", _crash_script(database_url)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                waiting = conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'")).scalar_one()
            if waiting:
                break
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            assert time.monotonic() < deadline, "the processor never reached the held customer"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()
        blocker.rollback()
        blocker.close()

    statuses = [e["status"] for e in event_rows(engine)]
    assert statuses == ["processed", "pending", "pending"]
    assert [customer_row(engine, c)["credit_limit"] for c in customers] == [Decimal("6000.00"), Decimal("5000.00"),
                                                                            Decimal("5000.00")]
    # The dead run's claim still holds the rest: nobody takes them until its lease expires.
    assert process().claimed == 0
    assert count_due_events(engine) == 0
    time.sleep(2.1)

    summary = process()

    assert (summary.claimed, summary.processed) == (2, 2)
    assert [e["status"] for e in event_rows(engine)] == ["processed"] * 3
    assert [e["attempts"] for e in event_rows(engine)] == [1, 2, 2]
    assert [customer_row(engine, c)["credit_limit"] for c in customers] == [Decimal("6000.00")] * 3
    assert [len(sync_log(engine, c)) for c in customers] == [1, 1, 1]
    assert process().claimed == 0


def test_failed_events_are_retried_later_a_bounded_number_of_times(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    # A creation event needs HubSpot; without a client it fails every time.
    store([object_event("company.creation", new_company_id())])

    first = process(max_attempts=3, retry_initial=timedelta(seconds=30))
    [event] = event_rows(engine)
    assert (first.failed, event["status"], event["attempts"]) == (1, "failed", 1)
    assert event["reason"].startswith("HUBSPOT_NOT_CONFIGURED: ") and event["next_attempt_at"] is not None
    # Not due before its next attempt time.
    assert count_due_events(engine) == 0 and process().claimed == 0

    with engine.begin() as conn:  # the wait has passed
        conn.execute(sa.text("UPDATE hubspot_webhook_events SET next_attempt_at = now()"))
    assert count_due_events(engine) == 1
    process(max_attempts=3, retry_initial=timedelta(0))

    [event] = event_rows(engine)
    assert (event["status"], event["attempts"], event["next_attempt_at"]) == ("failed", 3, None)
    assert count_due_events(engine) == 0 and process(max_attempts=3).claimed == 0


def test_an_event_whose_runs_keep_dying_is_given_up_after_the_last_attempt(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    store([property_change(company, "warp_payment_terms", "NET45")])
    with engine.begin() as conn:  # claimed five times by runs that died (their leases expired)
        conn.execute(sa.text("UPDATE hubspot_webhook_events SET attempts = 5, lease_token = gen_random_uuid(), "
                             "lease_expires_at = now() - interval '1 second'"))

    summary = process(max_attempts=5)

    [event] = event_rows(engine)
    assert (summary.failed, event["status"], event["next_attempt_at"]) == (1, "failed", None)
    assert event["reason"].startswith("ATTEMPTS_EXHAUSTED: ")
    assert customer_row(engine, customer)["payment_terms"] == "NET30"


def test_a_customer_another_writer_holds_defers_its_events_without_spending_an_attempt(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    store([property_change(company, "warp_payment_terms", "NET45", occurredAt=now_ms()),
           property_change(company, "warp_payment_terms", "NET60", occurredAt=now_ms() + 1)])
    lease = acquire_customer(engine, customer, "queue-drain:another-run", timedelta(seconds=30))

    summary = process(busy_retry=timedelta(milliseconds=300))

    assert (summary.deferred, summary.processed, summary.failed) == (2, 0, 0)
    assert [(e["status"], e["attempts"]) for e in event_rows(engine)] == [("pending", 0), ("pending", 0)]
    assert customer_row(engine, customer)["payment_terms"] == "NET30"
    assert count_due_events(engine) == 0  # the deferral keeps the sensor quiet for a moment

    release_customer(engine, customer, lease.token)
    time.sleep(0.35)
    summary = process()
    assert summary.processed == 2
    assert customer_row(engine, customer)["payment_terms"] == "NET60"
    with engine.connect() as conn:  # the processor's own lease is gone again
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_customer_leases")).scalar_one() == 0


def test_a_run_finishes_only_events_that_still_carry_its_token(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    store([property_change(company, "warp_payment_terms", "NET45", occurredAt=now_ms()),
           property_change(company, "warp_payment_terms", "NET60", occurredAt=now_ms() + 1)])
    second_id = event_rows(engine)[1]["id"]

    def take_over_the_next_event(event: Any, status: str) -> None:
        # Another run claimed the rest after this run's lease expired.
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE hubspot_webhook_events SET lease_token = gen_random_uuid() WHERE id = :id"),
                         {"id": second_id})

    summary = process_events(engine, on_event=take_over_the_next_event, run_id="slow-run")

    assert (summary.processed, summary.lost) == (1, 1)
    assert [e["status"] for e in event_rows(engine)] == ["processed", "pending"]
    # The second event's work was rolled back with its unfinished mark.
    assert customer_row(engine, customer)["payment_terms"] == "NET45"
    assert len(sync_log(engine, customer)) == 1



def test_a_write_the_database_refuses_fails_that_event_only_and_its_retry_never_overwrites_newer_values(
    engine: sa.Engine, make_customer: Callable, new_company_id: Callable, store: Callable, process: Callable
) -> None:
    # A WARP-side rule the processor does not know about refuses one value.
    with engine.begin() as conn:
        conn.execute(sa.text(
            "CREATE FUNCTION refuse_net15() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.payment_terms = 'NET15' THEN RAISE EXCEPTION 'NET15 is frozen'; END IF; RETURN NEW; END $$"))
        conn.execute(sa.text("CREATE TRIGGER refuse_net15 BEFORE UPDATE ON customers "
                             "FOR EACH ROW EXECUTE FUNCTION refuse_net15()"))
    company = new_company_id()
    customer = make_customer(company_id=company, payment_terms="NET30")
    start = now_ms()
    store([property_change(company, "warp_payment_terms", "NET15", occurredAt=start),
           property_change(company, "warp_payment_terms", "NET60", occurredAt=start + 1000)])

    summary = process()

    refused, later = event_rows(engine)
    assert (summary.failed, summary.processed) == (1, 1)
    assert (refused["status"], later["status"]) == ("failed", "processed")
    assert refused["reason"].startswith("APPLY_FAILED: ") and "NET15 is frozen" in refused["error"]
    assert refused["next_attempt_at"] is not None
    assert customer_row(engine, customer)["payment_terms"] == "NET60"
    assert [e["new_value"] for e in sync_log(engine, customer)] == ["NET60"]  # the failed one left no trace

    with engine.begin() as conn:
        conn.execute(sa.text("DROP TRIGGER refuse_net15 ON customers"))
        conn.execute(sa.text("UPDATE hubspot_webhook_events SET next_attempt_at = now() WHERE status = 'failed'"))
    process()

    assert reason_codes(engine) == ["STALE_EVENT", None]
    assert customer_row(engine, customer)["payment_terms"] == "NET60"


def test_a_run_out_of_time_hands_the_rest_of_its_claim_back_for_the_next_run(
    engine: sa.Engine, sandbox: Any, warp_hubspot: Any, make_customer: Callable, store: Callable, process: Callable,
) -> None:
    # Linking a created company reads it from HubSpot; the sandbox answers each read 400 ms late, so the run's
    # 0.2-second budget runs out while it applies the first company.
    companies = []
    for n in range(3):
        ban = f"ZT-80000000{n}"
        make_customer(f"Slow Co {n}", ban=ban)
        companies.append(warp_hubspot.create_company({"name": f"Slow Co {n}", "warp_ban": ban}))
    store([object_event("company.creation", int(company.id)) for company in companies])
    sandbox.control.set_faults(latency_ms=400)

    first = process(hubspot=warp_hubspot, run_time_budget=timedelta(seconds=0.2))

    assert (first.claimed, first.processed) == (1, 1)
    rows = event_rows(engine)
    assert sorted((e["status"], e["attempts"]) for e in rows) == [("pending", 0), ("pending", 0), ("processed", 1)]
    assert count_due_events(engine) == 2  # back at once, not after the lease, and the attempt given back
    sandbox.control.clear_faults()

    second = process(hubspot=warp_hubspot)

    assert (second.claimed, second.processed) == (2, 2)
    assert [e["status"] for e in event_rows(engine)] == ["processed"] * 3
