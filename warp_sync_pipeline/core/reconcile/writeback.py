"""The write-backs: the plan carried out on both sides, compare-and-set, with per-record outcomes.

The plan can be hours old when it is written, so nothing newer is ever overwritten (DESIGN.md flow 4):

- HubSpot, 100 companies at a time: the companies are re-read just before they are written and a field whose
  HubSpot value moved since the pull is skipped; so is one whose WARP value moved (the live queue carries the
  newer value). Every value is recorded in the write ledger (committed) before the batch update is sent, so its
  webhook echo is recognised; a definitely failed write voids its entry.
- WARP, in chunked transactions carrying the no-echo marker (`warp_sync.origin = 'hubspot'`, so the outbound
  trigger queues nothing back): a field is updated only where it still holds the text that was pulled. The
  same transactions link customers matched by BAN, open MANUAL conflicts for review, record agreed values and
  write the audit trail. Before them, customers linked to a company HubSpot merged away follow the merge
  (core.links, as the merge webhook would have moved them), one transaction each, under their leases.

Each returns a `results.WriteBackSummary`: status, and one `Record` per planned row with its outcome (`applied`,
`skipped` with the reason, `failed` with a stable code, `dry_run` or `not_written`). Failures go into the
summary, not an exception, so the report always runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

from warp_sync_pipeline.core.agreements import record_field_state
from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync_many, name_writer
from warp_sync_pipeline.core.company_creates import CreateRequest, CreateStatus, create_companies
from warp_sync_pipeline.core.decision import Action, Decision, Observed, Reason
from warp_sync_pipeline.core.failures import describe_failure, error_code
from warp_sync_pipeline.core.field_state import FieldStateUpdate, sent_to_hubspot
from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRules
from warp_sync_pipeline.core.hubspot import (
    AuthFailed,
    HubSpotClient,
    HubSpotError,
    NotFound,
    RecordOutcome,
)
from warp_sync_pipeline.core.leases import BulkLease, CustomerBusy, acquire_customers, release_customers
from warp_sync_pipeline.core.ledger import LedgeredUpdate, update_companies_ledger_first
from warp_sync_pipeline.core.links import LinkStatus, follow_merge, link_unlinked
from warp_sync_pipeline.core.normalize import (
    InvalidFieldValue,
    comparable,
    to_hubspot,
)
from warp_sync_pipeline.core.reconcile.diff import bare
from warp_sync_pipeline.core.reconcile.frames import (
    AGREEMENT,
    ATTR_PULLED_AT,
    BAN,
    CHANGE,
    COMPANY_ID,
    COMPANY_MERGED,
    COMPANY_NAME,
    CUSTOMER_ID,
    CUSTOMER_WITHOUT_COMPANY,
    DUPLICATE_BAN,
    KIND,
    LINK,
    MERGED_FROM,
    now_utc,
    parse_iso,
    text_or_none,
    time_or_none,
)
from warp_sync_pipeline.core.reconcile.options import (
    DRY_RUN,
    BrakeStats,
    Gate,
    ReconcileOptions,
    writeback_gate,
)
from warp_sync_pipeline.core.reconcile.plan import (
    ACTION,
    AGREED_VALUE,
    ERROR,
    ERROR_CODE,
    FIELD,
    HUBSPOT_PROPERTY,
    HUBSPOT_RAW_VALUE,
    HUBSPOT_TIME,
    HUBSPOT_VALUE,
    REASON,
    VALUE,
    WARP_RAW_VALUE,
    WARP_TIME,
    WARP_VALUE,
    brake_stats,
)
from warp_sync_pipeline.core.reconcile.results import (
    APPLIED,
    FAILED,
    NOT_WRITTEN,
    SKIPPED,
    Part,
    Record,
    WriteBackSummary,
)
from warp_sync_pipeline.core.sync_tables import customer_company_id, customers, hold_customers
from warp_sync_pipeline.core.warp_apply import (
    CONFLICT_OPENED,
    CONFLICT_UPDATED,
    CUSTOMER_GONE,
    WARP_CHANGED,
    Applied,
    Applier,
    FieldDecision,
    apply_decisions,
)

log = logging.getLogger("warp_sync.reconcile")

HUBSPOT_CHUNK = 100  # companies per re-read and per batch update (HubSpot's batch limit)
ACTOR = "reconciliation"

# Why a record was skipped.
HUBSPOT_CHANGED = "HUBSPOT_CHANGED_SINCE_PULL"
COMPANY_GONE = "COMPANY_GONE"
LINK_TAKEN = "LINK_TAKEN"
LINK_CHANGED = "LINK_CHANGED_SINCE_PULL"
ALREADY_FOLLOWED = "MERGE_ALREADY_FOLLOWED"
MERGE_LEASE_TTL = timedelta(seconds=60)

# Statuses of a whole write-back besides the gate's.
WRITTEN = "written"
NOTHING_TO_WRITE = "nothing_to_write"

_LOG_OUTCOME = {APPLIED: Outcome.APPLIED, SKIPPED: Outcome.SKIPPED, FAILED: Outcome.FAILED}


# --- shared -------------------------------------------------------------------------------------------------


def _record(row: Mapping[str, Any], outcome: str, *, new: object = None, code: str | None = None,
            message: str | None = None, old_column: str = HUBSPOT_RAW_VALUE) -> Record:
    return Record(
        outcome=outcome,
        customer_id=text_or_none(row.get(CUSTOMER_ID)),
        ban=text_or_none(row.get(BAN)),
        company_id=text_or_none(row.get(COMPANY_ID)),
        company_name=text_or_none(row.get(COMPANY_NAME)),
        field=text_or_none(row.get(FIELD)),
        hubspot_property=text_or_none(row.get(HUBSPOT_PROPERTY)),
        action=text_or_none(row.get(ACTION)),
        reason=text_or_none(row.get(REASON)),
        old=text_or_none(row.get(old_column)),
        new=text_or_none(new),
        code=code,
        message=message,
    )


def _gate(plan: pd.DataFrame, options: ReconcileOptions, *, enabled: bool, now: datetime) -> Gate:
    pulled = plan.attrs.get(ATTR_PULLED_AT)
    brake = brake_stats(plan)
    if options.create_missing:
        # Each company to create is a record changed too, out of a population that includes its customer.
        creates = len(_customers_to_create(plan))
        brake = BrakeStats(brake.records_to_change + creates, brake.records_compared + creates)
    return writeback_gate(options, brake, pulled_at=parse_iso(pulled) if pulled else None, now=now, enabled=enabled)


def _customers_to_create(plan: pd.DataFrame) -> pd.DataFrame:
    """Customers without a company, but not those whose BAN several companies hold (a person decides those)."""
    rows = bare(plan)
    twice = set(rows.loc[rows[KIND] == DUPLICATE_BAN, BAN].dropna())
    orphans = rows[(rows[KIND] == CUSTOMER_WITHOUT_COMPANY) & ~rows[BAN].isin(twice)]
    return orphans.drop_duplicates(CUSTOMER_ID)


def _create_missing(plan: pd.DataFrame, gate: Gate, *, client: HubSpotClient, engine: sa.Engine, rules: FieldRules,
                    run_id: str | None, progress: Callable[[str], None] | None) -> Part:
    """Companies for the customers without one (`company_creates`), or why none were made."""
    wanted = _customers_to_create(plan)
    part = Part(planned=len(wanted))
    if not gate.open:
        outcome = DRY_RUN if gate.status == DRY_RUN else NOT_WRITTEN
        part.records = [Record(outcome=outcome, customer_id=str(c), ban=b)
                        for c, b in zip(wanted[CUSTOMER_ID], wanted[BAN], strict=True)]
        return part
    made = create_companies(engine, client, [str(c) for c in wanted[CUSTOMER_ID]], rules,
                            CreateRequest(Trigger.RECONCILIATION, run_id), progress=progress)
    part.records = [Record(outcome=_CREATE_OUTCOMES[m.status], customer_id=m.customer_id, ban=m.ban,
                           company_id=m.company_id, action="CREATE_COMPANY", reason=m.status.value, code=m.code,
                           message=m.message) for m in made]
    return part


_CREATE_OUTCOMES = {CreateStatus.CREATED: APPLIED, CreateStatus.ADOPTED: APPLIED, CreateStatus.FAILED: FAILED,
                    CreateStatus.UNKNOWN: SKIPPED, CreateStatus.LINK_REFUSED: SKIPPED}


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _same_text(current: object, pulled: object) -> bool:
    return text_or_none(current) == text_or_none(pulled)


def _audit(row: Mapping[str, Any], outcome: Outcome, *, direction: Direction | None, run_id: str | None,
           new_value: object = None, code: str | None = None, message: str | None = None,
           details: Mapping[str, Any] | None = None) -> SyncLogEntry:
    old = row.get(HUBSPOT_RAW_VALUE) if direction is Direction.WARP_TO_HUBSPOT else row.get(WARP_RAW_VALUE)
    return SyncLogEntry(
        trigger=Trigger.RECONCILIATION,
        outcome=outcome,
        customer_id=text_or_none(row.get(CUSTOMER_ID)),
        ban=text_or_none(row.get(BAN)),
        warp_field=text_or_none(row.get(FIELD)),
        hubspot_property=text_or_none(row.get(HUBSPOT_PROPERTY)),
        direction=direction,
        old_value=text_or_none(old),
        new_value=text_or_none(new_value),
        action=text_or_none(row.get(ACTION)),
        reason=text_or_none(row.get(REASON)),
        error_code=code,
        error=message,
        run_id=run_id,
        details={"company_id": text_or_none(row.get(COMPANY_ID)), **(details or {})},
    )


# --- HubSpot ------------------------------------------------------------------------------------------------


def write_to_hubspot(
    plan: pd.DataFrame,
    *,
    client: HubSpotClient,
    engine: sa.Engine,
    rules: FieldRules,
    options: ReconcileOptions,
    run_id: str | None,
    enabled: bool,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> WriteBackSummary:
    """Carry out the plan's WRITE_TO_HUBSPOT rows: re-read, compare, ledger, batch update, record; then, with
    `options.create_missing`, a company for each customer without one."""
    now = now or now_utc()
    gate = _gate(plan, options, enabled=enabled, now=now)
    summary = _write_hubspot_fields(plan, gate, client=client, engine=engine, rules=rules, run_id=run_id, now=now,
                                    progress=progress)
    if options.create_missing:
        summary.creates = _create_missing(plan, gate, client=client, engine=engine, rules=rules, run_id=run_id,
                                          progress=progress)
        if gate.open and summary.creates.records and summary.status == NOTHING_TO_WRITE:
            summary.status = WRITTEN
    return summary


def _write_hubspot_fields(plan: pd.DataFrame, gate: Gate, *, client: HubSpotClient, engine: sa.Engine,
                          rules: FieldRules, run_id: str | None, now: datetime,
                          progress: Callable[[str], None] | None) -> WriteBackSummary:
    rows_of = bare(plan)
    writes = rows_of[(rows_of[KIND] == CHANGE) & (rows_of[ACTION] == Action.WRITE_TO_HUBSPOT.value)]
    summary = WriteBackSummary(side="hubspot", status=gate.status, reason=gate.reason, planned=len(writes))
    rows = _rows(writes)
    if not gate.open:
        outcome = DRY_RUN if gate.status == DRY_RUN else NOT_WRITTEN
        summary.records = [_record(r, outcome, new=_hubspot_text(rules, r)) for r in rows]
        return summary
    if not rows:
        summary.status = NOTHING_TO_WRITE
        return summary
    summary.status = WRITTEN
    by_company: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_company.setdefault(str(row[COMPANY_ID]), []).append(row)
    companies = list(by_company)
    done = 0
    for position, chunk in enumerate(_chunks(companies, HUBSPOT_CHUNK)):
        chunk_rows = [row for company in chunk for row in by_company[company]]
        try:
            summary.records += _hubspot_chunk(chunk_rows, client=client, engine=engine, rules=rules,
                                                 run_id=run_id, now=now)
        except AuthFailed as exc:
            # Nothing else will work either: every remaining record fails with the reason.
            remaining = [row for company in companies[position * HUBSPOT_CHUNK:] for row in by_company[company]]
            summary.records += [_record(r, FAILED, new=_hubspot_text(rules, r), code=error_code(exc),
                                           message=str(exc)) for r in remaining]
            summary.reason = f"HubSpot refused the credentials ({error_code(exc)}); the write-back stopped."
            break
        except (HubSpotError, sa.exc.SQLAlchemyError) as exc:
            code, message = describe_failure(exc)
            log.warning("HubSpot write-back chunk failed: %s", code)
            summary.records += [_record(r, FAILED, new=_hubspot_text(rules, r), code=code, message=message)
                                for r in chunk_rows]
        done += len(chunk)
        if progress is not None:
            progress(f"HubSpot write-back: {done:,} of {len(companies):,} companies")
    return summary


def _hubspot_text(rules: FieldRules, row: Mapping[str, Any]) -> str | None:
    try:
        return to_hubspot(rules[row[FIELD]].spec, text_or_none(row[WARP_RAW_VALUE]))
    except InvalidFieldValue:
        return None


def _hubspot_moved(rule: FieldRule, current: str | None, pulled: object) -> bool:
    pulled_text = text_or_none(pulled)
    try:
        return comparable(rule.spec, current) != comparable(rule.spec, pulled_text)
    except InvalidFieldValue:
        return (current or "").strip() != (pulled_text or "").strip()


def _hubspot_chunk(
    rows: list[dict[str, Any]],
    *,
    client: HubSpotClient,
    engine: sa.Engine,
    rules: FieldRules,
    run_id: str | None,
    now: datetime,
) -> list[Record]:
    company_ids = list(dict.fromkeys(str(r[COMPANY_ID]) for r in rows))
    fields = sorted({r[FIELD] for r in rows})
    warp_now = read_warp_text(engine, [str(r[CUSTOMER_ID]) for r in rows], fields)
    read = {o.key: o for o in client.batch_read_companies(
        company_ids, properties=sorted({rules[f].hubspot_property for f in fields}))}
    records: list[Record] = []
    pending: list[tuple[dict[str, Any], str]] = []
    for row in rows:
        rule = rules[row[FIELD]]
        seen: RecordOutcome = read[str(row[COMPANY_ID])]
        value = _hubspot_text(rules, row)
        customer = warp_now.get(str(row[CUSTOMER_ID]))
        if seen.company is None:
            if isinstance(seen.error, NotFound):
                records.append(_record(row, SKIPPED, new=value, code=COMPANY_GONE,
                                       message="the company is gone from HubSpot since the pull"))
            else:
                records.append(_record(row, FAILED, new=value, code=error_code(seen.error),
                                       message=f"re-reading the company failed: {seen.error}"))
        elif _hubspot_moved(rule, seen.company.properties.get(rule.hubspot_property), row[HUBSPOT_RAW_VALUE]):
            records.append(_record(row, SKIPPED, new=value, code=HUBSPOT_CHANGED,
                                   message="HubSpot's value changed after the pull; left to the live flows"))
        elif customer is None:
            records.append(_record(row, SKIPPED, new=value, code=CUSTOMER_GONE,
                                   message="the customer is gone from WARP since the pull"))
        elif not _same_text(customer[rule.warp_field], row[WARP_RAW_VALUE]):
            records.append(_record(row, SKIPPED, new=value, code=WARP_CHANGED,
                                   message="WARP's value changed after the pull; the queue sends the newer one"))
        elif value is None:
            records.append(_record(row, FAILED, code="WARP_VALUE_INVALID", message="WARP's value cannot be sent"))
        else:
            pending.append((row, value))
    if pending:
        records += _send_updates(pending, client=client, engine=engine, rules=rules)
    _record_hubspot_outcomes(engine, rows, records, rules=rules, run_id=run_id, now=now)
    return records


def _send_updates(
    pending: list[tuple[dict[str, Any], str]],
    *,
    client: HubSpotClient,
    engine: sa.Engine,
    rules: FieldRules,
) -> list[Record]:
    """Send each company's values in one batch update, ledger first (core.ledger), and record each row's outcome."""
    by_company: dict[str, dict[str, str]] = {}
    for row, value in pending:
        by_company.setdefault(str(row[COMPANY_ID]), {})[row[FIELD]] = value
    sent = update_companies_ledger_first(
        engine, client, rules, [LedgeredUpdate(company_id, values) for company_id, values in by_company.items()],
        reason="reconciliation write")
    outcomes = dict(zip(by_company, sent, strict=True))
    records: list[Record] = []
    for row, value in pending:
        result = outcomes[str(row[COMPANY_ID])]
        if result.ok:
            records.append(_record(row, APPLIED, new=value))
            continue
        error = result.error
        records.append(_record(row, FAILED, new=value,
                               code=error_code(error, hubspot_property=row[HUBSPOT_PROPERTY]) if error else "UNKNOWN",
                               message=str(error) if error else "no answer for this company"))
    return records


def _record_hubspot_outcomes(
    engine: sa.Engine,
    rows: list[dict[str, Any]],
    records: list[Record],
    *,
    rules: FieldRules,
    run_id: str | None,
    now: datetime,
) -> None:
    """Field state of what was applied, and the audit trail of every record, in one transaction."""
    states, entries = [], []
    for row, record in zip(_matching(rows, records), records, strict=True):
        outcome = _LOG_OUTCOME.get(record.outcome, Outcome.FAILED)
        entries.append(_audit(row, outcome, direction=Direction.WARP_TO_HUBSPOT, run_id=run_id,
                              new_value=row[VALUE], code=record.code, message=record.message))
        if record.outcome == APPLIED:
            states.append(sent_to_hubspot(row[CUSTOMER_ID], row[FIELD], text_or_none(row[VALUE]), at=now,
                                          warp_at=time_or_none(row[WARP_TIME])))
    with engine.begin() as conn:
        name_writer(conn, actor=ACTOR, run_id=run_id)
        if states:
            record_field_state(conn, _existing(conn, states), closed_by=ACTOR, values_are_comparable=True)
        log_sync_many(conn, entries)


def _matching(rows: list[dict[str, Any]], records: list[Record]) -> list[dict[str, Any]]:
    """The plan row of each record (records come out in another order than the rows went in)."""
    by_key = {(str(r[CUSTOMER_ID]), r[FIELD]): r for r in rows}
    return [by_key[(record.customer_id, record.field)] for record in records]


def _existing(conn: sa.Connection, states: list[FieldStateUpdate]) -> list[FieldStateUpdate]:
    """Leave out customers deleted since the pull (their state rows went with them)."""
    present = hold_customers(conn, (str(s.customer_id) for s in states))
    return [s for s in states if str(s.customer_id) in present]


def read_warp_text(engine_or_conn: sa.Engine | sa.Connection, customer_ids: Sequence[str],
                   fields: Sequence[str]) -> dict[str, dict[str, str | None]]:
    """The current text (`column::text`) of these fields, by customer id; absent customers are left out."""
    if not customer_ids:
        return {}

    def run(conn: sa.Connection) -> dict[str, dict[str, str | None]]:
        quote = conn.dialect.identifier_preparer.quote
        # Field names come from the validated rules (real columns of customers).
        select = ", ".join(f"{quote(f)}::text AS {quote(f)}" for f in fields)
        result = conn.execute(
            sa.text(f"SELECT id::text AS customer_id, {select} FROM customers WHERE id = ANY(CAST(:ids AS uuid[]))"),
            {"ids": sorted(set(customer_ids))},
        )
        return {row["customer_id"]: dict(row) for row in result.mappings()}

    if isinstance(engine_or_conn, sa.Engine):
        with engine_or_conn.connect() as conn:
            return run(conn)
    return run(engine_or_conn)


# --- WARP ---------------------------------------------------------------------------------------------------


def write_to_warp(
    plan: pd.DataFrame,
    *,
    engine: sa.Engine,
    rules: FieldRules,
    options: ReconcileOptions,
    run_id: str | None,
    enabled: bool,
    now: datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> WriteBackSummary:
    """Carry out the plan's WARP side: CAS field updates, links, MANUAL conflicts, agreements, audit."""
    now = now or now_utc()
    rows_of = bare(plan)
    changes = rows_of[rows_of[KIND] == CHANGE]
    writes = changes[changes[ACTION] == Action.WRITE_TO_WARP.value]
    conflicts = changes[changes[ACTION] == Action.OPEN_CONFLICT.value]
    invalid = changes[changes[ACTION] == Action.SKIP_INVALID.value]
    links = rows_of[rows_of[KIND] == LINK]
    merges = rows_of[rows_of[KIND] == COMPANY_MERGED]
    agreements = rows_of[rows_of[KIND] == AGREEMENT]
    gate = _gate(plan, options, enabled=enabled, now=now)
    summary = WriteBackSummary(
        side="warp", status=gate.status, reason=gate.reason, planned=len(writes), conflicts=Part(len(conflicts)),
        links=Part(len(links)), merges=Part(len(merges)), agreements_planned=len(agreements),
        invalid_planned=len(invalid),
    )
    if not gate.open:
        outcome = DRY_RUN if gate.status == DRY_RUN else NOT_WRITTEN
        summary.records = [_record(r, outcome, new=r[VALUE], old_column=WARP_RAW_VALUE) for r in _rows(writes)]
        summary.conflicts.records = [_record(r, outcome) for r in _rows(conflicts)]
        summary.links.records = [_record(r, outcome) for r in _rows(links)]
        summary.merges.records = [_record(r, outcome, new=r[COMPANY_ID]) for r in _rows(merges)]
        return summary
    summary.status = WRITTEN if len(writes) + len(conflicts) + len(links) + len(merges) + len(agreements) \
        + len(invalid) else NOTHING_TO_WRITE
    # First, so that tonight's links by BAN see where the merges put their customers.
    summary.merges.records = _follow_merges(engine, _rows(merges), run_id=run_id)
    groups = {
        "writes": _rows(writes), "conflicts": _rows(conflicts), "links": _rows(links),
        "agreements": _rows(agreements), "invalid": _rows(invalid),
    }
    customers = list(dict.fromkeys(str(r[CUSTOMER_ID]) for rows in groups.values() for r in rows))
    by_customer: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for name, rows in groups.items():
        for row in rows:
            by_customer.setdefault(str(row[CUSTOMER_ID]), {}).setdefault(name, []).append(row)
    done = 0
    for chunk in _chunks(customers, options.warp_chunk_size):
        part = {name: [r for c in chunk for r in by_customer[c].get(name, [])] for name in groups}
        try:
            with engine.begin() as conn:
                result = _warp_chunk(conn, part, rules=rules, run_id=run_id, pulled_at=_pulled_at(plan, now))
        except sa.exc.SQLAlchemyError as exc:
            # The whole chunk rolled back; its records fail with the database's reason.
            code, message = describe_failure(exc)
            log.warning("WARP write-back chunk failed: %s", code)
            result = _WarpChunk(
                records=[_record(r, FAILED, new=r[VALUE], code=code, message=message, old_column=WARP_RAW_VALUE)
                         for r in part["writes"]],
                conflicts=[_record(r, FAILED, code=code, message=message) for r in part["conflicts"]],
                links=[_record(r, FAILED, code=code, message=message) for r in part["links"]],
            )
        summary.records += result.records
        summary.conflicts.records += result.conflicts
        summary.conflicts_opened += result.opened
        summary.conflicts_updated += result.updated
        summary.links.records += result.links
        summary.agreements_recorded += result.agreements
        summary.invalid_logged += result.invalid
        done += len(chunk)
        if progress is not None:
            progress(f"WARP write-back: {done:,} of {len(customers):,} customers")
    return summary


def _pulled_at(plan: pd.DataFrame, now: datetime) -> datetime:
    pulled = plan.attrs.get(ATTR_PULLED_AT)
    return parse_iso(pulled) if pulled else now


@dataclass
class _WarpChunk:
    """What one chunk's transaction did (all of it rolled back together on a failure)."""

    records: list[Record] = field(default_factory=list)
    conflicts: list[Record] = field(default_factory=list)
    links: list[Record] = field(default_factory=list)
    opened: int = 0
    updated: int = 0
    agreements: int = 0
    invalid: int = 0


def _follow_merges(engine: sa.Engine, rows: list[dict[str, Any]], *, run_id: str | None) -> list[Record]:
    """Each customer still linked to a company merged into the row's company follows the merge (core.links:
    moved there, or marked for review when two customers would share it), audited; one transaction each, under
    the leases of every customer involved, so the drain and the webhook processor never write across it."""
    holder = f"{ACTOR}:{run_id or 'local'}"
    out = []
    for row in rows:
        survivor = str(row[COMPANY_ID])
        merged = [m.strip() for m in str(row[MERGED_FROM] or "").split(";") if m.strip().isdigit()]
        leases: list[BulkLease] = []

        def hold(ids: list[Any], leases: list[BulkLease] = leases) -> None:
            lease = acquire_customers(engine, ids, holder, ttl=MERGE_LEASE_TTL)
            leases.append(lease)
            if lease.busy:
                raise CustomerBusy(lease.busy[0], None, None)

        try:
            with engine.begin() as conn:
                name_writer(conn, actor=ACTOR, run_id=run_id)
                # A plain read: follow_merge locks every customer involved, in id order (as the webhook path does).
                current = conn.execute(sa.select(customers.c.id, customer_company_id)
                                       .where(customers.c.id == str(row[CUSTOMER_ID]))).first()
                if current is None:
                    out.append(_record(row, SKIPPED, code=CUSTOMER_GONE, message="the customer is gone from WARP"))
                    continue
                if current[1] not in (*merged, survivor):
                    out.append(_record(row, SKIPPED, code=LINK_CHANGED,
                                       message=f"the customer's link moved to company {current[1]} since the pull"))
                    continue
                followed = follow_merge(conn, survivor, merged, hold=hold)
                log_sync_many(conn, [SyncLogEntry(
                    trigger=Trigger.RECONCILIATION, outcome=Outcome.APPLIED, customer_id=change.customer_id,
                    ban=change.ban, old_value=change.old, new_value=change.new, action=change.action,
                    reason="company.merge", run_id=run_id,
                    details={"survivor": survivor, "merged": followed.merged, "found_by": "reconciliation"},
                ) for change in followed.changes])
        except CustomerBusy as busy:
            out.append(_record(row, SKIPPED, code=CustomerBusy.code, message=str(busy)))
            continue
        except sa.exc.SQLAlchemyError as exc:
            code, message = describe_failure(exc)
            out.append(_record(row, FAILED, code=code, message=message))
            continue
        finally:
            for lease in leases:
                release_customers(engine, lease.acquired, lease.token)
        if followed.action == "LINK_REPOINTED":
            out.append(_record(row, APPLIED, new=survivor))
        elif followed.action == "LINK_REVIEW" and followed.changes:
            out.append(_record(row, APPLIED, new=LinkStatus.REVIEW.value, message=(
                f"another customer is linked to company {survivor} or to a company merged into it: each is marked "
                "for review")))
        elif followed.action == "LINK_REVIEW":
            out.append(_record(row, SKIPPED, code=ALREADY_FOLLOWED, message=(
                "already marked for review with the other customers of this merge")))
        else:
            out.append(_record(row, SKIPPED, code=ALREADY_FOLLOWED, message="the link already follows the merge"))
    return out


def _warp_chunk(
    conn: sa.Connection,
    part: dict[str, list[dict[str, Any]]],
    *,
    rules: FieldRules,
    run_id: str | None,
    pulled_at: datetime,
) -> _WarpChunk:
    name_writer(conn, actor=ACTOR, run_id=run_id)
    links = _link(conn, part["links"])
    log_sync_many(conn, [
        _audit(row, _LOG_OUTCOME.get(record.outcome, Outcome.FAILED), direction=None, run_id=run_id,
               code=record.code, message=record.message, details={"link": "by BAN"})
        for row, record in zip(part["links"], links, strict=True)])

    # Every decision over a field goes through the one applier (core.warp_apply), as the live flows' do.
    decided = [*part["writes"], *part["conflicts"], *part["invalid"], *part["agreements"]]
    outcomes = apply_decisions(conn, [_field_decision(row, rules, pulled_at) for row in decided],
                               by=Applier(Trigger.RECONCILIATION, run_id=run_id))
    applied = dict(zip((id(row) for row in decided), outcomes, strict=True))
    records = [_write_record(row, applied[id(row)]) for row in part["writes"]]
    conflicts = [_conflict_record(row, applied[id(row)]) for row in part["conflicts"]]
    opened = sum(1 for row in part["conflicts"] if applied[id(row)].code == CONFLICT_OPENED)
    updated = sum(1 for row in part["conflicts"] if applied[id(row)].code == CONFLICT_UPDATED)
    agreements = sum(1 for row in part["agreements"] if applied[id(row)].outcome is Outcome.IN_SYNC)
    return _WarpChunk(records=records, conflicts=conflicts, links=links, opened=opened, updated=updated,
                      agreements=agreements, invalid=len(part["invalid"]))


def _field_decision(row: Mapping[str, Any], rules: FieldRules, pulled_at: datetime) -> FieldDecision:
    """A plan row as the decision the applier carries out (the plan holds decide_frame's choice, spelled out)."""
    rule = rules[row[FIELD]]
    code = text_or_none(row.get(ERROR_CODE))
    error = InvalidFieldValue(rule.warp_field, code, text_or_none(row.get(ERROR)) or code) if code else None
    return FieldDecision(
        customer_id=str(row[CUSTOMER_ID]),
        rule=rule,
        decision=Decision(Action(row[ACTION]), Reason(row[REASON]), text_or_none(row[VALUE]), error),
        warp=Observed(text_or_none(row[WARP_RAW_VALUE]), time_or_none(row[WARP_TIME])),
        hubspot=Observed(text_or_none(row[HUBSPOT_RAW_VALUE]), time_or_none(row[HUBSPOT_TIME])),
        warp_text=text_or_none(row[WARP_VALUE]),
        hubspot_text=text_or_none(row[HUBSPOT_VALUE]),
        read_at=pulled_at,
        agreed=text_or_none(row[AGREED_VALUE]),
        ban=text_or_none(row.get(BAN)),
        details={"company_id": text_or_none(row.get(COMPANY_ID))},
        # The report counts the night's agreements; one audit row each would be customers x fields rows on a
        # first night (no agreed values yet). The live flows audit theirs: one field at a time.
        audited=row[KIND] != AGREEMENT,
    )


_RECORD_OUTCOME = {Outcome.APPLIED: APPLIED, Outcome.CONFLICT: APPLIED, Outcome.FAILED: FAILED}


def _write_record(row: Mapping[str, Any], applied: Applied) -> Record:
    return _record(row, _RECORD_OUTCOME.get(applied.outcome, SKIPPED), new=row[VALUE], code=applied.code,
                   message=applied.message, old_column=WARP_RAW_VALUE)


def _conflict_record(row: Mapping[str, Any], applied: Applied) -> Record:
    return _record(row, _RECORD_OUTCOME.get(applied.outcome, SKIPPED), code=applied.code, message=applied.message)


def _link(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[Record]:
    """Store the company id of customers matched by BAN, only where still unlinked and the company unclaimed."""
    if not rows:
        return []
    # Held against deletion until the chunk commits (the applier holds the customers it decides for).
    present = hold_customers(conn, (str(r[CUSTOMER_ID]) for r in rows))
    try:
        with conn.begin_nested():
            linked = link_unlinked(conn, [(str(r[CUSTOMER_ID]), str(r[COMPANY_ID])) for r in rows])
    except sa.exc.IntegrityError:
        linked = set()  # another writer linked one of these companies meanwhile: leave them to the next run
    out = []
    for row in rows:
        customer = str(row[CUSTOMER_ID])
        if customer in linked:
            out.append(_record(row, APPLIED, new=row[COMPANY_ID]))
        elif customer not in present:
            out.append(_record(row, SKIPPED, code=CUSTOMER_GONE, message="the customer is gone from WARP"))
        else:
            out.append(_record(row, SKIPPED, code=LINK_TAKEN,
                               message="the customer or the company was linked by someone else since the pull"))
    return out


