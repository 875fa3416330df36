"""What an incremental nightly reconciles: the records that may have moved since the last good run, and each one's
counterpart (issue 18, item 3).

- HubSpot's side: the companies warp-sync's stored webhook events name since the watermark (per property, free of
  calculated-property noise), and a search by `hs_lastmodifieddate` over the window `[from, to)` as the catch-up
  for missed deliveries. The window is HubSpot's clock: from the last run's upper bound minus an overlap (search is
  eventually consistent), to when this pull starts minus the index lag; inside it the search pages by
  `hs_object_id > last`, 200 a page, and a window whose `total` passes HubSpot's 10,000-results cap is split in
  two. Ids are de-duplicated across windows and feeds.
- WARP's side: customers whose `updated_at` (moved by every writer through the trigger) is at or after the last
  run's WARP bound minus a margin: `now()` is a transaction's start, so a long transaction can commit rows stamped
  before the bound; the margin must exceed the longest write transaction.
- Counterparts: the companies of changed customers, the customers of changed companies (linked, or by BAN).
- Records a run skipped or failed to write are carried into the next (`hubspot_reconcile_carried`).
Deletions and merges never show in search: the webhook feed and the full sweep find them.

The watermark (`hubspot_reconcile_watermark`) moves only after a succeeded, non-dry, unbraked run; with none, the run
is a full sweep.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.hubspot import Filter, HubSpotClient, Sort
from warp_sync_pipeline.core.hubspot.models import LAST_MODIFIED_PROPERTY, OBJECT_ID_PROPERTY
from warp_sync_pipeline.core.normalize import to_epoch_ms
from warp_sync_pipeline.core.reconcile.frames import ATTR_BRAKE
from warp_sync_pipeline.core.reconcile.results import FAILED, SKIPPED, WriteBackSummary

SEARCH_PAGE = 200
SEARCH_CAP = 10_000
FULL, INCREMENTAL = "full", "incremental"


@dataclass(frozen=True)
class Watermark:
    hubspot_through: datetime
    warp_through: datetime
    run_id: str
    mode: str


def read_watermark(engine: sa.Engine) -> Watermark | None:
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT hubspot_through, warp_through, run_id, mode FROM hubspot_reconcile_watermark")).first()
    return Watermark(row.hubspot_through, row.warp_through, row.run_id, row.mode) if row else None


def advance_watermark(engine: sa.Engine, mark: Watermark) -> None:
    """Record how far a succeeded, non-dry, unbraked run reconciled (never backwards)."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_reconcile_watermark (hubspot_through, warp_through, run_id, mode) "
            "VALUES (:hubspot, :warp, :run, :mode) ON CONFLICT (only_row) DO UPDATE SET "
            "hubspot_through = greatest(hubspot_reconcile_watermark.hubspot_through, EXCLUDED.hubspot_through), "
            "warp_through = greatest(hubspot_reconcile_watermark.warp_through, EXCLUDED.warp_through), "
            "run_id = EXCLUDED.run_id, mode = EXCLUDED.mode, advanced_at = now()"),
            {"hubspot": mark.hubspot_through, "warp": mark.warp_through, "run": mark.run_id, "mode": mark.mode})


# --- HubSpot's side --------------------------------------------------------------------------------------------


@dataclass
class SearchSweep:
    """The companies a window's search found, and what it cost."""

    ids: set[str] = field(default_factory=set)
    calls: int = 0
    windows: int = 0


def _window_filters(start: datetime, end: datetime, after_id: str | None) -> list[Filter]:
    filters = [Filter(LAST_MODIFIED_PROPERTY, "GTE", str(to_epoch_ms(start))), Filter(LAST_MODIFIED_PROPERTY, "LT", str(to_epoch_ms(end)))]
    if after_id is not None:
        filters.append(Filter(OBJECT_ID_PROPERTY, "GT", after_id))
    return filters


def search_changed(client: HubSpotClient, start: datetime, end: datetime, *, page_size: int = SEARCH_PAGE,
                   cap: int = SEARCH_CAP, sweep: SearchSweep | None = None) -> SearchSweep:
    """Every company whose `hs_lastmodifieddate` is in `[start, end)`: paged by `hs_object_id > last` (so no page
    passes the cap), the window split in halves while it holds more than `cap` matches."""
    sweep = sweep if sweep is not None else SearchSweep()
    sweep.windows += 1
    after: str | None = None
    while True:
        page = client.search_companies(filter_groups=[_window_filters(start, end, after)],
                                       sorts=[Sort(OBJECT_ID_PROPERTY)], properties=[OBJECT_ID_PROPERTY], limit=page_size)
        sweep.calls += 1
        if after is None and page.total > cap and end - start > timedelta(milliseconds=1):
            middle = start + (end - start) / 2
            search_changed(client, start, middle, page_size=page_size, cap=cap, sweep=sweep)
            search_changed(client, middle, end, page_size=page_size, cap=cap, sweep=sweep)
            sweep.windows -= 1  # counted by its halves
            return sweep
        sweep.ids.update(company.id for company in page.results)
        if len(page.results) < page_size:
            return sweep
        after = page.results[-1].id


def churn(client: HubSpotClient, start: datetime, end: datetime) -> int:
    """How many companies HubSpot says moved in the window (`limit: 1` answers `total`): every API write moves
    `hs_lastmodifieddate`, warp-sync's own included, and calculated properties do too."""
    return client.search_companies(filter_groups=[_window_filters(start, end, None)], properties=[OBJECT_ID_PROPERTY],
                                   limit=1).total


def webhook_changed(engine: sa.Engine, since: datetime) -> set[str]:
    """Companies the stored webhook events name since `since` (property changes, creations, deletions, merges)."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT DISTINCT unnest(array_remove(array[object_id, primary_object_id, new_object_id] "
            "|| coalesce(merged_object_ids, '{}'), NULL)) FROM hubspot_webhook_events WHERE received_at >= :since"),
            {"since": since}).scalars()
        return {str(r) for r in rows}


# --- WARP's side and the counterparts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """The records an incremental run reconciles."""

    customer_ids: frozenset[str]
    company_ids: frozenset[str]
    hubspot_from: datetime
    hubspot_to: datetime
    warp_from: datetime
    search: SearchSweep
    from_webhooks: int
    from_warp: int
    carried: int
    churn: int

    def describe(self) -> dict[str, Any]:
        return {"customers": len(self.customer_ids), "companies": len(self.company_ids),
                "hubspot_window": [self.hubspot_from.isoformat(), self.hubspot_to.isoformat()],
                "warp_since": self.warp_from.isoformat(), "search_calls": self.search.calls,
                "search_windows": self.search.windows, "changed_by_search": len(self.search.ids),
                "changed_by_webhooks": self.from_webhooks, "changed_in_warp": self.from_warp,
                "carried": self.carried, "churn": self.churn}


def _counterparts(conn: sa.Connection, customer_ids: Iterable[str], company_ids: Iterable[str]
                  ) -> tuple[set[str], set[str]]:
    """Customers and companies closed under linking: each changed customer's company, each changed company's
    customer (linked to it)."""
    customers = set(customer_ids)
    companies = set(company_ids)
    # Joins on unnested ids, each looked up by its index (the link's index is partial: the `?` test lets it serve).
    if companies:
        customers |= {str(r) for r in conn.execute(sa.text(
            "SELECT c.id FROM unnest(CAST(:ids AS text[])) AS o(company_id) JOIN customers AS c "
            "ON c.external_ids ->> 'hubspot_company_id' = o.company_id AND c.external_ids ? 'hubspot_company_id'"),
            {"ids": sorted(companies)}).scalars()}
    if customers:
        companies |= {str(r) for r in conn.execute(sa.text(
            "SELECT c.external_ids ->> 'hubspot_company_id' FROM unnest(CAST(:ids AS uuid[])) AS o(id) "
            "JOIN customers AS c ON c.id = o.id WHERE c.external_ids ? 'hubspot_company_id'"),
            {"ids": sorted(customers)}).scalars()}
    return customers, companies


def find_scope(engine: sa.Engine, client: HubSpotClient, mark: Watermark, *, started_at: datetime,
               overlap: timedelta, index_lag: timedelta, warp_margin: timedelta, cap: int = SEARCH_CAP) -> Scope:
    """What moved since `mark`, on both sides, with each record's counterpart and the carried ones."""
    hubspot_from, hubspot_to = mark.hubspot_through - overlap, started_at - index_lag
    warp_from = mark.warp_through - warp_margin
    sweep = search_changed(client, hubspot_from, hubspot_to, cap=cap)
    from_webhooks = webhook_changed(engine, warp_from)
    with engine.connect() as conn:
        changed = {str(r) for r in conn.execute(sa.text("SELECT id FROM customers WHERE updated_at >= :since"),
                                               {"since": warp_from}).scalars()}
        carried = conn.execute(sa.text("SELECT customer_id::text, company_id FROM hubspot_reconcile_carried")).all()
        customers, companies = _counterparts(
            conn, changed | {r.customer_id for r in carried if r.customer_id},
            sweep.ids | from_webhooks | {r.company_id for r in carried if r.company_id})
    return Scope(frozenset(customers), frozenset(companies), hubspot_from, hubspot_to, warp_from, sweep,
                 len(from_webhooks), len(changed), len(carried), churn(client, hubspot_from, hubspot_to))


def carry(engine: sa.Engine, run_id: str, records: Sequence[tuple[str | None, str | None, str]]) -> None:
    """Carry (customer id, company id, reason) into the next run."""
    if not records:
        return
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO hubspot_reconcile_carried (customer_id, company_id, reason, run_id) "
            "VALUES (CAST(:customer AS uuid), :company, :reason, :run) "
            "ON CONFLICT ((coalesce(customer_id::text, '')), (coalesce(company_id, ''))) DO UPDATE SET "
            "reason = EXCLUDED.reason, run_id = EXCLUDED.run_id, carried_at = now()"),
            [{"customer": str(UUID(c)) if c else None, "company": co, "reason": reason, "run": run_id}
             for c, co, reason in records])


def settle_carried(engine: sa.Engine, customer_ids: Iterable[str] | None, company_ids: Iterable[str] | None,
                   before: datetime) -> None:
    """Forget carried records a run reconciled (those carried before it started); a full sweep (None) reconciled
    them all."""
    with engine.begin() as conn:
        if customer_ids is None or company_ids is None:
            conn.execute(sa.text("DELETE FROM hubspot_reconcile_carried WHERE carried_at < :before"),
                         {"before": before})
            return
        conn.execute(sa.text(
            "DELETE FROM hubspot_reconcile_carried WHERE carried_at < :before AND "
            "(customer_id = ANY(CAST(:customers AS uuid[])) OR company_id = ANY(:companies))"),
            {"before": before, "customers": sorted(customer_ids), "companies": sorted(company_ids)})


def measure_against_population(plan: Any, engine: sa.Engine) -> None:
    """An incremental plan's brake judged against every linked customer, not the few compared (a share of the
    compared set would trip every night): sets the plan's brake denominator."""
    with engine.connect() as conn:
        population = int(conn.execute(sa.text(
            "SELECT count(*) FROM customers WHERE hubspot_link_status = 'linked'")).scalar_one())
    brake = dict(plan.attrs.get(ATTR_BRAKE) or {})
    brake["records_compared"] = max(population, int(brake.get("records_compared") or 0))
    plan.attrs[ATTR_BRAKE] = brake


def unsettled(summaries: Iterable[WriteBackSummary]) -> list[tuple[str | None, str | None, str]]:
    """The records a run's write-backs skipped or failed (write-back summaries), to carry into the next run."""
    out: list[tuple[str | None, str | None, str]] = []
    for summary in summaries:
        for record in summary.records:
            if record.outcome in (SKIPPED, FAILED):
                out.append((record.customer_id, record.company_id, f"{record.outcome}: {record.code or ''}".strip()))
    return out
