from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core import reconciliation_runs as runs
from warp_sync_pipeline.core.reconciliation_runs import ReconciliationRunError

REPORT = {
    "run_id": "run-1",
    "dry_run": False,
    "status": "succeeded",
    "counts": {"customers_pulled": 3},
    "sections": [
        {"title": "Changes to HubSpot", "columns": ["BAN", "New"], "rows": [["ZT-000000001", "<script>x</script>"]]}
    ],
}


def test_start_inserts_a_running_row(engine: sa.Engine) -> None:
    record = runs.start_run(engine, "run-1", request_id=42, dry_run=True)
    assert record.status == "running"
    assert record.request_id == "42"
    assert record.dry_run is True
    assert record.finished_at is None
    assert record.counts == {}
    assert runs.get_run(engine, "run-1") == record


def test_start_again_keeps_the_start_time_and_a_known_request(engine: sa.Engine) -> None:
    first = runs.start_run(engine, "run-1", request_id="7", dry_run=False)
    again = runs.start_run(engine, "run-1", request_id=None, dry_run=True)
    assert again.started_at == first.started_at
    assert again.request_id == "7"
    assert again.dry_run is True
    assert again.status == "running"


def test_finish_stores_counts_report_and_escaped_markdown(engine: sa.Engine) -> None:
    runs.start_run(engine, "run-1")
    counts = {"customers_pulled": np.int64(3), "drift_share": 0.25, "changes_to_warp": 0}
    record = runs.finish_run(engine, "run-1", counts, REPORT, "succeeded")
    assert record.status == "succeeded"
    assert record.finished_at is not None and record.finished_at >= record.started_at
    assert record.counts == {"customers_pulled": 3, "drift_share": 0.25, "changes_to_warp": 0}
    assert record.report == REPORT
    assert "&lt;script&gt;" in record.report_markdown
    assert "<script>" not in record.report_markdown
    assert runs.get_run(engine, "run-1") == record


def test_finish_accepts_values_that_json_does_not_know(engine: sa.Engine) -> None:
    runs.start_run(engine, "run-1")
    when = dt.datetime(2024, 3, 1, 2, 0, tzinfo=dt.UTC)
    report = {**REPORT, "started_at": when, "notes": [decimal.Decimal("10.50"), float("nan")]}
    record = runs.finish_run(engine, "run-1", {"n": 1}, report)
    assert record.report["started_at"] == "2024-03-01T02:00:00+00:00"
    assert record.report["notes"] == ["10.50", None]


def test_a_finished_status_is_never_overwritten(engine: sa.Engine) -> None:
    runs.start_run(engine, "run-1")
    runs.finish_run(engine, "run-1", {"n": 1}, REPORT, "succeeded")

    assert runs.mark_failed(engine, "run-1", "the sensor came late").status == "succeeded"
    restarted = runs.start_run(engine, "run-1", request_id="9")
    assert restarted.status == "succeeded"
    assert restarted.request_id is None
    again = runs.finish_run(engine, "run-1", {"n": 2}, REPORT, "failed")
    assert again.status == "succeeded" and again.counts == {"n": 1}
    assert runs.get_run(engine, "run-1").failure_reason is None


def test_a_failed_run_stays_failed(engine: sa.Engine) -> None:
    runs.start_run(engine, "run-1")
    failed = runs.mark_failed(engine, "run-1", "Run failed: boom")
    assert failed.status == "failed"
    assert failed.failure_reason == "Run failed: boom"
    assert failed.finished_at is not None
    # The report of a run already marked failed does not turn it into a success.
    assert runs.finish_run(engine, "run-1", {"n": 1}, REPORT).status == "failed"
    assert runs.mark_failed(engine, "run-1", "second reason").failure_reason == "Run failed: boom"


def test_the_table_itself_refuses_to_reopen_a_finished_run(engine: sa.Engine) -> None:
    runs.start_run(engine, "run-1")
    runs.mark_failed(engine, "run-1", "boom")
    with pytest.raises(sa.exc.IntegrityError, match="already failed"), engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE hubspot_reconciliation_runs SET status = 'running', finished_at = NULL WHERE run_id = 'run-1'"
            )
        )


def test_mark_failed_creates_the_row_of_a_run_that_never_started_it(engine: sa.Engine) -> None:
    record = runs.mark_failed(engine, "run-2", "Run failed: \x1b[31mstep\x00 died\n  details", request_id=5, dry_run=True)
    assert record.status == "failed"
    assert record.request_id == "5"
    assert record.dry_run is True
    assert record.failure_reason == "Run failed: [31mstep died\n  details"
    assert record.finished_at is not None


def test_get_run_for_request_returns_the_latest_run(engine: sa.Engine) -> None:
    assert runs.get_run_for_request(engine, 11) is None
    runs.start_run(engine, "first", request_id=11)
    runs.mark_failed(engine, "first", "boom")
    with engine.begin() as conn:  # the re-execution started later
        conn.execute(sa.text("UPDATE hubspot_reconciliation_runs SET started_at = now() - interval '1 hour'"))
    runs.start_run(engine, "second", request_id="11")
    runs.start_run(engine, "other", request_id=12)
    found = runs.get_run_for_request(engine, "11")
    assert found is not None and found.run_id == "second"
    assert runs.get_run(engine, "missing") is None


def test_bad_input_gets_a_clear_code(engine: sa.Engine) -> None:
    with pytest.raises(ReconciliationRunError) as err:
        runs.start_run(engine, "  ")
    assert err.value.code == "INVALID_RUN_ID"
    with pytest.raises(ReconciliationRunError) as err:
        runs.finish_run(engine, "never-started", {"n": 1}, REPORT)
    assert err.value.code == "RECONCILIATION_RUN_NOT_STARTED"
    runs.start_run(engine, "run-1")
    with pytest.raises(ReconciliationRunError) as err:
        runs.finish_run(engine, "run-1", {"n": 1}, REPORT, "running")
    assert err.value.code == "INVALID_RUN_STATUS"
    with pytest.raises(ReconciliationRunError) as err:
        runs.finish_run(engine, "run-1", {"n": "many"}, REPORT)
    assert err.value.code == "INVALID_COUNTS"
    # Nothing was lost by the refused calls: the run is still open.
    assert runs.get_run(engine, "run-1").status == "running"
