"""The outbound queue (DESIGN.md flow 2): `hubspot_sync_queue`, filled by the customers UPDATE trigger
(sql/007_outbound.sql) and drained to HubSpot by batch updates.

One drain, step by step (`drain_queue`; the Dagster job is a thin op around it):
1. Claim due rows as committed leases: status 'claimed', a token and an expiry set with FOR UPDATE SKIP LOCKED in a
   short transaction (claims of a drain that died are merged back into pending first). No row lock is held across
   an HTTP call, so a PATCH never waits on HubSpot. The lease outlasts the claim's HTTP time budget.
2. Take the customers' leases (core.leases); a customer another writer holds goes back to pending for a moment.
3. Park rows whose customer is not linked (company deleted in HubSpot, or a link needing review): never written
   blindly, never re-created.
4. Only the queued fields are sent, with their current values. For two-way fields the companies are batch-read
   first (100 a call) and decide() settles a field whose HubSpot value moved since the last agreed one: HubSpot's
   value kept (and written to WARP, compare-and-set, under the origin marker), a review item opened, or WARP's
   value sent. Change times come from field state; per-property history is read only where LATEST_WINS needs it.
5. Batch update, 100 companies a call, each value recorded in the write ledger before the call. Per record:
   success marks the row done (only while it still carries this claim's token) and records field state and audit;
   a failure merges the sent fields back into the customer's pending row with exponential backoff, and after the
   last attempt (3 by default) the row is dead with the last error.
6. A failure of HubSpot as a whole pauses the flows (core.pauses): 401/403 (the token refused), a daily-quota
   429, 429s or connection errors that outlasted the client's retries, or a 5xx / lost answer that a probe right
   after confirms. Every unfinished row goes back as it was (no attempt spent), the shared pause opens, and the
   drain ends with `paused` in its report (not a failure). A drain starts by asking core.pauses.admit(): while a
   pause is open it sends nothing, and when the probe time comes it probes and resumes on a good answer.

A manual push (`push_customer`, POST /v1/sync/customers/{id}) is the same steps for one customer, now: every field
that flows to HubSpot is queued, the customer's row claimed at once under its lease, and carried through the
drain's planning, decisions and sending with trigger 'manual' and the operator as actor. When HubSpot does not take
it, the fields stay queued (no attempt spent), so the drain retries them.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.agreements import record_field_state
from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync_many
from warp_sync_pipeline.core.decision import Action, Decision, Observed, Reason, decide
from warp_sync_pipeline.core.errors import Failure, ServiceError
from warp_sync_pipeline.core.failures import error_code, refused_fields
from warp_sync_pipeline.core.field_state import (
    FieldState,
    FieldStateUpdate,
    read_field_state,
    sent_to_hubspot,
    warp_changed_at,
)
from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRules, load_rules
from warp_sync_pipeline.core.hubspot import (
    MERGED_IDS_PROPERTY,
    AuthFailed,
    Company,
    HubSpotClient,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    RateLimited,
    RecordOutcome,
    ValidationFailed,
)
from warp_sync_pipeline.core.leases import (
    CustomerBusy,
    CustomerLease,
    acquire_customer_waiting,
    acquire_customers,
    release_customer,
    release_customers,
)
from warp_sync_pipeline.core.ledger import LedgeredUpdate, update_companies_ledger_first
from warp_sync_pipeline.core.links import LinkStatus, follow_merge
from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable, comparable_or_none, to_hubspot
from warp_sync_pipeline.core.pauses import (
    PauseCause,
    PauseSettings,
    admit,
    confirmed_cause,
    pause_cause,
    pause_for,
)
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings
from warp_sync_pipeline.core.warp_apply import Applier, FieldDecision, apply_decisions

log = logging.getLogger("warp_sync.outbound")

BATCH_SIZE = 100  # HubSpot's inputs per batch call
HISTORY_BATCH_SIZE = 50  # ... with propertiesWithHistory
ERROR_TEXT_LIMIT = 1000


class QueueStatus(StrEnum):
    PENDING = "pending"
    CLAIMED = "claimed"
    DONE = "done"
    DEAD = "dead"
    PARKED = "parked"


# --- enqueueing ------------------------------------------------------------------------------------------------

ENQUEUE = sa.text(
    "SELECT hubspot_sync_enqueue(CAST(:customer_id AS uuid), CAST(:fields AS text[]), :reason)"
)
# Back into pending (merged): attempts carried over, not before a delay, with the reason it came back.
REQUEUE = sa.text(
    "SELECT hubspot_sync_enqueue(CAST(:customer_id AS uuid), CAST(:fields AS text[]), :reason, :attempts, "
    "clock_timestamp() + CAST(:delay AS interval), :code, :error)"
)


def enqueue_fields(conn: sa.Connection, customer_id: UUID | str, fields: Iterable[str], *, reason: str) -> None:
    """Queue these WARP fields of a customer for sending, merging into its pending row as the trigger does.

    Runs in the caller's transaction (commits or rolls back with it), also one that carries
    SET LOCAL warp_sync.origin = 'hubspot'. The drain sends the fields' values as they are when it runs.
    """
    names = [str(name) for name in fields]
    if not names:
        return
    conn.execute(ENQUEUE, {"customer_id": str(UUID(str(customer_id))), "fields": names, "reason": reason})


# --- settings and report ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DrainSettings:
    max_attempts: int = DEFAULTS.queue_max_attempts  # failed sends in all before a row is dead
    backoff_s: float = DEFAULTS.queue_backoff_seconds  # first retry after this long, doubling
    backoff_max_s: float = DEFAULTS.queue_backoff_max_seconds
    # A claim's lease (and the customers' leases): must outlast http_budget_s.
    lease_s: float = DEFAULTS.queue_lease_seconds
    http_budget_s: float = DEFAULTS.queue_http_budget_seconds  # all HubSpot calls of one claim, retries included
    run_budget_s: float = DEFAULTS.queue_run_seconds  # a run stops claiming after this long
    claim_size: int = DEFAULTS.queue_claim_size  # rows per claim (one per customer)
    busy_retry_s: float = 15.0  # a customer another writer holds is tried again after this long
    pause: PauseSettings = field(default_factory=PauseSettings)  # probing HubSpot while the flows are paused
    run_margin_s: float = DEFAULTS.run_margin_seconds  # a run's time past its budgets before the instance ends it

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.claim_size < 1:
            raise ValueError("max_attempts and claim_size must be at least 1")
        if self.lease_s <= self.http_budget_s:
            raise ValueError("the lease must outlast the claim's HTTP time budget (lease_s > http_budget_s)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DrainSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> DrainSettings:
        return cls(
            max_attempts=settings.queue_max_attempts,
            backoff_s=settings.queue_backoff_seconds,
            backoff_max_s=settings.queue_backoff_max_seconds,
            lease_s=settings.queue_lease_seconds,
            http_budget_s=settings.queue_http_budget_seconds,
            run_budget_s=settings.queue_run_seconds,
            claim_size=settings.queue_claim_size,
            pause=PauseSettings.from_settings(settings),
            run_margin_s=settings.run_margin_seconds,
        )

    @property
    def max_runtime_s(self) -> float:
        """The longest a drain run can take: it stops claiming after run_budget_s, and its last claim's calls end
        within http_budget_s. A run still going after this is dead or hung (its process may be gone)."""
        return self.run_budget_s + self.http_budget_s + self.run_margin_s

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try after `attempts` failed sends (with a little jitter)."""
        base = min(self.backoff_max_s, self.backoff_s * 2 ** max(0, attempts - 1))
        return base * random.uniform(0.9, 1.1)


@dataclass(frozen=True)
class StoppedRow:
    """A dead or parked row, for people: which customer, why, and what was not sent."""

    row_id: int
    customer_id: str
    ban: str | None
    status: str
    code: str
    error: str
    fields: list[str]
    attempts: int


@dataclass
class DrainReport:
    claimed: int = 0
    sent: int = 0  # company updates sent
    fields_sent: int = 0
    succeeded: int = 0  # rows done
    retried: int = 0  # rows back in pending after a failure (backoff)
    dead: int = 0
    parked: int = 0
    deferred: int = 0  # rows back in pending without an attempt spent (customer busy, drain paused)
    settled: int = 0  # fields decided without sending: in sync, HubSpot's value kept, review, invalid
    written_to_warp: int = 0
    conflicts: int = 0
    batch_reads: int = 0
    batch_updates: int = 0
    paused: bool = False
    pause_reason: str | None = None
    pause_cause: str | None = None
    stopped: list[StoppedRow] = field(default_factory=list)

    @property
    def hubspot_calls(self) -> int:
        """Batch calls made (each read or update call of up to 100; bisection and retries not counted)."""
        return self.batch_reads + self.batch_updates

    def counts(self) -> dict[str, int]:
        return {
            "claimed": self.claimed, "sent": self.sent, "fields_sent": self.fields_sent,
            "succeeded": self.succeeded, "retried": self.retried, "dead": self.dead, "parked": self.parked,
            "deferred": self.deferred, "settled": self.settled, "written_to_warp": self.written_to_warp,
            "conflicts": self.conflicts, "batch_reads": self.batch_reads, "batch_updates": self.batch_updates,
            "hubspot_calls": self.hubspot_calls,
        }


# --- claims ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    customer_id: UUID
    fields: tuple[str, ...]
    attempts: int


def recover_expired_claims(conn: sa.Connection) -> int:
    """Merge claims whose lease ran out (their drain died) back into pending; no attempt is spent."""
    expired = conn.execute(
        sa.text(
            "DELETE FROM hubspot_sync_queue WHERE id IN ("
            " SELECT id FROM hubspot_sync_queue WHERE status = 'claimed' AND lease_expires_at <= clock_timestamp()"
            " FOR UPDATE SKIP LOCKED) "
            "RETURNING customer_id, fields, attempts, next_attempt_at, last_error_code, last_error"
        )
    ).all()
    for row in expired:
        # Due again as it was when claimed (so a run that started before the recovery still takes it).
        conn.execute(
            sa.text(
                "SELECT hubspot_sync_enqueue(CAST(:customer_id AS uuid), CAST(:fields AS text[]), 'lease_expired', "
                ":attempts, :not_before, :code, :error)"
            ),
            {"customer_id": str(row.customer_id), "fields": list(row.fields), "attempts": row.attempts,
             "not_before": row.next_attempt_at, "code": row.last_error_code, "error": row.last_error},
        )
    if expired:
        log.warning("took back %d claimed queue rows whose drain died", len(expired))
    return len(expired)


def claim_due_rows(
    engine: sa.Engine, *, token: UUID, limit: int, lease: timedelta, due_by: datetime | None = None
) -> list[ClaimedRow]:
    """Claim up to `limit` due rows under `token` in one short, committed transaction (oldest due first).

    `due_by`: only rows due at that instant (a run claims what was due when it started, so rows it puts back
    are left to the next run).
    """
    with engine.begin() as conn:
        recover_expired_claims(conn)
        rows = conn.execute(
            sa.text(
                """
                UPDATE hubspot_sync_queue AS q
                SET status = 'claimed', lease_token = CAST(:token AS uuid),
                    lease_expires_at = clock_timestamp() + CAST(:lease AS interval), updated_at = now()
                FROM (SELECT id FROM hubspot_sync_queue
                      WHERE status = 'pending'
                        AND next_attempt_at <= coalesce(CAST(:due_by AS timestamptz), now())
                      ORDER BY next_attempt_at, id LIMIT :limit FOR UPDATE SKIP LOCKED) AS due
                WHERE q.id = due.id
                RETURNING q.id, q.customer_id, q.fields, q.attempts
                """
            ),
            {"token": str(token), "lease": lease, "due_by": due_by, "limit": limit},
        ).all()
    return [ClaimedRow(r.id, UUID(str(r.customer_id)), tuple(r.fields), r.attempts) for r in rows]


def count_due(conn: sa.Connection, *, cap: int = 10_000) -> int:
    """Due pending rows plus claims whose drain died (capped): the sensor's one cheap query."""
    return conn.execute(
        sa.text(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM hubspot_sync_queue"
            "        WHERE status = 'pending' AND next_attempt_at <= now() LIMIT :cap) AS due)"
            "     + (SELECT count(*) FROM (SELECT 1 FROM hubspot_sync_queue"
            "        WHERE status = 'claimed' AND lease_expires_at <= now() LIMIT :cap) AS expired)"
        ),
        {"cap": cap},
    ).scalar_one()


# --- the drain -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claimed:
    """A claimed queue row and what the claim read of its customer: fixed for the claim's whole way."""

    row: ClaimedRow
    ban: str
    values: Mapping[str, Any]  # the customer's WARP values
    state: Mapping[str, FieldState]
    fields: list[str]  # queued fields that flow to HubSpot
    created_at: datetime  # the customer row's, for when WARP's values changed (field_state.warp_changed_at)
    updated_at: datetime


@dataclass
class _Plan:
    """One claimed row on its way through a drain: what was read of HubSpot, decided, sent, and what became of
    each field."""

    customer: _Claimed
    company_id: str  # moves when the customer follows a merge
    company: Company | None = None  # as read (two-way fields only), or as a write answered
    read_at: datetime | None = None  # when the company was read (sent before the read: HubSpot held it since)
    hubspot_at: dict[str, datetime | None] = field(default_factory=dict)  # when HubSpot's values changed
    decisions: dict[str, Decision] = field(default_factory=dict)
    send: dict[str, str] = field(default_factory=dict)  # warp field -> value sent
    # warp field -> what became of it (audit outcome, reason or error code): a manual push reports these.
    outcomes: dict[str, tuple[Outcome, str | None]] = field(default_factory=dict)
    finished: bool = False
    error: HubSpotError | None = None  # why HubSpot did not take this row's values


def _warp_at(plan: _Plan, rule: FieldRule) -> datetime:
    """When WARP's value of the field changed (field_state.warp_changed_at, the one rule every flow uses)."""
    state = plan.customer.state.get(rule.warp_field)
    current = comparable_or_none(rule.spec, plan.customer.values.get(rule.warp_field))
    return warp_changed_at(state.warp if state is not None else None, current, created_at=plan.customer.created_at,
                           updated_at=plan.customer.updated_at, watched_since=rule.watched_since)


PARK_REASONS = {
    LinkStatus.DELETED: ("COMPANY_DELETED", "the HubSpot company was deleted; it is never re-created, a person decides "
                                   "(the nightly report lists it)"),
    LinkStatus.REVIEW: ("LINK_NEEDS_REVIEW", "the company link needs review (a merge or duplicate); a person decides"),
    LinkStatus.UNLINKED: ("NOT_LINKED", "the customer has no HubSpot company"),
}


@dataclass(frozen=True)
class _Who:
    """Who carries a claim through: names its audit rows, its applied decisions and the conflicts they close."""

    trigger: Trigger
    run_id: str | None = None
    actor: str | None = None

    def applier(self) -> Applier:
        return Applier(self.trigger, run_id=self.run_id, actor=self.actor)


@dataclass(frozen=True)
class _Retries:
    """What a failed send costs. The drain spends one of the row's attempts (backoff doubling, dead after the
    last); a manual push spends none and never kills a row: its fields are due for the drain after a delay."""

    settings: DrainSettings
    spends_attempts: bool = True

    def after_failure(self, attempts: int) -> tuple[int, bool, float]:
        """(attempts now, dead, delay before the row is due again) for a row that had `attempts`."""
        if not self.spends_attempts:
            return attempts, False, self.settings.backoff_s
        attempts += 1
        return attempts, attempts >= self.settings.max_attempts, self.settings.backoff(attempts)


class _QueueRows:
    """The claimed queue rows' way out, each only while it still carries this claim's token: done (with what
    was sent recorded), parked for a person, back to pending (retried, deferred, paused) or dead."""

    def __init__(self, engine: sa.Engine, rules: FieldRules, token: UUID, report: DrainReport, who: _Who,
                 retries: _Retries) -> None:
        self.engine = engine
        self.rules = rules
        self.token = token
        self.report = report
        self.who = who
        self.retries = retries

    def finish(self, plans: list[_Plan], sent: list[tuple[_Plan, Company]]) -> None:
        """Mark rows done (only those still carrying our token) and record what was sent."""
        entries: list[SyncLogEntry] = []
        updates: list[FieldStateUpdate] = []
        with self.engine.begin() as conn:
            now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
            for plan, company in sent:
                for name, value in plan.send.items():
                    rule = self.rules[name]
                    text = comparable(rule.spec, value)
                    updates.append(sent_to_hubspot(plan.customer.row.customer_id, name, text, at=now,
                                                   warp_at=_warp_at(plan, rule), hubspot_at=company.updated_at))
                    old = plan.company.properties.get(rule.hubspot_property) if plan.company else None
                    plan.outcomes[name] = (Outcome.APPLIED, plan.decisions[name].reason.value)
                    entries.append(SyncLogEntry.for_decision(
                        rule, plan.decisions[name], trigger=self.who.trigger, outcome=Outcome.APPLIED,
                        customer_id=plan.customer.row.customer_id, ban=plan.customer.ban, run_id=self.who.run_id, actor=self.who.actor,
                        old_value=old,
                        new_value=text, details={"hubspot_company_id": plan.company_id, "queue_row": plan.customer.row.id},
                    ))
            done = conn.execute(
                sa.text(
                    "UPDATE hubspot_sync_queue SET status = 'done', finished_at = now(), updated_at = now(), "
                    "lease_token = NULL, lease_expires_at = NULL "
                    "WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = CAST(:token AS uuid)"
                ),
                {"ids": [p.customer.row.id for p in plans], "token": str(self.token)},
            ).rowcount
            record_field_state(conn, updates, closed_by=self.who.trigger.value, values_are_comparable=True)
            log_sync_many(conn, entries)
        if done < len(plans):
            log.warning("%d queue rows were taken back before this drain finished them", len(plans) - done)
        self.report.succeeded += done
        for plan in plans:
            plan.finished = True

    def park(self, rows: list[tuple[ClaimedRow, str | None, str, str]], plans: Sequence[_Plan] = ()) -> None:
        if not rows:
            return
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE hubspot_sync_queue SET status = 'parked', last_error_code = :code, last_error = :error, "
                    "finished_at = now(), updated_at = now(), lease_token = NULL, lease_expires_at = NULL "
                    "WHERE id = :id AND lease_token = CAST(:token AS uuid)"
                ),
                [{"id": row.id, "code": code, "error": message, "token": str(self.token)}
                 for row, _, code, message in rows],
            )
            log_sync_many(conn, [
                SyncLogEntry(trigger=self.who.trigger, outcome=Outcome.SKIPPED, customer_id=row.customer_id, ban=ban,
                             action="PARK", reason=code, error_code=code, error=message, run_id=self.who.run_id,
                             actor=self.who.actor,
                             details={"fields": list(row.fields), "queue_row": row.id})
                for row, ban, code, message in rows
            ])
        for row, ban, code, message in rows:
            self.report.parked += 1
            self.report.stopped.append(StoppedRow(row.id, str(row.customer_id), ban, QueueStatus.PARKED, code,
                                                  message, list(row.fields), row.attempts))
        for plan in plans:
            plan.finished = True

    def fail(self, failures: list[tuple[_Plan, HubSpotError]]) -> None:
        """Sent fields go back into the customer's pending row after a delay, or the row is dead (the retry
        policy says which)."""
        entries: list[SyncLogEntry] = []
        with self.engine.begin() as conn:
            for plan, error in failures:
                plan.error = error
                fields = sorted(plan.send) if plan.send else list(plan.customer.fields)
                attempts, dead, delay_s = self.retries.after_failure(plan.customer.row.attempts)
                code = error_code(error)
                text = self._error_text(error)
                if dead:
                    died = conn.execute(
                        sa.text(
                            "UPDATE hubspot_sync_queue SET status = 'dead', attempts = :attempts, "
                            "fields = CAST(:fields AS text[]), last_error_code = :code, last_error = :error, "
                            "finished_at = now(), updated_at = now(), lease_token = NULL, lease_expires_at = NULL "
                            "WHERE id = :id AND lease_token = CAST(:token AS uuid)"
                        ),
                        {"attempts": attempts, "fields": fields, "code": code, "error": text, "id": plan.customer.row.id,
                         "token": str(self.token)},
                    ).rowcount
                    if not died:  # taken back after our lease ran out: another drain has it now
                        plan.finished = True
                        continue
                    self.report.dead += 1
                    self.report.stopped.append(StoppedRow(plan.customer.row.id, str(plan.customer.row.customer_id), plan.customer.ban,
                                                          QueueStatus.DEAD, code, text, fields, attempts))
                    log.error("queue row %s (customer %s) is dead after %d attempts: %s", plan.customer.row.id,
                              plan.customer.row.customer_id, attempts, code)
                elif self._requeue(conn, plan.customer.row, fields, "retry", attempts, delay_s, code, text):
                    self.report.retried += 1
                else:
                    plan.finished = True
                    continue
                entries.extend(self.failure_entries(plan, fields, code, text,
                                                     {"attempts": attempts, "dead": dead, "queue_row": plan.customer.row.id}))
                plan.finished = True
            log_sync_many(conn, entries)

    def failure_entries(self, plan: _Plan, fields: Sequence[str], code: str, text: str,
                         details: dict[str, Any]) -> list[SyncLogEntry]:
        entries = []
        for name in fields:
            rule = self.rules[name]
            plan.outcomes[name] = (Outcome.FAILED, code)
            entries.append(SyncLogEntry(
                trigger=self.who.trigger, outcome=Outcome.FAILED, customer_id=plan.customer.row.customer_id,
                ban=plan.customer.ban, warp_field=name, hubspot_property=rule.hubspot_property,
                direction=Direction.WARP_TO_HUBSPOT, new_value=plan.send.get(name), action="WRITE_TO_HUBSPOT",
                reason=plan.decisions[name].reason.value if name in plan.decisions else None,
                error_code=code, error=text, run_id=self.who.run_id, actor=self.who.actor, details=details,
            ))
        return entries

    def _error_text(self, error: HubSpotError) -> str:
        if error.property_errors:
            named = "; ".join(f"{field}: {reason}" for field, reason in refused_fields(error, self.rules).items())
            return f"HubSpot refused values: {named}"[:ERROR_TEXT_LIMIT]
        return f"{type(error).__name__}: {error}"[:ERROR_TEXT_LIMIT]

    def _requeue(self, conn: sa.Connection, row: ClaimedRow, fields: Sequence[str], reason: str, attempts: int,
                 delay_s: float, code: str, error: str) -> bool:
        """Our claimed row back into pending (merged with any newer change); False when it was no longer ours."""
        gone = conn.execute(
            sa.text("DELETE FROM hubspot_sync_queue WHERE id = :id AND lease_token = CAST(:token AS uuid) RETURNING id"),
            {"id": row.id, "token": str(self.token)},
        ).first()
        if gone is None:
            return False
        conn.execute(REQUEUE, {"customer_id": str(row.customer_id), "fields": list(fields), "reason": reason,
                               "attempts": attempts, "delay": timedelta(seconds=delay_s), "code": code,
                               "error": error})
        return True

    def put_back(self, rows: list[ClaimedRow], reason: str, code: str, error: str, delay_s: float) -> None:
        """Rows that were not tried: back into pending with their attempts unchanged."""
        with self.engine.begin() as conn:
            self.report.deferred += sum(
                self._requeue(conn, row, row.fields, reason, row.attempts, delay_s, code, error) for row in rows
            )



class _Drain:
    """One claim's way through: plan the rows, read and decide, settle what sends nothing (core.warp_apply), send
    the rest; the rows' way out is `_QueueRows`'. The queue drain and a manual push differ only in who they are
    and what a failure costs (`_Who`, `_Retries`), which `queue_rows` carries."""

    def __init__(self, hubspot: HubSpotClient, settings: DrainSettings, queue_rows: _QueueRows, holder: str) -> None:
        self.rows = queue_rows
        self.engine = queue_rows.engine
        self.rules = queue_rows.rules
        self.report = queue_rows.report
        self.token = queue_rows.token
        self.who = queue_rows.who
        self.client = hubspot.with_deadline(settings.http_budget_s)
        self.settings = settings
        self.holder = holder
        self._probe_answered = False  # a probe of this claim found HubSpot up: later 5xx are the records' own
        self._merge_leases: list[Any] = []  # leases taken to follow a merge (other customers of the companies)

    @property
    def lease_holder(self) -> str:
        """The name this claim holds customer leases under (a caller already holding it is re-entered)."""
        return f"{self.holder}:{self.token}"

    # --- orchestration ---------------------------------------------------------------------------------------

    def process(self, rows: list[ClaimedRow]) -> list[_Plan]:
        """Carry the claimed rows through; returns the plans of the rows that got as far as planning."""
        self.report.claimed += len(rows)
        plans: list[_Plan] = []
        lease = acquire_customers(
            self.engine, [r.customer_id for r in rows], self.lease_holder,
            ttl=timedelta(seconds=self.settings.lease_s),
        )
        try:
            busy = set(lease.busy)
            if busy:
                self.rows.put_back([r for r in rows if r.customer_id in busy], "customer_busy", "CUSTOMER_BUSY",
                               "another writer holds the customer's lease", self.settings.busy_retry_s)
            plans = self._plan([r for r in rows if r.customer_id not in busy])
            try:
                self._read(plans)
                self._settle(plans)
                self._send(plans)
            except _Paused as paused:
                self._pause([p for p in plans if not p.finished], paused.cause, paused.error)
            except AuthFailed as exc:
                self._pause([p for p in plans if not p.finished], PauseCause.TOKEN_REFUSED, exc)
        finally:
            release_customers(self.engine, lease.acquired, lease.token)
            for extra in self._merge_leases:
                release_customers(self.engine, extra.acquired, extra.token)
            self._merge_leases.clear()
        return plans

    def _plan(self, rows: list[ClaimedRow]) -> list[_Plan]:
        if not rows:
            return []
        ids = [r.customer_id for r in rows]
        columns = [self.rules[name].warp_field for name in self.rules]
        with self.engine.connect() as conn:
            customers_by_id = {
                UUID(str(c["id"])): c
                for c in conn.execute(
                    sa.text(
                        "SELECT id, ban, hubspot_link_status, external_ids ->> 'hubspot_company_id' AS company_id, "
                        "created_at, updated_at, "
                        + ", ".join(f'"{name}"' for name in columns)
                        + " FROM customers WHERE id = ANY(CAST(:ids AS uuid[]))"
                    ),
                    {"ids": [str(i) for i in ids]},
                ).mappings()
            }
            states: dict[UUID, dict[str, FieldState]] = {}
            queued = sorted({name for row in rows for name in row.fields})
            for (customer_id, name), state in read_field_state(conn, ids, queued).items():
                states.setdefault(customer_id, {})[name] = state
        plans: list[_Plan] = []
        parked: list[tuple[ClaimedRow, str | None, str, str]] = []
        done: list[_Plan] = []
        for row in rows:
            customer = customers_by_id.get(row.customer_id)
            if customer is None:
                continue  # deleted meanwhile: its queue rows went with it
            link = customer["hubspot_link_status"]
            if link != LinkStatus.LINKED or not customer["company_id"]:
                code, message = PARK_REASONS.get(link, PARK_REASONS[LinkStatus.UNLINKED])
                parked.append((row, customer["ban"], code, message))
                continue
            fields = [f for f in row.fields if f in self.rules
                      and self.rules[f].direction is not Direction.HUBSPOT_TO_WARP]
            plan = _Plan(_Claimed(
                row=row, ban=customer["ban"], values={name: customer[name] for name in columns},
                state=states.get(row.customer_id, {}), fields=fields, created_at=customer["created_at"],
                updated_at=customer["updated_at"],
            ), company_id=str(customer["company_id"]))
            (plans if fields else done).append(plan)
        if parked:
            self.rows.park(parked)
        if done:  # nothing queued that flows to HubSpot (the mapping changed since)
            self.rows.finish(done, [])
        return plans

    # --- reading and deciding --------------------------------------------------------------------------------

    def _two_way(self, plan: _Plan) -> list[str]:
        return [f for f in plan.customer.fields if self.rules[f].direction is Direction.BIDIRECTIONAL]

    def _read(self, plans: list[_Plan]) -> None:
        """Batch-read the companies of rows with two-way fields, then decide every field."""
        readers = [p for p in plans if self._two_way(p)]
        properties = sorted({self.rules[f].hubspot_property for p in readers for f in self._two_way(p)})
        failed: list[tuple[_Plan, HubSpotError]] = []
        missing: list[_Plan] = []
        merged: list[_Plan] = []
        for chunk in _chunks(readers, BATCH_SIZE):
            self.report.batch_reads += 1
            read_at = datetime.now(UTC)
            outcomes = self.client.batch_read_companies([p.company_id for p in chunk], properties=properties)
            for plan, outcome in zip(chunk, outcomes, strict=True):
                if outcome.ok:
                    plan.company = outcome.company
                    plan.read_at = read_at
                    if outcome.company is not None and outcome.company.id != plan.company_id:
                        merged.append(plan)  # HubSpot answered with the company this one was merged into
                elif isinstance(outcome.error, NotFound):
                    missing.append(plan)
                else:
                    failed.append((plan, outcome.error or HubSpotError("no answer for this company")))
        if missing:
            self.rows.park([(p.customer.row, p.customer.ban, "COMPANY_NOT_FOUND",
                         f"HubSpot has no company {p.company_id} (deleted or merged); never re-created, "
                         "the nightly report lists it") for p in missing], plans=missing)
        self._follow_merges(merged)
        self._fail_or_pause(failed)
        live = [p for p in plans if not p.finished]
        needs_history: list[tuple[_Plan, str]] = []
        for plan in live:
            for name in plan.customer.fields:
                decision = self._decide(plan, name)
                if (decision.reason in (Reason.CONFLICT_LATEST_WINS_TIME_UNKNOWN,
                                        Reason.NO_AGREED_VALUE_LATEST_WINS_TIME_UNKNOWN)
                        and plan.hubspot_at.get(name) is None):
                    needs_history.append((plan, name))
                plan.decisions[name] = decision
        if needs_history:
            self._read_history(needs_history)

    def _follow_merges(self, plans: list[_Plan], *, sent: bool = False) -> None:
        """Customers whose company HubSpot merged into another (a read or write answered with the merged record):
        they follow the merge as the merge webhook would have moved them (core.links), so a lost webhook heals
        here. A customer moved on is written to under the merged company's id; one that needs review is parked
        (unless its values were `sent` already, to the merged record)."""
        review: list[_Plan] = []
        for plan in plans:
            assert plan.company is not None
            survivor, old = plan.company.id, plan.company_id
            # Every company merged into it, so two customers can never end up on one company.
            merged = [old, *(plan.company.properties.get(MERGED_IDS_PROPERTY) or "").split(";")]
            try:
                with self.engine.begin() as conn:
                    followed = follow_merge(conn, survivor, [m for m in merged if m.strip().isdigit()],
                                            hold=self._hold_for_merge)
                    log_sync_many(conn, [SyncLogEntry(
                        trigger=self.who.trigger, outcome=Outcome.APPLIED, customer_id=change.customer_id,
                        ban=change.ban,
                        old_value=change.old, new_value=change.new, action=change.action, reason="company.merge",
                        run_id=self.who.run_id, actor=self.who.actor,
                        details={"survivor": survivor, "merged": followed.merged, "found_by": "batch_read",
                                 "queue_row": plan.customer.row.id}) for change in followed.changes])
            except CustomerBusy as busy:
                if not sent:
                    self.rows.put_back([plan.customer.row], "customer_busy", "CUSTOMER_BUSY",
                                   f"another writer holds customer {busy.customer_id}", self.settings.busy_retry_s)
                    plan.finished = True
                continue
            log.warning("company %s was merged into %s: customer %s %s", old, survivor, plan.customer.row.customer_id,
                        followed.action)
            if followed.action == "LINK_REPOINTED":
                plan.company_id = survivor
            elif not sent:
                review.append(plan)
        if review:
            self.rows.park([(p.customer.row, p.customer.ban, *PARK_REASONS[LinkStatus.REVIEW]) for p in review], plans=review)

    def _hold_for_merge(self, customer_ids: list[UUID]) -> None:
        lease = acquire_customers(self.engine, customer_ids, self.lease_holder,
                                  ttl=timedelta(seconds=self.settings.lease_s))
        self._merge_leases.append(lease)
        if lease.busy:
            raise CustomerBusy(lease.busy[0], None, None)

    def _decide(self, plan: _Plan, name: str) -> Decision:
        rule = self.rules[name]
        warp_value = plan.customer.values.get(name)
        if rule.direction is not Direction.BIDIRECTIONAL:
            # WARP owns it: its value goes, whatever HubSpot holds (no read needed).
            try:
                return Decision(Action.WRITE_TO_HUBSPOT, Reason.ONE_WAY_FROM_WARP, comparable(rule.spec, warp_value))
            except InvalidFieldValue as exc:
                return Decision(Action.SKIP_INVALID, Reason.WARP_VALUE_INVALID, None, exc)
        state = plan.customer.state.get(name)
        agreed = None
        if state is not None and state.agreed is not None:
            agreed = Observed(state.agreed.value, state.agreed.at)
        assert plan.company is not None
        hubspot_value = plan.company.properties.get(rule.hubspot_property)
        hubspot_at = plan.hubspot_at.get(name)
        # The last known HubSpot change (webhooks, earlier writes) still describes the value read.
        if (hubspot_at is None and state is not None and state.hubspot is not None and state.hubspot.at is not None
                and comparable_or_none(rule.spec, hubspot_value) == state.hubspot.value):
            hubspot_at = state.hubspot.at
        plan.hubspot_at[name] = hubspot_at
        return decide(rule, agreed, Observed(warp_value, _warp_at(plan, rule)), Observed(hubspot_value, hubspot_at))

    def _read_history(self, wanted: list[tuple[_Plan, str]]) -> None:
        """LATEST_WINS with an unknown HubSpot change time: read the property's history, then decide again."""
        by_company: dict[str, list[tuple[_Plan, str]]] = {}
        for plan, name in wanted:
            by_company.setdefault(plan.company_id, []).append((plan, name))
        properties = sorted({self.rules[name].hubspot_property for _, name in wanted})
        companies = list(by_company)
        for chunk in _chunks(companies, HISTORY_BATCH_SIZE):
            self.report.batch_reads += 1
            outcomes = self.client.batch_read_companies(chunk, properties=properties,
                                                        properties_with_history=properties)
            for company_id, outcome in zip(chunk, outcomes, strict=True):
                if not outcome.ok or outcome.company is None:
                    continue  # decided without the time: HubSpot wins the tie-break (TIME_UNKNOWN)
                for plan, name in by_company[company_id]:
                    prop = self.rules[name].hubspot_property
                    version = outcome.company.last_change(prop)
                    # Only the time is taken: the company as first read keeps every property the other fields
                    # are decided on (this read holds the LATEST_WINS ones alone). A value that moved since that
                    # read is not the one this time belongs to: decided without it (HubSpot wins the tie-break).
                    held = plan.company.properties.get(prop) if plan.company is not None else None
                    if version is None or version.value != held:
                        continue
                    plan.hubspot_at[name] = version.timestamp
                    plan.decisions[name] = self._decide(plan, name)

    def _settle(self, plans: list[_Plan]) -> None:
        """Carry out every decision that sends nothing (core.warp_apply), in one transaction; collect the values
        to send."""
        settling: list[tuple[_Plan, FieldDecision]] = []
        finished: list[_Plan] = []
        for plan in plans:
            if plan.finished:
                continue
            for name in plan.customer.fields:
                decision = plan.decisions[name]
                if decision.action is Action.WRITE_TO_HUBSPOT:
                    plan.send[name] = to_hubspot(self.rules[name].spec, plan.customer.values.get(name))
                else:
                    settling.append((plan, self._field_decision(plan, name)))
            if not plan.send:
                finished.append(plan)
        if settling:
            with self.engine.begin() as conn:
                outcomes = apply_decisions(conn, [item for _, item in settling],
                                           by=self.who.applier())
            for (plan, item), applied in zip(settling, outcomes, strict=True):
                self.report.settled += 1
                self.report.written_to_warp += applied.written
                self.report.conflicts += applied.outcome is Outcome.CONFLICT
                failed = applied.outcome in (Outcome.SKIPPED, Outcome.FAILED)
                # A value WARP's database refused is a field not written (audited as failed), not a failure of
                # HubSpot's: nothing is queued for it.
                outcome = Outcome.SKIPPED if applied.outcome is Outcome.FAILED else applied.outcome
                plan.outcomes[item.rule.warp_field] = (
                    outcome, applied.code if failed and applied.code else item.decision.reason.value)
        if finished:
            self.rows.finish(finished, [])

    def _field_decision(self, plan: _Plan, name: str) -> FieldDecision:
        rule = self.rules[name]
        # Only two-way fields' properties were read: a one-way field knows nothing of HubSpot's value.
        read = plan.company is not None and rule.direction is Direction.BIDIRECTIONAL
        hubspot_value = plan.company.properties.get(rule.hubspot_property) if read and plan.company else None
        state = plan.customer.state.get(name)
        return FieldDecision(
            customer_id=plan.customer.row.customer_id, rule=rule, decision=plan.decisions[name],
            warp=Observed(plan.customer.values.get(name), _warp_at(plan, self.rules[name])),
            hubspot=Observed(hubspot_value, plan.hubspot_at.get(name)),
            warp_text=comparable_or_none(rule.spec, plan.customer.values.get(name)),
            hubspot_text=comparable_or_none(rule.spec, hubspot_value) if read else None,
            read_at=plan.read_at,
            agreed=state.agreed.value if state is not None and state.agreed is not None else None,
            ban=plan.customer.ban, details={"hubspot_company_id": plan.company_id, "queue_row": plan.customer.row.id},
        )

    # --- sending ---------------------------------------------------------------------------------------------

    def _send(self, plans: list[_Plan]) -> None:
        senders = [p for p in plans if p.send and not p.finished]
        for position in range(0, len(senders), BATCH_SIZE):
            chunk = senders[position:position + BATCH_SIZE]
            self.report.batch_updates += 1
            self.report.sent += len(chunk)
            self.report.fields_sent += sum(len(plan.send) for plan in chunk)
            try:
                outcomes = update_companies_ledger_first(
                    self.engine, self.client, self.rules,
                    [LedgeredUpdate(plan.company_id, plan.send) for plan in chunk], reason="queue drain")
            except AuthFailed as exc:
                raise _Paused(PauseCause.TOKEN_REFUSED, exc) from exc
            self._record_outcomes(chunk, outcomes)

    def _record_outcomes(self, chunk: list[_Plan], outcomes: list[RecordOutcome]) -> None:
        succeeded: list[tuple[_Plan, Company]] = []
        failed: list[tuple[_Plan, HubSpotError]] = []
        missing: list[_Plan] = []
        for plan, outcome in zip(chunk, outcomes, strict=True):
            if outcome.ok and outcome.company is not None:
                succeeded.append((plan, outcome.company))
                continue
            error = outcome.error or OutcomeUnknown("no answer for this record")
            if isinstance(error, NotFound):
                missing.append(plan)
            else:
                failed.append((plan, error))
        if succeeded:
            self.rows.finish([p for p, _ in succeeded], succeeded)
            moved = []
            for plan, company in succeeded:
                if company.id != plan.company_id:
                    plan.company = company  # the merged record the write landed on
                    moved.append(plan)
            self._follow_merges(moved, sent=True)
        if missing:
            self.rows.park([(p.customer.row, p.customer.ban, "COMPANY_NOT_FOUND",
                         f"HubSpot has no company {p.company_id} (deleted or merged); never re-created, "
                         "the nightly report lists it") for p in missing], plans=missing)
        self._fail_or_pause(failed)

    # --- finishing rows --------------------------------------------------------------------------------------

    def _fail_or_pause(self, failures: list[tuple[_Plan, HubSpotError]]) -> None:
        """Failures of records spend attempts (_fail); a failure of HubSpot as a whole raises _Paused instead."""
        if not failures:
            return
        cause = None
        whole = [(plan, error) for plan, error in failures if pause_cause(error) is not None]
        if whole and not (self._probe_answered and pause_cause(whole[0][1]) is PauseCause.OUTAGE
                          and not isinstance(whole[0][1], RateLimited)):
            cause = confirmed_cause(whole[0][1], self.client, self.settings.pause)
            self._probe_answered = cause is None
        if cause is None:
            self.rows.fail(failures)
            return
        paused = {id(plan) for plan, _ in whole}
        records = [(plan, error) for plan, error in failures if id(plan) not in paused]
        if records:
            self.rows.fail(records)
        raise _Paused(cause, whole[0][1])

    def _pause(self, plans: list[_Plan], cause: PauseCause, exc: HubSpotError) -> None:
        """Every unfinished row back as it was (no attempt spent; due at once, the pause holds the flows back)."""
        if isinstance(exc, AuthFailed):
            # Nothing sent was applied: update_companies_ledger_first voided the entries already.
            seen = (f"HubSpot refused warp-sync's credentials ({exc.status or 'auth'}); fix HUBSPOT_ACCESS_TOKEN "
                    "(revoked or rotated?)")
        else:
            seen = f"{error_code(exc)}: {_describe(exc)}"
        pause = pause_for(self.engine, self.client, cause, seen, opened_by=self.holder, settings=self.settings.pause)
        code, text = error_code(exc), seen[:ERROR_TEXT_LIMIT]
        self.rows.put_back([p.customer.row for p in plans], f"paused_{cause.value}", code, text, 0.0)
        entries = []
        for plan in plans:
            fields = sorted(plan.send) if plan.send else list(plan.customer.fields)
            entries.extend(self.rows.failure_entries(plan, fields, code, text, {
                "attempts": plan.customer.row.attempts, "dead": False, "paused": cause.value, "queue_row": plan.customer.row.id}))
            plan.finished = True
            plan.error = exc
        with self.engine.begin() as conn:
            log_sync_many(conn, entries)
        self.report.paused = True
        self.report.pause_reason = pause.describe()
        self.report.pause_cause = cause.value
        log.warning("%s (%d rows put back, no attempt spent)", pause.describe(), len(plans))


class _Paused(Exception):
    """HubSpot failed as a whole (not these records): the claim stops and the flows pause."""

    def __init__(self, cause: PauseCause, error: HubSpotError) -> None:
        super().__init__(cause.value)
        self.cause = cause
        self.error = error


def _chunks(items: Sequence[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def drain_queue(
    engine: sa.Engine,
    hubspot: HubSpotClient,
    *,
    run_id: str | None = None,
    settings: DrainSettings | None = None,
    holder: str | None = None,
) -> DrainReport:
    """Send the due rows of hubspot_sync_queue to HubSpot; callable without Dagster (the op wraps it).

    `holder` names this writer in the customer leases (unique per writer: the run id by default).
    """
    settings = settings or DrainSettings()
    report = DrainReport()
    name = holder or f"drain:{run_id or uuid.uuid4()}"
    # The run budget counts from here: the job's maximum runtime assumes it does.
    started = time.monotonic()
    with engine.connect() as conn:
        rules = load_rules(conn)
        cutoff = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
    while time.monotonic() - started < settings.run_budget_s:
        # Before each claim: another process may have paused the flows meanwhile.
        pause = admit(engine, hubspot, flow=name, settings=settings.pause)
        if pause is not None:
            report.paused, report.pause_reason, report.pause_cause = True, pause.describe(), pause.cause.value
            break
        token = uuid.uuid4()
        rows = claim_due_rows(engine, token=token, limit=settings.claim_size,
                              lease=timedelta(seconds=settings.lease_s), due_by=cutoff)
        if not rows:
            break
        queue_rows = _QueueRows(engine, rules, token, report, _Who(Trigger.QUEUE, run_id=run_id), _Retries(settings))
        _Drain(hubspot, settings, queue_rows, name).process(rows)
        if report.paused:
            break
    return report


# --- manual push: one customer now (DESIGN.md flow 5) ------------------------------------------------------------


class FieldPushOutcome(StrEnum):
    SENT = "sent"  # WARP's value written to HubSpot
    IN_SYNC = "in_sync"  # both sides already agree
    CONFLICT = "conflict"  # both sides moved under MANUAL: a review item, nothing written
    WARP_UPDATED = "warp_updated"  # HubSpot's newer value kept and written to WARP
    SKIPPED = "skipped"  # nothing written (an invalid value, or WARP changed meanwhile: that change is queued)
    FAILED = "failed"  # HubSpot did not take it; queued for the drain (only in a PushFailed)


@dataclass(frozen=True)
class FieldPush:
    field: str
    outcome: FieldPushOutcome
    reason: str | None  # the decision's reason, or the error code

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "outcome": self.outcome.value, "reason": self.reason}


@dataclass(frozen=True)
class PushResult:
    customer_id: UUID
    hubspot_company_id: str
    fields: list[FieldPush]

    def body(self) -> dict[str, Any]:
        return {"customer_id": str(self.customer_id), "hubspot_company_id": self.hubspot_company_id,
                "fields": [f.as_dict() for f in self.fields]}


class PushRefused(ServiceError):
    """Nothing was sent: no such customer (NOT_FOUND), or CONFLICT: CUSTOMER_BUSY / CUSTOMER_NOT_LINKED /
    COMPANY_NOT_FOUND."""


class PushFailed(ServiceError):
    """HubSpot did not take the push (HUBSPOT_FAILED: unreachable or refused us; REJECTED_BY_HUBSPOT: the values);
    the fields are queued for the drain (`extra["queued"]`), and `extra` carries failed_fields and every field's
    outcome."""

    def __init__(self, kind: Failure, message: str, **extra: Any) -> None:
        super().__init__(kind, "HUBSPOT_SYNC_FAILED", message, **extra)


@dataclass(frozen=True)
class PushSettings:
    # Every HubSpot call of one push, retries and budget waits included.
    time_budget_s: float = DEFAULTS.push_time_budget_seconds
    # How long to wait for another writer of the customer before CUSTOMER_BUSY.
    lease_wait_s: float = DEFAULTS.push_lease_wait_seconds
    # A failed push's fields are due for the drain after this long.
    retry_delay_s: float = DEFAULTS.push_retry_delay_seconds
    pause: PauseSettings = field(default_factory=PauseSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PushSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> PushSettings:
        return cls(
            time_budget_s=settings.push_time_budget_seconds,
            lease_wait_s=settings.push_lease_wait_seconds,
            retry_delay_s=settings.push_retry_delay_seconds,
            pause=PauseSettings.from_settings(settings),
        )

    def drain_settings(self) -> DrainSettings:
        # The claim and the customer's lease outlast the HTTP budget, so a push that dies is taken back later.
        return DrainSettings(http_budget_s=self.time_budget_s, lease_s=self.time_budget_s + 60.0,
                             backoff_s=self.retry_delay_s, pause=self.pause)


PUSH_REASON = "manual_push"


def _link_of(engine: sa.Engine, customer_id: UUID) -> sa.Row | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT hubspot_link_status AS status, external_ids ->> 'hubspot_company_id' AS company_id "
                    "FROM customers WHERE id = :id"),
            {"id": customer_id},
        ).first()


def _take_push_lease(engine: sa.Engine, customer_id: UUID, holder: str, ttl: timedelta, wait_s: float) -> CustomerLease:
    try:
        return acquire_customer_waiting(engine, customer_id, holder, ttl, wait_s=wait_s)
    except CustomerBusy as busy:
        raise PushRefused(Failure.CONFLICT, CustomerBusy.code,
                          f"Another writer is working on customer {customer_id} "
                          f"({busy.holder or 'unknown'}); try again shortly.") from None


def _claim_for_push(engine: sa.Engine, customer_id: UUID, fields: Sequence[str], token: UUID,
                    lease: timedelta) -> ClaimedRow:
    """Queue the fields (merged into the customer's pending row, with whatever else was pending) and claim that
    row at once, due or not: the push is the drain's work done now, and what it cannot do stays queued."""
    with engine.begin() as conn:
        row_id = conn.execute(ENQUEUE, {"customer_id": str(customer_id), "fields": list(fields),
                                        "reason": PUSH_REASON}).scalar_one()
        row = conn.execute(
            sa.text(
                "UPDATE hubspot_sync_queue SET status = 'claimed', lease_token = CAST(:token AS uuid), "
                "lease_expires_at = clock_timestamp() + CAST(:lease AS interval), updated_at = now() "
                "WHERE id = :id AND status = 'pending' RETURNING id, customer_id, fields, attempts"
            ),
            {"token": str(token), "lease": lease, "id": row_id},
        ).one()
    return ClaimedRow(row.id, UUID(str(row.customer_id)), tuple(row.fields), row.attempts)


def push_customer(
    engine: sa.Engine,
    hubspot: HubSpotClient,
    customer_id: UUID | str,
    *,
    actor: str,
    settings: PushSettings | None = None,
    rules: FieldRules | None = None,
) -> PushResult:
    """Push one customer to HubSpot now, with the queue drain's care (DESIGN.md flows 2 and 5).

    Every field that flows to HubSpot is queued and that row claimed at once under the customer's lease, then
    carried through the drain's own steps: two-way fields whose HubSpot value moved since the agreed one are
    decided (HubSpot's value kept and written to WARP, or a review item) rather than overwritten, ledger
    entries go in before the batch update, and field state and audit (trigger 'manual', `actor`) follow.
    Raises PushRefused (nothing sent or queued) or PushFailed (HubSpot did not take it: the fields stay
    queued for the drain, which spends none of its attempts on the push's failure).
    """
    settings = settings or PushSettings()
    try:
        cid = UUID(str(customer_id))
    except ValueError:
        raise PushRefused(Failure.NOT_FOUND, "NOT_FOUND", f"No customer {customer_id}.") from None
    if _link_of(engine, cid) is None:
        raise PushRefused(Failure.NOT_FOUND, "NOT_FOUND", f"No customer {cid}.")
    if rules is None:
        with engine.connect() as conn:
            rules = load_rules(conn)
    drain_settings = settings.drain_settings()
    report = DrainReport()
    token = uuid.uuid4()
    # The drain's own steps, as the operator, and a failure that spends none of the drain's attempts.
    queue_rows = _QueueRows(engine, rules, token, report, _Who(Trigger.MANUAL, actor=actor),
                            _Retries(drain_settings, spends_attempts=False))
    drain = _Drain(hubspot, drain_settings, queue_rows, f"push:{actor}")
    lease = _take_push_lease(engine, cid, drain.lease_holder, timedelta(seconds=drain_settings.lease_s),
                             settings.lease_wait_s)
    try:
        link = _link_of(engine, cid)  # again, under the lease
        if link is None:
            raise PushRefused(Failure.NOT_FOUND, "NOT_FOUND", f"No customer {cid}.")
        if link.status != LinkStatus.LINKED or not link.company_id:
            raise PushRefused(
                Failure.CONFLICT, "CUSTOMER_NOT_LINKED",
                f"Customer {cid}'s HubSpot link is {link.status!r}: it is never written blindly or re-created; "
                "a person settles the link first.", link_status=link.status,
            )
        outbound = [name for name in rules if rules[name].direction is not Direction.HUBSPOT_TO_WARP]
        if not outbound:
            return PushResult(cid, str(link.company_id), [])
        row = _claim_for_push(engine, cid, outbound, token, timedelta(seconds=drain_settings.lease_s))
        plans = drain.process([row])
    finally:
        if lease.taken:
            release_customer(engine, cid, lease.token)
    return _push_result(cid, str(link.company_id), rules, report, plans)


def _push_result(customer_id: UUID, company_id: str, rules: FieldRules, report: DrainReport,
                 plans: list[_Plan]) -> PushResult:
    if report.parked or not plans:
        stopped = report.stopped[0] if report.stopped else None
        if stopped is not None and stopped.code == "COMPANY_NOT_FOUND":
            raise PushRefused(Failure.CONFLICT, "COMPANY_NOT_FOUND",
                              f"HubSpot has no company {company_id} (deleted or merged); it is never re-created. "
                              "The fields are parked for a person to decide.", parked=True)
        if stopped is not None:
            raise PushRefused(Failure.CONFLICT, "CUSTOMER_NOT_LINKED", stopped.error, parked=True)
        raise PushRefused(Failure.NOT_FOUND, "NOT_FOUND", f"No customer {customer_id}.")  # deleted while the push ran
    (plan,) = plans
    fields: list[FieldPush] = []
    for name in rules:
        if name not in plan.customer.fields:
            continue
        outcome, reason = plan.outcomes.get(name, (Outcome.FAILED, "NOT_PROCESSED"))
        if outcome is Outcome.APPLIED:
            pushed = FieldPushOutcome.SENT if name in plan.send else FieldPushOutcome.WARP_UPDATED
        else:
            pushed = {Outcome.IN_SYNC: FieldPushOutcome.IN_SYNC, Outcome.CONFLICT: FieldPushOutcome.CONFLICT,
                      Outcome.SKIPPED: FieldPushOutcome.SKIPPED}.get(outcome, FieldPushOutcome.FAILED)
        fields.append(FieldPush(name, pushed, reason))
    if plan.error is None and all(f.outcome is not FieldPushOutcome.FAILED for f in fields):
        return PushResult(customer_id, company_id, fields)
    error = plan.error or OutcomeUnknown("the push was taken back before it finished")
    failed = [f for f in fields if f.outcome is FieldPushOutcome.FAILED]
    refused = refused_fields(error, rules)
    rejected = isinstance(error, ValidationFailed) or bool(refused)
    reason = f"{error_code(error)}: {_describe(error)}"
    raise PushFailed(
        Failure.REJECTED_BY_HUBSPOT if rejected else Failure.HUBSPOT_FAILED,
        f"HubSpot did not take the push ({reason}). The fields are queued; the queue drain retries them.",
        queued=True,
        customer_id=str(customer_id),
        hubspot_company_id=company_id,
        failed_fields=[{"field": f.field, "reason": refused.get(f.field, f.reason or "HUBSPOT_ERROR")}
                       for f in failed],
        fields=[f.as_dict() for f in fields],
    )


def _describe(error: HubSpotError) -> str:
    return (str(error) or type(error).__name__)[:ERROR_TEXT_LIMIT]


# --- operations: status, retry, retention ---------------------------------------------------------------------


@dataclass(frozen=True)
class QueueSnapshot:
    counts: dict[str, int]
    due: int
    oldest_due_at: datetime | None
    stopped: list[StoppedRow]


def queue_status(engine: sa.Engine, *, limit: int = 50) -> QueueSnapshot:
    """Counts by status, what is due now, and the latest dead and parked rows."""
    with engine.connect() as conn:
        counts = {status.value: 0 for status in QueueStatus}
        counts.update({r.status: r.n for r in conn.execute(
            sa.text("SELECT status, count(*) AS n FROM hubspot_sync_queue GROUP BY status"))})
        due = count_due(conn)
        oldest = conn.execute(sa.text(
            "SELECT min(next_attempt_at) FROM hubspot_sync_queue WHERE status = 'pending' AND next_attempt_at <= now()"
        )).scalar_one()
        stopped = [
            StoppedRow(r.id, str(r.customer_id), r.ban, r.status, r.last_error_code, r.last_error, list(r.fields),
                       r.attempts)
            for r in conn.execute(
                sa.text(
                    "SELECT q.id, q.customer_id, c.ban, q.status, q.last_error_code, q.last_error, q.fields, q.attempts "
                    "FROM hubspot_sync_queue q LEFT JOIN customers c ON c.id = q.customer_id "
                    "WHERE q.status IN ('dead', 'parked') ORDER BY q.updated_at DESC, q.id DESC LIMIT :limit"
                ),
                {"limit": limit},
            )
        ]
    return QueueSnapshot(counts, due, oldest, stopped)


def retry_stopped(
    engine: sa.Engine,
    *,
    statuses: Iterable[QueueStatus | str] = (QueueStatus.DEAD,),
    customer_ids: Iterable[UUID | str] | None = None,
) -> int:
    """Put dead (or parked) rows back into pending with fresh attempts, once their cause is fixed; how many."""
    wanted = sorted({QueueStatus(s).value for s in statuses})
    if not set(wanted) <= {QueueStatus.DEAD.value, QueueStatus.PARKED.value}:
        raise ValueError("only dead or parked rows can be retried")
    sql = "DELETE FROM hubspot_sync_queue WHERE status = ANY(CAST(:statuses AS text[]))"
    params: dict[str, Any] = {"statuses": wanted}
    if customer_ids is not None:
        sql += " AND customer_id = ANY(CAST(:ids AS uuid[]))"
        params["ids"] = [str(UUID(str(c))) for c in customer_ids]
    with engine.begin() as conn:
        rows = conn.execute(sa.text(sql + " RETURNING customer_id, fields, status"), params).all()
        for row in rows:
            conn.execute(REQUEUE, {"customer_id": str(row.customer_id), "fields": list(row.fields),
                                   "reason": f"retry_{row.status}", "attempts": 0, "delay": timedelta(0),
                                   "code": None, "error": None})
    return len(rows)


def purge_finished(engine: sa.Engine, *, older_than: timedelta) -> int:
    """Retention: delete done rows finished more than `older_than` ago (the audit log keeps what they did)."""
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "DELETE FROM hubspot_sync_queue WHERE status = 'done' "
                "AND finished_at < clock_timestamp() - CAST(:age AS interval)"
            ),
            {"age": older_than},
        ).rowcount


__all__ = [
    "ClaimedRow",
    "DrainReport",
    "DrainSettings",
    "FieldPush",
    "FieldPushOutcome",
    "PushFailed",
    "PushRefused",
    "PushResult",
    "PushSettings",
    "QueueSnapshot",
    "QueueStatus",
    "StoppedRow",
    "claim_due_rows",
    "count_due",
    "drain_queue",
    "enqueue_fields",
    "purge_finished",
    "push_customer",
    "queue_status",
    "recover_expired_claims",
    "retry_stopped",
]
