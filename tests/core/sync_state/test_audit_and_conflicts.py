"""The audit helper and the review queue (one open conflict per customer and field)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.audit import (
    Outcome,
    SyncLogEntry,
    Trigger,
    log_sync,
    log_sync_many,
    purge_sync_log,
)
from warp_sync_pipeline.core.conflicts import close_open_conflict, open_or_update_conflict
from warp_sync_pipeline.core.decision import Observed, decide
from warp_sync_pipeline.core.fields import Direction, FieldRules

T1 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
T2 = datetime(2024, 3, 1, 9, 5, tzinfo=UTC)


def _log_rows(engine: sa.Engine) -> list[sa.RowMapping]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT * FROM hubspot_sync_log WHERE trigger <> 'mapping' ORDER BY id"))
                    .mappings())


def test_a_decision_is_logged_with_the_change_it_describes(
    engine: sa.Engine, make_customer: Callable[..., UUID], rules: FieldRules
) -> None:
    customer = make_customer()
    rule = rules["credit_limit"]
    decision = decide(rule, Observed("5000.00"), Observed(Decimal("5000")), Observed("7000", T2))
    with engine.begin() as conn:
        log_id = log_sync(conn, SyncLogEntry.for_decision(
            rule, decision, trigger=Trigger.WEBHOOK, outcome=Outcome.APPLIED, old_value=Decimal("5000.00"),
            customer_id=customer, ban="ZT-100000001", run_id="run-1",
        ))
    [row] = _log_rows(engine)
    assert row["id"] == log_id
    assert (row["customer_id"], row["warp_field"], row["hubspot_property"]) == (
        customer, "credit_limit", "warp_credit_limit")
    assert (row["direction"], row["trigger"], row["action"], row["reason"], row["outcome"]) == (
        "HUBSPOT_TO_WARP", "webhook", "WRITE_TO_WARP", "ONLY_HUBSPOT_CHANGED", "applied")
    assert (row["old_value"], row["new_value"], row["dagster_run_id"]) == ("5000.00", "7000.00", "run-1")


def test_a_log_row_rolls_back_with_its_transaction(engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), engine.begin() as conn:
        log_sync(conn, SyncLogEntry(trigger=Trigger.QUEUE, outcome=Outcome.APPLIED, ban="ZT-100000001"))
        raise RuntimeError("the write failed")
    assert _log_rows(engine) == []


def test_a_rolled_back_create_is_logged_by_ban_without_a_customer(engine: sa.Engine) -> None:
    entries = [
        SyncLogEntry(trigger=Trigger.CREATE, outcome=Outcome.ROLLED_BACK, ban="ZT-100000009",
                     warp_field=field, direction=Direction.WARP_TO_HUBSPOT, error_code="HUBSPOT_SYNC_FAILED",
                     error="x" * 5000, new_value=value, actor="admin:ops")
        for field, value in (("credit_limit", Decimal("10.00")), ("services", {"voice": True}))
    ]
    with engine.begin() as conn:
        assert log_sync_many(conn, entries) == 2
    rows = _log_rows(engine)
    assert [(r["customer_id"], r["ban"], r["outcome"]) for r in rows] == [(None, "ZT-100000009", "rolled_back")] * 2
    assert rows[1]["new_value"] == '{"voice": true}'
    assert len(rows[0]["error"]) == 2000  # bounded


def test_old_audit_rows_are_purged(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        log_sync_many(conn, [SyncLogEntry(trigger=Trigger.QUEUE, outcome=Outcome.APPLIED, ban=f"ZT-10000000{i}")
                             for i in range(3)])
        conn.execute(sa.text("UPDATE hubspot_sync_log SET logged_at = now() - interval '100 days' "
                             "WHERE ban <> 'ZT-100000002'"))
    assert purge_sync_log(engine, older_than=timedelta(days=90)) == 2
    assert [r["ban"] for r in _log_rows(engine)] == ["ZT-100000002"]


def test_unknown_trigger_or_outcome_is_refused_by_the_database(engine: sa.Engine) -> None:
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO hubspot_sync_log (trigger, outcome) VALUES ('cron', 'applied')"))


def test_one_open_conflict_per_customer_and_field(
    engine: sa.Engine, make_customer: Callable[..., UUID], rules: FieldRules
) -> None:
    customer = make_customer()
    rule = rules["company_name"]
    with engine.begin() as conn:
        first = open_or_update_conflict(
            conn, customer_id=customer, rule=rule, reason="CONFLICT_MANUAL_REVIEW", agreed="Acme",
            warp=Observed("Acme Telecom", T1), hubspot=Observed("ACME Corp", T2), detected_by="webhook",
        )
        again = open_or_update_conflict(
            conn, customer_id=customer, rule=rule, reason="CONFLICT_MANUAL_REVIEW", agreed="Acme",
            warp=Observed("Acme Telecom ", T1), hubspot=Observed("ACME Corp", T2), detected_by="reconciliation",
            run_id="run-7",
        )
        moved = open_or_update_conflict(
            conn, customer_id=customer, rule=rule, reason="CONFLICT_MANUAL_REVIEW", agreed="Acme",
            warp=Observed("Acme Telecom", T1), hubspot=Observed("ACME Group", T2), detected_by="webhook",
        )
    assert first.opened and not again.opened and not moved.opened
    assert first.id == again.id == moved.id
    # The same values again keep the version (a reviewer's view stays valid); new values move it.
    assert (first.version, again.version, moved.version) == (1, 1, 2)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM hubspot_conflicts")).mappings().one()
    assert (row["status"], row["detection_count"], row["hubspot_value"]) == ("open", 3, "ACME Group")

    # The database itself refuses a second open row.
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO hubspot_conflicts (customer_id, warp_field, hubspot_property, reason, detected_by) "
                    "VALUES (:c, 'company_name', 'name', 'CONFLICT_MANUAL_REVIEW', 'webhook')"),
            {"c": customer},
        )


def test_closing_is_compare_and_set_and_a_closed_conflict_can_reopen(
    engine: sa.Engine, make_customer: Callable[..., UUID], rules: FieldRules
) -> None:
    customer = make_customer()
    rule = rules["contact_email"]
    with engine.begin() as conn:
        ref = open_or_update_conflict(
            conn, customer_id=customer, rule=rule, reason="CONFLICT_MANUAL_REVIEW", agreed=None,
            warp=Observed("a@x.io"), hubspot=Observed("b@x.io"), detected_by="webhook",
        )
        # A reviewer who saw an older version loses the race.
        assert close_open_conflict(conn, customer, "contact_email", status="resolved",
                                   expected_version=ref.version + 1) is None
        assert close_open_conflict(conn, customer, "contact_email", status="resolved", closed_by="resolver:kim",
                                   resolution="hubspot", resolved_value="b@x.io",
                                   expected_version=ref.version) == ref.id
        assert close_open_conflict(conn, customer, "contact_email") is None  # nothing open now
        reopened = open_or_update_conflict(
            conn, customer_id=customer, rule=rule, reason="CONFLICT_MANUAL_REVIEW", agreed="b@x.io",
            warp=Observed("c@x.io"), hubspot=Observed("d@x.io"), detected_by="webhook",
        )
    assert reopened.opened and reopened.id != ref.id
    with pytest.raises(ValueError), engine.begin() as conn:
        close_open_conflict(conn, customer, "contact_email", status="open")
