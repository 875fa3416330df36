"""The reconciliation report: the dict core/email.py renders (email, Markdown) and the run row stores.

Counts first, then the changes made each way, what was skipped, MANUAL conflicts, invalid values, orphans,
duplicates and errors. Values are passed as they are; the renderers treat every one as data and escape it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pandas as pd

from warp_sync_pipeline.core.decision import Action
from warp_sync_pipeline.core.reconcile.diff import bare
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_COUNTS,
    BAN,
    CHANGE,
    COMPANY_ID,
    COMPANY_MISSING,
    COMPANY_NAME,
    COMPANY_NOT_LINKED,
    COMPANY_UNKNOWN_BAN,
    CUSTOMER_ID,
    CUSTOMER_WITHOUT_COMPANY,
    DETAIL,
    DUPLICATE_BAN,
    KIND,
    LINK_NEEDS_REVIEW,
    ORPHAN_KINDS,
)
from warp_sync_pipeline.core.reconcile.options import DRY_RUN
from warp_sync_pipeline.core.reconcile.plan import (
    ACTION,
    ERROR,
    ERROR_CODE,
    FIELD,
    HUBSPOT_RAW_VALUE,
    REASON,
    WARP_RAW_VALUE,
)
from warp_sync_pipeline.core.reconcile.writeback import APPLIED, FAILED, NOT_WRITTEN, SKIPPED

# Rows kept per section in the stored report (the email shows 100, the Markdown 50; totals are kept).
REPORT_MAX_ROWS = 500

ORPHAN_LABELS = {
    CUSTOMER_WITHOUT_COMPANY: "Customer without a company",
    COMPANY_MISSING: "Customer linked to a deleted or missing company",
    LINK_NEEDS_REVIEW: "Customer link needs a person",
    COMPANY_UNKNOWN_BAN: "Company whose warp_ban WARP does not know",
    COMPANY_NOT_LINKED: "Company not linked to its BAN's customer",
}


def _section(title: str, columns: list[str], rows: Sequence[Sequence[Any]], note: str = "") -> dict[str, Any]:
    section: dict[str, Any] = {"title": title, "columns": columns, "rows": [list(r) for r in rows[:REPORT_MAX_ROWS]],
                               "total_rows": len(rows)}
    if note:
        section["note"] = note
    return section


def _cell(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) or value is pd.NA else value


def build_report(
    *,
    run_id: str,
    dry_run: bool,
    plan: pd.DataFrame,
    hubspot: Mapping[str, Any],
    warp: Mapping[str, Any],
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
) -> dict[str, Any]:
    """The report dict (shape in core/email.py) from the plan and the two write-back summaries."""
    plan_counts = dict(plan.attrs.get(ATTR_COUNTS, {}))  # read before the attrs are dropped below
    plan = bare(plan)
    changes = plan[plan[KIND] == CHANGE]
    records = {side: list(summary.get("records", [])) for side, summary in (("HubSpot", hubspot), ("WARP", warp))}
    conflicts = list(warp.get("conflicts", {}).get("records", []))
    links = list(warp.get("links", {}).get("records", []))
    merges = list(warp.get("merges", {}).get("records", []))
    gated = hubspot.get("status") not in ("written", "nothing_to_write")

    def outcome(side: str, *wanted: str) -> list[Mapping[str, Any]]:
        return [r for r in records[side] if r["outcome"] in wanted]

    shown = (APPLIED,) if not gated else (DRY_RUN, NOT_WRITTEN)
    to_hubspot, to_warp = outcome("HubSpot", *shown), outcome("WARP", *shown)
    skipped = [(side, r) for side in records for r in records[side] if r["outcome"] == SKIPPED]
    failures = [(side, r) for side in records for r in records[side] if r["outcome"] == FAILED]
    failures += [("WARP", r) for r in conflicts + links + merges if r["outcome"] == FAILED]
    orphans = plan[plan[KIND].isin(ORPHAN_KINDS)]
    duplicates = plan[plan[KIND] == DUPLICATE_BAN]
    manual = changes[changes[ACTION] == Action.OPEN_CONFLICT.value]
    invalid = changes[changes[ACTION] == Action.SKIP_INVALID.value]
    linked = [r for r in links if r["outcome"] == APPLIED]

    counts: dict[str, int | float] = {
        "customers_pulled": plan_counts.get("customers", 0),
        "companies_pulled": plan_counts.get("companies", 0),
        "pairs_compared": plan_counts.get("pairs", 0),
        "pairs_in_sync": plan_counts.get("pairs_in_sync", 0),
        "pairs_with_differences": plan_counts.get("pairs_differing", 0),
        "fields_differing": plan_counts.get("fields_differing", 0),
        "changes_planned_to_hubspot": plan_counts.get("planned_to_hubspot", 0),
        "changes_written_to_hubspot": hubspot.get(APPLIED, 0),
        "changes_planned_to_warp": plan_counts.get("planned_to_warp", 0),
        "changes_written_to_warp": warp.get(APPLIED, 0),
        "skipped_changed_since_pull": len(skipped),
        "manual_conflicts": plan_counts.get("manual_conflicts", 0),
        "conflicts_opened": warp.get("conflicts", {}).get("opened", 0),
        "invalid_values": plan_counts.get("invalid_values", 0),
        "customers_linked_by_ban": len(linked),
        "customers_following_merges": sum(1 for r in merges if r["outcome"] == APPLIED),
        "orphans": len(orphans),
        "duplicate_bans": plan_counts.get("duplicate_bans", 0),
        "agreements_recorded": warp.get("agreements", {}).get("recorded", 0),
        "write_errors": len(failures),
    }

    alerts: list[str] = []
    for summary in (hubspot, warp):
        reason = summary.get("reason")
        if reason and summary.get("status") != DRY_RUN and reason not in alerts:
            alerts.append(reason)
    if failures:
        alerts.append(f"{len(failures):,} write(s) failed; see Errors.")
    notes: list[str] = []
    if dry_run:
        notes.append(hubspot.get("reason") or "Dry run: nothing was written to either side.")
    if skipped:
        notes.append(f"{len(skipped):,} change(s) were skipped because a side changed after the pull; the live "
                     "flows or the next run settle them.")
    if len(manual):
        notes.append(f"{len(manual):,} MANUAL conflict(s) wait for review.")
    if plan_counts.get("duplicate_bans"):
        notes.append(f"{plan_counts['duplicate_bans']:,} BAN(s) are held by more than one company: merge them in "
                     "HubSpot.")
    if merges:
        notes.append(f"{len(merges):,} customer(s) were linked to a company HubSpot merged into another; their "
                     "links follow the merge (see Merges followed).")
    if len(orphans):
        notes.append(f"{len(orphans):,} orphan(s) need a person (see Orphans).")

    verb = "written" if not gated else ("that would be written" if dry_run else "planned (not written)")
    sections = [
        _section(f"Changes {verb} to HubSpot", ["BAN", "Company", "Field", "HubSpot value before", "New value", "Reason"],
                 [[r["ban"], r["company_name"], r["field"], r["old"], r["new"], r["reason"]] for r in to_hubspot]),
        _section(f"Changes {verb} to WARP", ["BAN", "Customer", "Field", "WARP value before", "New value", "Reason"],
                 [[r["ban"], r["company_name"], r["field"], r["old"], r["new"], r["reason"]] for r in to_warp]),
        _section("Skipped: changed after the pull", ["Side", "BAN", "Field", "Why"],
                 [[side, r["ban"], r["field"], r["message"]] for side, r in skipped],
                 note="Nothing newer is ever overwritten."),
        _section("MANUAL conflicts for review", ["BAN", "Field", "WARP value", "HubSpot value", "Reason"],
                 [[_cell(r[BAN]), _cell(r[FIELD]), _cell(r[WARP_RAW_VALUE]), _cell(r[HUBSPOT_RAW_VALUE]),
                   _cell(r[REASON])] for r in manual.to_dict("records")]),
        _section("Invalid values (not written)", ["BAN", "Field", "WARP value", "HubSpot value", "Error"],
                 [[_cell(r[BAN]), _cell(r[FIELD]), _cell(r[WARP_RAW_VALUE]), _cell(r[HUBSPOT_RAW_VALUE]),
                   f"{_cell(r[ERROR_CODE]) or ''}: {_cell(r[ERROR]) or ''}".strip(": ")]
                  for r in invalid.to_dict("records")]),
        _section("Orphans", ["Kind", "BAN", "Customer", "Company", "Name", "Detail"],
                 [[ORPHAN_LABELS.get(r[KIND], r[KIND]), _cell(r[BAN]), _cell(r[CUSTOMER_ID]), _cell(r[COMPANY_ID]),
                   _cell(r[COMPANY_NAME]), _cell(r[DETAIL])] for r in orphans.to_dict("records")]),
        _section("Duplicates: one warp_ban on several companies", ["BAN", "Company", "Name", "Detail"],
                 [[_cell(r[BAN]), _cell(r[COMPANY_ID]), _cell(r[COMPANY_NAME]), _cell(r[DETAIL])]
                  for r in duplicates.to_dict("records")]),
        _section("Customers linked by BAN", ["BAN", "Customer", "Company"],
                 [[r["ban"], r["customer_id"], r["company_id"]] for r in linked]),
        _section("Merges followed", ["BAN", "Customer", "Merged company", "Outcome", "Detail"],
                 [[r["ban"], r["customer_id"], r["company_id"], r["outcome"], r["message"] or r["new"]]
                  for r in merges]),
        _section("Errors", ["Side", "BAN", "Field", "Code", "Message"],
                 [[side, r["ban"], r["field"], r["code"], r["message"]] for side, r in failures]),
    ]
    report: dict[str, Any] = {
        "run_id": run_id,
        "dry_run": dry_run,
        "status": "succeeded",
        "counts": counts,
        "alerts": alerts,
        "notes": notes,
        "sections": sections,
    }
    if started_at is not None:
        report["started_at"] = started_at
    if finished_at is not None:
        report["finished_at"] = finished_at
    return report
