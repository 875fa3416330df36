"""The webhook processor (DESIGN.md flow 3): apply stored HubSpot events to WARP through the field rules.

The receiver only stores events (`hubspot_webhook_events`); this service applies them. A run claims all due
events of a batch of companies at once, as a committed lease (a token and an expiry, set in a short
transaction), and then, company by company in `occurredAt` order, applies each event in a transaction of its
own that also marks the event finished, but only while the event still carries this run's token. So:

- an event is applied at most once per claim, and a crash leaves every event either finished with its effect
  committed, or pending with the effect rolled back (it is claimed again when the lease expires);
- applying an event again, late, or after a crash changes nothing more: echoes are matched in the write
  ledger, stale events (older than the field's last known HubSpot change) are dropped, and a value already
  held is IN_SYNC;
- one company's events are never spread over two processors (a company with a live lease is not claimed);
- every write to a customer holds that customer's lease (leases.py), and WARP writes carry the no-echo marker
  `warp_sync.origin = 'hubspot'` so the outbox trigger does not queue them back.

Per event type:
- `company.propertyChange`: the property is mapped through the rules (unmapped: ignored); echo and staleness
  checks; `decide()`; WRITE_TO_WARP updates the customer; WRITE_TO_HUBSPOT (drift on a WARP-owned field, or
  WARP's newer value of a two-way field) queues WARP's value back through the outbox; OPEN_CONFLICT opens or
  updates the review row and writes nothing. Field state and the audit log record each decision.
- `company.creation`: carries no properties, so the company is read from HubSpot and linked to the customer
  whose BAN its `warp_ban` holds, if that customer has no company yet.
- `company.deletion`: the customer is kept; its link is marked `deleted`.
- `company.merge`: customers linked to a merged-away company are re-pointed to the surviving company, unless
  another customer already holds it (or several would), in which case all of them are marked for `review`.

Each event ends `processed`, `ignored` (with a reason: a stable code, a colon, detail for people) or `failed`
(with the error; tried again after a growing delay, a bounded number of times). A customer another writer is
busy with defers that company's remaining events for a few seconds, without spending an attempt.

HubSpot failing as a whole (a refused token, the daily cap, 429s, or a 5xx a probe confirms) is no event's
fault: the shared pause opens (core.pauses), the event and the rest of the claim go back with their attempts
returned, and the run ends. A run starts by asking core.pauses.admit(), as the queue drain does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.agreements import record_field_state
from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync
from warp_sync_pipeline.core.decision import Action, Decision, Observed, Reason, decide
from warp_sync_pipeline.core.field_state import (
    FieldStateUpdate,
    StateValue,
    read_field_state,
    warp_changed_at,
)
from warp_sync_pipeline.core.fields import FieldRule, FieldRules, load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.hubspot.errors import HubSpotError, NotFound
from warp_sync_pipeline.core.leases import (
    CustomerBusy,
    CustomerLease,
    acquire_customer,
    acquire_customers,
    release_customers,
)
from warp_sync_pipeline.core.ledger import bind_company, match_echo
from warp_sync_pipeline.core.links import (
    LinkStatus,
    follow_merge,
    linked_to_companies,
    set_link,
)
from warp_sync_pipeline.core.normalize import comparable_or_none
from warp_sync_pipeline.core.outbound import enqueue_fields
from warp_sync_pipeline.core.pauses import (
    Pause,
    PauseSettings,
    admit,
    confirmed_cause,
    pause_cause,
    pause_for,
)
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings
from warp_sync_pipeline.core.sync_tables import customer_column, customers
from warp_sync_pipeline.core.warp_apply import Applier, FieldDecision, apply_decisions

log = logging.getLogger(__name__)

# Event statuses (sql/005).
PROCESSED = "processed"
IGNORED = "ignored"
FAILED = "failed"
# Not a status: the event went back to waiting (its customer was busy), attempt not spent.
DEFERRED = "deferred"

INACTIVE_LINKS = frozenset({LinkStatus.DELETED, LinkStatus.REVIEW})

# Stable reason codes. Ignored events:
UNMAPPED_PROPERTY = "UNMAPPED_PROPERTY"
UNKNOWN_COMPANY = "UNKNOWN_COMPANY"
LINK_NOT_ACTIVE = "LINK_NOT_ACTIVE"
ECHO = "ECHO"
STALE_EVENT = "STALE_EVENT"
INVALID_VALUE = "INVALID_VALUE"
ALREADY_LINKED = "ALREADY_LINKED"
CUSTOMER_LINKED_ELSEWHERE = "CUSTOMER_LINKED_ELSEWHERE"
COMPANY_NOT_FOUND = "COMPANY_NOT_FOUND"
UNHANDLED_EVENT = "UNHANDLED_EVENT"
# Failed events:
HUBSPOT_FAILED = "HUBSPOT_FAILED"
HUBSPOT_NOT_CONFIGURED = "HUBSPOT_NOT_CONFIGURED"
APPLY_FAILED = "APPLY_FAILED"
ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"

DETECTED_BY = "webhook"
ERROR_TEXT_LIMIT = 1000
# Serialises claims, so "this company has no live lease" cannot change under a claim. Any number ours alone.
CLAIM_LOCK_KEY = 0x7A5F_4942_4E44
# HubSpot keeps retrying a delivery for a day, so a processed event's row (its dedupe key) must outlive that.
MINIMUM_RETENTION = timedelta(days=3)


# --- settings --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InboundSettings:
    """How the processor claims, retries and keeps events (see `.env.example`, section "inbound")."""

    max_attempts: int = DEFAULTS.webhook_max_attempts
    # How long a claim holds a company's events; a run that dies releases them when it expires.
    lease_ttl: timedelta = timedelta(seconds=DEFAULTS.webhook_lease_seconds)
    # How long a customer lease lasts (renewed by nothing: a company's events take well under this).
    customer_lease_ttl: timedelta = timedelta(minutes=2)
    # Failed events wait retry_initial, then 4x longer each attempt, at most retry_max.
    retry_initial: timedelta = timedelta(seconds=DEFAULTS.webhook_retry_seconds)
    retry_max: timedelta = timedelta(hours=1)
    # A busy customer's events wait this long before another claim may take them.
    busy_retry: timedelta = timedelta(seconds=15)
    companies_per_claim: int = 500
    # A run stops after this long (the rest of its claim handed back); the sensor starts another for what is left.
    run_time_budget: timedelta = timedelta(seconds=DEFAULTS.webhook_run_seconds)
    retention: timedelta = timedelta(days=DEFAULTS.webhook_retention_days)
    failed_retention: timedelta = timedelta(days=DEFAULTS.webhook_failed_retention_days)
    # A run's time past its budgets before the instance ends it.
    run_margin: timedelta = timedelta(seconds=DEFAULTS.run_margin_seconds)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.retention < MINIMUM_RETENTION or self.failed_retention < MINIMUM_RETENTION:
            raise ValueError("webhook events must be kept at least three days (HubSpot retries for a day)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> InboundSettings:
        """WARP_WEBHOOK_MAX_ATTEMPTS, _LEASE_SECONDS, _RETRY_SECONDS, _RUN_SECONDS, _RETENTION_DAYS,
        _FAILED_RETENTION_DAYS (SettingsError names a malformed one)."""
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> InboundSettings:
        return cls(
            max_attempts=settings.webhook_max_attempts,
            lease_ttl=timedelta(seconds=settings.webhook_lease_seconds),
            retry_initial=timedelta(seconds=settings.webhook_retry_seconds),
            run_time_budget=timedelta(seconds=settings.webhook_run_seconds),
            retention=timedelta(days=settings.webhook_retention_days),
            failed_retention=timedelta(days=settings.webhook_failed_retention_days),
            run_margin=timedelta(seconds=settings.run_margin_seconds),
        )

    @property
    def max_runtime(self) -> timedelta:
        """The longest a run can take: it stops after run_time_budget, and the company it was applying then ends
        within lease_ttl (past that its events are another run's anyway). A run still going after this is dead
        or hung."""
        return self.run_time_budget + self.lease_ttl + self.run_margin


# --- events --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    subscription_type: str
    object_id: str
    occurred_at: datetime
    attempts: int
    event_id: int | None = None
    property_name: str | None = None
    property_value: str | None = None
    change_source: str | None = None
    primary_object_id: str | None = None
    merged_object_ids: tuple[str, ...] = ()
    new_object_id: str | None = None


@dataclass(frozen=True)
class EventOutcome:
    status: str
    code: str | None = None
    detail: str | None = None
    result: Mapping[str, Any] | None = None

    @property
    def reason(self) -> str | None:
        if self.code is None:
            return None
        return f"{self.code}: {self.detail}" if self.detail else self.code


def _processed(**result: Any) -> EventOutcome:
    return EventOutcome(PROCESSED, result=result)


def _ignored(code: str, detail: str, **result: Any) -> EventOutcome:
    return EventOutcome(IGNORED, code, detail, result or None)


@dataclass
class ProcessSummary:
    """What a run did: events by outcome, by reason code and by decision action."""

    claimed: int = 0
    companies: int = 0
    processed: int = 0
    ignored: int = 0
    failed: int = 0
    deferred: int = 0
    lost: int = 0  # events whose lease another run took over before this one finished them
    paused: str | None = None  # the pause that ended the run (core.pauses), described for people
    pause_cause: str | None = None
    reasons: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0

    def count(self, status: str, code: str | None = None, action: str | None = None, n: int = 1) -> None:
        setattr(self, status, getattr(self, status) + n)
        if code:
            self.reasons[code] += n
        if action:
            self.actions[action] += n

    def as_dict(self) -> dict[str, Any]:
        return {
            "claimed": self.claimed,
            "companies": self.companies,
            "processed": self.processed,
            "ignored": self.ignored,
            "failed": self.failed,
            "deferred": self.deferred,
            "lost": self.lost,
            "paused": self.paused,
            "pause_cause": self.pause_cause,
            "reasons": dict(sorted(self.reasons.items())),
            "actions": dict(sorted(self.actions.items())),
            "elapsed_s": round(self.elapsed_s, 3),
        }


# --- claiming ----------------------------------------------------------------------------------------------------
_DUE = "(e.status = 'pending' OR (e.status = 'failed' AND e.next_attempt_at <= now()))"

_CLAIM = sa.text(f"""
    WITH due AS (
        SELECT e.object_id, min(e.occurred_at) AS first_at
        FROM hubspot_webhook_events AS e
        WHERE {_DUE}
        GROUP BY e.object_id
        -- A company with a live lease is someone's: its later events wait for that claim to end.
        HAVING bool_and(e.lease_expires_at IS NULL OR e.lease_expires_at <= now())
        ORDER BY first_at, e.object_id
        LIMIT :companies
    )
    UPDATE hubspot_webhook_events AS e
    SET lease_token = CAST(:token AS uuid), lease_expires_at = now() + CAST(:ttl AS interval),
        attempts = e.attempts + 1
    FROM due
    WHERE e.object_id = due.object_id AND {_DUE}
    RETURNING e.id, e.subscription_type, e.object_id, e.occurred_at, e.attempts, e.event_id, e.property_name,
              e.property_value, e.change_source, e.primary_object_id, e.merged_object_ids, e.new_object_id,
              due.first_at
""")


_SAME_INSTANT_ORDER = {"company.creation": 0, "company.merge": 1, "company.propertyChange": 2, "company.deletion": 3}


def claim_events(engine: sa.Engine, token: UUID, settings: InboundSettings) -> list[list[ClaimedEvent]]:
    """Claim every due event of up to `companies_per_claim` companies; one list per company, in order.

    Committed before returning (no lock is held afterwards); each claim counts as an attempt.
    """
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
        rows = conn.execute(
            _CLAIM, {"token": str(token), "ttl": settings.lease_ttl, "companies": settings.companies_per_claim}
        ).all()
    # occurredAt order. At the same instant a link is made before properties apply to it and ended after
    # them; then eventId breaks ties better than the arbitrary row order would.
    rows.sort(key=lambda r: (r.first_at, r.object_id, r.occurred_at, _SAME_INSTANT_ORDER.get(r.subscription_type, 2),
                             r.event_id is None, r.event_id or 0, r.id))
    groups: dict[str, list[ClaimedEvent]] = {}
    for r in rows:
        groups.setdefault(r.object_id, []).append(
            ClaimedEvent(
                id=r.id,
                subscription_type=r.subscription_type,
                object_id=r.object_id,
                occurred_at=r.occurred_at,
                attempts=r.attempts,
                event_id=r.event_id,
                property_name=r.property_name,
                property_value=r.property_value,
                change_source=r.change_source,
                primary_object_id=r.primary_object_id,
                merged_object_ids=tuple(r.merged_object_ids or ()),
                new_object_id=r.new_object_id,
            )
        )
    return list(groups.values())


_FINISH = sa.text("""
    UPDATE hubspot_webhook_events
    SET status = :status, reason = :reason, result = CAST(:result AS jsonb), error = NULL, next_attempt_at = NULL,
        processed_at = now(), lease_token = NULL, lease_expires_at = NULL
    WHERE id = :id AND lease_token = CAST(:token AS uuid)
    RETURNING id
""")

_FAIL = sa.text("""
    UPDATE hubspot_webhook_events
    SET status = 'failed', reason = :reason, error = :error, result = NULL, processed_at = now(),
        next_attempt_at = CASE WHEN attempts < :max_attempts
            THEN now() + least(CAST(:initial AS interval) * power(4, greatest(attempts - 1, 0)),
                               CAST(:maximum AS interval))
            END,
        lease_token = NULL, lease_expires_at = NULL
    WHERE id = :id AND lease_token = CAST(:token AS uuid)
    RETURNING next_attempt_at
""")

_DEFER = sa.text("""
    UPDATE hubspot_webhook_events
    SET lease_expires_at = now() + CAST(:delay AS interval), attempts = greatest(attempts - 1, 0)
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = CAST(:token AS uuid)
""")

_RENEW = sa.text("""
    UPDATE hubspot_webhook_events SET lease_expires_at = now() + CAST(:ttl AS interval)
    WHERE id = ANY(CAST(:ids AS bigint[])) AND lease_token = CAST(:token AS uuid)
    RETURNING id
""")


class _LeaseLost(Exception):
    """The event's lease expired and another run claimed it: this run must not finish it."""


class _EventFailed(Exception):
    """Applying the event failed in a way worth trying again later; `code` is stable."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def count_due_events(bind: sa.Engine | sa.Connection, *, limit: int = 1000) -> int:
    """How many events a run could claim now (counted up to `limit`): the sensor's one cheap query."""
    sql = sa.text("""
        SELECT count(*) FROM (
            (SELECT 1 FROM hubspot_webhook_events
             WHERE status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at <= now()) LIMIT :limit)
            UNION ALL
            (SELECT 1 FROM hubspot_webhook_events
             WHERE status = 'failed' AND next_attempt_at <= now() LIMIT :limit)
        ) AS due
    """)
    if isinstance(bind, sa.Connection):
        return min(int(bind.execute(sql, {"limit": limit}).scalar_one()), limit)
    with bind.connect() as conn:
        return min(int(conn.execute(sql, {"limit": limit}).scalar_one()), limit)


# --- the customer under a lease --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Customer:
    id: UUID
    ban: str
    company_id: str | None
    link_status: str
    created_at: datetime
    updated_at: datetime
    values: Mapping[str, Any]


def _select_customers(where: sa.ColumnElement[bool], rules: FieldRules | None = None) -> sa.Select:
    """The customers matching `where`, locked, with every column: the declared ones and any a mapping row added."""
    added = [customer_column(name) for name in (rules or ()) if name not in customers.c]
    return (
        sa.select(customers, *added)
        .where(where)
        .order_by(customers.c.id)  # one lock order for statements locking several customers
        .with_for_update(of=customers)
    )


def _customer(row: sa.Row) -> _Customer:
    mapping = row._mapping
    return _Customer(
        id=UUID(str(mapping["id"])),
        ban=mapping["ban"],
        company_id=(mapping["external_ids"] or {}).get("hubspot_company_id"),
        link_status=mapping["hubspot_link_status"],
        created_at=mapping["created_at"],
        updated_at=mapping["updated_at"],
        values=dict(mapping),
    )


class _LeaseBook:
    """The customer leases one company's events need, taken once and released together."""

    def __init__(self, engine: sa.Engine, holder: str, ttl: timedelta) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl = ttl
        self._held: dict[UUID, CustomerLease | UUID | None] = {}

    def hold(self, customer_ids: Iterable[UUID]) -> None:
        """Take these customers' leases (raises CustomerBusy, naming one busy customer)."""
        wanted = [c for c in dict.fromkeys(customer_ids) if c not in self._held]
        if len(wanted) == 1:
            lease = acquire_customer(self.engine, wanted[0], self.holder, self.ttl)
            self._held[wanted[0]] = lease if lease.taken else None
        elif wanted:
            bulk = acquire_customers(self.engine, wanted, self.holder, self.ttl)
            for customer_id in bulk.acquired:
                self._held[customer_id] = bulk.token
            for customer_id in bulk.already_held:
                self._held[customer_id] = None
            if bulk.busy:
                raise CustomerBusy(bulk.busy[0], None, None)

    def release_all(self) -> None:
        for customer_id, lease in self._held.items():
            if isinstance(lease, CustomerLease):
                release_customers(self.engine, [customer_id], lease.token)
            elif isinstance(lease, UUID):
                release_customers(self.engine, [customer_id], lease)
        self._held.clear()


# --- the processor ---------------------------------------------------------------------------------------------
class _HubSpotPaused(Exception):
    def __init__(self, pause: Pause, events: Sequence[ClaimedEvent]) -> None:
        super().__init__(pause.cause.value)
        self.pause = pause
        self.events = list(events)


def process_events(
    engine: sa.Engine,
    *,
    hubspot: HubSpotClient | None = None,
    settings: InboundSettings | None = None,
    run_id: str | None = None,
    holder: str | None = None,
    on_event: Callable[[ClaimedEvent, str], None] | None = None,
    pause: PauseSettings | None = None,
) -> ProcessSummary:
    """Claim and apply due events until none are left, the run's time budget is spent, or the flows pause.

    `hubspot` reads the company of a `company.creation` event (without it such events fail and are retried).
    `holder` names this writer in customer leases (unique per run; default from `run_id`). `on_event` is
    called after each event with its outcome status (progress logging).
    """
    processor = _Processor(
        engine,
        hubspot=hubspot,
        settings=settings or InboundSettings(),
        run_id=run_id,
        holder=holder or f"webhook-apply:{run_id or uuid.uuid4()}",
        on_event=on_event,
        pause=pause or PauseSettings(),
    )
    return processor.run()


class _Processor:
    def __init__(
        self,
        engine: sa.Engine,
        *,
        hubspot: HubSpotClient | None,
        settings: InboundSettings,
        run_id: str | None,
        holder: str,
        on_event: Callable[[ClaimedEvent, str], None] | None,
        pause: PauseSettings,
    ) -> None:
        self.pause = pause
        self.engine = engine
        self.hubspot = hubspot
        self.settings = settings
        self.run_id = run_id
        self.holder = holder
        self.on_event = on_event
        self.token = uuid.uuid4()
        self.summary = ProcessSummary()
        self.rules: FieldRules | None = None

    # -- the loop --
    def run(self) -> ProcessSummary:
        started = time.monotonic()
        deadline = started + self.settings.run_time_budget.total_seconds()
        with self.engine.connect() as conn:
            self.rules = load_rules(conn)
        while time.monotonic() < deadline and not self._paused():
            groups = claim_events(self.engine, self.token, self.settings)
            if not groups:
                break
            claimed_at = time.monotonic()
            self.summary.claimed += sum(len(g) for g in groups)
            for position, events in enumerate(groups):
                if time.monotonic() >= deadline:
                    # Time is up: the rest of the claim goes back (its attempt returned) for the next run.
                    self._hand_back([e for g in groups[position:] for e in g])
                    break
                if time.monotonic() - claimed_at > self.settings.lease_ttl.total_seconds() / 3:
                    # A slow round (HubSpot reads): keep the rest of the claim ours.
                    self._renew([e for g in groups[position:] for e in g])
                    claimed_at = time.monotonic()
                self.summary.companies += 1
                try:
                    self._process_company(events)
                except _HubSpotPaused as paused:
                    self._hand_back([*paused.events, *(e for g in groups[position + 1:] for e in g)])
                    self._note_pause(paused.pause)
                    break
        self.summary.elapsed_s = time.monotonic() - started
        return self.summary

    def _paused(self) -> bool:
        """Before each claim: may HubSpot be called? (Probes when a probe is due; see core.pauses.)"""
        if self.hubspot is None:
            return False
        pause = admit(self.engine, self.hubspot, flow=self.holder, settings=self.pause)
        if pause is not None:
            self._note_pause(pause)
        return pause is not None

    def _note_pause(self, pause: Pause) -> None:
        self.summary.paused, self.summary.pause_cause = pause.describe(), pause.cause.value
        log.warning("%s: the webhook run ends; its events wait with their attempts returned", pause.describe())

    def _hand_back(self, events: Sequence[ClaimedEvent]) -> None:
        with self.engine.begin() as conn:
            handed = conn.execute(
                _DEFER, {"ids": [e.id for e in events], "token": str(self.token), "delay": timedelta(0)}
            ).rowcount
        self.summary.claimed -= handed

    def _renew(self, events: Sequence[ClaimedEvent]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _RENEW, {"ids": [e.id for e in events], "token": str(self.token), "ttl": self.settings.lease_ttl}
            )

    def _process_company(self, events: list[ClaimedEvent]) -> None:
        leases = _LeaseBook(self.engine, self.holder, self.settings.customer_lease_ttl)
        try:
            for position, event in enumerate(events):
                if event.attempts > self.settings.max_attempts:
                    self._fail(event, ATTEMPTS_EXHAUSTED, f"claimed {event.attempts - 1} times without finishing")
                    continue
                try:
                    outcome = self._apply(event, leases)
                except CustomerBusy as exc:
                    self._defer(events[position:], exc)
                    return
                except _LeaseLost:
                    log.warning("webhook event %s: lease taken over by another run; left to it", event.id)
                    self.summary.lost += len(events) - position
                    return
                except _EventFailed as exc:
                    self._fail(event, exc.code, exc.detail)
                    continue
                except HubSpotError as exc:
                    cause = confirmed_cause(exc, self.hubspot, self.pause) if (
                        self.hubspot is not None and pause_cause(exc) is not None) else None
                    if cause is not None:
                        pause = pause_for(self.engine, self.hubspot, cause,
                                          f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT],
                                          opened_by=self.holder, settings=self.pause)
                        raise _HubSpotPaused(pause, events[position:]) from exc
                    self._fail(event, HUBSPOT_FAILED, f"{type(exc).__name__}: {exc}")
                    continue
                except Exception as exc:  # noqa: BLE001 - any failure is recorded on the event and retried
                    # The class only: a database error's text can quote customer values (the event row keeps it).
                    log.error("webhook event %s could not be applied: %s", event.id, type(exc).__name__)
                    self._fail(event, APPLY_FAILED, f"{type(exc).__name__}: {exc}")
                    continue
                result = outcome.result or {}
                self.summary.count(outcome.status, outcome.code or result.get("reason"), result.get("action"))
                if self.on_event:
                    self.on_event(event, outcome.status)
        finally:
            leases.release_all()

    # -- finishing --
    def _finish(self, conn: sa.Connection, event: ClaimedEvent, outcome: EventOutcome) -> EventOutcome:
        """Mark the event in the transaction that applied it; no longer ours: roll everything back."""
        finished = conn.execute(
            _FINISH,
            {
                "id": event.id,
                "token": str(self.token),
                "status": outcome.status,
                "reason": outcome.reason,
                "result": json.dumps(outcome.result, default=str) if outcome.result is not None else None,
            },
        ).first()
        if finished is None:
            raise _LeaseLost()
        return outcome

    def _fail(self, event: ClaimedEvent, code: str, detail: str) -> None:
        with self.engine.begin() as conn:
            row = conn.execute(
                _FAIL,
                {
                    "id": event.id,
                    "token": str(self.token),
                    "reason": f"{code}: {detail}"[:ERROR_TEXT_LIMIT],
                    "error": detail[:ERROR_TEXT_LIMIT],
                    "max_attempts": self.settings.max_attempts,
                    "initial": self.settings.retry_initial,
                    "maximum": self.settings.retry_max,
                },
            ).first()
        if row is None:
            self.summary.lost += 1
            return
        log.warning(
            "webhook event %s failed (%s, attempt %s); %s", event.id, code, event.attempts,
            f"next try at {row.next_attempt_at.isoformat()}" if row.next_attempt_at else "no attempts left",
        )
        self.summary.count(FAILED, code)
        if self.on_event:
            self.on_event(event, FAILED)

    def _defer(self, events: Sequence[ClaimedEvent], busy: CustomerBusy) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _DEFER, {"ids": [e.id for e in events], "token": str(self.token), "delay": self.settings.busy_retry}
            )
        log.info("company %s: customer %s is busy; %d event(s) wait", events[0].object_id, busy.customer_id,
                 len(events))
        self.summary.count(DEFERRED, "CUSTOMER_BUSY", n=len(events))

    # -- applying --
    def _apply(self, event: ClaimedEvent, leases: _LeaseBook) -> EventOutcome:
        assert self.rules is not None
        changes = _Changes(self.engine, self.rules, self.hubspot, self.run_id, self._finish)
        handler = {
            "company.propertyChange": changes.property_change,
            "company.creation": changes.creation,
            "company.deletion": changes.deletion,
            "company.merge": changes.merge,
        }.get(event.subscription_type)
        if handler is None:  # the receiver stores these as ignored; a row from elsewhere is handled safely
            with self.engine.begin() as conn:
                return self._finish(conn, event, _ignored(UNHANDLED_EVENT, f"{event.subscription_type} is not applied"))
        return handler(event, leases)


class _Changes:
    """What one event changes in WARP: a property change decided and carried out (core.warp_apply, or WARP's
    value queued back), a company created (linked by BAN), deleted (the link marked) or merged (the link follows).
    Each handler finishes its event, through `finish`, in the transaction that applied it."""

    def __init__(self, engine: sa.Engine, rules: FieldRules, hubspot: HubSpotClient | None, run_id: str | None,
                 finish: Callable[[sa.Connection, ClaimedEvent, EventOutcome], EventOutcome]) -> None:
        self.engine = engine
        self.rules = rules
        self.hubspot = hubspot
        self.run_id = run_id
        self.finish = finish

    def _log(self, conn: sa.Connection, entry: SyncLogEntry) -> None:
        log_sync(conn, entry)

    def _details(self, event: ClaimedEvent, **extra: Any) -> dict[str, Any]:
        details: dict[str, Any] = {
            "webhook_event_id": event.id,
            "hubspot_event_id": event.event_id,
            "company_id": event.object_id,
            "occurred_at": event.occurred_at.isoformat(),
        }
        if event.change_source:
            details["change_source"] = event.change_source
        details.update(extra)
        return details

    # company.propertyChange
    def property_change(self, event: ClaimedEvent, leases: _LeaseBook) -> EventOutcome:
        rule = self.rules.for_property(event.property_name or "")
        with self.engine.begin() as conn:
            if rule is None:
                return self.finish(conn, event, _ignored(
                    UNMAPPED_PROPERTY, f"HubSpot property {event.property_name!r} is not mapped to a WARP field"))
            row = conn.execute(_select_customers(linked_to_companies([event.object_id]), self.rules)).first()
            if row is None:
                return self.finish(conn, event, _ignored(
                    UNKNOWN_COMPANY, f"no WARP customer is linked to company {event.object_id}"))
            customer = _customer(row)
            if customer.link_status in INACTIVE_LINKS:
                return self.finish(conn, event, _ignored(
                    LINK_NOT_ACTIVE, f"customer {customer.id}'s link is {customer.link_status!r}",
                    customer_id=str(customer.id)))
            leases.hold([customer.id])
            return self.finish(conn, event, self._apply_property(conn, event, rule, customer))

    def _apply_property(
        self, conn: sa.Connection, event: ClaimedEvent, rule: FieldRule, customer: _Customer
    ) -> EventOutcome:
        field_name = rule.warp_field
        hubspot_value = event.property_value
        hubspot_text = comparable_or_none(rule.spec, hubspot_value)
        hubspot_part = None if hubspot_text is None else StateValue(hubspot_text, event.occurred_at)
        base = {"customer_id": str(customer.id), "warp_field": field_name}

        echo = match_echo(conn, company_id=event.object_id, rule=rule, value=hubspot_value,
                          occurred_at=event.occurred_at, source=event.change_source)
        if echo is not None:
            self._record_state(conn, customer.id, field_name, hubspot=hubspot_part)
            return _ignored(ECHO, f"our own write of {rule.hubspot_property} (ledger entry {echo})",
                            **base, ledger_entry=echo)

        state = read_field_state(conn, [customer.id], [field_name]).get((customer.id, field_name))
        known = state.hubspot if state else None
        if known is not None and known.at is not None and known.at > event.occurred_at:
            return _ignored(
                STALE_EVENT,
                f"{rule.hubspot_property} changed in HubSpot at {known.at.isoformat()}, after this event "
                f"({event.occurred_at.isoformat()})",
                **base,
            )

        warp_value = customer.values[field_name]
        warp_text = comparable_or_none(rule.spec, warp_value)
        warp = Observed(warp_value, warp_changed_at(state.warp if state is not None else None, warp_text,
                                                    created_at=customer.created_at, updated_at=customer.updated_at,
                                                    watched_since=rule.watched_since))
        hubspot = Observed(hubspot_value, event.occurred_at)
        agreed = state.agreed if state else None
        decision = decide(rule, None if agreed is None else Observed(agreed.value, agreed.at), warp, hubspot)
        details = self._details(event)
        result = {**base, "action": decision.action.value, "reason": decision.reason.value}

        if decision.action is Action.WRITE_TO_HUBSPOT:
            # HubSpot moved a value WARP owns (drift), or WARP's change is the newer one: WARP's value goes
            # back out through the outbox, like any WARP change, and its echo will be matched in the ledger.
            enqueue_fields(conn, customer.id, [field_name], reason=_queue_reason(decision))
            self._record_state(conn, customer.id, field_name, hubspot=hubspot_part)
            self._log(conn, self._entry(rule, decision, customer, Outcome.APPLIED,
                                        old_value=hubspot_text if hubspot_text is not None else hubspot_value,
                                        details={**details, "queued": True}))
            log.info("customer %s: HubSpot's change of %s is reverted (%s); WARP's value queued",
                     customer.id, rule.hubspot_property, decision.reason.value)
            return _processed(**result, queued=True)

        # Every other decision is carried out on WARP by the one applier (core.warp_apply), as the drain's and
        # the nightly's are.
        (applied,) = apply_decisions(conn, [FieldDecision(
            customer_id=customer.id, rule=rule, decision=decision, warp=warp, hubspot=hubspot, warp_text=warp_text,
            hubspot_text=hubspot_text, read_at=None, agreed=None if agreed is None else agreed.value,
            ban=customer.ban, details=details,
        )], by=Applier(Trigger.WEBHOOK, run_id=self.run_id))
        if applied.conflict is not None:
            return _processed(**result, conflict_id=applied.conflict.id)
        if applied.outcome in (Outcome.APPLIED, Outcome.IN_SYNC):
            return _processed(**result)
        if applied.outcome is Outcome.FAILED:  # the database refused the value: the event fails (and is retried)
            raise _EventFailed(APPLY_FAILED, f"{applied.code}: {applied.message}")
        if decision.action is Action.SKIP_INVALID:
            # The winning value cannot be written; a person fixes it (the audit row says what).
            error = decision.error
            detail = f"{decision.reason.value} ({error.code}): {error}" if error else decision.reason.value
            return _ignored(INVALID_VALUE, detail, **result, error_code=error.code if error else None)
        return _ignored(applied.code or decision.reason.value, applied.message or "not applied", **result)

    def _entry(self, rule: FieldRule, decision: Decision, customer: _Customer, outcome: Outcome,
               **extra: Any) -> SyncLogEntry:
        return SyncLogEntry.for_decision(rule, decision, trigger=Trigger.WEBHOOK, outcome=outcome,
                                         customer_id=customer.id, ban=customer.ban, run_id=self.run_id, **extra)

    def _record_state(self, conn: sa.Connection, customer_id: UUID, field_name: str, *,
                      agreed: StateValue | None = None, warp: StateValue | None = None,
                      hubspot: StateValue | None = None) -> None:
        if agreed is None and warp is None and hubspot is None:
            return
        spec = self.rules[field_name].spec if field_name in self.rules else None
        record_field_state(conn, [FieldStateUpdate(customer_id, field_name, agreed=agreed, warp=warp, hubspot=hubspot,
                                                   spec=spec)], closed_by=DETECTED_BY)

    # company.creation
    def creation(self, event: ClaimedEvent, leases: _LeaseBook) -> EventOutcome:
        with self.engine.connect() as conn:
            linked = conn.execute(sa.select(customers.c.id).where(linked_to_companies([event.object_id]))).first()
        if linked is not None:
            with self.engine.begin() as conn:
                return self.finish(conn, event, _ignored(
                    ALREADY_LINKED, f"company {event.object_id} is already linked to customer {linked.id}",
                    customer_id=str(linked.id)))
        if self.hubspot is None:
            raise _EventFailed(HUBSPOT_NOT_CONFIGURED, "a company.creation event needs HubSpot to read the company")
        try:
            # No transaction is open across the HTTP call; the event's lease keeps the company ours.
            company = self.hubspot.get_company(event.object_id, properties=["warp_ban"])
        except NotFound:
            with self.engine.begin() as conn:
                return self.finish(conn, event, _ignored(
                    COMPANY_NOT_FOUND, f"company {event.object_id} no longer exists in HubSpot"))
        ban = (company.properties.get("warp_ban") or "").strip()
        with self.engine.begin() as conn:
            if not ban:
                return self.finish(conn, event, _ignored(
                    UNKNOWN_COMPANY, f"company {event.object_id} has no warp_ban: not a WARP customer"))
            # Re-checked under the row locks: another writer may have linked it since.
            holder_row = conn.execute(_select_customers(linked_to_companies([event.object_id]), self.rules)).first()
            if holder_row is not None:
                return self.finish(conn, event, _ignored(
                    ALREADY_LINKED, f"company {event.object_id} is already linked to customer {holder_row.id}",
                    customer_id=str(holder_row.id)))
            row = conn.execute(_select_customers(customers.c.ban == ban, self.rules)).first()
            if row is None:
                return self.finish(conn, event, _ignored(
                    UNKNOWN_COMPANY, f"company {event.object_id}'s warp_ban {ban} is not a WARP customer's"))
            customer = _customer(row)
            if customer.company_id is not None:
                return self.finish(conn, event, _ignored(
                    CUSTOMER_LINKED_ELSEWHERE,
                    f"customer {customer.id} ({ban}) is linked to company {customer.company_id}",
                    customer_id=str(customer.id)))
            leases.hold([customer.id])
            set_link(conn, customer.id, company_id=event.object_id, status=LinkStatus.LINKED)
            # Writes recorded under the BAN before HubSpot gave the id belong to this company now.
            bind_company(conn, ban, event.object_id)
            self._log_link(conn, event, customer.id, customer.ban, "LINK_COMPANY", old=customer.link_status,
                           new=LinkStatus.LINKED)
            return self.finish(conn, event, _processed(action="LINK_COMPANY", customer_id=str(customer.id)))

    # company.deletion
    def deletion(self, event: ClaimedEvent, leases: _LeaseBook) -> EventOutcome:
        with self.engine.begin() as conn:
            row = conn.execute(_select_customers(linked_to_companies([event.object_id]), self.rules)).first()
            if row is None:
                return self.finish(conn, event, _ignored(
                    UNKNOWN_COMPANY, f"no WARP customer is linked to company {event.object_id}"))
            customer = _customer(row)
            leases.hold([customer.id])
            changed = customer.link_status != LinkStatus.DELETED
            if changed:
                # The customer stays: a person decides what a company deleted in HubSpot means for WARP.
                set_link(conn, customer.id, status=LinkStatus.DELETED)
                self._log_link(conn, event, customer.id, customer.ban, "LINK_DELETED", old=customer.link_status,
                               new=LinkStatus.DELETED)
            return self.finish(conn, event, _processed(
                action="LINK_DELETED", customer_id=str(customer.id), changed=changed))

    # company.merge
    def merge(self, event: ClaimedEvent, leases: _LeaseBook) -> EventOutcome:
        survivor = event.new_object_id or event.primary_object_id or event.object_id
        merged = [*event.merged_object_ids, event.primary_object_id or survivor]
        with self.engine.begin() as conn:
            followed = follow_merge(conn, survivor, merged, hold=leases.hold)
            base = {"survivor": followed.survivor, "merged": followed.merged}
            if followed.action == "NO_CUSTOMER":
                return self.finish(conn, event, _ignored(
                    UNKNOWN_COMPANY, f"no WARP customer is linked to companies "
                    f"{', '.join([survivor, *followed.merged])}", **base))
            for change in followed.changes:
                details = ({"survivor": survivor, "merged": followed.merged, "customers": followed.customer_ids}
                           if change.action == "LINK_REVIEW" else None)
                self._log_link(conn, event, change.customer_id, change.ban, change.action, old=change.old,
                               new=change.new, details=details)
            if followed.action == "LINK_REVIEW":
                return self.finish(conn, event, _processed(action="LINK_REVIEW", customer_ids=followed.customer_ids,
                                                            **base))
            customer_id = followed.customer_ids[0] if followed.customer_ids else None
            return self.finish(conn, event, _processed(action=followed.action, customer_id=customer_id, **base))

    def _log_link(self, conn: sa.Connection, event: ClaimedEvent, customer_id: UUID, ban: str, action: str, *,
                  old: str | None, new: str | None, details: Mapping[str, Any] | None = None) -> None:
        self._log(conn, SyncLogEntry(
            trigger=Trigger.WEBHOOK,
            outcome=Outcome.APPLIED,
            customer_id=customer_id,
            ban=ban,
            old_value=old,
            new_value=new,
            action=action,
            reason=event.subscription_type,
            run_id=self.run_id,
            details=self._details(event, **(details or {})),
        ))



# Why the outbox row exists (hubspot_sync_queue.reasons).
DRIFT_REVERT = "drift_revert"
WARP_NEWER = "webhook_warp_wins"


def _queue_reason(decision: Decision) -> str:
    if decision.reason in (Reason.HUBSPOT_DRIFT_REVERTED, Reason.ONE_WAY_FROM_WARP):
        return DRIFT_REVERT
    return WARP_NEWER


# --- retention -----------------------------------------------------------------------------------------------------
# --- operations: status, retry ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedEvent:
    id: int
    subscription_type: str | None
    object_id: str | None
    attempts: int
    reason: str
    next_attempt_at: datetime | None  # None: no attempts left


@dataclass(frozen=True)
class EventsSnapshot:
    counts: dict[str, int]
    due: int
    failed: list[FailedEvent]  # the latest failed events, newest first


def events_status(engine: sa.Engine, *, limit: int = 20) -> EventsSnapshot:
    """Stored webhook events by status, how many a run could claim now, and the latest failed ones."""
    with engine.connect() as conn:
        counts = {status: 0 for status in ("pending", PROCESSED, IGNORED, FAILED)}
        counts.update({r.status: r.n for r in conn.execute(
            sa.text("SELECT status, count(*) AS n FROM hubspot_webhook_events GROUP BY status"))})
        due = count_due_events(conn)
        failed = [
            FailedEvent(r.id, r.subscription_type, r.object_id, r.attempts, r.reason, r.next_attempt_at)
            for r in conn.execute(
                sa.text("SELECT id, subscription_type, object_id, attempts, reason, next_attempt_at "
                        "FROM hubspot_webhook_events WHERE status = 'failed' "
                        "ORDER BY processed_at DESC NULLS LAST, id DESC LIMIT :limit"),
                {"limit": limit},
            )
        ]
    return EventsSnapshot(counts, due, failed)


def retry_failed_events(engine: sa.Engine, *, event_ids: Iterable[int] | None = None) -> int:
    """Failed events back to pending with fresh attempts (their cause is fixed: a token, a mapping); how many.
    The next run applies them in occurredAt order with the company's other events; stale ones are dropped."""
    sql = ("UPDATE hubspot_webhook_events SET status = 'pending', attempts = 0, reason = NULL, error = NULL, "
           "next_attempt_at = NULL, processed_at = NULL, lease_token = NULL, lease_expires_at = NULL "
           "WHERE status = 'failed'")
    params: dict[str, Any] = {}
    if event_ids is not None:
        sql += " AND id = ANY(CAST(:ids AS bigint[]))"
        params["ids"] = [int(i) for i in event_ids]
    with engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount


@dataclass(frozen=True)
class PurgeResult:
    finished: int  # processed and ignored events deleted
    failed: int  # failed events without attempts left, deleted


def purge_webhook_events(
    engine: sa.Engine, *, settings: InboundSettings | None = None, batch_size: int = 10_000
) -> PurgeResult:
    """Delete processed and ignored events received more than `retention` ago (at least three days, so a
    redelivery within HubSpot's day of retries still finds its dedupe key), and failed events without attempts
    left after `failed_retention`. Deletes in batches, each its own short transaction."""
    settings = settings or InboundSettings()
    finished = _purge(engine, "status IN ('processed', 'ignored')", settings.retention, batch_size)
    failed = _purge(engine, "status = 'failed' AND next_attempt_at IS NULL", settings.failed_retention, batch_size)
    if finished or failed:
        log.info("webhook events purged: %d processed/ignored, %d failed", finished, failed)
    return PurgeResult(finished=finished, failed=failed)


def _purge(engine: sa.Engine, condition: str, age: timedelta, batch_size: int) -> int:
    if age < MINIMUM_RETENTION:
        raise ValueError("webhook events must be kept at least three days (HubSpot retries for a day)")
    statement = sa.text(f"""
        DELETE FROM hubspot_webhook_events WHERE id IN (
            SELECT id FROM hubspot_webhook_events
            WHERE received_at < now() - CAST(:age AS interval) AND {condition}
            LIMIT :batch)
    """)
    total = 0
    while True:
        with engine.begin() as conn:
            deleted = conn.execute(statement, {"age": age, "batch": batch_size}).rowcount
        total += deleted
        if deleted < batch_size:
            return total
