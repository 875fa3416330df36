"""The two pulls: every WARP customer and every HubSpot company, as DataFrames.

Only these two frames hold every row; later steps keep the rows that differ. Values are kept exactly as each
side holds them (WARP's as `column::text`, the compare-and-set key of the write-back; HubSpot's strings as
sent), and normalised later, in one vectorized pass.
"""

from __future__ import annotations

import csv
import math
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from warp_sync_pipeline.core.decision import AGREED
from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRules, Strategy
from warp_sync_pipeline.core.hubspot import (
    MERGED_IDS_PROPERTY,
    ExportFailed,
    ExportStatus,
    HubSpotClient,
    PageProgress,
    RequestBudget,
    export_rows,
)
from warp_sync_pipeline.core.hubspot.client import PAGE_MAX
from warp_sync_pipeline.core.hubspot.models import LAST_MODIFIED_PROPERTY, OBJECT_ID_PROPERTY, parse_time
from warp_sync_pipeline.core.reconcile.frames import (
    ATTR_PULLED_AT,
    ATTR_RULES,
    BAN,
    BAN_PROPERTY,
    COMPANY_ID,
    COMPANY_UPDATED_AT,
    CUSTOMER_CREATED_AT,
    CUSTOMER_ID,
    CUSTOMER_UPDATED_AT,
    LINK_STATUS,
    OPEN_CONFLICTS,
    STATE_WARP,
    STATE_WARP_CHANGED_AT,
    WARP_RAW,
    col,
    iso,
    now_utc,
    parse_iso,
    rules_to_attr,
)
from warp_sync_pipeline.core.reconcile.options import DEFAULT_WARP_PAGE_SIZE, ReconcileError

Progress = Callable[[str], None]
HUBSPOT_PROGRESS_EVERY_PAGES = 50
HUBSPOT_CHUNK_ROWS = 50_000


def needs_change_times(rule: FieldRule) -> bool:
    """LATEST_WINS compares change times; a MANUAL conflict shows both to the person who settles it (the review
    pages). Other rules never read them, so their fields cost no history reads."""
    return rule.direction is Direction.BIDIRECTIONAL and rule.strategy in (Strategy.LATEST_WINS, Strategy.MANUAL)


def warp_columns(rules: FieldRules) -> list[str]:
    names = [CUSTOMER_ID, BAN, COMPANY_ID, LINK_STATUS, CUSTOMER_UPDATED_AT, CUSTOMER_CREATED_AT]
    for field, rule in rules.items():
        names += [col(field, WARP_RAW), col(field, AGREED)]
        if needs_change_times(rule):
            names += [col(field, STATE_WARP), col(field, STATE_WARP_CHANGED_AT)]
    return names


def _epoch_us(expression: str) -> str:
    # Times travel as integers (microseconds since the epoch): a datetime object per value costs far more.
    return f"(extract(epoch FROM {expression}) * 1000000)::bigint"


# An incremental run's customers: its ids, each looked up by the primary key (`c.id = ANY(ids)` over a scope of tens of
# thousands makes PostgreSQL test every customer against the whole array).
_ONLY_IDS = "unnest(CAST(:only AS uuid[])) AS o(id) JOIN customers AS c ON c.id = o.id"


def _page_sql(rules: FieldRules, quote: Callable[[str], str], params: dict[str, Any], *, first: bool,
              only: bool = False) -> str:
    """One keyset page of customers with their field state (one lateral aggregate per customer)."""
    state = []
    for position, (field, rule) in enumerate(rules.items()):
        params[f"f{position}"] = field
        where = f"FILTER (WHERE warp_field = :f{position})"
        state.append(f'max(agreed_value) {where} AS "{col(field, AGREED)}"')
        if needs_change_times(rule):
            state.append(f'max(warp_value) {where} AS "{col(field, STATE_WARP)}"')
            state.append(f'{_epoch_us(f"max(warp_changed_at) {where}")} AS "{col(field, STATE_WARP_CHANGED_AT)}"')
    # Field names come from load_rules, which accepts only real `customers` columns warp-sync can sync.
    raw = ", ".join(f'c.{quote(field)}::text AS "{col(field, WARP_RAW)}"' for field in rules)
    return f"""
        SELECT c.id::text AS customer_id, c.ban, c.external_ids ->> 'hubspot_company_id' AS company_id,
               c.hubspot_link_status AS link_status, {_epoch_us("c.updated_at")} AS customer_updated_at,
               {_epoch_us("c.created_at")} AS customer_created_at,
               {raw}, s.*
        FROM {_ONLY_IDS if only else "customers AS c"}
        LEFT JOIN LATERAL (SELECT {", ".join(state)} FROM hubspot_field_state WHERE customer_id = c.id) AS s
            ON true
        WHERE true {"" if first else "AND c.id > CAST(:after AS uuid)"}
        ORDER BY c.id
        LIMIT :limit
    """


_OPEN_CONFLICTS = sa.text(
    "SELECT customer_id::text, ',' || string_agg(warp_field, ',') || ',' FROM hubspot_conflicts "
    "WHERE status = 'open' GROUP BY customer_id"
)


def pull_warp_customers(
    engine: sa.Engine,
    rules: FieldRules,
    *,
    page_size: int = DEFAULT_WARP_PAGE_SIZE,
    progress: Progress | None = None,
    only: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Every customer (or the `only` ones: an incremental run's) with its mapped fields, link and field state, read
    in keyset pages of `page_size`.

    All pages come from one REPEATABLE READ snapshot, so the frame is one consistent moment of WARP.
    `attrs["pulled_at"]` is when the pull started (a plan is as old as its oldest pull).
    """
    pulled_at = now_utc()
    names = warp_columns(rules)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    total = 0
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        quote = conn.dialect.identifier_preparer.quote
        params: dict[str, Any] = {"limit": page_size}
        if only is not None:
            params["only"] = sorted(set(only))
        first = sa.text(_page_sql(rules, quote, params, first=True, only=only is not None))
        following = sa.text(_page_sql(rules, quote, params, first=False, only=only is not None))
        with conn.begin():
            after: str | None = None
            while True:
                result = conn.execute(first if after is None else following,
                                      params if after is None else {**params, "after": after})
                keys = list(result.keys())
                rows = result.fetchall()
                if not rows:
                    break
                for name, values in zip(keys, zip(*rows, strict=True), strict=True):
                    columns[name].extend(values)
                total += len(rows)
                after = rows[-1][0]
                if progress is not None:
                    progress(f"WARP pull: {total:,} customers")
                if len(rows) < page_size:
                    break
            # In the pages' snapshot: which customers' fields wait in review (few; one statement).
            listed = dict(conn.execute(_OPEN_CONFLICTS).all())
    columns[OPEN_CONFLICTS] = [listed.get(customer) for customer in columns[CUSTOMER_ID]] if listed \
        else [None] * total
    names = [*names, OPEN_CONFLICTS]
    times = [CUSTOMER_UPDATED_AT, CUSTOMER_CREATED_AT] + [name for name in names if name.endswith(STATE_WARP_CHANGED_AT)]
    frame = in_company_order(_typed(pd.DataFrame(columns, columns=names), times=times, epoch_us=True))
    frame.attrs = {ATTR_PULLED_AT: iso(pulled_at), ATTR_RULES: rules_to_attr(rules)}
    return frame


def in_company_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Customers in the order of their HubSpot company id (unlinked ones last), which is the order HubSpot
    lists companies in: the diff then pairs rows that already sit side by side instead of gathering one frame
    into the other's order (a sort-merge join, the sort paid here, during the pull). Any order is correct."""
    if frame.empty:
        return frame
    from warp_sync_pipeline.core.reconcile.diff import company_id_numbers

    ids = frame[COMPANY_ID]
    linked = ids.notna().to_numpy(dtype=bool)
    numbers = company_id_numbers(ids[linked])
    if numbers is None:
        return frame  # ids that are not plain numbers: left in customer order
    keys = np.full(len(frame), np.iinfo(np.int64).max, dtype=np.int64)
    keys[linked] = numbers
    order = np.argsort(keys, kind="stable")
    return frame.take(order).reset_index(drop=True)


def _typed(frame: pd.DataFrame, *, times: Iterable[str], epoch_us: bool = False) -> pd.DataFrame:
    """Text columns as pandas `str`, times as UTC datetimes (Parquet round-trips both). With `epoch_us` the
    times arrive as microseconds since the epoch (None where unknown)."""
    time_columns = set(times)
    out = {}
    for name in frame.columns:
        values = frame[name]
        if name in time_columns:
            out[name] = (pd.to_datetime(pd.to_numeric(values), unit="us", utc=True) if epoch_us
                         else pd.to_datetime(values, utc=True))
        else:
            out[name] = values.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def hubspot_properties(rules: FieldRules) -> list[str]:
    """The properties the pull reads: the mapped ones, warp_ban always (the BAN fallback needs it), and the ids
    merged into each company (a customer linked to a merged-away id follows the merge)."""
    names = list(dict.fromkeys([*rules.hubspot_properties, BAN_PROPERTY, MERGED_IDS_PROPERTY]))
    reserved = {COMPANY_ID, COMPANY_UPDATED_AT} & set(names)
    if reserved:
        raise ReconcileError("INVALID_FIELD_MAPPING", f"HubSpot properties {sorted(reserved)} clash with frame columns")
    return names


def pull_hubspot_companies(
    client: HubSpotClient,
    properties: list[str],
    *,
    progress: Progress | None = None,
    progress_every: int = HUBSPOT_PROGRESS_EVERY_PAGES,
    chunk_rows: int = HUBSPOT_CHUNK_ROWS,
) -> pd.DataFrame:
    """Every active company via list paging (100 a page) with only `properties`, one page held at a time.

    Rows are gathered into frames of `chunk_rows` as they arrive, so the Python objects of a page never pile
    up. `progress` hears every `progress_every` pages and at the end.
    """
    pulled_at = now_utc()

    def on_page(page: PageProgress) -> None:
        if progress is not None and (page.pages % progress_every == 0 or page.next_after is None):
            progress(f"HubSpot pull: {page.companies:,} companies in {page.pages:,} pages")

    frame = _CompanyFrame(properties, chunk_rows)
    for company in client.iter_companies(properties=properties, on_page=on_page):
        frame.add(company.id, company.updated_at, company.properties)
    return frame.done(pulled_at)


class _CompanyFrame:
    """A HubSpot pull's frame built as rows arrive: gathered into frames of `chunk_rows`, so the Python objects
    of a pull never pile up (a million companies' strings would take several times the frame's memory)."""

    def __init__(self, properties: list[str], chunk_rows: int) -> None:
        self._names = [COMPANY_ID, COMPANY_UPDATED_AT, *properties]
        self._buffers: dict[str, list[Any]] = {name: [] for name in self._names}
        self._ids, self._updated = self._buffers[COMPANY_ID], self._buffers[COMPANY_UPDATED_AT]
        self._columns = [(name, self._buffers[name]) for name in properties]
        self._chunks: list[pd.DataFrame] = []
        self._chunk_rows = chunk_rows

    def add(self, company_id: str, updated_at: datetime | None, values: Mapping[str, str | None]) -> None:
        self._ids.append(company_id)
        self._updated.append(updated_at)
        for name, target in self._columns:
            target.append(values.get(name))
        if len(self._ids) >= self._chunk_rows:
            self._flush()

    def _flush(self) -> None:
        self._chunks.append(_typed(pd.DataFrame(self._buffers, columns=self._names), times=[COMPANY_UPDATED_AT]))
        for values in self._buffers.values():
            values.clear()

    def done(self, pulled_at: datetime) -> pd.DataFrame:
        self._flush()
        frame = pd.concat(self._chunks, ignore_index=True) if len(self._chunks) > 1 else self._chunks[0]
        frame.attrs = {ATTR_PULLED_AT: iso(pulled_at)}
        return frame


def export_hubspot_companies(
    client: HubSpotClient,
    properties: list[str],
    *,
    poll_seconds: float,
    timeout_seconds: float,
    progress: Progress | None = None,
) -> pd.DataFrame:
    """Every active company with only `properties`, in the list pull's frame, through HubSpot's CRM Exports API:
    a handful of calls whatever the portal's size, where the list pull makes one per 100 companies. The file is
    read from a temporary folder and removed. ExportFailed (a HubSpotError, so the caller may fall back to the list)
    for an export HubSpot refused, canceled or did not finish, and for a file that cannot be read whole."""
    pulled_at = now_utc()
    wanted = list(dict.fromkeys([*properties, LAST_MODIFIED_PROPERTY]))

    def on_poll(status: ExportStatus) -> None:
        if progress is not None:
            progress(f"HubSpot export: {status.status.lower()}")

    with tempfile.TemporaryDirectory(prefix="warp-sync-export-") as folder:
        path = client.export_companies(wanted, Path(folder) / "companies.export", name="warp-sync full sweep",
                                       poll_seconds=poll_seconds, timeout_seconds=timeout_seconds, on_poll=on_poll)
        frame = read_export(path, properties, pulled_at)
    if progress is not None:
        progress(f"HubSpot export: {len(frame):,} companies")
    return frame


def read_export(path: Path, properties: list[str], pulled_at: datetime,
                chunk_rows: int = HUBSPOT_CHUNK_ROWS) -> pd.DataFrame:
    """An export's file as the list pull's frame. An empty cell is an unset property (None), as the list pull has
    it; the record's time is read as the objects API's is (ISO 8601 with or without milliseconds, or epoch
    milliseconds). A file that cannot be read whole (not UTF-8, a broken zip or quote, a row cut short, a time
    that is no time, no rows at all) is ExportFailed: better the list API's calls than a sweep on part of the portal."""
    frame = _CompanyFrame(properties, chunk_rows)
    try:
        for row in export_rows(path):
            frame.add(row[OBJECT_ID_PROPERTY], parse_time(row.get(LAST_MODIFIED_PROPERTY)),
                      {name: row.get(name) or None for name in properties})
        result = frame.done(pulled_at)
    except (OSError, ValueError, csv.Error, zipfile.BadZipFile, KeyError) as exc:
        raise ExportFailed(f"the export's file could not be read: {type(exc).__name__}: {exc}") from exc
    if result.empty:
        raise ExportFailed("the export's file held no companies")
    return result


def read_hubspot_companies(client: HubSpotClient, company_ids: Iterable[str], properties: list[str]) -> pd.DataFrame:
    """The given companies in the pull's frame shape, by batch reads of 100 (a company gone is left out): for a
    flow that needs some companies, not all (the onboarding's execution, after it linked them)."""
    read_at = now_utc()
    names = [COMPANY_ID, COMPANY_UPDATED_AT, *properties]
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for outcome in client.batch_read_companies(list(dict.fromkeys(str(c) for c in company_ids)),
                                               properties=properties):
        if outcome.company is None:
            continue
        columns[COMPANY_ID].append(outcome.company.id)
        columns[COMPANY_UPDATED_AT].append(outcome.company.updated_at)
        for name in properties:
            columns[name].append(outcome.company.properties.get(name))
    frame = _typed(pd.DataFrame(columns, columns=names), times=[COMPANY_UPDATED_AT])
    frame.attrs = {ATTR_PULLED_AT: iso(read_at)}
    return frame


def pulled_at(frame: pd.DataFrame) -> datetime:
    return parse_iso(frame.attrs[ATTR_PULLED_AT])


# Calls a pull makes beyond its pages (the properties check, retries); a pull's pages are 100 companies each.
PULL_MARGIN_CALLS = 20


class DailyQuotaTooLow(RuntimeError):
    """The pull would eat into the share of HubSpot's daily quota kept for creates: not started."""


def check_daily_headroom(engine: sa.Engine, budget: RequestBudget | None) -> None:
    """Refuse to start a pull whose calls would leave less of the account's daily quota than the share kept for
    creates (HUBSPOT_DAILY_RESERVED_SHARE). The companies are estimated by WARP's customers (one page per 100)."""
    if budget is None:
        return
    quota = budget.daily_left()
    if quota is None:
        return  # not seen today: the budget stops bulk calls at the share as answers report it
    limit, remaining = quota
    with engine.connect() as conn:
        customers_count = conn.execute(sa.text("SELECT count(*) FROM customers")).scalar_one()
    needed = math.ceil(customers_count / PAGE_MAX) + PULL_MARGIN_CALLS
    reserve = budget.daily_reserve(limit)
    if remaining - needed <= reserve:
        raise DailyQuotaTooLow(
            f"The nightly pull needs about {needed:,} HubSpot calls; the account's daily quota has {remaining:,} of "
            f"{limit:,} left, and {reserve:,} are kept for creates (HUBSPOT_DAILY_RESERVED_SHARE). Not started: run "
            "it after HubSpot's daily reset.")
