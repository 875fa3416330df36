"""Day one in Dagster: the onboarding preview (group `onboarding`, `onboarding_preview_job`).

The preview pulls both sides as the nightly does (the HubSpot pull also reads each company's domains and record
source), matches customers to companies (`core/onboarding`), works out what the field rules would do to the pairs
it would link, checks the portal, and stores it all in WARP's database for the review pages. It writes nothing to
either side. The UI shows counts and BANs (names and emails stay out of Dagster's event log), with links to the
review pages when WARP_PUBLIC_BASE_URL is set.
"""

from dataclasses import asdict
from datetime import timedelta
from typing import Any

import dagster as dg
import pandas as pd

from warp_sync_pipeline.core.fields import load_rules
from warp_sync_pipeline.core.onboarding.domains import DomainPolicy
from warp_sync_pipeline.core.onboarding.execute import (
    ExecutionReport,
    allowed_changes,
    apply_rules,
    approved_links,
    begin_execution,
    create_missing,
    customers_to_create,
    finish_execution,
    link_pairs,
)
from warp_sync_pipeline.core.onboarding.matching import (
    BAN,
    CATEGORY,
    COMPANY_ID,
    CUSTOMER_ID,
    LINKED_COMPANY,
    Category,
    MatchPolicy,
    MatchResult,
    match,
)
from warp_sync_pipeline.core.onboarding.preview import (
    LINKING,
    ONBOARDING_PROPERTIES,
    build_preview,
    check_portal,
    matching_inputs,
    store_preview,
)
from warp_sync_pipeline.core.onboarding.previews import PreviewError
from warp_sync_pipeline.core.reconcile import hubspot_properties, pull_hubspot_companies, pull_warp_customers
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_RULES,
    rules_from_attr,
    rules_to_attr,
)
from warp_sync_pipeline.core.reconcile.pull import DailyQuotaTooLow, check_daily_headroom, pulled_at
from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.defs.systems import hubspot_companies_object, warp_customers_table
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager
from warp_sync_pipeline.runs import (
    BULK_RUN_POD,
    BULK_TAGS,
    CATALOG,
    FLOW_TAG,
    ONBOARDING_EXECUTE_JOB_NAME,
    ONBOARDING_FLOW,
    ONBOARDING_PREVIEW_JOB_NAME,
    max_runtime_tags,
)

GROUP = "onboarding"
IO_MANAGER = "parquet_io_manager"
SAMPLE = 10  # BANs shown per category in the run's Markdown
PREVIEW_MAX_RUNTIME_SECONDS = 4 * 3600.0  # a million companies' pull is about 21 minutes of HubSpot's budget
# Creating 100,000 companies is 1,000 calls: minutes of budget; hours leave room for a portal shared with others.
EXECUTE_MAX_RUNTIME_SECONDS = 8 * 3600.0


@dg.asset(group_name=GROUP, **CATALOG, kinds={"postgres", "pandas"}, io_manager_key=IO_MANAGER,
          deps=[warp_customers_table])
def onboarding_warp_customers(context: dg.AssetExecutionContext,
                              db: DatabaseResource) -> dg.MaterializeResult[pd.DataFrame]:
    """Every WARP customer, pulled as the nightly pulls them (one consistent snapshot, keyset pages)."""
    with db.engine.connect() as conn:
        rules = load_rules(conn)
    frame = pull_warp_customers(db.engine, rules, progress=context.log.info)
    return dg.MaterializeResult(value=frame, metadata={
        "dagster/row_count": len(frame), "pulled_at": dg.MetadataValue.timestamp(pulled_at(frame))})


@dg.asset(group_name=GROUP, **CATALOG, kinds={"hubspot", "pandas"}, io_manager_key=IO_MANAGER,
          deps=[hubspot_companies_object])
def onboarding_hubspot_companies(context: dg.AssetExecutionContext, db: DatabaseResource,
                                 hubspot: HubSpotResource) -> dg.MaterializeResult[pd.DataFrame]:
    """Every active HubSpot company with the mapped properties, its domains (domain, website,
    hs_additional_domains) and its record source (hs_object_source): 100 a page, through the shared budget."""
    with db.engine.connect() as conn:
        rules = load_rules(conn)
    try:
        check_daily_headroom(db.engine, hubspot.client.budget)
    except DailyQuotaTooLow as exc:
        raise dg.Failure(description=str(exc)) from exc
    properties = list(dict.fromkeys([*hubspot_properties(rules), *ONBOARDING_PROPERTIES]))
    frame = pull_hubspot_companies(hubspot.client, properties, progress=context.log.info)
    frame.attrs[ATTR_RULES] = rules_to_attr(rules)
    return dg.MaterializeResult(value=frame, metadata={
        "dagster/row_count": len(frame), "pulled_at": dg.MetadataValue.timestamp(pulled_at(frame))})


@dg.asset(group_name=GROUP, **CATALOG, kinds={"pandas", "postgres"})
def onboarding_preview(context: dg.AssetExecutionContext, onboarding_warp_customers: pd.DataFrame,
                       onboarding_hubspot_companies: pd.DataFrame, db: DatabaseResource,
                       hubspot: HubSpotResource) -> dg.MaterializeResult:
    """Who is whom (by BAN, domain and name), what the field rules would do to the pairs to link, and the portal's
    checks; stored for the review pages, where an admin approves it. Writes nothing to either side."""
    warp, companies = onboarding_warp_customers, onboarding_hubspot_companies
    rules = rules_from_attr(warp)
    if rules_from_attr(companies) != rules:
        raise dg.Failure(description="The field mapping changed between the WARP and the HubSpot pull "
                                     "(RULES_CHANGED_MID_RUN); run the preview again.")
    customers, candidates = matching_inputs(warp, companies, rules)
    result = match(customers, candidates, MatchPolicy(domains=DomainPolicy.from_settings(load_settings())))
    context.log.info(f"matched: {result.counts()}")
    linked = [*result.links.loc[result.links[CATEGORY].isin(LINKING), COMPANY_ID],
              *result.already_linked[LINKED_COMPANY]]
    portal = check_portal(hubspot.client, rules, linked, len(result.duplicate_bans))
    preview = build_preview(warp, companies, rules, result, portal,
                            min(pulled_at(warp), pulled_at(companies)))
    preview_id = store_preview(db.engine, preview, result, candidates, run_id=context.run.run_id)
    return dg.MaterializeResult(metadata=_metadata(preview_id, result, customers, preview.summary()))


def _metadata(preview_id: int, result: MatchResult, customers: pd.DataFrame,
              summary: dict[str, Any]) -> dict[str, Any]:
    counts = summary["counts"]
    base = load_settings().public_base_url
    page = f"{base}/review/onboarding/{preview_id}" if base else None
    bans = customers.set_index(CUSTOMER_ID)[BAN]
    lines = [f"Preview {preview_id}" + (f": [review and approve]({page})" if page else
                                       " (set WARP_PUBLIC_BASE_URL for links to the review pages)"), "",
             "| category | customers | sample BANs |", "|---|---:|---|"]
    placed = result.category_of()
    for category in (c.value for c in Category if c is not Category.COMPANY_ALONE):
        sample = sorted(bans.reindex(placed.index[placed == category]).dropna())[:SAMPLE]
        shown = ", ".join(f"[{ban}]({page}?category={category}&ban={ban})" if page else ban for ban in sample)
        lines.append(f"| {category} | {counts.get(category, 0):,} | {shown} |")
    lines.append(f"| company_alone (companies) | {counts.get(Category.COMPANY_ALONE.value, 0):,} | |")
    portal = summary["portal"]
    metadata: dict[str, Any] = {
        "preview_id": preview_id,
        "summary": dg.MetadataValue.md("\n".join(lines)),
        "warp_ban_property": portal["ban_property"],
        "properties_written_by_several_integrations": portal["shared"],
        "field_outcomes": dg.MetadataValue.json(summary["fields"]),
    }
    metadata.update({f"count_{name}": int(value) for name, value in counts.items()})
    if page:
        metadata["review_page"] = dg.MetadataValue.url(page)
    return metadata


onboarding_preview_job = dg.define_asset_job(
    name=ONBOARDING_PREVIEW_JOB_NAME,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    tags={FLOW_TAG: ONBOARDING_FLOW, **BULK_TAGS, **max_runtime_tags(PREVIEW_MAX_RUNTIME_SECONDS), **BULK_RUN_POD},
    description="Day one: preview what switching warp-sync on would link, create and change. Writes nothing.",
)


class OnboardingExecuteConfig(dg.Config):
    preview_id: int
    # A person's name: approves a ready preview (no creates) and executes it, as approving in the review pages does.
    approve_as: str | None = None


@dg.op(description="Carries out an approved onboarding preview: its links, then the companies to create if the "
                   "approver chose so. Resumable: run it again after a failure, nothing is done twice.")
def execute_onboarding(context: dg.OpExecutionContext, config: OnboardingExecuteConfig, db: DatabaseResource,
                       hubspot: HubSpotResource,
                       parquet_io_manager: dg.ResourceParam[ParquetIOManager]) -> dict[str, Any]:
    settings = load_settings()
    try:
        preview = begin_execution(db.engine, config.preview_id, approve_as=config.approve_as,
                                  max_age=timedelta(hours=settings.onboarding_preview_max_age_hours))
    except PreviewError as exc:
        raise dg.Failure(description=f"{exc.code}: {exc.message}") from exc
    approval = preview.approval or {}
    with db.engine.connect() as conn:
        rules = load_rules(conn)
    run_id = context.run.run_id
    report = ExecutionReport()
    pairs = approved_links(db.engine, config.preview_id)
    link_pairs(db.engine, pairs, report, run_id=run_id, progress=context.log.info)
    if approval.get("create_missing"):
        domains = DomainPolicy.from_settings(settings)
        create_missing(db.engine, hubspot.client, customers_to_create(db.engine, config.preview_id, "no_candidate"),
                       rules, report, set_domain=bool(approval.get("set_domain")), domains=domains, run_id=run_id,
                       progress=context.log.info)
        # A cluster's other accounts never get its domain: the organisation's company has it already.
        create_missing(db.engine, hubspot.client, customers_to_create(db.engine, config.preview_id, "many_to_one"),
                       rules, report, set_domain=False, domains=domains, run_id=run_id, progress=context.log.info)
    confirmed = sum(1 for _, _, category in pairs if category not in LINKING)
    seen = int((preview.summary.get("brake") or {}).get("records_to_change", 0))
    # The companies created just now hold WARP's values: the first nightly records their agreement.
    report.rules = apply_rules(db.engine, hubspot.client, rules, [c for c, _, _ in pairs],
                               allowed=allowed_changes(seen, confirmed), enabled=settings.writeback_enabled,
                               run_id=run_id, pulled=parquet_io_manager.stored_frame(context.instance,
                                                                                      onboarding_hubspot_companies.key),
                               progress=context.log.info)
    finish_execution(db.engine, config.preview_id, report)
    counts = asdict(report)
    context.add_output_metadata({"preview_id": config.preview_id, **{k: v for k, v in counts.items()
                                                                     if isinstance(v, int)},
                                 "failures": counts["failures"], "field_rules": counts["rules"]})
    if report.rules.get("hubspot") == "braked":
        raise dg.Failure(description=f"The execution would change {report.rules['records_to_change']:,} records, "
                                     f"more than the {report.rules['allowed']:,} the approved preview allows: the "
                                     "links were made, no field was written. Run a new preview and approve it.")
    if report.create_unknown:
        raise dg.Failure(description=f"{report.create_unknown} creates had no answer and no company holds their "
                                     "BAN yet: run the job again to finish them (nothing is made twice).")
    return counts


@dg.job(
    name=ONBOARDING_EXECUTE_JOB_NAME,
    description="Day one: carry out an approved preview (links, then creates if chosen). Resumable.",
    tags={FLOW_TAG: ONBOARDING_FLOW, **BULK_TAGS, **max_runtime_tags(EXECUTE_MAX_RUNTIME_SECONDS), **BULK_RUN_POD},
    executor_def=dg.in_process_executor,
)
def onboarding_execute_job() -> None:
    execute_onboarding()


@dg.definitions
def onboarding() -> dg.Definitions:
    return dg.Definitions(assets=[onboarding_warp_customers, onboarding_hubspot_companies, onboarding_preview],
                          jobs=[onboarding_preview_job, onboarding_execute_job])
