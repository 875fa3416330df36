"""The reconciliation report (`results.Report`): what core/email.py renders (email, Markdown) and the run row
stores.

Counts first, then the changes made each way, what was skipped, MANUAL conflicts, invalid values, orphans,
duplicates and errors. Values are passed as they are; the renderers treat every one as data and escape it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
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
    HUBSPOT_PROPERTY,
    HUBSPOT_RAW_VALUE,
    REASON,
    WARP_RAW_VALUE,
)
from warp_sync_pipeline.core.reconcile.preview import NO_CHANGE, OUTCOMES, RulePreview
from warp_sync_pipeline.core.reconcile.results import (
    APPLIED,
    NOT_WRITTEN,
    SKIPPED,
    Record,
    Report,
    ReportSection,
    WriteBackSummary,
)
from warp_sync_pipeline.core.web_links import COMPANY, CONFLICTS, CUSTOMER

# Rows kept per section in the stored report (the email shows 100 and attaches the whole tables as CSV, the Markdown
# 50; totals are kept).
REPORT_MAX_ROWS = 500

ORPHAN_LABELS = {
    CUSTOMER_WITHOUT_COMPANY: "Customer without a company",
    COMPANY_MISSING: "Customer linked to a deleted or missing company",
    LINK_NEEDS_REVIEW: "Customer link needs a person",
    COMPANY_UNKNOWN_BAN: "Company whose warp_ban WARP does not know",
    COMPANY_NOT_LINKED: "Company not linked to its BAN's customer",
}


# Columns that hold customer data (names, field values, free text that may quote them).
PERSONAL_COLUMNS = frozenset({"Company name", "Customer name", "Name", "HubSpot value before", "WARP value before",
                              "New value", "WARP value", "HubSpot value", "Error", "Detail", "Message", "Why"})


def _section(title: str, columns: list[str], rows: Sequence[Sequence[Any]], note: str = "", *,
             links: Mapping[str, str] | None = None, keys: Sequence[Mapping[str, Any]] = ()) -> ReportSection:
    """A section of every row (the run row stores it capped: `Report.capped`); `links` says which column opens
    what, `keys` are each row's ids for it."""
    return ReportSection(title=title, columns=columns, rows=[list(r) for r in rows], total_rows=len(rows), note=note,
                         personal=[c for c in columns if c in PERSONAL_COLUMNS], link_columns=dict(links or {}),
                         keys=[{k: str(v) for k, v in row.items() if _cell(v) is not None} for row in keys])


def _record_keys(records: Sequence[Record]) -> list[dict[str, Any]]:
    return [{CUSTOMER: r.customer_id, COMPANY: r.company_id, "property": r.hubspot_property} for r in records]


def _frame_keys(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{CUSTOMER: _cell(r.get(CUSTOMER_ID)), COMPANY: _cell(r.get(COMPANY_ID)), "ban": _cell(r.get(BAN)),
             "field": _cell(r.get(FIELD)), "property": _cell(r.get(HUBSPOT_PROPERTY))}
            for r in frame.to_dict("records")]


# A customer's BAN opens its history; a company (its id or, where no id is shown, its name) opens it in HubSpot.
BY_CUSTOMER = {"BAN": CUSTOMER}
BY_CUSTOMER_AND_COMPANY = {"BAN": CUSTOMER, "Company": COMPANY}


def _cell(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) or value is pd.NA else value


@dataclass(frozen=True)
class _Outcomes:
    """What the plan and the two write-back summaries say, sorted once for counts, warnings and sections."""

    plan_counts: Mapping[str, Any]
    gated: bool  # nothing was written (a dry run or a gate): sections show what was planned
    to_hubspot: list[Record]
    to_warp: list[Record]
    skipped: list[tuple[str, Record]]
    failures: list[tuple[str, Record]]
    linked: list[Record]
    created: list[Record]  # companies made for customers without one (WARP_RECONCILE_CREATE_MISSING)
    merges: list[Record]
    orphans: pd.DataFrame
    duplicates: pd.DataFrame
    manual: pd.DataFrame
    invalid: pd.DataFrame

    @classmethod
    def read(cls, plan: pd.DataFrame, hubspot: WriteBackSummary, warp: WriteBackSummary) -> _Outcomes:
        plan_counts = dict(plan.attrs.get(ATTR_COUNTS, {}))  # read before the attrs are dropped below
        plan = bare(plan)
        changes = plan[plan[KIND] == CHANGE]
        records = {"HubSpot": hubspot.records, "WARP": warp.records}
        gated = hubspot.status not in ("written", "nothing_to_write")
        shown = (APPLIED,) if not gated else (DRY_RUN, NOT_WRITTEN)
        failures = [("HubSpot", r) for r in hubspot.failures()] + [("WARP", r) for r in warp.failures()]
        return cls(
            plan_counts=plan_counts,
            gated=gated,
            to_hubspot=[r for r in records["HubSpot"] if r.outcome in shown],
            to_warp=[r for r in records["WARP"] if r.outcome in shown],
            skipped=[(side, r) for side in records for r in records[side] if r.outcome == SKIPPED],
            failures=failures,
            linked=[r for r in warp.links.records if r.outcome == APPLIED],
            created=[r for r in hubspot.creates.records if r.outcome == APPLIED],
            merges=warp.merges.records,
            orphans=plan[plan[KIND].isin(ORPHAN_KINDS)],
            duplicates=plan[plan[KIND] == DUPLICATE_BAN],
            manual=changes[changes[ACTION] == Action.OPEN_CONFLICT.value],
            invalid=changes[changes[ACTION] == Action.SKIP_INVALID.value],
        )


def report_counts(seen: _Outcomes, hubspot: WriteBackSummary, warp: WriteBackSummary) -> dict[str, int | float]:
    counts = seen.plan_counts
    return {
        "customers_pulled": counts.get("customers", 0),
        "companies_pulled": counts.get("companies", 0),
        "pairs_compared": counts.get("pairs", 0),
        "pairs_in_sync": counts.get("pairs_in_sync", 0),
        "pairs_with_differences": counts.get("pairs_differing", 0),
        "fields_differing": counts.get("fields_differing", 0),
        "changes_planned_to_hubspot": counts.get("planned_to_hubspot", 0),
        "changes_written_to_hubspot": hubspot.applied,
        "changes_planned_to_warp": counts.get("planned_to_warp", 0),
        "changes_written_to_warp": warp.applied,
        "skipped_changed_since_pull": len(seen.skipped),
        "manual_conflicts": counts.get("manual_conflicts", 0),
        "conflicts_opened": warp.conflicts_opened,
        "invalid_values": counts.get("invalid_values", 0),
        "customers_linked_by_ban": len(seen.linked),
        "companies_created": len(seen.created),
        "customers_following_merges": sum(1 for r in seen.merges if r.outcome == APPLIED),
        "orphans": len(seen.orphans),
        "duplicate_bans": counts.get("duplicate_bans", 0),
        "agreements_recorded": warp.agreements_recorded,
        "write_errors": len(seen.failures),
    }


def report_warnings(seen: _Outcomes, hubspot: WriteBackSummary, warp: WriteBackSummary,
                    dry_run: bool) -> tuple[list[str], list[str]]:
    """(alerts, notes): alerts need someone to act (a gate that stopped the writes, failed writes); notes say
    what the run left for people or the live flows."""
    alerts: list[str] = []
    for summary in (hubspot, warp):
        reason = summary.reason
        if reason and summary.status != DRY_RUN and reason not in alerts:
            alerts.append(reason)
    if seen.failures:
        alerts.append(f"{_n(len(seen.failures), 'write')} failed; see Errors.")
    notes: list[str] = []
    if dry_run:
        notes.append(hubspot.reason or "Dry run: nothing was written to either side.")
    if seen.skipped:
        notes.append(f"{_n(len(seen.skipped), 'change')} skipped because a side changed after the pull; the live "
                     "flows or the next run settle them.")
    if len(seen.manual):
        notes.append(f"{_n(len(seen.manual), 'conflict')} waiting for a person to choose a value (see MANUAL "
                     "conflicts for review).")
    if seen.plan_counts.get("duplicate_bans"):
        notes.append(f"{_n(seen.plan_counts['duplicate_bans'], 'BAN')} held by more than one company: merge them "
                     "in HubSpot.")
    if seen.merges:
        notes.append(f"{_n(len(seen.merges), 'customer')} linked to a company HubSpot merged into another; their "
                     "links follow the merge (see Merges followed).")
    if len(seen.orphans):
        notes.append(f"{_n(len(seen.orphans), 'record')} without a counterpart, for a person (see Orphans).")
    return alerts, notes


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def report_sections(seen: _Outcomes, dry_run: bool) -> list[ReportSection]:
    verb = "written" if not seen.gated else ("that would be written" if dry_run else "planned (not written)")
    changes_links = {"BAN": CUSTOMER, "Company name": COMPANY}
    skipped = [r for _, r in seen.skipped]
    failed = [r for _, r in seen.failures]
    return [
        _section(f"Changes {verb} to HubSpot", ["BAN", "Company name", "Field", "HubSpot value before", "New value",
                                                "Reason"],
                 [[r.ban, r.company_name, r.field, r.old, r.new, r.reason] for r in seen.to_hubspot],
                 links=changes_links, keys=_record_keys(seen.to_hubspot)),
        _section(f"Changes {verb} to WARP", ["BAN", "Customer name", "Field", "WARP value before", "New value", "Reason"],
                 [[r.ban, r.company_name, r.field, r.old, r.new, r.reason] for r in seen.to_warp],
                 links={"BAN": CUSTOMER, "Customer name": COMPANY}, keys=_record_keys(seen.to_warp)),
        _section("Skipped: changed after the pull", ["Side", "BAN", "Field", "Why"],
                 [[side, r.ban, r.field, r.message] for side, r in seen.skipped],
                 note="Nothing newer is ever overwritten.", links=BY_CUSTOMER, keys=_record_keys(skipped)),
        # A conflict's BAN opens the review queue at that customer's conflict on that field.
        _section("MANUAL conflicts for review", ["BAN", "Field", "WARP value", "HubSpot value", "Reason"],
                 [[_cell(r[BAN]), _cell(r[FIELD]), _cell(r[WARP_RAW_VALUE]), _cell(r[HUBSPOT_RAW_VALUE]),
                   _cell(r[REASON])] for r in seen.manual.to_dict("records")],
                 links={"BAN": CONFLICTS}, keys=_frame_keys(seen.manual)),
        _section("Invalid values (not written)", ["BAN", "Field", "WARP value", "HubSpot value", "Error"],
                 [[_cell(r[BAN]), _cell(r[FIELD]), _cell(r[WARP_RAW_VALUE]), _cell(r[HUBSPOT_RAW_VALUE]),
                   f"{_cell(r[ERROR_CODE]) or ''}: {_cell(r[ERROR]) or ''}".strip(": ")]
                  for r in seen.invalid.to_dict("records")],
                 links=BY_CUSTOMER, keys=_frame_keys(seen.invalid)),
        # Customers by BAN and name, never by their id (people do not read UUIDs); companies by HubSpot's id.
        _section("Orphans", ["Kind", "BAN", "Company", "Name", "Detail"],
                 [[ORPHAN_LABELS.get(r[KIND], r[KIND]), _cell(r[BAN]), _cell(r[COMPANY_ID]),
                   _cell(r[COMPANY_NAME]), _cell(r[DETAIL])] for r in seen.orphans.to_dict("records")],
                 links=BY_CUSTOMER_AND_COMPANY, keys=_frame_keys(seen.orphans)),
        _section("Duplicates: one warp_ban on several companies", ["BAN", "Company", "Name", "Detail"],
                 [[_cell(r[BAN]), _cell(r[COMPANY_ID]), _cell(r[COMPANY_NAME]), _cell(r[DETAIL])]
                  for r in seen.duplicates.to_dict("records")],
                 links=BY_CUSTOMER_AND_COMPANY, keys=_frame_keys(seen.duplicates)),
        _section("Customers linked by BAN", ["BAN", "Customer name", "Company"],
                 [[r.ban, r.company_name, r.company_id] for r in seen.linked],
                 links=BY_CUSTOMER_AND_COMPANY, keys=_record_keys(seen.linked)),
        _section("Companies created for customers without one", ["BAN", "Customer name", "Company", "How"],
                 [[r.ban, r.company_name, r.company_id, r.reason] for r in seen.created],
                 links=BY_CUSTOMER_AND_COMPANY, keys=_record_keys(seen.created)),
        _section("Merges followed", ["BAN", "Customer name", "Merged company", "Outcome", "Detail"],
                 [[r.ban, r.company_name, r.company_id, r.outcome, r.message or r.new]
                  for r in seen.merges],
                 links={"BAN": CUSTOMER}, keys=_record_keys(seen.merges)),
        _section("Errors", ["Side", "BAN", "Field", "Code", "Message"],
                 [[side, r.ban, r.field, r.code, r.message] for side, r in seen.failures],
                 links=BY_CUSTOMER, keys=_record_keys(failed)),
    ]


# How a plan treats a record, as the preview's columns say it (codes of core.decision.Action, and none).
OUTCOME_WORDS = {"WRITE_TO_HUBSPOT": "written to HubSpot", "WRITE_TO_WARP": "written to WARP",
                 "OPEN_CONFLICT": "a conflict for a person", "SKIP_INVALID": "not copied (invalid)",
                 NO_CHANGE: "left as it is"}


def preview_sections(preview: RulePreview) -> list[ReportSection]:
    """A rule draft's preview: per field, what each rule set would do; then the records it would treat
    differently (with the value each would write)."""
    per_field = [[name, *(f"{sides['live'][label]:,} / {sides['draft'][label]:,}" for label, _ in OUTCOMES)]
                 for name, sides in preview.fields.items()]
    moved = [[r["ban"], r["field"], _outcome(r["live"], r["live_value"]), _outcome(r["draft"], r["draft_value"]),
              r["draft_reason"] or r["live_reason"]] for r in preview.records]
    changed = "; ".join(preview.changed_rules) or "the draft's rules equal the live ones"
    return [
        ReportSection(title=f"Rule draft {preview.draft_name}: per field, live rules / draft",
                      columns=["Field", "To HubSpot", "To WARP", "Conflicts", "Cannot copy"], rows=per_field,
                      total_rows=len(per_field), note=f"The draft changes: {changed}. Both plans come from this "
                                                      "run's pull; nothing was written."),
        ReportSection(title=f"Records rule draft {preview.draft_name} would treat differently",
                      columns=["BAN", "Field", "Live rules", "Draft", "Reason"], rows=moved,
                      total_rows=preview.records_total, personal=["Live rules", "Draft"],
                      link_columns={"BAN": CUSTOMER},
                      keys=[{CUSTOMER: r["customer_id"]} if r.get("customer_id") else {} for r in preview.records]),
    ]


def _outcome(action: str, value: str | None) -> str:
    words = OUTCOME_WORDS.get(action, action)
    return f"{words}: {value}" if value is not None and action in ("WRITE_TO_HUBSPOT", "WRITE_TO_WARP") else words


def build_report(
    *,
    run_id: str,
    dry_run: bool,
    plan: pd.DataFrame,
    hubspot: WriteBackSummary,
    warp: WriteBackSummary,
    started_at: datetime | None = None,
    finished_at: datetime | None = None,
    preview: RulePreview | None = None,
    scope: dict[str, Any] | None = None,
) -> Report:
    """The report from the plan and the two write-back summaries: counts, warnings (alerts and notes) and
    sections, each built by a function of its own from one reading of the outcomes; a rule draft's preview
    first when the run previewed one."""
    seen = _Outcomes.read(plan, hubspot, warp)
    alerts, notes = report_warnings(seen, hubspot, warp, dry_run)
    sections = report_sections(seen, dry_run)
    if scope is not None:
        notes.insert(0, f"An incremental run: it reconciled the {scope['customers']:,} customers and "
                        f"{scope['companies']:,} companies that moved since {scope['warp_since'][:16].replace('T', ' ')}"
                        f" UTC ({scope['changed_by_search']:,} found by HubSpot's search in {scope['search_windows']:,} "
                        f"window(s), {scope['changed_by_webhooks']:,} by webhook events, {scope['changed_in_warp']:,} "
                        f"changed in WARP, {scope['carried']:,} carried over; HubSpot reports {scope['churn']:,} "
                        "companies modified in the window). Orphans, duplicates and drift are judged on the weekly "
                        "full sweep.")
    if preview is not None:
        notes.insert(0, f"A preview of rule draft {preview.draft_name}: the counts and changes below are the live "
                        f"rules'; the draft would treat {preview.records_total:,} records differently.")
        sections = preview_sections(preview) + sections
    return Report(run_id=run_id, dry_run=dry_run, status="succeeded", counts=report_counts(seen, hubspot, warp),
                  alerts=alerts, notes=notes, sections=sections, started_at=started_at,
                  finished_at=finished_at)
