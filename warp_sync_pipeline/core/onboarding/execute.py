"""Carrying out an approved onboarding preview: the links it found and a person confirmed, then, if the approver
chose it, a HubSpot company for each customer without one. Resumable: a run killed half-way is run again and
continues, linking and creating nothing twice (links are compare-and-set; a create is keyed by the BAN, HubSpot's
`warp_ban` is unique, and a company a lost answer may have made is found by that BAN before anything is made
again).

The creates are `core/company_creates.py`'s (the nightly's too); then the field rules run on the pairs now
linked, held to what the approver saw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync_many
from warp_sync_pipeline.core.company_creates import CreateRequest, CreateStatus, create_companies
from warp_sync_pipeline.core.errors import Failure
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.links import link_unlinked
from warp_sync_pipeline.core.onboarding.domains import DomainPolicy, registrable_domain
from warp_sync_pipeline.core.onboarding.previews import (
    PreviewError,
    PreviewRecord,
    approve_preview,
    get_preview,
)
from warp_sync_pipeline.core.reconcile import (
    ReconcileOptions,
    brake_stats,
    build_plan,
    compute_differences,
    fetch_property_history,
    history_needed,
    hubspot_properties,
    pull_warp_customers,
    write_to_hubspot,
    write_to_warp,
)
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_PULLED_AT,
    COMPANY_ID,
    COMPANY_UPDATED_AT,
    CUSTOMER_ID,
)
from warp_sync_pipeline.core.reconcile.pull import pulled_at, read_hubspot_companies
from warp_sync_pipeline.core.reconciliation_runs import dumps_json

LINK_CHUNK = 500
Progress = Callable[[str], None]


@dataclass
class ExecutionReport:
    linked: int = 0
    already_linked: int = 0
    link_refused: int = 0  # the customer or the company was linked to another meanwhile
    created: int = 0
    adopted: int = 0  # a company holding the BAN already (an earlier run's, or one made by hand)
    create_failed: int = 0
    create_unknown: int = 0  # HubSpot's answer was lost and no company holds the BAN yet: the next run retries
    failures: dict[str, int] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)  # what applying the field rules did (apply_rules)

    def failed(self, code: str) -> None:
        self.failures[code] = self.failures.get(code, 0) + 1


def begin_execution(engine: sa.Engine, preview_id: int, *, max_age: timedelta,
                    approve_as: str | None = None) -> PreviewRecord:
    """The approval the run carries out; the preview marked executing. `approve_as` approves a ready preview
    first (a person naming it in the run's config, with the default choices: no creates)."""
    record = get_preview(engine, preview_id)
    if record is None:
        raise PreviewError(Failure.NOT_FOUND, "NOT_FOUND", f"No preview {preview_id}.")
    if record.status == "ready" and approve_as:
        record = approve_preview(engine, preview_id, actor=approve_as, max_age=max_age, create_missing=False,
                                 set_domain=False)
    if record.status not in ("approved", "executing"):
        raise PreviewError(Failure.CONFLICT, "PREVIEW_NOT_APPROVED",
                           f"Preview {preview_id} is {record.status}: only an approved preview executes.")
    # A run that stopped half-way is resumed however old its preview is (nothing is done twice); a first run only
    # while the preview is fresh.
    if record.status == "approved" and not record.fresh(max_age):
        raise PreviewError(Failure.CONFLICT, "PREVIEW_TOO_OLD",
                           f"Preview {preview_id} was pulled more than {max_age.total_seconds() / 3600:g} h ago: "
                           "run a new preview and approve it.")
    with engine.begin() as conn:
        started = conn.execute(sa.text(
            "UPDATE onboarding_previews SET status = 'executing' WHERE id = :id "
            "AND status IN ('approved', 'executing') RETURNING id"), {"id": preview_id}).first()
    if started is None:  # superseded or executed by another run meanwhile
        raise PreviewError(Failure.CONFLICT, "PREVIEW_NOT_APPROVED", f"Preview {preview_id} changed meanwhile.")
    if (record.approval or {}).get("create_missing") and record.summary.get("portal", {}).get("ban_property") != "unique":
        raise PreviewError(Failure.CONFLICT, "BAN_PROPERTY_NOT_UNIQUE",
                           "Companies are created only where HubSpot keeps warp_ban unique (the preview found it "
                           f"{record.summary.get('portal', {}).get('ban_property')}): fix the property and run a "
                           "new preview.")
    return record


def finish_execution(engine: sa.Engine, preview_id: int, report: ExecutionReport) -> None:
    """Executed once nothing is left to retry; a run with unknown outcomes stays executing for the next run."""
    status = "executed" if not report.create_unknown else "executing"
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE onboarding_previews SET status = :status, execution = CAST(:report AS jsonb) "
                             "WHERE id = :id"), {"status": status, "report": dumps_json(asdict(report)),
                                                 "id": preview_id})


# --- links ----------------------------------------------------------------------------------------------------


def approved_links(engine: sa.Engine, preview_id: int) -> list[tuple[str, str, str]]:
    """(customer id, company id, category) of every pair to link: by BAN, auto-links and confirmed candidates."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT customer_id::text, company_id, category FROM onboarding_candidates "
            "WHERE preview_id = :id AND customer_id IS NOT NULL AND company_id IS NOT NULL "
            "AND (category IN ('linked_by_ban', 'auto_link') OR decision = 'confirmed') ORDER BY id"
        ), {"id": preview_id}).all()]


def link_pairs(engine: sa.Engine, pairs: Sequence[tuple[str, str, str]], report: ExecutionReport, *,
               run_id: str | None, progress: Progress | None = None) -> None:
    """Link each still-unlinked customer to its company where no other customer holds it (compare-and-set), in
    chunks; a chunk another writer raced is linked row by row."""
    for start in range(0, len(pairs), LINK_CHUNK):
        chunk = pairs[start:start + LINK_CHUNK]
        with engine.begin() as conn:
            try:
                with conn.begin_nested():
                    linked = link_unlinked(conn, [(c, h) for c, h, _ in chunk])
            except sa.exc.IntegrityError:
                linked = set()
                for customer, company, _ in chunk:
                    try:
                        with conn.begin_nested():
                            linked |= link_unlinked(conn, [(customer, company)])
                    except sa.exc.IntegrityError:
                        continue
            held = _linked_now(conn, [c for c, _, _ in chunk if c not in linked])
            log_sync_many(conn, [_link_entry(c, h, k, run_id) for c, h, k in chunk if c in linked])
        report.linked += len(linked)
        for customer, company, _ in chunk:
            if customer in linked:
                continue
            if held.get(customer) == company:
                report.already_linked += 1
            else:
                report.link_refused += 1
        if progress is not None:
            progress(f"onboarding links: {min(start + LINK_CHUNK, len(pairs)):,} of {len(pairs):,}")


def _linked_now(conn: sa.Connection, customer_ids: list[str]) -> dict[str, str | None]:
    if not customer_ids:
        return {}
    rows = conn.execute(sa.text(
        "SELECT id::text, external_ids ->> 'hubspot_company_id' FROM customers WHERE id = ANY(CAST(:ids AS uuid[]))"
    ), {"ids": customer_ids}).all()
    return dict(rows)


def _link_entry(customer: str, company: str, category: str, run_id: str | None) -> SyncLogEntry:
    return SyncLogEntry(trigger=Trigger.ONBOARDING, outcome=Outcome.APPLIED, customer_id=customer,
                        run_id=run_id, reason="LINKED", new_value=company,
                        details={"link": category, "company_id": company})


# --- creates --------------------------------------------------------------------------------------------------


def customers_to_create(engine: sa.Engine, preview_id: int, category: str) -> list[str]:
    """The preview's customers still without a company that get one on approval: those without a candidate
    (`no_candidate`), and those of a cluster (`many_to_one`) a person decided in which they were not picked (a
    cluster nobody decided waits for a person)."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(
            """
            SELECT DISTINCT ON (o.customer_id) o.customer_id::text
            FROM onboarding_candidates o JOIN customers c ON c.id = o.customer_id
            WHERE o.preview_id = :id AND o.category = :category
              AND (o.category = 'no_candidate' OR EXISTS (
                   SELECT 1 FROM onboarding_candidates d WHERE d.preview_id = o.preview_id
                   AND d.category = 'many_to_one' AND d.company_id = o.company_id AND d.decision IS NOT NULL))
              AND NOT EXISTS (SELECT 1 FROM onboarding_candidates k WHERE k.preview_id = o.preview_id
                              AND k.customer_id = o.customer_id AND k.decision = 'confirmed')
              AND NOT (c.external_ids ? 'hubspot_company_id') AND c.hubspot_link_status = 'unlinked'
            ORDER BY o.customer_id
            """
        ), {"id": preview_id, "category": category}).scalars())


def create_missing(engine: sa.Engine, client: HubSpotClient, customer_ids: Sequence[str], rules: FieldRules,
                   report: ExecutionReport, *, set_domain: bool, domains: DomainPolicy, run_id: str | None,
                   progress: Progress | None = None) -> None:
    """The approver's creates (`company_creates`), counted in the report; with `set_domain`, each company gets its
    contact email's domain where that domain may be a key."""
    def domain_of(email: str | None) -> str | None:
        domain = registrable_domain(email)
        return domain if domain and domain not in domains.excluded else None

    request = CreateRequest(Trigger.ONBOARDING, run_id, domain_of if set_domain else None)
    for outcome in create_companies(engine, client, customer_ids, rules, request, progress=progress):
        if outcome.status is CreateStatus.CREATED:
            report.created += 1
        elif outcome.status is CreateStatus.ADOPTED:
            report.adopted += 1
        elif outcome.status is CreateStatus.UNKNOWN:
            report.create_unknown += 1
        elif outcome.status is CreateStatus.LINK_REFUSED:
            report.link_refused += 1
        else:
            report.create_failed += 1
            report.failed(outcome.code or "UNKNOWN")


# --- the field rules on the pairs now linked ----------------------------------------------------------------

# What the execution may change beyond what the approver saw (the world moves between preview and execution).
BRAKE_SLACK_SHARE = 0.05
BRAKE_SLACK_RECORDS = 10


def allowed_changes(seen: int, confirmed: int) -> int:
    """Records the execution may change: what the preview showed the approver for the pairs it found, one per
    pair a person confirmed, and a little slack."""
    return seen + confirmed + max(BRAKE_SLACK_RECORDS, math.ceil(seen * BRAKE_SLACK_SHARE))


def apply_rules(engine: sa.Engine, client: HubSpotClient, rules: FieldRules, customer_ids: Sequence[str], *,
                allowed: int, enabled: bool, run_id: str | None, pulled: pd.DataFrame | None = None,
                progress: Progress | None = None) -> dict[str, Any]:
    """The nightly's diff, plan and write-backs, on these customers and their companies only: values both sides
    already hold are recorded as agreed, the rules decide the rest (change times from HubSpot's history where
    LATEST_WINS needs them). The brake holds the plan to `allowed` records: more, and nothing is written.

    `pulled` is the preview's HubSpot pull: young enough for a plan (the write-backs' plan age), it is planned on,
    and HubSpot is read only for companies it lacks (the HubSpot writes re-read before writing either way)."""
    wanted = set(customer_ids)
    if not wanted:
        return {"records_to_change": 0, "allowed": allowed}
    warp = pull_warp_customers(engine, rules, progress=progress)
    attrs = dict(warp.attrs)
    warp = warp[warp[CUSTOMER_ID].astype(str).isin(wanted)].reset_index(drop=True)
    warp.attrs = attrs
    options = ReconcileOptions(allow_mass_write=True, max_change_share=0.0)
    companies = _companies(client, rules, warp[COMPANY_ID].dropna().astype(str).tolist(), pulled,
                           max_age=timedelta(hours=options.max_plan_age_hours))
    differences = compute_differences(warp, companies, rules)
    ids, properties = history_needed(differences, rules)
    plan = build_plan(differences, fetch_property_history(client, ids, properties), rules)
    brake = brake_stats(plan)
    options = replace(options, allow_mass_write=brake.records_to_change <= allowed)
    hubspot = write_to_hubspot(plan, client=client, engine=engine, rules=rules, options=options, run_id=run_id,
                               enabled=enabled, progress=progress)
    warp_summary = write_to_warp(plan, engine=engine, rules=rules, options=options, run_id=run_id, enabled=enabled,
                                 progress=progress)
    return {"records_to_change": brake.records_to_change, "records_compared": brake.records_compared,
            "allowed": allowed, "hubspot": hubspot.status, "hubspot_applied": hubspot.applied,
            "hubspot_failed": hubspot.failed, "warp": warp_summary.status, "warp_applied": warp_summary.applied,
            "warp_failed": warp_summary.failed, "agreements_recorded": warp_summary.agreements_recorded,
            "conflicts_opened": warp_summary.conflicts_opened, "reason": hubspot.reason or warp_summary.reason,
            "planned_on": companies.attrs.get("planned_on", "read")}


def _companies(client: HubSpotClient, rules: FieldRules, company_ids: list[str], pulled: pd.DataFrame | None, *,
               max_age: timedelta) -> pd.DataFrame:
    """The linked companies: from the preview's pull while it is young enough, else (and for any it lacks) read."""
    properties = hubspot_properties(rules)
    usable = (pulled is not None and set(properties) <= set(pulled.columns)
              and datetime.now(UTC) - pulled_at(pulled) <= max_age)
    if not usable:
        return read_hubspot_companies(client, company_ids, properties)
    assert pulled is not None
    have = pulled[pulled[COMPANY_ID].astype(str).isin(set(company_ids))]
    frame = have[[COMPANY_ID, COMPANY_UPDATED_AT, *properties]].reset_index(drop=True)
    missing = sorted(set(company_ids) - set(frame[COMPANY_ID].astype(str)))
    if missing:
        frame = pd.concat([frame, read_hubspot_companies(client, missing, properties)], ignore_index=True)
    frame.attrs = {ATTR_PULLED_AT: pulled.attrs[ATTR_PULLED_AT], "planned_on": "preview pull"}
    return frame
