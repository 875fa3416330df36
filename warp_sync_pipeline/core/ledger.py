"""The write ledger: outbound HubSpot writes awaiting their echo (DESIGN.md, "Loops and echoes").

Sequence for every write to HubSpot:
1. `record_writes(engine, ...)` BEFORE the request, committed on a connection of its own (so a crash between
   the two never lets the echo pass as a person's edit);
2. the request; on a definite failure `void_writes(...)`; after a create, `bind_company(ban, company_id)`;
3. each inbound change calls `match_echo(...)`: it is our echo only if an unmatched, unexpired entry has the
   same company, property and comparable value, was written no later than the change occurred (plus a small
   clock skew), and the change came from an integration where HubSpot says where it came from. An entry
   absorbs at most one echo, atomically, so a person who sets X, then Z, then X again is never taken for it.
Entries expire after three days (HubSpot retries a delivery for up to a day); `purge_expired` deletes them.

`update_companies_ledger_first` and `update_company_ledger_first` are steps 1 and 2 for updates, the way the drain,
the nightly and the conflict resolution write; `definitely_not_applied` is their test of "a definite failure" (the
create, keyed by BAN, records and voids its entries itself, on the same RequestFailed test).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRule, FieldRules
from warp_sync_pipeline.core.hubspot import (
    Company,
    CompanyUpdate,
    HubSpotClient,
    HubSpotError,
    RecordOutcome,
    RequestFailed,
)
from warp_sync_pipeline.core.normalize import comparable, comparable_or_none
from warp_sync_pipeline.core.sync_tables import in_transaction, write_ledger

ECHO_WINDOW = timedelta(days=3)
DEFAULT_CLOCK_SKEW = timedelta(seconds=5)
# changeSource values that mean "an app wrote this"; anything else (CRM_UI, IMPORT, ...) is a person's doing.
INTEGRATION_SOURCES = frozenset({"INTEGRATION", "API"})


@dataclass(frozen=True)
class LedgerWrite:
    """One property value about to be sent: to a company, or for a create, to the company of a BAN."""

    rule: FieldRule
    value: object  # the WARP value or the string sent; stored in comparable form
    company_id: str | None = None
    ban: str | None = None


def record_writes(
    engine: sa.Engine,
    writes: Sequence[LedgerWrite],
    *,
    written_at: datetime | None = None,
    ttl: timedelta = ECHO_WINDOW,
) -> list[int]:
    """Record writes in a transaction of their own, committed before returning; ids in input order."""
    if not isinstance(engine, sa.Engine):
        raise TypeError("record_writes commits on a connection of its own: pass the Engine, not a Connection")
    rows = []
    for write in writes:
        if write.company_id is None and write.ban is None:
            raise ValueError(f"{write.rule.warp_field}: a ledger entry needs a company id or a BAN")
        rows.append(
            {
                "company_id": None if write.company_id is None else str(write.company_id),
                "ban": write.ban,
                "warp_field": write.rule.warp_field,
                "hubspot_property": write.rule.hubspot_property,
                "value": comparable(write.rule.spec, write.value),
            }
        )
    if not rows:
        return []
    with engine.begin() as conn:
        moment = written_at or conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        for row in rows:
            row["written_at"] = moment
            row["expires_at"] = moment + ttl
        result = conn.execute(
            sa.insert(write_ledger).returning(write_ledger.c.id, sort_by_parameter_order=True), rows
        )
        return list(result.scalars())


def record_write(
    engine: sa.Engine,
    rule: FieldRule,
    value: object,
    *,
    company_id: str | None = None,
    ban: str | None = None,
    written_at: datetime | None = None,
) -> int:
    return record_writes(engine, [LedgerWrite(rule, value, company_id, ban)], written_at=written_at)[0]


def bind_company(bind: sa.Engine | sa.Connection, ban: str, company_id: str) -> int:
    """After a create: the entries recorded under this BAN belong to this company now."""
    with in_transaction(bind) as conn:
        return conn.execute(
            sa.text(
                "UPDATE hubspot_write_ledger SET company_id = :company_id "
                "WHERE ban = :ban AND company_id IS NULL"
            ),
            {"ban": ban, "company_id": str(company_id)},
        ).rowcount


def void_writes(bind: sa.Engine | sa.Connection, entry_ids: Iterable[int], reason: str) -> int:
    """The request definitely failed: these entries will see no echo."""
    ids = [int(entry_id) for entry_id in entry_ids]
    if not ids:
        return 0
    with in_transaction(bind) as conn:
        return conn.execute(
            sa.text(
                "UPDATE hubspot_write_ledger SET status = 'voided', voided_at = clock_timestamp(), "
                "void_reason = :reason WHERE id = ANY(CAST(:ids AS bigint[])) AND status = 'pending'"
            ),
            {"ids": ids, "reason": reason[:500]},
        ).rowcount


def definitely_not_applied(error: BaseException | None) -> bool:
    """Whether HubSpot proved it did not apply a write: it answered with a refusal (RequestFailed). A lost answer,
    a timeout after sending, or a batch answer naming the record neither way may have applied it: its ledger
    entry stays, to absorb the echo if one comes."""
    return isinstance(error, RequestFailed)


@dataclass(frozen=True)
class LedgeredUpdate:
    """One company's values about to be sent: warp field -> the string HubSpot is sent."""

    company_id: str
    values: Mapping[str, str]


def update_companies_ledger_first(
    engine: sa.Engine, client: HubSpotClient, rules: FieldRules, updates: Sequence[LedgeredUpdate], *, reason: str,
) -> list[RecordOutcome]:
    """Batch-update companies the one safe way: every value recorded in the ledger (committed) before the call,
    then the entries of each record HubSpot definitely did not apply voided (every entry when the whole call was
    refused, before the error is raised again). Returns each update's outcome, in input order."""
    writes = [LedgerWrite(rules[name], value, company_id=update.company_id)
              for update in updates for name, value in update.values.items()]
    ids = iter(record_writes(engine, writes))
    entries = [[next(ids) for _ in update.values] for update in updates]
    try:
        outcomes = client.batch_update_companies([
            CompanyUpdate(update.company_id, {rules.hubspot_property(name): value for name, value in update.values.items()})
            for update in updates
        ])
    except HubSpotError as exc:
        if definitely_not_applied(exc):
            void_writes(engine, [i for group in entries for i in group], f"{reason}: {type(exc).__name__}")
        raise
    void = [i for outcome, group in zip(outcomes, entries, strict=True)
            if not outcome.ok and definitely_not_applied(outcome.error) for i in group]
    void_writes(engine, void, f"{reason}: definitely not applied")
    return outcomes


def update_company_ledger_first(engine: sa.Engine, client: HubSpotClient, rule: FieldRule, company_id: str,
                                value: str, *, reason: str) -> Company:
    """`PATCH` one property of one company, ledger first; the entry is voided when HubSpot definitely refused."""
    [entry] = record_writes(engine, [LedgerWrite(rule, value, company_id=company_id)])
    try:
        return client.update_company(company_id, {rule.hubspot_property: value})
    except HubSpotError as exc:
        if definitely_not_applied(exc):
            void_writes(engine, [entry], f"{reason}: {type(exc).__name__}")
        raise


def match_echo(
    bind: sa.Engine | sa.Connection,
    *,
    company_id: str,
    rule: FieldRule,
    value: object,
    occurred_at: datetime,
    source: str | None = None,
    skew: timedelta = DEFAULT_CLOCK_SKEW,
    now: datetime | None = None,
    integration_sources: frozenset[str] = INTEGRATION_SOURCES,
) -> int | None:
    """Absorb one matching ledger entry; its id when the change is our echo, else None.

    Pass the Connection of the transaction that applies the event, so the match commits with it.
    """
    if source is not None and source.strip().upper() not in integration_sources:
        return None
    canonical = comparable_or_none(rule.spec, value)
    if canonical is None:
        return None  # we never send an invalid value, so this cannot be our echo
    with in_transaction(bind) as conn:
        # SKIP LOCKED: a concurrent matcher holding an entry makes us look at the next one, never at the
        # same one, so each entry absorbs one echo at most.
        return conn.execute(
            sa.text(
                """
                WITH clock AS (SELECT coalesce(CAST(:now AS timestamptz), clock_timestamp()) AS now)
                UPDATE hubspot_write_ledger AS entry
                SET status = 'matched', matched_at = (SELECT now FROM clock)
                WHERE entry.status = 'pending' AND entry.id = (
                    SELECT candidate.id FROM hubspot_write_ledger AS candidate
                    WHERE candidate.status = 'pending'
                      AND candidate.company_id = :company_id
                      AND candidate.hubspot_property = :property
                      AND candidate.value = :value
                      AND candidate.written_at <= CAST(:occurred_at AS timestamptz) + CAST(:skew AS interval)
                      AND candidate.expires_at > (SELECT now FROM clock)
                    ORDER BY candidate.written_at, candidate.id
                    LIMIT 1
                    FOR UPDATE SKIP LOCKED)
                RETURNING entry.id
                """
            ),
            {
                "now": now,
                "company_id": str(company_id),
                "property": rule.hubspot_property,
                "value": canonical,
                "occurred_at": occurred_at,
                "skew": skew,
            },
        ).scalar_one_or_none()


def purge_expired(bind: sa.Engine | sa.Connection, *, now: datetime | None = None) -> int:
    """Delete entries past their expiry (matched, voided or never echoed alike); returns how many."""
    with in_transaction(bind) as conn:
        return conn.execute(
            sa.text(
                "DELETE FROM hubspot_write_ledger "
                "WHERE expires_at <= coalesce(CAST(:now AS timestamptz), clock_timestamp())"
            ),
            {"now": now},
        ).rowcount
