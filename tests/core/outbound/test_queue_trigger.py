"""The outbox trigger (sql/007): what queues, what does not, and what it records in field state."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.plugins.outbound import queue_rows
from warp_sync_pipeline.core.field_state import read_field_state
from warp_sync_pipeline.core.normalize import comparable
from warp_sync_pipeline.core.outbound import enqueue_fields


def _update(engine: sa.Engine, customer_id: UUID, sql_set: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE customers SET {sql_set} WHERE id = :id"), {"id": customer_id, **params})


def test_a_plain_sql_update_of_a_mapped_column_is_queued(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    _update(engine, customer, "current_balance = 12.5")
    rows = queue_rows(engine, customer)
    assert len(rows) == 1
    assert rows[0]["fields"] == ["current_balance"]
    assert rows[0]["status"] == "pending" and rows[0]["attempts"] == 0
    assert rows[0]["reasons"] == ["warp_change"]


def test_an_insert_never_queues(engine: sa.Engine, make_customer: Callable) -> None:
    make_customer()
    assert queue_rows(engine) == []


def test_later_changes_merge_into_the_one_pending_row(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    _update(engine, customer, "current_balance = 1")
    _update(engine, customer, "company_name = 'Acme Two', status = 'SUSPENDED'")
    _update(engine, customer, "current_balance = 2")
    rows = queue_rows(engine, customer)
    assert len(rows) == 1
    assert rows[0]["fields"] == ["company_name", "current_balance", "status"]


def test_a_marked_update_is_not_queued_nor_recorded(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL warp_sync.origin = 'hubspot'"))
        conn.execute(sa.text("UPDATE customers SET credit_limit = 500 WHERE id = :id"), {"id": customer})
    assert queue_rows(engine, customer) == []
    with engine.connect() as conn:
        assert read_field_state(conn, [customer]) == {}
    # The marker is transaction-local: the next plain update queues again.
    _update(engine, customer, "credit_limit = 600")
    assert queue_rows(engine, customer)[0]["fields"] == ["credit_limit"]


def test_a_rolled_back_update_leaves_no_queue_row(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    with engine.connect() as conn:
        tx = conn.begin()
        conn.execute(sa.text("UPDATE customers SET status = 'CLOSED' WHERE id = :id"), {"id": customer})
        assert len(conn.execute(sa.text("SELECT 1 FROM hubspot_sync_queue")).all()) == 1  # inside: queued
        tx.rollback()
    assert queue_rows(engine) == []
    with engine.connect() as conn:
        assert read_field_state(conn, [customer]) == {}


@pytest.mark.parametrize(
    "sql_set",
    [
        "external_ids = '{\"hubspot_company_id\": \"123\"}'::jsonb",
        "hubspot_link_status = 'linked'",
        "updated_at = now() - interval '1 day'",
        "company_name = company_name",
    ],
)
def test_unmapped_columns_and_no_op_updates_do_not_queue(
    engine: sa.Engine, make_customer: Callable, sql_set: str
) -> None:
    customer = make_customer()
    _update(engine, customer, sql_set)
    assert queue_rows(engine, customer) == []


def test_a_field_that_only_flows_from_hubspot_records_its_change_but_is_not_queued(
    engine: sa.Engine, make_customer: Callable
) -> None:
    customer = make_customer()
    _update(engine, customer, "payment_terms = 'NET60'")
    assert queue_rows(engine, customer) == []
    with engine.connect() as conn:
        state = read_field_state(conn, [customer])
    assert state[(customer, "payment_terms")].warp.value == "NET60"
    assert state[(customer, "payment_terms")].warp.at is not None


def test_an_unmapped_field_stops_queueing(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM hubspot_field_mappings WHERE warp_field = 'current_balance'"))
    _update(engine, customer, "current_balance = 99")
    assert queue_rows(engine, customer) == []


def test_warp_change_times_are_recorded_per_field(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer(credit_limit=Decimal("10"))
    _update(engine, customer, "credit_limit = 20")
    with engine.connect() as conn:
        first = read_field_state(conn, [customer])[(customer, "credit_limit")].warp
    _update(engine, customer, "contact_email = 'Billing@Acme.Example'")
    with engine.connect() as conn:
        state = read_field_state(conn, [customer])
    assert state[(customer, "credit_limit")].warp == first  # untouched by the second update
    assert first.value == "20.00"
    email = state[(customer, "contact_email")].warp
    assert email.value == "billing@acme.example" and email.at >= first.at
    assert (customer, "company_name") not in state


def test_the_queued_row_commits_with_the_change_in_one_transaction(
    engine: sa.Engine, make_customer: Callable
) -> None:
    customer = make_customer()
    with engine.connect() as writer, engine.connect() as reader:
        tx = writer.begin()
        writer.execute(sa.text("UPDATE customers SET current_balance = 5 WHERE id = :id"), {"id": customer})
        assert reader.execute(sa.text("SELECT count(*) FROM hubspot_sync_queue")).scalar_one() == 0
        tx.commit()
        assert reader.execute(sa.text("SELECT count(*) FROM hubspot_sync_queue")).scalar_one() == 1


def test_enqueue_fields_merges_like_the_trigger_even_inside_a_marked_transaction(
    engine: sa.Engine, make_customer: Callable
) -> None:
    customer = make_customer()
    _update(engine, customer, "status = 'SUSPENDED'")
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL warp_sync.origin = 'hubspot'"))
        conn.execute(sa.text("UPDATE customers SET credit_limit = 7 WHERE id = :id"), {"id": customer})
        enqueue_fields(conn, customer, ["status", "services", "status"], reason="drift_revert")
    rows = queue_rows(engine, customer)
    assert len(rows) == 1
    assert rows[0]["fields"] == ["services", "status"]
    assert rows[0]["reasons"] == ["drift_revert", "warp_change"]


def test_enqueue_fields_rolls_back_with_the_callers_transaction(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    with engine.connect() as conn:
        tx = conn.begin()
        enqueue_fields(conn, customer, ["status"], reason="drift_revert")
        tx.rollback()
    assert queue_rows(engine) == []


def test_a_merge_keeps_the_backoff_and_the_attempts(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "SELECT hubspot_sync_enqueue(:c, ARRAY['status'], 'retry', 2, now() + interval '1 hour', "
                "'HUBSPOT_UNAVAILABLE', 'HubSpot answered 503')"
            ),
            {"c": customer},
        )
    _update(engine, customer, "current_balance = 3")
    (row,) = queue_rows(engine, customer)
    assert row["attempts"] == 2 and row["fields"] == ["current_balance", "status"]
    assert row["last_error_code"] == "HUBSPOT_UNAVAILABLE"
    with engine.connect() as conn:
        assert conn.execute(
            sa.text("SELECT next_attempt_at > now() + interval '50 minutes' FROM hubspot_sync_queue")
        ).scalar_one()


COMPARABLE_CASES = [
    ("company_name", "  Acme\tTelecom \u00a0\u3000"),
    ("company_name", "\u2003Zürich Fernmelde\u0085AG\u200a"),
    ("company_name", "Acme\x7f\x9f Inc"),
    ("contact_email", "Billing@ACME.example"),
    ("credit_limit", Decimal("1000.5")),
    ("credit_limit", Decimal("0")),
    ("current_balance", Decimal("-12.30")),
    ("status", "SUSPENDED"),
    ("payment_terms", "NET15"),
    ("services", {"voice": True, "messaging": False, "data": True}),
    ("services", {"voice": False, "messaging": False, "data": False}),
    ("services", {"voice": True, "messaging": True, "data": True}),
    ("credit_limit", None),
    ("contact_email", None),
]


@pytest.mark.parametrize(("field", "value"), COMPARABLE_CASES)
def test_the_triggers_comparable_text_matches_pythons(
    engine: sa.Engine, make_customer: Callable, field: str, value: object
) -> None:
    # Start from values none of the cases uses, so every case is a change.
    customer = make_customer(
        "Start", services={"voice": False, "messaging": True, "data": False}, credit_limit=Decimal("1"),
        current_balance=Decimal("1"), contact_email="start@start.example", payment_terms="NET30",
    )
    cast = "CAST(:v AS jsonb)" if isinstance(value, dict) else ":v"
    _update(engine, customer, f"{field} = {cast}", v=json.dumps(value) if isinstance(value, dict) else value)
    with engine.connect() as conn:
        stored = read_field_state(conn, [customer])[(customer, field)]
        column_value = conn.execute(
            sa.text(f"SELECT {field} FROM customers WHERE id = :id"), {"id": customer}
        ).scalar_one()
    assert stored.warp.value == comparable(field, column_value)
