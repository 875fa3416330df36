"""The nightly reconciliation (DESIGN.md flow 4) as Dagster assets: each one calls one core service.

warp_customers, hubspot_companies -> field_differences -> hubspot_property_history -> reconciliation_plan
-> hubspot_writeback, warp_writeback -> reconciliation_report. Frames go through the Parquet IO manager (a
private folder with retention); only the two pulls hold every row. `reconciliation_job` runs them in one
process, and `reconciliation_daily_schedule` at 02:00 in WARP_SCHEDULE_TIMEZONE.

Run-wide settings (dry_run above all) are one `reconciliation` resource set per run, never per-asset config,
so one write-back cannot be dry while the other writes. dry_run is mirrored as the run tag warp/dry-run; a run
tagged as a dry run is a dry run whatever its config says (the safe reading of a mismatch).
"""

# No `from __future__ import annotations`: Dagster reads the assets' parameter annotations at definition.
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from warp_sync_pipeline.core.alerts import CheckOutcome, previously_found, record_check_results
from warp_sync_pipeline.core.email import EmailDeliveryError, render_markdown
from warp_sync_pipeline.core.fields import FieldRules, load_rules
from warp_sync_pipeline.core.hubspot import HubSpotError
from warp_sync_pipeline.core.pauses import open_pauses
from warp_sync_pipeline.core.reconcile import (
    ReconcileOptions,
    build_plan,
    build_report,
    compute_differences,
    fetch_property_history,
    history_needed,
    hubspot_properties,
    pull_hubspot_companies,
    pull_warp_customers,
    write_to_hubspot,
    write_to_warp,
    writeback_enabled,
)
from warp_sync_pipeline.core.reconcile.diff import duplicate_bans
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_COUNTS,
    ATTR_DRAFT_RULES,
    ATTR_RULES,
    BAN,
    COMPANY_ID,
    CUSTOMER_ID,
    CUSTOMER_SIDE_ORPHANS,
    KIND,
    MATCH,
    draft_rules_from_attr,
    rules_from_attr,
    rules_to_attr,
)
from warp_sync_pipeline.core.reconcile.incremental import (
    FULL,
    INCREMENTAL,
    Watermark,
    advance_watermark,
    carry,
    find_scope,
    measure_against_population,
    read_watermark,
    settle_carried,
    unsettled,
)
from warp_sync_pipeline.core.reconcile.options import BRAKED, DEFAULT_WARP_PAGE_SIZE
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, REASON
from warp_sync_pipeline.core.reconcile.preview import (
    RulePreview,
    preview_draft,
    preview_markdown,
    rules_for_pull,
)
from warp_sync_pipeline.core.reconcile.pull import (
    DailyQuotaTooLow,
    check_daily_headroom,
    export_hubspot_companies,
    pulled_at,
    read_hubspot_companies,
)
from warp_sync_pipeline.core.reconcile.report import REPORT_MAX_ROWS
from warp_sync_pipeline.core.reconcile.results import Report, TrendPoint, WriteBackSummary
from warp_sync_pipeline.core.reconciliation_runs import (
    finish_run,
    get_run,
    recent_trend,
    record_email_outcome,
    record_progress,
    set_mode,
    start_run,
)
from warp_sync_pipeline.core.rule_drafts import (
    RuleDraftError,
    draft_rules,
    get_draft,
    live_rules,
    record_preview,
)
from warp_sync_pipeline.core.settings import SettingsError, load_settings
from warp_sync_pipeline.core.web_links import WebLinks, web_links
from warp_sync_pipeline.defs.systems import (
    WRITES_HUBSPOT,
    WRITES_WARP,
    hubspot_companies_object,
    warp_customers_table,
)
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.runs import (
    BULK_RUN_POD,
    BULK_TAGS,
    CATALOG,
    DRY_RUN_TAG,
    FLOW_TAG,
    RECONCILE_MODE_TAG,
    RECONCILIATION_FLOW,
    RECONCILIATION_JOB_NAME,
    RULE_DRAFT_TAG,
    dry_run_from_tags,
    max_runtime_tags,
    request_id_from_tags,
)

GROUP = "reconciliation"
IO_MANAGER = "parquet_io_manager"
SCHEDULE_CRON = "0 2 * * *"
# Per SMTP step; the report run is not a sensor, but a hung mail server must not hold the run for long.
REPORT_SMTP_TIMEOUT_SECONDS = 30.0
SAMPLE = 20  # values listed in check metadata
# CHECKED_ASSETS_NOTE: assets with check_specs carry no return annotation. Dagster 1.13 types every output of
# such an asset as Nothing when the annotation is MaterializeResult (and refuses MaterializeResult[T]), which
# would reject the frame; unannotated, the value goes to the IO manager as Any.


class ReconciliationSettings(dg.ConfigurableResource):
    """Settings of one reconciliation run, set per run (RunConfig resources). dry_run computes everything and
    changes neither side; allow_mass_write lets this run past the brake.

    The limits are unset unless a run sets them: unset, each is its WARP_RECONCILE_* setting, read when the run
    starts. (Dagster replaces a resource's code values with the run config it is given, so a limit put in the code
    from the environment would silently fall back to its default in every run launched with config: the request
    sensor's, the shell's.)"""

    dry_run: bool = Field(default=False, description="Compute the plan and report; write nothing to either side.")
    allow_mass_write: bool = Field(
        default=False, description="Write even when the plan would change more than max_change_share of records."
    )
    max_change_share: float | None = Field(
        default=None, ge=0, le=1,
        description="The brake: share of compared records a plan may change (unset: WARP_RECONCILE_MAX_CHANGE_SHARE)."
    )
    max_drift_share: float | None = Field(
        default=None, ge=0, le=1,
        description="The drift check fails above this share of differing records (unset: "
                    "WARP_RECONCILE_MAX_DRIFT_SHARE)."
    )
    max_plan_age_hours: float | None = Field(
        default=None, gt=0,
        description="Write-backs refuse a plan pulled longer ago than this (unset: WARP_RECONCILE_MAX_PLAN_AGE_HOURS)."
    )
    warp_chunk_size: int | None = Field(
        default=None, ge=1,
        description="Customers per WARP write-back transaction (unset: WARP_RECONCILE_CHUNK_SIZE).")
    warp_page_size: int = Field(default=DEFAULT_WARP_PAGE_SIZE, ge=1,
                                description="Customers per keyset page of the WARP pull.")
    create_missing_companies: bool | None = Field(
        default=None,
        description="Create a HubSpot company for each customer without one; the creates count toward the brake "
                    "(unset: WARP_RECONCILE_CREATE_MISSING).")
    mode: str | None = Field(
        default=None, pattern="^(full|incremental)$",
        description="full: every customer and company; incremental: what moved since the last good run (the "
                    "schedule's choice on other days than the sweep's; unset: the warp/reconcile-mode tag, else full).")
    rule_draft: str | None = Field(
        default=None,
        description="Preview this open rule draft (`warp-sync rules draft ...`): the run is a dry run, and its report "
                    "compares the draft's plan with the live rules' on the same pull.")

    def draft_name(self, run_tags: dict[str, str]) -> str | None:
        return self.rule_draft or run_tags.get(RULE_DRAFT_TAG) or None

    def wanted_mode(self, run_tags: dict[str, str]) -> str:
        return self.mode or run_tags.get(RECONCILE_MODE_TAG) or FULL

    def options(self, run_tags: dict[str, str]) -> ReconcileOptions:
        """This run's options: what the run config set, else the WARP_RECONCILE_* settings. A run under a rule
        draft is a dry run, whatever else it says."""
        configured = {"max_change_share": self.max_change_share, "max_drift_share": self.max_drift_share,
                      "max_plan_age_hours": self.max_plan_age_hours, "warp_chunk_size": self.warp_chunk_size,
                      "create_missing": self.create_missing_companies}
        return ReconcileOptions.from_env(
            dry_run=self.dry_run or dry_run_from_tags(run_tags) or self.draft_name(run_tags) is not None,
            allow_mass_write=self.allow_mass_write,
            warp_page_size=self.warp_page_size,
            **{name: value for name, value in configured.items() if value is not None},
        )


# --- asset checks (computed while materializing) -------------------------------------------------------------
HUBSPOT_COMPANIES_UNIQUE_WARP_BAN = dg.AssetCheckSpec(
    "unique_warp_ban", asset="hubspot_companies",
    description="No warp_ban is held by two or more companies (HubSpot's uniqueness can be bypassed by imports).",
)
FIELD_DIFFERENCES_EVERY_CUSTOMER_LINKED = dg.AssetCheckSpec(
    "every_customer_linked", asset="field_differences",
    description="Every WARP customer has its HubSpot company (linked, or found by its BAN).",
)
FIELD_DIFFERENCES_DRIFT_BELOW_LIMIT = dg.AssetCheckSpec(
    "drift_below_limit", asset="field_differences",
    description="The share of customer/company pairs that differ stays below the run's max_drift_share.",
)
HUBSPOT_WRITEBACK_WITHOUT_ERRORS = dg.AssetCheckSpec(
    "without_errors", asset="hubspot_writeback", description="Every HubSpot write of the plan succeeded or was "
    "skipped on purpose.",
)
REPORT_EMAILED = dg.AssetCheckSpec(
    "emailed", asset="reconciliation_report",
    description="The report reached its recipients when email is configured (a delivery failure leaves the run "
                "green, so this check is where it shows).",
)
WARP_WRITEBACK_WITHOUT_ERRORS = dg.AssetCheckSpec(
    "without_errors", asset="warp_writeback", description="Every WARP write, link and conflict succeeded or was "
    "skipped on purpose.",
)


# --- helpers ------------------------------------------------------------------------------------------------


def _begin(context: dg.AssetExecutionContext, db: DatabaseResource, settings: ReconciliationSettings) -> ReconcileOptions:
    """Record the run (its row, upserted; never touching a finished one) and mirror its settings as tags."""
    run = context.run
    options = settings.options(dict(run.tags))
    start_run(db.engine, run.run_id, request_id_from_tags(run.tags), options.dry_run)
    wanted = {FLOW_TAG: RECONCILIATION_FLOW, DRY_RUN_TAG: "true" if options.dry_run else "false"}
    draft = settings.draft_name(dict(run.tags))
    if draft:
        wanted[RULE_DRAFT_TAG] = draft
    missing = {key: value for key, value in wanted.items() if run.tags.get(key) != value}
    if missing:
        context.instance.add_run_tags(run.run_id, missing)
    return options


@dataclass(frozen=True)
class _RunRules:
    live: FieldRules
    draft: FieldRules | None  # a previewed draft's rules
    pull: FieldRules  # what the pulls read: the live rules', and the draft's too

    def mark(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The pulled frame labelled with the rules each step follows (the live rules decide the run's plan)."""
        frame.attrs[ATTR_RULES] = rules_to_attr(self.live)
        if self.draft is not None:
            frame.attrs[ATTR_DRAFT_RULES] = rules_to_attr(self.draft)
        return frame


def _rules(context: dg.AssetExecutionContext, db: DatabaseResource,
           settings: ReconciliationSettings) -> _RunRules:
    draft_name = settings.draft_name(dict(context.run.tags))
    with db.engine.connect() as conn:
        live = load_rules(conn)
        if draft_name is None:
            return _RunRules(live, None, live)
        try:
            draft = draft_rules(conn, get_draft(conn, draft_name))
        except RuleDraftError as exc:
            raise dg.Failure(description=f"{exc.code}: {exc.message}") from exc
    return _RunRules(live, draft, rules_for_pull(live, draft))


def _numbers(counts: dict[str, Any]) -> dict[str, Any]:
    """Counts as numbers (charted across runs); shares rounded to four places."""
    return {name: int(value) if float(value).is_integer() else round(float(value), 4) for name, value in counts.items()}


# What the preview tables show: ids, BAN, field and reason; never names or values (the event log keeps them forever).
DIFFERENCE_PREVIEW = [KIND, CUSTOMER_ID, BAN, COMPANY_ID, MATCH]
PLAN_PREVIEW = [KIND, CUSTOMER_ID, BAN, COMPANY_ID, FIELD, ACTION, REASON]
PREVIEW_ROWS = 20


def _timestamp(frame: pd.DataFrame) -> dg.MetadataValue:
    return dg.MetadataValue.timestamp(pulled_at(frame))


def _column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()])


def _preview(frame: pd.DataFrame, columns: list[str], rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows of `columns` as a table (text cells; missing values empty)."""
    shown = [c for c in columns if c in frame.columns]
    head = frame.loc[:, shown].head(rows).astype("string").fillna("")
    return dg.MetadataValue.table(
        records=[dg.TableRecord(dict(zip(shown, values, strict=True))) for values in head.itertuples(index=False)],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in shown]),
    )


def _progress(context: dg.AssetExecutionContext, db: DatabaseResource, stage: str) -> Callable[[str], None]:
    """Progress lines go to the run's log and to the run row (for `warp-sync reconcile`, which follows the row)."""
    run_id = context.run.run_id

    def report(message: str) -> None:
        context.log.info(message)
        record_progress(db.engine, run_id, stage, message)

    return report


def _hubspot_cost(hubspot: HubSpotResource, before: Counter[str]) -> dict[str, Any]:
    """What a step cost in HubSpot requests (every attempt), in all and by kind: the budget an operator plans by,
    and how the benchmarks tell searches, history reads and compare-and-set re-reads apart."""
    spent = hubspot.client.requests_sent() - before
    return {"hubspot_requests": sum(spent.values()), "hubspot_requests_by_kind": dict(sorted(spent.items()))}


def _summary_metadata(summary: WriteBackSummary) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "status": summary.status,
        "planned": summary.planned,
        "applied": summary.applied,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "errors": summary.errors,
    }
    if summary.reason:
        metadata["reason"] = summary.reason
    return metadata


def _recorded(context: dg.AssetExecutionContext, db: DatabaseResource,
              *checks: tuple[dg.AssetCheckSpec, dg.AssetCheckResult, Sequence[str]]) -> list[dg.AssetCheckResult]:
    """The check results, each also kept in warp_check_results (with what it found), where the alert sensor reads
    them: open-source Dagster has no alert hook for checks."""
    record_check_results(db.engine, context.run.run_id, [
        CheckOutcome(spec.asset_key.to_user_string(), spec.name, result.severity.value, result.passed,
                     result.description or "", tuple(found))
        for spec, result, found in checks])
    return [result for _, result, _ in checks]


def _errors_check(spec: dg.AssetCheckSpec, summary: WriteBackSummary) -> tuple[dg.AssetCheckSpec,
                                                                               dg.AssetCheckResult, list[str]]:
    failures = list(summary.failures())
    codes: dict[str, int] = {}
    for record in failures:
        codes[str(record.code)] = codes.get(str(record.code), 0) + 1
    described = ", ".join(f"{count:,} {code}" for code, count in sorted(codes.items()))
    return spec, dg.AssetCheckResult(
        check_name=spec.name,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"{len(failures):,} write(s) failed: {described}." if failures else "Every write succeeded or "
                    "was skipped on purpose.",
        metadata={"failed": len(failures), "failures_by_code": codes},
    ), []


# --- the assets ---------------------------------------------------------------------------------------------


@dg.asset(group_name=GROUP, **CATALOG, kinds={"postgres", "hubspot"}, io_manager_key=IO_MANAGER,
          deps=[warp_customers_table, hubspot_companies_object])
def reconciliation_scope(
    context: dg.AssetExecutionContext, db: DatabaseResource, hubspot: HubSpotResource,
    reconciliation: ReconciliationSettings,
) -> dg.MaterializeResult[dict]:
    """Full or incremental, and for an incremental run what moved since the last good one: HubSpot's search by
    hs_lastmodifieddate over the window since the watermark (split past 10,000 results), the stored webhook events,
    WARP's changes, each record's counterpart and the records carried over. With no watermark, or a rule draft to
    preview, the run is a full sweep."""
    options = _begin(context, db, reconciliation)
    before = hubspot.client.requests_sent()
    started_at = datetime.now(UTC)
    tags = dict(context.run.tags)
    wanted = reconciliation.wanted_mode(tags)
    mark = read_watermark(db.engine)
    settings = load_settings()
    if wanted == INCREMENTAL and mark is not None and reconciliation.draft_name(tags) is None:
        scope = find_scope(db.engine, hubspot.client, mark, started_at=started_at,
                           overlap=timedelta(seconds=settings.reconcile_search_overlap_seconds),
                           index_lag=timedelta(seconds=settings.reconcile_index_lag_seconds),
                           warp_margin=timedelta(seconds=settings.reconcile_warp_margin_seconds))
        value = {"mode": INCREMENTAL, "started_at": started_at.isoformat(), "customer_ids": sorted(scope.customer_ids),
                 "company_ids": sorted(scope.company_ids), "hubspot_to": scope.hubspot_to.isoformat(),
                 "describe": scope.describe()}
        why = f"what moved since {mark.warp_through.isoformat()}"
    else:
        value = {"mode": FULL, "started_at": started_at.isoformat(),
                 "hubspot_to": (started_at - timedelta(seconds=settings.reconcile_index_lag_seconds)).isoformat()}
        why = ("the run asked for a full sweep" if wanted == FULL else
               "a rule draft is previewed" if mark is not None else "no good run yet to start from")
    set_mode(db.engine, context.run.run_id, value["mode"])
    if tags.get(RECONCILE_MODE_TAG) != value["mode"]:
        context.instance.add_run_tags(context.run.run_id, {RECONCILE_MODE_TAG: value["mode"]})
    context.log.info(f"{value['mode']} run ({why}){' (dry run)' if options.dry_run else ''}")
    return dg.MaterializeResult(value=value, metadata={
        "mode": value["mode"], "why": why,
        **{k: v for k, v in (value.get("describe") or {}).items() if isinstance(v, int)},
        **_hubspot_cost(hubspot, before),
    })


@dg.asset(group_name=GROUP, **CATALOG, kinds={"postgres", "pandas"}, io_manager_key=IO_MANAGER,
          deps=[warp_customers_table])
def warp_customers(
    context: dg.AssetExecutionContext, reconciliation_scope: dict, db: DatabaseResource,
    reconciliation: ReconciliationSettings,
) -> dg.MaterializeResult[pd.DataFrame]:
    """Every WARP customer (an incremental run: those in its scope) with its mapped fields (as stored), HubSpot link,
    field state and per-field change times, read in keyset pages from one consistent snapshot."""
    options = _begin(context, db, reconciliation)
    rules = _rules(context, db, reconciliation)
    only = reconciliation_scope.get("customer_ids") if reconciliation_scope.get("mode") == INCREMENTAL else None
    frame = rules.mark(pull_warp_customers(db.engine, rules.pull, page_size=options.warp_page_size,
                                           progress=_progress(context, db, "warp_pull"), only=only))
    return dg.MaterializeResult(value=frame, metadata={
        "dagster/row_count": len(frame), "pulled_at": _timestamp(frame), "fields": len(rules.pull),
        "dagster/column_schema": _column_schema(frame),
    })


@dg.asset(group_name=GROUP, **CATALOG, kinds={"hubspot", "pandas"}, io_manager_key=IO_MANAGER,
          check_specs=[HUBSPOT_COMPANIES_UNIQUE_WARP_BAN], deps=[hubspot_companies_object])
def hubspot_companies(
    context: dg.AssetExecutionContext, reconciliation_scope: dict, db: DatabaseResource, hubspot: HubSpotResource,
    reconciliation: ReconciliationSettings,
):  # returns dg.MaterializeResult (value + check results); see CHECKED_ASSETS_NOTE
    """Every active HubSpot company with only the properties warp-sync maps: a full sweep lists them 100 a page,
    streamed page by page, or (WARP_RECONCILE_SWEEP_SOURCE=export) reads one export's file, falling back to the
    list when the export fails; an incremental run reads its scope's companies, 100 a batch read."""
    _begin(context, db, reconciliation)
    before = hubspot.client.requests_sent()
    rules = _rules(context, db, reconciliation)
    properties = hubspot_properties(rules.pull)
    if reconciliation_scope.get("mode") == INCREMENTAL:
        frame, source = read_hubspot_companies(hubspot.client, reconciliation_scope.get("company_ids") or [],
                                               properties), "batch reads of the scope"
    else:
        frame, source = _sweep_hubspot(context, db, hubspot, properties)
    frame = rules.mark(frame)
    check = _unique_ban_check(db, duplicate_bans(frame))
    return dg.MaterializeResult(value=frame, check_results=_recorded(context, db, check), metadata={
        "dagster/row_count": len(frame), "pulled_at": _timestamp(frame), "source": source,
        "dagster/column_schema": _column_schema(frame), **_hubspot_cost(hubspot, before),
    })


def _sweep_hubspot(context: dg.AssetExecutionContext, db: DatabaseResource, hubspot: HubSpotResource,
                   properties: list[str]) -> tuple[pd.DataFrame, str]:
    """A full sweep's pull and how it was made: by export when configured, else (or when the export fails) by
    the list API, whose 10,000 calls a million companies first need the daily quota's headroom."""
    settings = load_settings()
    fell_back = ""
    if settings.reconcile_sweep_source == "export":
        try:
            return export_hubspot_companies(
                hubspot.client, properties, poll_seconds=settings.reconcile_export_poll_seconds,
                timeout_seconds=settings.reconcile_export_timeout_seconds,
                progress=_progress(context, db, "hubspot_pull")), "export"
        except HubSpotError as exc:
            context.log.warning(f"The HubSpot export failed ({exc}); the sweep reads the list API instead.")
            fell_back = f" (the export failed: {exc})"
    try:
        check_daily_headroom(db.engine, hubspot.client.budget)
    except DailyQuotaTooLow as exc:
        raise dg.Failure(description=str(exc)) from exc
    return pull_hubspot_companies(hubspot.client, properties,
                                  progress=_progress(context, db, "hubspot_pull")), "list API" + fell_back


def _unique_ban_check(db: DatabaseResource, duplicated: pd.Series) -> tuple[dg.AssetCheckSpec, dg.AssetCheckResult,
                                                                          list[str]]:
    """Duplicate BANs fail the check; at ERROR only when one is new since the last run (a known duplicate waits for
    a person to merge the companies, and must not turn the asset red every night)."""
    spec = HUBSPOT_COMPANIES_UNIQUE_WARP_BAN
    found = sorted(str(ban) for ban in duplicated.index)
    new = sorted(set(found) - previously_found(db.engine, spec.asset_key.to_user_string(), spec.name))
    if not found:
        description = "No warp_ban is held by two or more companies."
    elif new:
        description = (f"{len(new):,} new duplicate BAN(s) since the last run ({len(found):,} in all): "
                       + ", ".join(new[:SAMPLE]))
    else:
        description = f"{len(found):,} known duplicate BAN(s), none new: merge the companies in HubSpot."
    result = dg.AssetCheckResult(
        check_name=spec.name, passed=not found,
        severity=dg.AssetCheckSeverity.ERROR if new else dg.AssetCheckSeverity.WARN, description=description,
        metadata={"duplicate_bans": len(found), "new_duplicate_bans": len(new),
                  "companies_involved": int(duplicated.sum()), "sample": found[:SAMPLE]},
    )
    return spec, result, found


@dg.asset(group_name=GROUP, **CATALOG, kinds={"pandas"}, io_manager_key=IO_MANAGER,
          check_specs=[FIELD_DIFFERENCES_EVERY_CUSTOMER_LINKED, FIELD_DIFFERENCES_DRIFT_BELOW_LIMIT])
def field_differences(
    context: dg.AssetExecutionContext, reconciliation_scope: dict, warp_customers: pd.DataFrame,
    hubspot_companies: pd.DataFrame, db: DatabaseResource, reconciliation: ReconciliationSettings,
):  # returns dg.MaterializeResult (value + check results); see CHECKED_ASSETS_NOTE
    """Customers and companies joined on the HubSpot company id (falling back to warp_ban for unlinked
    customers), every mapped field normalised and compared with vectorized operations. Keeps the pairs that
    differ (or whose agreed value must be recorded), the orphans and the duplicates."""
    options = reconciliation.options(dict(context.run.tags))
    rules = rules_from_attr(warp_customers)
    if rules_from_attr(hubspot_companies) != rules or (
            draft_rules_from_attr(hubspot_companies) != draft_rules_from_attr(warp_customers)):
        # The mapping changed between the two pulls: the frames do not describe the same fields.
        raise dg.Failure(description="The field mapping changed between the WARP and the HubSpot pull "
                                     "(RULES_CHANGED_MID_RUN); run the reconciliation again.")
    frame = compute_differences(warp_customers, hubspot_companies, rules)
    counts = frame.attrs[ATTR_COUNTS]
    unlinked = frame[frame[KIND].isin(CUSTOMER_SIDE_ORPHANS)]
    pairs = counts.get("pairs", 0)
    drift = counts.get("pairs_differing", 0) / pairs if pairs else 0.0
    # Population checks are judged on full sweeps: an incremental run compares only what moved, which differs.
    full = reconciliation_scope.get("mode", FULL) == FULL
    scope = {"scope": "every customer and company" if full else "the records that moved since the last good run"}
    checks = _recorded(context, db, (FIELD_DIFFERENCES_EVERY_CUSTOMER_LINKED, dg.AssetCheckResult(
            check_name=FIELD_DIFFERENCES_EVERY_CUSTOMER_LINKED.name,
            passed=unlinked.empty,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(unlinked):,} customer(s) without a HubSpot company." if len(unlinked) else
            "Every customer has its company.",
            metadata={**scope, "customers_without_company": len(unlinked),
                      "by_kind": {str(k): int(v) for k, v in unlinked[KIND].value_counts().items()},
                      "sample_bans": sorted(unlinked["ban"].dropna().tolist())[:SAMPLE]},
        ), []), (FIELD_DIFFERENCES_DRIFT_BELOW_LIMIT, dg.AssetCheckResult(
            check_name=FIELD_DIFFERENCES_DRIFT_BELOW_LIMIT.name,
            passed=drift <= options.max_drift_share or not full,
            severity=dg.AssetCheckSeverity.WARN,
            description=(f"{drift:.2%} of pairs differ (limit {options.max_drift_share:.2%})." if full else
                         f"Not judged on an incremental run: {drift:.2%} of the {pairs:,} pairs that moved differ; "
                         "the weekly full sweep judges drift."),
            metadata={**scope, "drift_share": round(float(drift), 4), "max_drift_share": options.max_drift_share,
                      "pairs_differing": counts.get("pairs_differing", 0), "pairs": pairs},
        ), []))
    return dg.MaterializeResult(value=frame, check_results=checks, metadata={
        "dagster/row_count": len(frame), **_numbers(counts), "dagster/column_schema": _column_schema(frame),
        "preview": _preview(frame, DIFFERENCE_PREVIEW),
    })


@dg.asset(group_name=GROUP, **CATALOG, kinds={"hubspot", "pandas"}, io_manager_key=IO_MANAGER,
          retry_policy=dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS))
def hubspot_property_history(
    context: dg.AssetExecutionContext, field_differences: pd.DataFrame, db: DatabaseResource,
    hubspot: HubSpotResource,
) -> dg.MaterializeResult[pd.DataFrame]:
    """When each LATEST_WINS property last changed in HubSpot, read from property history (50 companies a
    call) only for the companies whose values moved on both sides: only there do change times decide."""
    rules = rules_from_attr(field_differences)
    ids, properties = history_needed(field_differences, rules)
    context.log.info(f"Property history of {len(ids):,} companies ({', '.join(properties) or 'no properties'})")
    before = hubspot.client.requests_sent()
    frame = fetch_property_history(hubspot.client, ids, properties)
    return dg.MaterializeResult(value=frame, metadata={
        "dagster/row_count": len(frame), "companies": len(ids), "properties": ", ".join(properties),
        **_hubspot_cost(hubspot, before),
    })


@dg.asset(group_name=GROUP, **CATALOG, kinds={"pandas"}, io_manager_key=IO_MANAGER)
def reconciliation_plan(
    context: dg.AssetExecutionContext, reconciliation_scope: dict, field_differences: pd.DataFrame,
    hubspot_property_history: pd.DataFrame, db: DatabaseResource,
) -> dg.MaterializeResult[pd.DataFrame]:
    """Each difference decided by the one decision function (vectorized): to WARP, to HubSpot, a MANUAL
    conflict, an invalid value; plus customers to link by BAN, orphans on both sides and duplicates. An incremental
    run's brake is measured against every linked customer."""
    rules = rules_from_attr(field_differences)
    plan = build_plan(field_differences, hubspot_property_history, rules)
    plan.attrs[ATTR_RULES] = rules_to_attr(rules)
    if reconciliation_scope.get("mode") == INCREMENTAL:
        measure_against_population(plan, db.engine)
    counts = plan.attrs[ATTR_COUNTS]
    return dg.MaterializeResult(value=plan, metadata={
        "dagster/row_count": len(plan), "dagster/column_schema": _column_schema(plan),
        "preview": _preview(plan, PLAN_PREVIEW),
        **{k: counts[k] for k in ("planned_to_hubspot", "planned_to_warp", "manual_conflicts", "invalid_values",
                                  "links_to_make", "agreements_to_record", "records_to_change")},
    })


@dg.asset(group_name=GROUP, **CATALOG, kinds={"pandas"}, io_manager_key=IO_MANAGER)
def rule_draft_preview(
    context: dg.AssetExecutionContext, warp_customers: pd.DataFrame, hubspot_companies: pd.DataFrame,
    field_differences: pd.DataFrame, hubspot_property_history: pd.DataFrame, reconciliation_plan: pd.DataFrame,
    db: DatabaseResource, hubspot: HubSpotResource, reconciliation: ReconciliationSettings,
) -> dg.MaterializeResult[dict]:
    """In a run under a rule draft (a dry run): the draft's plan from the same pulled frames, beside the live rules'
    plan, per field and reason, and the records the draft would treat differently; kept for the review pages.
    In any other run, nothing to compare."""
    draft = draft_rules_from_attr(warp_customers)
    if draft is None:
        return dg.MaterializeResult(value={}, metadata={"rule_draft": "none"})
    name = reconciliation.draft_name(dict(context.run.tags)) or ""
    if draft_rules_from_attr(hubspot_companies) != draft:
        raise dg.Failure(description="The rule draft changed between the WARP and the HubSpot pull "
                                     "(RULES_CHANGED_MID_RUN); run the preview again.")
    live = rules_from_attr(reconciliation_plan)
    with db.engine.connect() as conn:
        changed = get_draft(conn, name, any_status=True).changes(live_rules(conn))
    before = hubspot.client.requests_sent()
    preview = preview_draft(
        name, changed, warp=warp_customers, hubspot=hubspot_companies, live_differences=field_differences,
        live_history=hubspot_property_history, live_plan=reconciliation_plan, live=live, draft=draft,
        fetch_history=lambda ids, props: fetch_property_history(hubspot.client, ids, props))
    record_preview(db.engine, name, context.run.run_id, preview)
    return dg.MaterializeResult(value=preview.to_json(), metadata={
        "rule_draft": name,
        # Counts only: which records and values is for the review pages and the email.
        "preview": dg.MetadataValue.md(preview_markdown(preview)),
        "records_treated_differently": preview.records_total,
        **{f"{side}_{label}": value for side, totals in preview.totals.items() for label, value in totals.items()},
        **_hubspot_cost(hubspot, before),
    })


@dg.asset(group_name=GROUP, **CATALOG, kinds={"hubspot"}, io_manager_key=IO_MANAGER,
          check_specs=[HUBSPOT_WRITEBACK_WITHOUT_ERRORS], metadata=WRITES_HUBSPOT)
def hubspot_writeback(
    context: dg.AssetExecutionContext, reconciliation_plan: pd.DataFrame, db: DatabaseResource,
    hubspot: HubSpotResource, reconciliation: ReconciliationSettings,
):  # returns dg.MaterializeResult (value + check results); see CHECKED_ASSETS_NOTE
    """The plan's writes to HubSpot: companies re-read just before writing (a moved value is skipped), values
    recorded in the write ledger first, batch updates of 100. The value is the per-record summary."""
    options = reconciliation.options(dict(context.run.tags))
    before = hubspot.client.requests_sent()
    summary = write_to_hubspot(
        reconciliation_plan, client=hubspot.client, engine=db.engine, rules=rules_from_attr(reconciliation_plan),
        options=options, run_id=context.run.run_id, enabled=writeback_enabled(),
        progress=_progress(context, db, "hubspot_writeback"),
    )
    if summary.reason:
        context.log.warning(summary.reason)
    return dg.MaterializeResult(value=summary, metadata={**_summary_metadata(summary), **_hubspot_cost(hubspot, before)},
                                check_results=_recorded(context, db, _errors_check(HUBSPOT_WRITEBACK_WITHOUT_ERRORS,
                                                                                    summary)))


@dg.asset(group_name=GROUP, **CATALOG, kinds={"postgres"}, io_manager_key=IO_MANAGER, check_specs=[WARP_WRITEBACK_WITHOUT_ERRORS],
          metadata=WRITES_WARP)
def warp_writeback(
    context: dg.AssetExecutionContext, reconciliation_plan: pd.DataFrame, db: DatabaseResource,
    reconciliation: ReconciliationSettings,
):  # returns dg.MaterializeResult (value + check results); see CHECKED_ASSETS_NOTE
    """The plan's WARP side, in chunked transactions carrying the no-echo marker: compare-and-set field
    updates, links by BAN, MANUAL conflicts into the review queue, agreed values, the audit trail."""
    options = reconciliation.options(dict(context.run.tags))
    summary = write_to_warp(
        reconciliation_plan, engine=db.engine, rules=rules_from_attr(reconciliation_plan), options=options,
        run_id=context.run.run_id, enabled=writeback_enabled(), progress=_progress(context, db, "warp_writeback"),
    )
    metadata = _summary_metadata(summary)
    metadata.update(conflicts_opened=summary.conflicts_opened, conflicts_updated=summary.conflicts_updated,
                    customers_linked=summary.links.applied, customers_following_merges=summary.merges.applied,
                    agreements_recorded=summary.agreements_recorded)
    return dg.MaterializeResult(value=summary, metadata=metadata,
                                check_results=_recorded(context, db, _errors_check(WARP_WRITEBACK_WITHOUT_ERRORS,
                                                                                    summary)))


@dg.asset(group_name=GROUP, **CATALOG, kinds={"postgres", "email"}, io_manager_key=IO_MANAGER,
          check_specs=[REPORT_EMAILED],
          # A missed night shows in the UI: the report is stale once this long has passed without one.
          freshness_policy=dg.FreshnessPolicy.time_window(
              fail_window=timedelta(hours=load_settings().reconcile_freshness_hours)))
def reconciliation_report(
    context: dg.AssetExecutionContext, reconciliation_plan: pd.DataFrame, hubspot_writeback: WriteBackSummary,
    warp_writeback: WriteBackSummary, rule_draft_preview: dict, reconciliation_scope: dict, db: DatabaseResource,
    email: EmailResource, hubspot: HubSpotResource, reconciliation: ReconciliationSettings,
):  # returns dg.MaterializeResult (value + check results); see CHECKED_ASSETS_NOTE
    """Counts, the changes made each way, skipped rows, conflicts, orphans, duplicates and errors: stored in
    hubspot_reconciliation_runs, shown here as Markdown (counts also as numbers, charted across runs), and
    emailed to WARP_REPORT_RECIPIENTS with the last runs' trend and links to the run, the review pages and
    HubSpot."""
    run_id = context.run.run_id
    options = _begin(context, db, reconciliation)
    record = get_run(db.engine, run_id)
    whole = build_report(
        run_id=run_id, dry_run=options.dry_run, plan=reconciliation_plan, hubspot=hubspot_writeback,
        warp=warp_writeback, started_at=record.started_at if record else None, finished_at=datetime.now(UTC),
        preview=RulePreview.from_json(rule_draft_preview) if rule_draft_preview else None,
        scope=reconciliation_scope.get("describe") if reconciliation_scope.get("mode") == INCREMENTAL else None,
    )
    report = whole.capped(REPORT_MAX_ROWS)  # the run row and the asset's value; the email attaches the whole tables
    braked = BRAKED in (hubspot_writeback.status, warp_writeback.status)
    stored = finish_run(db.engine, run_id, report.counts, report, braked=braked)
    if stored.status != "succeeded":
        context.log.warning(f"The run row was already {stored.status}; left as it was")
    elif not options.dry_run and not braked:
        _move_watermark(db, run_id, reconciliation_scope, (hubspot_writeback, warp_writeback))
    links = web_links(load_settings(), db.engine, hubspot.client)
    delivery = _send(context, email, whole, links, recent_trend(db.engine))
    record_email_outcome(db.engine, run_id, delivery)
    emailed = dg.AssetCheckResult(
        check_name=REPORT_EMAILED.name, passed=not delivery.startswith("failed"),
        severity=dg.AssetCheckSeverity.WARN, description=f"Report email: {delivery}.", metadata={"email": delivery})
    checks = _recorded(context, db, (REPORT_EMAILED, emailed, []))
    return dg.MaterializeResult(value=report, check_results=checks, metadata={
        # Without names and values: Dagster's event log is not the place for customer data (the row keeps them).
        "report": dg.MetadataValue.md(render_markdown(report, without_personal=True, links=links)),
        **_numbers(report.counts),
        "alerts": len(report.alerts),
        "dry_run": options.dry_run,
        "email": delivery,
    })


def _move_watermark(db: DatabaseResource, run_id: str, scope: dict, summaries: Sequence[WriteBackSummary]) -> None:
    """After a succeeded, non-dry, unbraked run: the next incremental run starts where this one's windows ended;
    what it could not settle is carried into it, and what it settled of the carried records is forgotten."""
    started_at = datetime.fromisoformat(scope["started_at"])
    incremental = scope["mode"] == INCREMENTAL
    settle_carried(db.engine, scope.get("customer_ids") if incremental else None,
                   scope.get("company_ids") if incremental else None, before=started_at)
    carry(db.engine, run_id, unsettled(summaries))
    advance_watermark(db.engine, Watermark(datetime.fromisoformat(scope["hubspot_to"]), started_at, run_id,
                                           scope["mode"]))


def _send(context: dg.AssetExecutionContext, email: EmailResource, report: Report, links: WebLinks,
          trend: Sequence[TrendPoint]) -> str:
    """Email the report; a delivery failure is logged and noted, never a failed run (the row is stored)."""
    try:
        if not email.is_configured:
            context.log.info("Email is not configured (SMTP_HOST, WARP_REPORT_RECIPIENTS): report not emailed")
            return "not configured"
        result = email.send_report(report, timeout_seconds=REPORT_SMTP_TIMEOUT_SECONDS, links=links, trend=trend)
    except (EmailDeliveryError, SettingsError) as exc:
        code = getattr(exc, "code", None) or f"SETTING {getattr(exc, 'variable', '')}".strip()
        context.log.error(f"The report email was not sent: {code}: {exc}")
        return f"failed: {code}"
    refused = f", refused by {len(result.refused)}" if result.refused else ""
    return f"sent to {len(result.accepted)} recipient(s){refused}"


RECONCILIATION_ASSETS = [
    reconciliation_scope, warp_customers, hubspot_companies, field_differences, hubspot_property_history, reconciliation_plan,
    rule_draft_preview, hubspot_writeback, warp_writeback, reconciliation_report,
]

reconciliation_job = dg.define_asset_job(
    name=RECONCILIATION_JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    # 1,000,000 companies spend about 21 minutes of HubSpot's budget on the pull alone (docs/BENCHMARKS.md); the
    # default leaves room for the history reads and write-backs of a large night.
    tags={FLOW_TAG: RECONCILIATION_FLOW, **BULK_TAGS,
          **max_runtime_tags(load_settings().reconcile_max_runtime_seconds), **BULK_RUN_POD},
    description="The nightly reconciliation: pull both sides, diff, decide, write back compare-and-set, report.",
)


def nightly_mode(when: datetime | None) -> str:
    """The full sweep on WARP_RECONCILE_FULL_SWEEP_WEEKDAY (in the schedule's time zone), incremental otherwise."""
    weekday = (when or datetime.now(UTC)).weekday()
    return FULL if weekday == load_settings().reconcile_full_sweep_weekday else INCREMENTAL


def reconciliation_schedule(timezone: str) -> dg.ScheduleDefinition:
    """02:00 in `timezone` (on a spring-forward day Dagster runs it at 03:00, the next time that exists); skipped,
    naming the pause, while the HubSpot flows are paused (core.pauses): the run could only fail."""

    @dg.schedule(
        name="reconciliation_daily_schedule",
        job=reconciliation_job,
        cron_schedule=SCHEDULE_CRON,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The nightly reconciliation at 02:00 in WARP_SCHEDULE_TIMEZONE (skipped while HubSpot is paused).",
    )
    def reconciliation_daily_schedule(context: dg.ScheduleEvaluationContext,
                                      db: DatabaseResource) -> dg.RunRequest | dg.SkipReason:
        pauses = open_pauses(db.engine)
        if pauses:
            return dg.SkipReason(f"{pauses[0].describe()}. Tonight's reconciliation is skipped; run it once the "
                                 "flows resume (`warp-sync reconcile`, or launch reconciliation_job in the UI).")
        return dg.RunRequest(tags={RECONCILE_MODE_TAG: nightly_mode(context.scheduled_execution_time)})

    return reconciliation_daily_schedule


@dg.definitions
def reconciliation() -> dg.Definitions:
    # Read when the definitions load: a bad timezone or setting stops the code location, naming the variable.
    timezone = load_settings().schedule_timezone
    return dg.Definitions(
        assets=RECONCILIATION_ASSETS,
        jobs=[reconciliation_job],
        schedules=[reconciliation_schedule(timezone)],
        resources={"reconciliation": ReconciliationSettings()},
    )
