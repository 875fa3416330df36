"""Carrying a field decision out on WARP: the one writer of a synced field's value, its field state, its conflict
and its audit row.

Every path that has decided a field (`decide` or `decide_frame`) hands the decision here: the webhook processor,
the drain and the push (their settle step), the nightly's WARP write-back (many rows per call) and the review's
resolution. So the rules below hold whichever path saw the field:

- a write to WARP is a compare-and-set against the value the decision read, under the no-echo marker (the outbox
  trigger does not queue it back); a row that moved since is left alone (`WARP_CHANGED`), a customer deleted since
  is `CUSTOMER_GONE`, a value the database refuses fails alone (a savepoint per row isolates it);
- the field state records what the decision learned: HubSpot's value (with its change time, else the time it was
  read), the agreement on an in-sync field (as of the read), and all three parts after a write;
- recording an agreement closes the open conflict it settles (`core.agreements`); `OPEN_CONFLICT` opens or
  updates the field's review item;
- one audit row per decision, with what the path adds in `details`.

Writes to HubSpot are the callers' (each sends in batches, ledger first); a `WRITE_TO_HUBSPOT` decision is refused
here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.agreements import Settled, close_settled_conflicts, record_field_state
from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync_many
from warp_sync_pipeline.core.conflicts import ConflictRef, open_or_update_conflict
from warp_sync_pipeline.core.decision import Action, Decision, Observed
from warp_sync_pipeline.core.failures import describe_failure
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue
from warp_sync_pipeline.core.fields import FieldRule
from warp_sync_pipeline.core.normalize import FieldType, InvalidFieldValue, from_hubspot
from warp_sync_pipeline.core.sync_tables import hold_customers, mark_from_hubspot

# Why a decision was not carried out on WARP (stable codes: audit rows and the nightly's records carry them).
WARP_CHANGED = "WARP_CHANGED"
CUSTOMER_GONE = "CUSTOMER_GONE"
CONFLICT_OPENED = "CONFLICT_OPENED"
CONFLICT_UPDATED = "CONFLICT_UPDATED"

_SQL_TYPE = {FieldType.AMOUNT: "numeric", FieldType.SERVICES: "jsonb", FieldType.INTEGER: "bigint",
             FieldType.BOOLEAN: "boolean", FieldType.DATE: "date"}


@dataclass(frozen=True)
class FieldDecision:
    """A decision over one customer's field, with what it was decided on.

    `warp` is WARP's value as the decision read it (the column's value, or its text) and when it changed;
    `hubspot` HubSpot's string and when it changed (None: unknown). `warp_text` and `hubspot_text` are their
    comparable texts (None where a value is invalid). `read_at` is when the values were read: an agreement holds as
    of then, and HubSpot's value is recorded with it when its change time is unknown.
    """

    customer_id: UUID | str
    rule: FieldRule
    decision: Decision
    warp: Observed
    hubspot: Observed
    warp_text: str | None
    hubspot_text: str | None
    read_at: datetime | None  # None: now (the values were read in the applying transaction)
    agreed: str | None = None  # the agreed value the decision saw (comparable text)
    ban: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # what the path adds to the audit row
    # (action, reason) the audit row shows instead of the decision's: a person's resolution is not decide()'s.
    audit_as: tuple[str, str] | None = None
    audited: bool = True  # False: the path's own row says it all (a resolution that wrote HubSpot only)


@dataclass(frozen=True)
class Applied:
    """What became of one decision on WARP."""

    outcome: Outcome  # APPLIED (written), IN_SYNC, CONFLICT, SKIPPED or FAILED
    code: str | None = None
    message: str | None = None
    conflict: ConflictRef | None = None

    @property
    def written(self) -> bool:
        return self.outcome is Outcome.APPLIED


@dataclass(frozen=True)
class Applier:
    """Who carries decisions out: names the audit rows, the conflicts it opens and those its agreements close."""

    trigger: Trigger
    run_id: str | None = None
    actor: str | None = None

    @property
    def name(self) -> str:
        return self.trigger.value


def sql_text(value: object) -> str | None:
    """A WARP value as text PostgreSQL casts back to the column's type (amounts plain, services as JSON)."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def warp_value_text(rule: FieldRule, hubspot_raw: str | None) -> str | None:
    """HubSpot's string as the text WARP's column takes; None clears. Raises InvalidFieldValue."""
    return sql_text(from_hubspot(rule.spec, hubspot_raw))


def apply_decisions(conn: sa.Connection, items: Sequence[FieldDecision], *, by: Applier) -> list[Applied]:
    """Carry these decisions out on WARP in the caller's transaction; one result per item, in order.

    At most one decision per customer and field. The customers are held against deletion until the caller commits.
    """
    if not items:
        return []
    for item in items:
        if item.decision.action is Action.WRITE_TO_HUBSPOT:
            raise ValueError(f"{item.rule.warp_field}: a write to HubSpot is sent by its flow, not applied to WARP")
    now: datetime = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    items = [item if item.read_at is not None else replace(item, read_at=now) for item in items]
    written = _write_values(conn, items)
    done = [written.get(position) or _record_decision(conn, item, by) for position, item in enumerate(items)]
    _record(conn, items, done, by, now)
    return done


def _write_values(conn: sa.Connection, items: Sequence[FieldDecision]) -> dict[int, Applied]:
    """The writes to WARP, one statement per column, and the customers found gone; by position."""
    present = hold_customers(conn, {str(item.customer_id) for item in items})
    results: dict[int, Applied] = {}
    writes: dict[str, list[int]] = {}
    for position, item in enumerate(items):
        if str(item.customer_id) not in present:
            results[position] = Applied(Outcome.SKIPPED, CUSTOMER_GONE, "the customer is gone from WARP")
        elif item.decision.action is Action.WRITE_TO_WARP:
            writes.setdefault(item.rule.warp_field, []).append(position)
    if writes:
        mark_from_hubspot(conn)
    for positions in writes.values():
        results.update(zip(positions, _write_column(conn, [items[p] for p in positions]), strict=True))
    return results


def _record(conn: sa.Connection, items: Sequence[FieldDecision], done: Sequence[Applied], by: Applier,
            now: datetime) -> None:
    """The field state (closing the conflicts its agreements settle) and the audit rows of what was done."""
    states: list[FieldStateUpdate] = []
    agreed_again: list[Settled] = []
    entries: list[SyncLogEntry] = []
    for item, applied in zip(items, done, strict=True):
        if applied.code != CUSTOMER_GONE:
            states.extend(_field_state(item, applied, now))
        if applied.outcome is Outcome.IN_SYNC and item.decision.value == item.agreed:
            # Agreed before and again now: the agreement stands as recorded (a repeated event changes nothing),
            # and still settles a conflict opened since.
            agreed_again.append(Settled(item.customer_id, item.rule.warp_field, item.agreed, item.read_at or now))
        if item.audited:
            entries.append(_audit_entry(item, applied, by))
    record_field_state(conn, states, closed_by=by.name, values_are_comparable=True)
    close_settled_conflicts(conn, agreed_again, closed_by=by.name)
    log_sync_many(conn, entries)


def _record_decision(conn: sa.Connection, item: FieldDecision, by: Applier) -> Applied:
    """A decision that writes no value: in sync, a conflict for a person, or a value that cannot be used."""
    decision = item.decision
    if decision.action is Action.IN_SYNC:
        return Applied(Outcome.IN_SYNC)
    if decision.action is Action.OPEN_CONFLICT:
        ref = open_or_update_conflict(
            conn, customer_id=item.customer_id, rule=item.rule, reason=decision.reason.value, agreed=item.agreed,
            warp=item.warp, hubspot=item.hubspot, detected_by=by.name, run_id=by.run_id,
        )
        return Applied(Outcome.CONFLICT, CONFLICT_OPENED if ref.opened else CONFLICT_UPDATED,
                       f"review item {ref.id}", conflict=ref)
    error = decision.error
    return Applied(Outcome.SKIPPED, error.code if error else decision.reason.value,
                   str(error) if error else None)


def _write_column(conn: sa.Connection, items: list[FieldDecision]) -> list[Applied]:
    """Compare-and-set one column for many customers in one statement; a row the database refuses is then
    isolated (one savepoint per row) so the others still land and it fails alone with its reason."""
    rule = items[0].rule
    column = conn.dialect.identifier_preparer.quote(rule.warp_field)  # a validated column (load_rules)
    sql_type = _SQL_TYPE.get(rule.spec.type, "text")
    # Compared as the column's type, so a value read as text (the nightly's pull) and one read as a Python value
    # (the live flows) are the same value.
    statement = sa.text(
        f"""
        UPDATE customers AS c SET {column} = CAST(v.new AS {sql_type})
        FROM unnest(CAST(:ids AS uuid[]), CAST(:read AS text[]), CAST(:new AS text[])) AS v(id, read, new)
        WHERE c.id = v.id AND c.{column} IS NOT DISTINCT FROM CAST(v.read AS {sql_type})
        RETURNING c.id::text
        """
    )
    results: dict[int, Applied] = {}
    ready: list[tuple[int, str, str | None]] = []
    for position, item in enumerate(items):
        try:
            ready.append((position, str(item.customer_id), warp_value_text(rule, text_of(item.hubspot.value))))
        except InvalidFieldValue as exc:
            results[position] = Applied(Outcome.FAILED, exc.code, exc.message)

    def run(batch: list[tuple[int, str, str | None]]) -> set[str]:
        return set(conn.execute(statement, {
            "ids": [customer for _, customer, _ in batch],
            "read": [sql_text(items[position].warp.value) for position, _, _ in batch],
            "new": [value for _, _, value in batch],
        }).scalars())

    refused: dict[int, Applied] = {}
    try:
        with conn.begin_nested():
            written = run(ready)
    except sa.exc.DBAPIError:
        written = set()
        for entry in ready:
            try:
                with conn.begin_nested():
                    written |= run([entry])
            except sa.exc.DBAPIError as exc:
                code, message = describe_failure(exc)
                refused[entry[0]] = Applied(Outcome.FAILED, code, message)
    for position, customer, _ in ready:
        if position in refused:
            results[position] = refused[position]
        elif customer in written:
            results[position] = Applied(Outcome.APPLIED)
        else:
            results[position] = Applied(Outcome.SKIPPED, WARP_CHANGED,
                                        "WARP's value changed since it was read; the newer change is left to sync")
    return [results[position] for position in range(len(items))]


def text_of(value: object) -> str | None:
    return None if value is None else str(value)


def _field_state(item: FieldDecision, applied: Applied, now: datetime) -> list[FieldStateUpdate]:
    """What the decision learned, as field state (one rule for every path)."""
    seen = None
    if item.hubspot_text is not None:
        seen = StateValue(item.hubspot_text, item.hubspot.changed_at or item.read_at)
    value = item.decision.value
    if applied.written:
        now_held = StateValue(value, now)
        return [FieldStateUpdate(item.customer_id, item.rule.warp_field, agreed=now_held, warp=now_held,
                                 hubspot=StateValue(value, item.hubspot.changed_at or item.read_at))]
    if applied.outcome is Outcome.IN_SYNC and value != item.agreed:
        return [FieldStateUpdate(item.customer_id, item.rule.warp_field, agreed=StateValue(value, item.read_at),
                                 hubspot=seen)]
    if seen is None:
        return []
    return [FieldStateUpdate(item.customer_id, item.rule.warp_field, hubspot=seen)]


def _audit_entry(item: FieldDecision, applied: Applied, by: Applier) -> SyncLogEntry:
    decision = item.decision
    warp_shown = item.warp_text if item.warp_text is not None else text_of(item.warp.value)
    hubspot_shown = item.hubspot_text if item.hubspot_text is not None else text_of(item.hubspot.value)
    extra: dict[str, Any] = {}
    if applied.outcome in (Outcome.SKIPPED, Outcome.FAILED):
        extra = {"error_code": applied.code, "error": applied.message}
    details = dict(item.details)
    if applied.conflict is not None:
        details |= {"conflict_id": applied.conflict.id, "opened": applied.conflict.opened}
    new_value = decision.value if decision.action in (Action.WRITE_TO_WARP, Action.IN_SYNC) else hubspot_shown
    if item.audit_as is not None:
        extra["action"], extra["reason"] = item.audit_as
    return SyncLogEntry.for_decision(
        item.rule, decision, trigger=by.trigger, outcome=applied.outcome, customer_id=item.customer_id,
        ban=item.ban, run_id=by.run_id, actor=by.actor, old_value=warp_shown, new_value=new_value,
        details=details or None, **extra,
    )
