"""The nightly's typed results read back from what was stored, including what older code stored."""

from __future__ import annotations

from warp_sync_pipeline.core.reconcile.results import (
    Record,
    Report,
    ReportSection,
    WriteBackSummary,
    from_stored,
)


def test_a_summary_stored_before_the_results_were_typed_is_read_back_typed() -> None:
    # The shape write_to_warp returned as a dict (no "type"), as an older run's stored file holds it.
    legacy = {"side": "warp", "status": "written", "reason": "", "planned": 2, "applied": 1, "errors": 1,
              "records": [{"outcome": "applied", "ban": "ZT-000000001", "field": "credit_limit"},
                          {"outcome": "failed", "ban": "ZT-000000002", "code": "PG_23514"}],
              "conflicts": {"planned": 1, "opened": 1, "updated": 0, "records": [{"outcome": "applied"}]},
              "links": {"planned": 0, "records": []}, "merges": {"planned": 0, "records": []},
              "agreements": {"planned": 3, "recorded": 3}, "invalid": {"planned": 0, "logged": 0}}

    summary = from_stored(legacy)

    assert isinstance(summary, WriteBackSummary)
    assert (summary.applied, summary.failed, summary.errors, summary.conflicts_opened, summary.agreements_recorded) \
        == (1, 1, 1, 1, 3)
    assert [r.code for r in summary.failures()] == ["PG_23514"]
    assert from_stored({"side": "elsewhere", "records": []}) == {"side": "elsewhere", "records": []}


def test_typed_results_round_trip_and_a_section_without_its_total_counts_its_rows() -> None:
    summary = WriteBackSummary(side="hubspot", status="written", planned=1, records=[Record("applied", ban="ZT-1")])
    assert from_stored(summary.to_json()) == summary
    section = ReportSection.from_json({"title": "T", "columns": ["a"], "rows": [["x"], {"a": "y"}]})
    assert (section.rows, section.total_rows) == ([["x"], ["y"]], 2)
    report = Report.read({"run_id": "r", "status": "succeeded", "counts": {"n": 1},
                          "started_at": "2026-12-05T01:00:00+00:00"})
    assert report.started_at is not None and Report.from_json(report.to_json()) == report
