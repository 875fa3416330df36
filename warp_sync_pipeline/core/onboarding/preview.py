"""The day-one preview: from the nightly's two pulls to what switching warp-sync on would do. Writes nothing to
either side; `store_preview` keeps it in WARP's database for the review pages and the approval.

Three parts: the matches (`matching.match`), what the field rules would do to each pair that would be linked
(the nightly's own diff and plan run on those pairs as if linked, counted per field, kind and reason), and the
portal's own state (the `warp_ban` property's uniqueness, BANs held twice, which writers the property history of
a sample of linked companies shows on the mapped properties: several integrations writing one property would
ping-pong under LATEST_WINS).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient, NotFound
from warp_sync_pipeline.core.links import LinkStatus
from warp_sync_pipeline.core.onboarding.matching import (
    ADDITIONAL_DOMAINS,
    BAN,
    CATEGORY,
    COMPANY_BAN,
    COMPANY_ID,
    COMPANY_NAME,
    CUSTOMER_ID,
    DOMAIN,
    EMAIL,
    LINKED_COMPANY,
    MATCHED_DOMAIN,
    NAME,
    NAME_SCORE,
    OBJECT_SOURCE,
    REASONS,
    SECOND_SCORE,
    WEBSITE,
    Category,
    MatchResult,
)
from warp_sync_pipeline.core.reconcile import frames
from warp_sync_pipeline.core.reconcile.diff import compute_differences
from warp_sync_pipeline.core.reconcile.history import empty_history
from warp_sync_pipeline.core.reconcile.plan import ACTION, FIELD, REASON, brake_stats, build_plan
from warp_sync_pipeline.core.reconciliation_runs import dumps_json

# What the HubSpot pull reads beyond the nightly's properties.
ONBOARDING_PROPERTIES = ("domain", "website", "hs_additional_domains", "hs_object_source")
NAME_FIELD, EMAIL_FIELD = "company_name", "contact_email"
HISTORY_SAMPLE = 1_000
LINKING = (Category.LINKED_BY_BAN.value, Category.AUTO_LINK.value)


def matching_inputs(warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules) -> tuple[pd.DataFrame,
                                                                                               pd.DataFrame]:
    """The pulls' frames as `matching.match` reads them."""
    def warp_value(field_name: str) -> Any:
        column = frames.col(field_name, frames.WARP_RAW)
        return warp[column].to_numpy() if column in warp.columns else None

    name_property = rules[NAME_FIELD].hubspot_property if NAME_FIELD in rules else "name"
    customers = pd.DataFrame({
        CUSTOMER_ID: warp[frames.CUSTOMER_ID].astype(str).to_numpy(),
        BAN: warp[frames.BAN].to_numpy(),
        NAME: warp_value(NAME_FIELD),
        EMAIL: warp_value(EMAIL_FIELD),
        LINKED_COMPANY: warp[frames.COMPANY_ID].to_numpy(),
    })

    def hubspot_value(name: str) -> Any:
        return hubspot[name].to_numpy() if name in hubspot.columns else None

    companies = pd.DataFrame({
        COMPANY_ID: hubspot[frames.COMPANY_ID].astype(str).to_numpy(),
        COMPANY_BAN: hubspot_value(frames.BAN_PROPERTY),
        COMPANY_NAME: hubspot_value(name_property),
        DOMAIN: hubspot_value("domain"),
        WEBSITE: hubspot_value("website"),
        ADDITIONAL_DOMAINS: hubspot_value("hs_additional_domains"),
        OBJECT_SOURCE: hubspot_value("hs_object_source"),
    })
    return customers, companies


def field_outcomes(warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules,
                   links: pd.DataFrame) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Per field, kind (an agreement to record, or a change), action and reason: how many of the pairs that would
    be linked (by BAN and auto-links) it concerns; and the brake's figures (records the rules would change, of
    those compared), which the execution is held to. The nightly's diff and plan, run on those pairs as if
    linked."""
    chosen = links[links[CATEGORY].isin(LINKING)]
    if chosen.empty:
        return [], {"records_to_change": 0, "records_compared": 0}
    target = dict(zip(chosen[CUSTOMER_ID], chosen[COMPANY_ID], strict=True))
    ids = warp[frames.CUSTOMER_ID].astype(str)
    pairs = warp[ids.isin(target)].copy()
    pairs[frames.COMPANY_ID] = ids[ids.isin(target)].map(target).to_numpy()
    pairs[frames.LINK_STATUS] = LinkStatus.LINKED.value
    pairs.attrs = dict(warp.attrs)
    companies = hubspot[hubspot[frames.COMPANY_ID].astype(str).isin(set(target.values()))]
    plan = build_plan(compute_differences(pairs, companies, rules), empty_history(), rules)
    rows = plan[plan[frames.KIND].isin([frames.CHANGE, frames.AGREEMENT])]
    counted = rows.groupby([FIELD, frames.KIND, ACTION, REASON], dropna=False).size()
    return ([{"field": f, "kind": k, "action": a, "reason": r, "pairs": int(n)} for (f, k, a, r), n in counted.items()],
            asdict(brake_stats(plan)))


@dataclass(frozen=True)
class PortalChecks:
    """`ban_property`: "unique", "not unique" (uniqueness cannot be added to an existing property: a new unique
    property and a migration are needed) or "missing". `writers`: per mapped property, the writers its history
    shows on the sample (source type and id -> entries); `shared`: properties more than one integration writes."""

    ban_property: str
    duplicate_bans: int
    sampled_companies: int
    writers: dict[str, dict[str, int]] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)


def check_portal(client: HubSpotClient, rules: FieldRules, linked_companies: Sequence[str],
                 duplicate_bans: int, *, sample: int = HISTORY_SAMPLE, seed: int = 0) -> PortalChecks:
    """HubSpot calls: one property read and ceil(min(sample, linked) / 50) batch reads with history."""
    try:
        unique = bool(client.get_property(frames.BAN_PROPERTY).get("hasUniqueValue"))
        ban_property = "unique" if unique else "not unique"
    except NotFound:
        ban_property = "missing"
    rng = np.random.default_rng(seed)
    linked = list(dict.fromkeys(linked_companies))
    picked = [linked[i] for i in sorted(rng.choice(len(linked), size=min(sample, len(linked)), replace=False))] \
        if linked else []
    properties = sorted({rule.hubspot_property for rule in rules.values()})
    writers: dict[str, Counter[str]] = {name: Counter() for name in properties}
    if picked:
        for outcome in client.batch_read_companies(picked, properties=properties,
                                                   properties_with_history=properties):
            if outcome.company is None:
                continue
            for name in properties:
                for version in outcome.company.history.get(name, []):
                    writers[name][f"{version.source_type or 'UNKNOWN'}:{version.source_id or '-'}"] += 1
    shared = [name for name, seen in writers.items()
              if len({w for w in seen if w.startswith("INTEGRATION:")}) > 1]
    return PortalChecks(ban_property=ban_property, duplicate_bans=duplicate_bans, sampled_companies=len(picked),
                        writers={name: dict(seen) for name, seen in writers.items() if seen}, shared=shared)


@dataclass(frozen=True)
class Preview:
    """What the preview stores and shows: counts per category, the field outcomes, the portal's checks."""

    pulled_at: datetime
    counts: dict[str, int]
    fields: list[dict[str, Any]]
    portal: PortalChecks
    brake: dict[str, int] = field(default_factory=lambda: {"records_to_change": 0, "records_compared": 0})

    def summary(self) -> dict[str, Any]:
        return {"counts": self.counts, "fields": self.fields, "portal": asdict(self.portal), "brake": self.brake}


def build_preview(warp: pd.DataFrame, hubspot: pd.DataFrame, rules: FieldRules, result: MatchResult,
                  portal: PortalChecks, pulled_at: datetime) -> Preview:
    fields, brake = field_outcomes(warp, hubspot, rules, result.links)
    return Preview(pulled_at=pulled_at, counts=result.counts(), fields=fields, portal=portal, brake=brake)


# --- storage ------------------------------------------------------------------------------------------------

SHOWN_NAME, SHOWN_DOMAINS, IN_SAMPLE = "shown_company_name", "shown_company_domains", "in_sample"
CANDIDATE_COLUMNS = (CUSTOMER_ID, COMPANY_ID, CATEGORY, MATCHED_DOMAIN, NAME_SCORE, SECOND_SCORE, REASONS,
                     SHOWN_NAME, SHOWN_DOMAINS)
SAMPLE_SIZE = 300
SAMPLED = (Category.LINKED_BY_BAN.value, Category.AUTO_LINK.value, Category.REVIEW.value, Category.MANY_TO_ONE.value)
SCORE_BANDS = (-1.0, 80.0, 90.0, 95.0, 101.0)  # below 80, 80-90, 90-95, 95 and up (no score: by BAN)


def labelling_sample(rows: pd.DataFrame, size: int = SAMPLE_SIZE, seed: int = 0) -> pd.Series:
    """Which candidate rows a person labels to measure precision: drawn across the pair categories and, within
    each, bands of name score, the same number from each stratum (all of a smaller one), so the weak matches are
    seen as often as the many strong ones."""
    pairs = rows[rows[CATEGORY].isin(SAMPLED)]
    band = pd.cut(pairs[NAME_SCORE].astype(float), SCORE_BANDS, labels=False, right=False)
    strata = pairs[CATEGORY].astype(str) + ":" + band.fillna(-1).astype(int).astype(str)
    picked = pd.Series(False, index=rows.index)
    groups = strata.groupby(strata).groups
    if not groups:
        return picked
    each = max(1, -(-size // len(groups)))
    rng = np.random.default_rng(seed)
    for members in groups.values():
        chosen = rng.choice(np.asarray(members), size=min(each, len(members)), replace=False)
        picked[chosen] = True
    return picked
_INSERT_CHUNK = 50_000


def candidate_rows(result: MatchResult, companies: pd.DataFrame) -> pd.DataFrame:
    """Every row the review pages and the execution read: pairs, clusters, customers without and companies
    without a candidate, and duplicate BANs (one row per company holding one); each company with its name and
    domains as pulled (`companies`: the matching input)."""
    duplicates = result.duplicate_bans.explode("company_ids").rename(columns={"company_ids": COMPANY_ID})
    parts = [
        result.links,
        result.clusters,
        result.customers_without_candidate.assign(**{CATEGORY: Category.NO_CANDIDATE.value}),
        result.companies_alone.assign(**{CATEGORY: Category.COMPANY_ALONE.value}),
        duplicates.assign(**{CATEGORY: Category.DUPLICATE_BAN.value,
                             REASONS: "warp_ban " + duplicates[BAN].astype(str) + " is held by several companies"}),
    ]
    rows = pd.concat([p.reindex(columns=list(CANDIDATE_COLUMNS[:7])) for p in parts if len(p)], ignore_index=True)
    rows = rows.reindex(columns=list(CANDIDATE_COLUMNS[:7]))
    shown = companies.set_index(COMPANY_ID)
    columns = zip(*(shown[c].astype(object).tolist() for c in (DOMAIN, WEBSITE, ADDITIONAL_DOMAINS)), strict=True)
    domains = pd.Series(["; ".join(v for v in values if isinstance(v, str) and v.strip()) or None
                         for values in columns], index=shown.index, dtype=object)
    rows[SHOWN_NAME] = rows[COMPANY_ID].map(shown[COMPANY_NAME].astype(object))
    rows[SHOWN_DOMAINS] = rows[COMPANY_ID].map(domains)
    rows[IN_SAMPLE] = labelling_sample(rows)
    return rows


def store_preview(engine: sa.Engine, preview: Preview, result: MatchResult, companies: pd.DataFrame, *,
                  run_id: str | None) -> int:
    """Store the preview and its candidate rows in one transaction; earlier previews not yet approved are
    superseded (only the newest can be approved). Returns the preview's id."""
    rows = candidate_rows(result, companies)
    with engine.begin() as conn:
        # Only the newest preview may be approved or executed: what an older one saw is out of date.
        conn.execute(sa.text("UPDATE onboarding_previews SET status = 'superseded' "
                             "WHERE status IN ('ready', 'approved')"))
        preview_id = conn.execute(sa.text(
            "INSERT INTO onboarding_previews (run_id, pulled_at, summary) "
            "VALUES (:run_id, :pulled_at, CAST(:summary AS jsonb)) RETURNING id"
        ), {"run_id": run_id, "pulled_at": preview.pulled_at,
            "summary": dumps_json(preview.summary())}).scalar_one()
        for start in range(0, len(rows), _INSERT_CHUNK):
            chunk = rows.iloc[start:start + _INSERT_CHUNK]
            conn.execute(_INSERT_CANDIDATES, {
                "preview": preview_id,
                "customers": _texts(chunk[CUSTOMER_ID]),
                "companies": _texts(chunk[COMPANY_ID]),
                "categories": _texts(chunk[CATEGORY]),
                "domains": _texts(chunk[MATCHED_DOMAIN]),
                "scores": _numbers(chunk[NAME_SCORE]),
                "seconds": _numbers(chunk[SECOND_SCORE]),
                "reasons": _texts(chunk[REASONS]),
                "names": _texts(chunk[SHOWN_NAME]),
                "domains_shown": _texts(chunk[SHOWN_DOMAINS]),
                "sampled": [bool(v) for v in chunk[IN_SAMPLE]],
            })
    return int(preview_id)


_INSERT_CANDIDATES = sa.text(
    """
    INSERT INTO onboarding_candidates
        (preview_id, customer_id, company_id, category, matched_domain, name_score, second_score, reasons,
         company_name, company_domains, in_sample)
    SELECT :preview, CAST(c AS uuid), h, k, d, s, s2, r, n, ds, p
    FROM unnest(CAST(:customers AS text[]), CAST(:companies AS text[]), CAST(:categories AS text[]),
                CAST(:domains AS text[]), CAST(:scores AS numeric[]), CAST(:seconds AS numeric[]),
                CAST(:reasons AS text[]), CAST(:names AS text[]), CAST(:domains_shown AS text[]),
                CAST(:sampled AS boolean[]))
        AS v(c, h, k, d, s, s2, r, n, ds, p)
    """
)


def _texts(values: pd.Series) -> list[str | None]:
    return [value if isinstance(value, str) else None for value in values.astype(object)]


def _numbers(values: pd.Series) -> list[float | None]:
    return [None if pd.isna(value) else float(value) for value in values]
