"""The review queue's service: list MANUAL conflicts, resolve one, and show a customer's sync history.

A resolution is optimistic: it applies only while the conflict is still open at the version the person
saw, and only while both sides still hold the values the conflict shows; otherwise `ConflictChanged`
carries the current row so the person can see what changed. It runs under the customer's lease (one
interactive writer per customer) and writes in this order:

1. HubSpot, at once, through the client, with its write-ledger entry committed first (so the echo of our
   own write is never taken for a person's edit); skipped when HubSpot already holds the chosen value;
2. one transaction: WARP's column (with the no-echo marker, so the outbound trigger does not queue it
   back), the field state (agreed by both sides now), the conflict closed with who and how (compare-and-set
   on its version), and the decision in the audit log.

A HubSpot failure leaves everything as it was (the conflict stays open) and reports the failure. When the
WARP transaction fails after HubSpot took the value, the audit log says so, the conflict stays open (now
showing HubSpot's new value) and a retry finishes the job.

Also here: the review pages' session credential (`login_credential` / `session_principal`), since the
pages keep a signed cookie rather than the bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, cast
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync, name_writer
from warp_sync_pipeline.core.auth import BOOTSTRAP_NAME, Principal, Role, authenticate, credentials
from warp_sync_pipeline.core.conflicts import (
    RESOLVED,
    SIDES_AGREE,
    SUPERSEDED,
    close_open_conflict,
    open_or_update_conflict,
    review_text,
)
from warp_sync_pipeline.core.decision import Action, Decision, Observed, Reason
from warp_sync_pipeline.core.field_state import (
    FieldState,
    FieldStateUpdate,
    StateValue,
    read_field_state,
    upsert_field_state,
)
from warp_sync_pipeline.core.fields import Direction, FieldRule, FieldRuleError, load_rules
from warp_sync_pipeline.core.hubspot import (
    Company,
    HubSpotClient,
    HubSpotError,
    NotFound,
    Priority,
)
from warp_sync_pipeline.core.leases import (
    CustomerBusy,
    CustomerLease,
    acquire_customer_waiting,
    release_customer,
)
from warp_sync_pipeline.core.ledger import definitely_not_applied, update_company_ledger_first
from warp_sync_pipeline.core.links import LinkStatus
from warp_sync_pipeline.core.normalize import (
    InvalidFieldValue,
    comparable,
    from_hubspot,
    to_hubspot,
)
from warp_sync_pipeline.core.sync_tables import conflicts as conflicts_table
from warp_sync_pipeline.core.sync_tables import customer_column, customer_company_id, sync_log
from warp_sync_pipeline.core.sync_tables import customers as _customers
from warp_sync_pipeline.core.warp_apply import Applier, FieldDecision, apply_decisions

# The interactive HubSpot part of one resolution (a read and a write) must end well inside a web
# server's request timeout.
DEFAULT_TIME_BUDGET_S = 10.0
# How long a resolution waits for the customer's lease (another resolver, a webhook apply, the drain).
DEFAULT_LEASE_WAIT_S = 5.0
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 500
HISTORY_LIMIT_DEFAULT = 200
HISTORY_LIMIT_MAX = 1000
BAN_PATTERN = re.compile(r"ZT-[0-9]{9}", re.IGNORECASE)


class Choice(StrEnum):
    WARP = "warp"
    HUBSPOT = "hubspot"
    VALUE = "value"


# --- errors: each with a stable code; the adapters map codes to HTTP statuses -------------------------------


class ReviewError(Exception):
    code = "REVIEW_ERROR"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConflictNotFound(ReviewError):
    code = "CONFLICT_NOT_FOUND"


class InvalidResolution(ReviewError):
    """The request itself is malformed (unknown choice, a value without choice 'value', no version)."""

    code = "INVALID_RESOLUTION"


class InvalidResolutionValue(ReviewError):
    """The chosen value is not one both sides can hold (validated like a PATCH)."""

    code = "INVALID_VALUE"

    def __init__(self, error: InvalidFieldValue, *, source: str) -> None:
        super().__init__(f"{source}: {error.message}", field=error.field, reason=error.code)
        self.field = error.field
        self.reason = error.code


class ResolutionRefused(ReviewError):
    """The conflict cannot be resolved here as things stand (the customer is not linked, the field is not
    mapped any more, the customer is busy); `code` says which."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


class ConflictChanged(ReviewError):
    """The conflict is closed, or moved past the version the person saw; `current` is the row as it is."""

    code = "CONFLICT_CHANGED"

    def __init__(self, message: str, current: ConflictView | None) -> None:
        super().__init__(message)
        self.current = current


class ResolutionFailed(ReviewError):
    """A write failed. `hubspot_applied`: False (HubSpot definitely did not take it), None (unknown), or
    True (HubSpot took it and WARP's transaction failed). The conflict is left open in every case."""

    def __init__(self, code: str, message: str, *, hubspot_applied: bool | None, **details: Any) -> None:
        super().__init__(message, hubspot_applied=hubspot_applied, **details)
        self.code = code
        self.hubspot_applied = hubspot_applied


HUBSPOT_SYNC_FAILED = "HUBSPOT_SYNC_FAILED"
WARP_WRITE_FAILED = "WARP_WRITE_FAILED"
MANUAL_RESOLUTION = "MANUAL_RESOLUTION"  # the audit reason of a person's choice


# --- what the pages and the API show ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConflictView:
    id: int
    customer_id: UUID
    ban: str | None
    company_name: str | None
    warp_field: str
    hubspot_property: str
    status: str
    reason: str
    agreed_value: str | None
    warp_value: str | None
    warp_changed_at: datetime | None
    hubspot_value: str | None
    hubspot_changed_at: datetime | None
    detected_by: str
    detection_count: int
    dagster_run_id: str | None
    version: int
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    resolution: str | None
    resolved_value: str | None
    hubspot_company_id: str | None = None  # the customer's company, for a link to its HubSpot record

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def as_dict(self) -> dict[str, Any]:
        return {key: _json_value(getattr(self, key)) for key in self.__dataclass_fields__}


@dataclass(frozen=True)
class ConflictPage:
    conflicts: list[ConflictView]
    total: int  # open conflicts matching the filters
    next_after: int | None  # pass as `after` for the next page


@dataclass(frozen=True)
class Resolution:
    conflict_id: int
    customer_id: UUID
    warp_field: str
    choice: Choice
    value: str  # the comparable value both sides hold now ("" = empty)
    hubspot_written: bool
    warp_written: bool
    resolved_by: str
    resolved_at: datetime
    version: int

    def as_dict(self) -> dict[str, Any]:
        return {key: _json_value(getattr(self, key)) for key in self.__dataclass_fields__}


@dataclass(frozen=True)
class CustomerSummary:
    id: UUID
    ban: str
    company_name: str
    status: str
    hubspot_company_id: str | None
    hubspot_link_status: str

    def as_dict(self) -> dict[str, Any]:
        return {key: _json_value(getattr(self, key)) for key in self.__dataclass_fields__}


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    logged_at: datetime
    warp_field: str | None
    hubspot_property: str | None
    direction: str | None
    trigger: str
    old_value: str | None
    new_value: str | None
    action: str | None
    reason: str | None
    outcome: str
    error_code: str | None
    error: str | None
    actor: str | None
    dagster_run_id: str | None
    details: dict[str, Any] | None = field(default=None)

    def as_dict(self) -> dict[str, Any]:
        return {key: _json_value(getattr(self, key)) for key in self.__dataclass_fields__}


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Decimal):
        return str(value)
    return value


# --- reading -------------------------------------------------------------------------------------------

_CONFLICT_COLUMNS = [c for c in conflicts_table.c]


def _conflict_select() -> sa.Select:
    return sa.select(*_CONFLICT_COLUMNS, _customers.c.ban, _customers.c.company_name,
                     customer_company_id.label("hubspot_company_id")).select_from(
        conflicts_table.outerjoin(_customers, _customers.c.id == conflicts_table.c.customer_id)
    )


def _view(row: sa.RowMapping) -> ConflictView:
    return ConflictView(**{name: row[name] for name in ConflictView.__dataclass_fields__})


def get_conflict(bind: sa.Engine | sa.Connection, conflict_id: int) -> ConflictView | None:
    statement = _conflict_select().where(conflicts_table.c.id == conflict_id)
    if isinstance(bind, sa.Engine):
        with bind.connect() as conn:
            row = conn.execute(statement).mappings().first()
    else:
        row = bind.execute(statement).mappings().first()
    return None if row is None else _view(row)


def _customer_condition(customer: str) -> sa.ColumnElement[bool]:
    """A customer filter: its id, its BAN, or part of its name."""
    text = customer.strip()
    if "\x00" in text:
        # PostgreSQL text never holds NUL (and refuses it as a parameter): such a filter matches no customer.
        return sa.false()
    try:
        return conflicts_table.c.customer_id == UUID(text)
    except ValueError:
        pass
    if BAN_PATTERN.fullmatch(text):
        return _customers.c.ban == text.upper()
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return _customers.c.company_name.ilike(f"%{escaped}%", escape="\\")


def list_open_conflicts(
    engine: sa.Engine,
    field: str | None = None,
    customer: str | None = None,
    *,
    limit: int = LIST_LIMIT_DEFAULT,
    after: int | None = None,
) -> ConflictPage:
    """Open conflicts, oldest first, filtered by WARP field and customer (id, BAN, or part of the name)."""
    if not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidResolution(f"limit must be between 1 and {LIST_LIMIT_MAX}")
    conditions: list[sa.ColumnElement[bool]] = [conflicts_table.c.status == "open"]
    if field:
        conditions.append(conflicts_table.c.warp_field == field)
    if customer and customer.strip():
        conditions.append(_customer_condition(customer))
    statement = _conflict_select().where(*conditions)
    count = (
        sa.select(sa.func.count())
        .select_from(conflicts_table.outerjoin(_customers, _customers.c.id == conflicts_table.c.customer_id))
        .where(*conditions)
    )
    if after is not None:
        statement = statement.where(conflicts_table.c.id > after)
    statement = statement.order_by(conflicts_table.c.id).limit(limit + 1)
    with engine.connect() as conn:
        rows = conn.execute(statement).mappings().all()
        total = conn.execute(count).scalar_one()
    views = [_view(row) for row in rows[:limit]]
    next_after = views[-1].id if len(rows) > limit else None
    return ConflictPage(views, total, next_after)


def customer_summary(engine: sa.Engine, customer_id: UUID | str) -> CustomerSummary | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                _customers.c.id, _customers.c.ban, _customers.c.company_name, _customers.c.status,
                customer_company_id.label("company_id"),
                _customers.c.hubspot_link_status,
            ).where(_customers.c.id == UUID(str(customer_id)))
        ).first()
    if row is None:
        return None
    return CustomerSummary(row.id, row.ban, row.company_name, row.status, row.company_id, row.hubspot_link_status)


def customer_history(
    engine: sa.Engine,
    customer_id: UUID | str,
    *,
    limit: int = HISTORY_LIMIT_DEFAULT,
    before: int | None = None,
) -> list[HistoryEntry]:
    """The customer's audit rows, newest first (also rows logged only by its BAN, e.g. a failed create)."""
    if not 1 <= limit <= HISTORY_LIMIT_MAX:
        raise InvalidResolution(f"limit must be between 1 and {HISTORY_LIMIT_MAX}")
    customer = UUID(str(customer_id))
    ban = sa.select(_customers.c.ban).where(_customers.c.id == customer).scalar_subquery()
    log = sync_log.c
    statement = sa.select(*(log[name] for name in HistoryEntry.__dataclass_fields__)).where(
        sa.or_(log.customer_id == customer, sa.and_(log.customer_id.is_(None), log.ban == ban))
    )
    if before is not None:
        statement = statement.where(log.id < before)
    statement = statement.order_by(log.logged_at.desc(), log.id.desc()).limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(statement).mappings().all()
    return [HistoryEntry(**row) for row in rows]


def customer_conflicts(engine: sa.Engine, customer_id: UUID | str, *, limit: int = 50) -> list[ConflictView]:
    """The customer's conflicts, open first, then the most recently closed."""
    statement = (
        _conflict_select()
        .where(conflicts_table.c.customer_id == UUID(str(customer_id)))
        .order_by((conflicts_table.c.status == "open").desc(), conflicts_table.c.updated_at.desc())
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_view(row) for row in conn.execute(statement).mappings()]


# --- resolving -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    canonical: str  # comparable text both sides will hold
    warp_value: object  # what WARP's column takes
    hubspot_text: str  # what HubSpot is sent


def _target(rule: FieldRule, choice: Choice, value: object, warp_raw: object, hubspot_raw: str | None) -> _Target:
    """The chosen value in each side's form, validated like a PATCH (and like HubSpot would take it)."""
    if choice is Choice.WARP:
        source, raw = "WARP's value", warp_raw
    elif choice is Choice.HUBSPOT:
        source, raw = "HubSpot's value", hubspot_raw
    else:
        source, raw = "the corrected value", value
    try:
        if choice is Choice.HUBSPOT:
            warp_value = from_hubspot(rule.spec, hubspot_raw)
            hubspot_text = to_hubspot(rule.spec, warp_value)
        else:
            hubspot_text = to_hubspot(rule.spec, raw)
            warp_value = from_hubspot(rule.spec, hubspot_text) if choice is Choice.VALUE else raw
        canonical = comparable(rule.spec, hubspot_text)
    except InvalidFieldValue as exc:
        raise InvalidResolutionValue(exc, source=source) from None
    return _Target(canonical, warp_value, hubspot_text)


def _check_current(conflict: ConflictView | None, conflict_id: int, expected_version: int) -> ConflictView:
    if conflict is None:
        raise ConflictNotFound(f"No conflict {conflict_id}.")
    if not conflict.is_open:
        who = f" by {conflict.closed_by}" if conflict.closed_by else ""
        when = f" at {conflict.closed_at.isoformat()}" if conflict.closed_at else ""
        raise ConflictChanged(f"Conflict {conflict_id} was already {conflict.status}{who}{when}.", conflict)
    if conflict.version != expected_version:
        raise ConflictChanged(
            f"Conflict {conflict_id} changed since it was shown (version {expected_version} -> "
            f"{conflict.version}): review its current values.",
            conflict,
        )
    return conflict


def _take_lease(engine: sa.Engine, customer_id: UUID, holder: str, ttl: timedelta, wait_s: float) -> CustomerLease:
    try:
        return acquire_customer_waiting(engine, customer_id, holder, ttl, wait_s=wait_s)
    except CustomerBusy as busy:
        raise ResolutionRefused(
            CustomerBusy.code,
            f"Another writer is working on this customer ({busy.holder or 'unknown'}); try again shortly.",
        ) from None


def _read_customer(engine: sa.Engine, customer_id: UUID, rule: FieldRule) -> sa.Row:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(
                customer_column(rule.warp_field).label("value"),
                customer_company_id.label("company_id"),
                _customers.c.hubspot_link_status,
            ).where(_customers.c.id == customer_id)
        ).first()
    if row is None:  # the conflict row cascades with its customer, so this is a race with a delete
        raise ConflictNotFound(f"Customer {customer_id} no longer exists.")
    return row


def resolve_conflict(
    engine: sa.Engine,
    client: HubSpotClient,
    conflict_id: int,
    choice: Choice | str,
    value: object = None,
    *,
    expected_version: int,
    actor: str,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    lease_wait_s: float = DEFAULT_LEASE_WAIT_S,
) -> Resolution:
    """Settle one conflict with WARP's value, HubSpot's value, or a corrected value; see the module doc.

    Raises ConflictNotFound, ConflictChanged, InvalidResolution, InvalidResolutionValue, ResolutionRefused,
    ResolutionFailed; in each case nothing was half-written and the conflict is still open (or closed by
    someone else).
    """
    try:
        choice = Choice(str(choice).strip().lower())
    except ValueError:
        raise InvalidResolution("choice must be one of: warp, hubspot, value") from None
    if choice is not Choice.VALUE and value is not None:
        raise InvalidResolution("a value is given only with choice 'value'")
    if isinstance(expected_version, bool) or not isinstance(expected_version, int):
        raise InvalidResolution("expected_version (the conflict version you saw) must be a whole number")
    if not actor or not actor.strip():
        raise InvalidResolution("a resolution needs the resolver's name")

    conflict = _check_current(get_conflict(engine, conflict_id), conflict_id, expected_version)
    customer_id = conflict.customer_id
    holder = f"resolution:{actor}:{uuid.uuid4().hex}"
    lease = _take_lease(engine, customer_id, holder, timedelta(seconds=time_budget_s + 30), lease_wait_s)
    try:
        # Under the lease nobody else applies values to this customer; re-check what the person saw.
        conflict = _check_current(get_conflict(engine, conflict_id), conflict_id, expected_version)
        return _resolve_under_lease(engine, client, conflict, choice, value, actor, time_budget_s)
    finally:
        if lease.taken:
            release_customer(engine, customer_id, lease.token)


# The steps of one resolution under the lease: read what each side holds now, decide (a `_Plan`), write
# HubSpot, then one WARP transaction; when that transaction fails, `_settle_failure` picks the outcome.


class _ConflictMoved(Exception):
    """Inside the final transaction: the conflict is no longer open at the version checked."""


class _WarpRefused(Exception):
    """Inside the final transaction: the database refused the chosen value (a rule of WARP's own)."""


class _WarpMoved(Exception):
    """Inside the final transaction: WARP's column no longer holds the value checked."""

    def __init__(self, value: object) -> None:
        super().__init__("WARP's value moved")
        self.value = value


# What the final WARP transaction can fail with; each has its own compensation in `_settle_failure`.
_WarpFailure = _ConflictMoved | _WarpMoved | _WarpRefused | sa.exc.SQLAlchemyError


@dataclass(frozen=True)
class _Plan:
    """What a resolution read and decided: the input of both writes and of the compensation."""

    conflict: ConflictView
    rule: FieldRule
    choice: Choice
    target: _Target
    company_id: str  # the linked HubSpot company
    warp_seen: str | None  # WARP's value as review text (checked equal to the conflict's)
    hubspot_seen: str | None  # HubSpot's value as review text (checked equal to the conflict's)
    hubspot_raw: str | None  # HubSpot's property as read: the conflict's refresh when HubSpot is not written
    warp_at: datetime | None
    hubspot_at: datetime | None  # after a HubSpot write, when HubSpot says it took the value
    write_warp: bool
    write_hubspot: bool


def _resolve_under_lease(
    engine: sa.Engine,
    client: HubSpotClient,
    conflict: ConflictView,
    choice: Choice,
    value: object,
    actor: str,
    time_budget_s: float,
) -> Resolution:
    rule, prior = _mapped_rule(engine, conflict)
    customer = _linked_customer(engine, conflict.customer_id, rule)
    company_id = str(customer.company_id)
    hubspot = client.with_priority(Priority.SYNC).with_deadline(time_budget_s)
    company = _read_company(hubspot, company_id, rule.hubspot_property)
    warp_now, hubspot_now = _sides_now(conflict, rule, prior, customer.value, company)
    if (review_text(rule, warp_now.value), review_text(rule, hubspot_now.value)) != (
        conflict.warp_value, conflict.hubspot_value
    ):
        raise _refresh_conflict(engine, conflict, rule, actor, warp_now, hubspot_now)

    # Validated only now: a side that moved is shown to the person before their choice is judged.
    plan = _decide(conflict, rule, choice, value, company_id, warp_now, hubspot_now)
    if plan.write_hubspot:
        plan = replace(plan, hubspot_at=_write_hubspot(engine, hubspot, plan, actor) or plan.hubspot_at)
    try:
        return _apply_in_warp(engine, plan, actor)
    except (_ConflictMoved, _WarpMoved, _WarpRefused, sa.exc.SQLAlchemyError) as failure:
        raise _settle_failure(engine, plan, actor, failure) from None


def _mapped_rule(engine: sa.Engine, conflict: ConflictView) -> tuple[FieldRule, FieldState | None]:
    """The rule the conflict's field follows now and the field's stored state; refused when the field is no
    longer mapped as the conflict says, or is the BAN."""
    with engine.connect() as conn:
        try:
            rules = load_rules(conn)
        except FieldRuleError as exc:
            raise ResolutionRefused(exc.code, f"The field rules cannot be followed: {exc}") from None
        state = read_field_state(conn, [conflict.customer_id], [conflict.warp_field])
    rule = rules.get(conflict.warp_field)
    if rule is None or rule.hubspot_property != conflict.hubspot_property:
        raise ResolutionRefused(
            "FIELD_NOT_MAPPED",
            f"{conflict.warp_field} is no longer mapped to {conflict.hubspot_property}; the next detection "
            "will supersede this conflict.",
        )
    if rule.warp_field == "ban":
        raise ResolutionRefused("IMMUTABLE_FIELD", "ban never changes after a customer is created.")
    return rule, state.get((conflict.customer_id, rule.warp_field))


def _linked_customer(engine: sa.Engine, customer_id: UUID, rule: FieldRule) -> sa.Row:
    """The customer's value and HubSpot company; refused unless the customer is linked."""
    customer = _read_customer(engine, customer_id, rule)
    if customer.hubspot_link_status != LinkStatus.LINKED or not customer.company_id:
        raise ResolutionRefused(
            "CUSTOMER_NOT_LINKED",
            f"The customer's HubSpot link is {customer.hubspot_link_status!r}; settle the link first.",
        )
    return customer


def _read_company(hubspot: HubSpotClient, company_id: str, prop: str) -> Company:
    """The company's property with its history (for when it changed); nothing has been written yet."""
    try:
        return hubspot.get_company(company_id, properties=[prop], properties_with_history=[prop])
    except NotFound:
        raise ResolutionRefused(
            "COMPANY_NOT_FOUND", f"HubSpot has no company {company_id}; the link needs review first."
        ) from None
    except HubSpotError as exc:
        raise ResolutionFailed(
            HUBSPOT_SYNC_FAILED, f"HubSpot could not be read: {exc.message}", hubspot_applied=False,
            hubspot_status=exc.status,
        ) from None


def _sides_now(
    conflict: ConflictView, rule: FieldRule, prior: FieldState | None, warp_raw: object, company: Company
) -> tuple[Observed, Observed]:
    """Each side's value as read, with when it changed (the field state, HubSpot's history, else the
    conflict's own times)."""
    warp_at = prior.warp.at if prior and prior.warp else conflict.warp_changed_at
    hubspot_version = company.last_change(rule.hubspot_property)
    hubspot_at = hubspot_version.timestamp if hubspot_version else conflict.hubspot_changed_at
    return Observed(warp_raw, warp_at), Observed(company.get(rule.hubspot_property), hubspot_at)


def _decide(
    conflict: ConflictView,
    rule: FieldRule,
    choice: Choice,
    value: object,
    company_id: str,
    warp: Observed,
    hubspot: Observed,
) -> _Plan:
    """The chosen value in each side's form, and which sides must take it."""
    hubspot_raw = cast("str | None", hubspot.value)  # as `Company.get` gave it
    target = _target(rule, choice, value, warp.value, hubspot_raw)
    warp_seen, hubspot_seen = review_text(rule, warp.value), review_text(rule, hubspot_raw)
    return _Plan(
        conflict=conflict, rule=rule, choice=choice, target=target, company_id=company_id,
        warp_seen=warp_seen, hubspot_seen=hubspot_seen, hubspot_raw=hubspot_raw,
        warp_at=warp.changed_at, hubspot_at=hubspot.changed_at,
        write_warp=target.canonical != warp_seen, write_hubspot=target.canonical != hubspot_seen,
    )


def _refresh_conflict(
    engine: sa.Engine, conflict: ConflictView, rule: FieldRule, actor: str, warp: Observed, hubspot: Observed
) -> ConflictChanged:
    """A side moved since the conflict was recorded: store the values as they are now (the version moves)
    and return the error that shows them to the person."""
    warp_text, hubspot_text = review_text(rule, warp.value), review_text(rule, hubspot.value)
    with engine.begin() as conn:
        name_writer(conn, actor=actor)
        if warp_text == hubspot_text:
            # The sides agree by now: nothing is left to review.
            closed = close_open_conflict(
                conn, conflict.customer_id, rule.warp_field, status=SUPERSEDED, closed_by=actor,
                resolution=SIDES_AGREE, resolved_value=warp_text,
            )
            if closed is not None and warp_text is not None:
                moment = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
                upsert_field_state(conn, [FieldStateUpdate(
                    conflict.customer_id, rule.warp_field, agreed=StateValue(warp_text, moment),
                )], values_are_comparable=True)
            message = f"Both sides hold {warp_text!r} now; conflict {conflict.id} needs no resolution."
        else:
            open_or_update_conflict(
                conn, customer_id=conflict.customer_id, rule=rule, reason=conflict.reason,
                agreed=conflict.agreed_value, warp=warp, hubspot=hubspot, detected_by="resolution",
                run_id=conflict.dagster_run_id,
            )
            moved = [name for name, before, now in (
                ("WARP", conflict.warp_value, warp_text), ("HubSpot", conflict.hubspot_value, hubspot_text),
            ) if before != now]
            message = (f"{' and '.join(moved) or 'A value'} changed since conflict {conflict.id} was shown: "
                       "review its current values.")
    return ConflictChanged(message, get_conflict(engine, conflict.id))



def _write_hubspot(engine: sa.Engine, hubspot: HubSpotClient, plan: _Plan, actor: str) -> datetime | None:
    """Ledger entry first (committed), then the write; a failure is audited and leaves the conflict open."""
    conflict, rule, target = plan.conflict, plan.rule, plan.target
    try:
        company: Company = update_company_ledger_first(engine, hubspot, rule, plan.company_id, target.hubspot_text,
                                                       reason="resolution failed")
    except HubSpotError as exc:
        # Only a definite refusal proves HubSpot did not apply it (its entry was voided); else it may have.
        applied: bool | None = False if definitely_not_applied(exc) else None
        outcome_text = "was not applied" if applied is False else "may have been applied"
        with engine.begin() as conn:
            log_sync(conn, _entry(
                conflict, rule, Outcome.FAILED, actor, direction=Direction.WARP_TO_HUBSPOT,
                old_value=conflict.hubspot_value, new_value=target.canonical,
                error_code=HUBSPOT_SYNC_FAILED,
                error=f"HubSpot write {outcome_text}: {exc}; the conflict stays open",
                details={"hubspot_status": exc.status, "hubspot_applied": applied},
            ))
        raise ResolutionFailed(
            HUBSPOT_SYNC_FAILED,
            f"HubSpot did not confirm the write ({exc.message}); WARP was not changed and the conflict "
            "stays open.",
            hubspot_applied=applied,
            hubspot_status=exc.status,
        ) from None
    return company.updated_at


def _entry(conflict: ConflictView, rule: FieldRule, outcome: Outcome, actor: str, **values: Any) -> SyncLogEntry:
    details = {"conflict_id": conflict.id, "conflict_version": conflict.version, **values.pop("details", {})}
    return SyncLogEntry(
        trigger=Trigger.RESOLUTION, outcome=outcome, customer_id=conflict.customer_id, ban=conflict.ban,
        warp_field=rule.warp_field, hubspot_property=rule.hubspot_property, actor=actor,
        reason=MANUAL_RESOLUTION, details=details, **values,
    )


def _apply_in_warp(engine: sa.Engine, plan: _Plan, actor: str) -> Resolution:
    """The conflict closed, then the choice carried out on WARP by the one applier (core.warp_apply: WARP's
    column, the field state, the audit row), and HubSpot's write audited: one transaction."""
    conflict, rule, choice, target = plan.conflict, plan.rule, plan.choice, plan.target
    with engine.begin() as conn:
        name_writer(conn, actor=actor)
        warp_holds = _lock_unchanged(conn, plan)
        # Closed first, as the person's resolution: the agreement the applier records then finds no open
        # conflict to supersede.
        closed = close_open_conflict(
            conn, conflict.customer_id, rule.warp_field, status=RESOLVED, closed_by=actor,
            resolution=choice.value, resolved_value=target.canonical, expected_version=conflict.version,
        )
        if closed != conflict.id:  # cannot happen under the row lock; refuse rather than close another
            raise _ConflictMoved()
        action = f"RESOLVE_{choice.name}"
        detail = {"conflict_id": conflict.id, "conflict_version": conflict.version, "choice": choice.value}
        (applied,) = apply_decisions(conn, [FieldDecision(
            customer_id=conflict.customer_id, rule=rule,
            decision=Decision(
                Action.WRITE_TO_WARP if plan.write_warp else Action.IN_SYNC, Reason.EQUAL, target.canonical
            ),
            warp=Observed(warp_holds, plan.warp_at), hubspot=Observed(target.hubspot_text, plan.hubspot_at),
            warp_text=plan.warp_seen, hubspot_text=target.canonical, read_at=None, agreed=conflict.agreed_value,
            ban=conflict.ban, details=detail, audit_as=(action, MANUAL_RESOLUTION),
            audited=plan.write_warp or not plan.write_hubspot,
        )], by=Applier(Trigger.RESOLUTION, actor=actor))
        if applied.outcome not in (Outcome.APPLIED, Outcome.IN_SYNC):  # refused, or (never under the locks) moved
            raise _WarpRefused(applied.code)  # the code only: the database's message can quote values
        if plan.write_hubspot:
            log_sync(conn, _entry(conflict, rule, Outcome.APPLIED, actor, direction=Direction.WARP_TO_HUBSPOT,
                                  old_value=plan.hubspot_seen, new_value=target.canonical, action=action,
                                  details={"choice": choice.value}))
        moment: datetime = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        version = conn.execute(
            sa.select(conflicts_table.c.version).where(conflicts_table.c.id == conflict.id)
        ).scalar_one()
    return Resolution(
        conflict_id=conflict.id, customer_id=conflict.customer_id, warp_field=rule.warp_field, choice=choice,
        value=target.canonical, hubspot_written=plan.write_hubspot, warp_written=plan.write_warp,
        resolved_by=actor, resolved_at=moment, version=version,
    )


def _lock_unchanged(conn: sa.Connection, plan: _Plan) -> object:
    """Lock the conflict and the customer's row, check both still are as planned, and return WARP's value."""
    conflict, rule = plan.conflict, plan.rule
    current = conn.execute(
        sa.select(conflicts_table.c.status, conflicts_table.c.version)
        .where(conflicts_table.c.id == conflict.id)
        .with_for_update()
    ).first()
    if current is None or current.status != "open" or current.version != conflict.version:
        raise _ConflictMoved()
    holds = conn.execute(
        sa.select(customer_column(rule.warp_field)).where(_customers.c.id == conflict.customer_id).with_for_update()
    ).first()
    if holds is None:
        raise _ConflictMoved()
    if review_text(rule, holds[0]) != plan.warp_seen:
        raise _WarpMoved(holds[0])
    return holds[0]


def _settle_failure(engine: sa.Engine, plan: _Plan, actor: str, failure: _WarpFailure) -> ReviewError:
    """The outcome of a failed WARP transaction (nothing of it was kept): when HubSpot already took the value,
    audit that half-done write first; then report the conflict as it is now, or the failure."""
    conflict, rule, target = plan.conflict, plan.rule, plan.target
    if isinstance(failure, _ConflictMoved):
        changed = _changed_since(engine, conflict)  # read before the refresh below moves its version
        if plan.write_hubspot:
            _record_half_done(engine, plan, actor, "the conflict changed meanwhile")
        return changed
    if isinstance(failure, _WarpMoved):
        # A PATCH does not take the lease: WARP moved under us, and it is never overwritten.
        if plan.write_hubspot:
            _record_half_done(engine, plan, actor, "WARP's value changed meanwhile")
        hubspot_now = Observed(target.hubspot_text if plan.write_hubspot else plan.hubspot_raw, plan.hubspot_at)
        return _refresh_conflict(
            engine, get_conflict(engine, conflict.id) or conflict, rule, actor,
            Observed(failure.value, None), hubspot_now,
        )
    reason = failure if isinstance(failure, _WarpRefused) else failure.__class__.__name__
    detail = f"the WARP transaction failed ({reason})"
    if plan.write_hubspot:
        _record_half_done(engine, plan, actor, detail)
        return ResolutionFailed(
            WARP_WRITE_FAILED,
            f"HubSpot now holds {target.canonical!r} but {detail}; the conflict stays open, try again.",
            hubspot_applied=True,
        )
    return ResolutionFailed(WARP_WRITE_FAILED, f"{detail}; nothing was changed, try again.", hubspot_applied=False)


def _changed_since(engine: sa.Engine, conflict: ConflictView) -> ConflictChanged:
    current = get_conflict(engine, conflict.id)
    try:
        _check_current(current, conflict.id, conflict.version)
    except ConflictChanged as exc:
        return exc
    except ConflictNotFound as exc:
        return ConflictChanged(exc.message, None)
    return ConflictChanged(f"Conflict {conflict.id} changed while it was being resolved.", current)


def _record_half_done(engine: sa.Engine, plan: _Plan, actor: str, why: str) -> None:
    """HubSpot took the value but WARP did not: say so in the audit log; the conflict (still open, unless
    someone else closed it) shows HubSpot's new value, so a retry writes WARP only."""
    conflict, rule, target = plan.conflict, plan.rule, plan.target
    with engine.begin() as conn:
        name_writer(conn, actor=actor)
        log_sync(conn, _entry(
            conflict, rule, Outcome.FAILED, actor, direction=Direction.WARP_TO_HUBSPOT,
            old_value=conflict.hubspot_value, new_value=target.canonical, error_code=WARP_WRITE_FAILED,
            error=(f"HubSpot now holds {target.canonical!r}, but {why}: WARP was not written and the conflict "
                   "stays open for a retry"),
            details={"hubspot_applied": True},
        ))
        current = get_conflict(conn, conflict.id)
        if current is not None and current.is_open and current.hubspot_value != target.canonical:
            open_or_update_conflict(
                conn, customer_id=conflict.customer_id, rule=rule, reason=current.reason,
                agreed=current.agreed_value, warp=Observed(current.warp_value, current.warp_changed_at),
                hubspot=Observed(target.hubspot_text, plan.hubspot_at), detected_by="resolution",
                run_id=current.dagster_run_id,
            )


# --- the review pages' session credential -------------------------------------------------------------


@dataclass(frozen=True)
class SessionCredential:
    """What a page session keeps: who, and a reference that is re-checked on every request."""

    name: str
    roles: tuple[str, ...]
    ref: str  # "credential:<id>" or "bootstrap:<keyed fingerprint of WARP_API_TOKEN>"


def _fingerprint(token: str, key: bytes) -> str:
    # Keyed: the cookie is signed, not encrypted, and a bootstrap token may be a guessable word.
    return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


def login_credential(
    engine: sa.Engine, token: str, *, bootstrap_token: str, fingerprint_key: bytes
) -> SessionCredential | None:
    """The credential a pasted token names (None when it names none, or was revoked)."""
    token = token.strip()
    if not token:
        return None
    principal = authenticate(engine, token, bootstrap_token=bootstrap_token)
    if principal is None:
        return None
    roles = tuple(sorted(role.value for role in principal.roles))
    if principal.name == BOOTSTRAP_NAME and bootstrap_token and hmac.compare_digest(
        token.encode("utf-8"), bootstrap_token.encode("utf-8")
    ):
        return SessionCredential(BOOTSTRAP_NAME, roles, f"bootstrap:{_fingerprint(token, fingerprint_key)}")
    with engine.connect() as conn:
        credential_id = conn.execute(
            sa.select(credentials.c.id).where(
                credentials.c.token_hash == hashlib.sha256(token.encode("utf-8")).hexdigest(),
                credentials.c.revoked_at.is_(None),
            )
        ).scalar_one_or_none()
    if credential_id is None:  # revoked between the two statements
        return None
    return SessionCredential(principal.name, roles, f"credential:{credential_id}")


def session_principal(
    engine: sa.Engine, ref: str, *, bootstrap_token: str, fingerprint_key: bytes
) -> Principal | None:
    """The principal a session reference stands for, if its credential is still valid."""
    kind, _, value = ref.partition(":")
    if kind == "bootstrap":
        if bootstrap_token and hmac.compare_digest(value, _fingerprint(bootstrap_token, fingerprint_key)):
            return Principal(BOOTSTRAP_NAME, frozenset(Role))
        return None
    if kind != "credential" or not value.isdigit():
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(credentials.c.name, credentials.c.roles)
            .where(credentials.c.id == int(value), credentials.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    return Principal(row.name, frozenset(Role(r) for r in row.roles))


def mapped_fields(engine: sa.Engine) -> list[str]:
    """WARP fields the rules map (for the page's field filter)."""
    with engine.connect() as conn:
        return list(load_rules(conn))


def parse_version(raw: object) -> int:
    """A version as a form or JSON body carries it."""
    if isinstance(raw, bool):
        raise InvalidResolution("expected_version must be a whole number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw.strip())
    raise InvalidResolution("expected_version (the conflict version you saw) must be a whole number")


__all__ = [
    "Choice", "ConflictChanged", "ConflictNotFound", "ConflictPage", "ConflictView", "CustomerSummary",
    "HistoryEntry", "InvalidResolution", "InvalidResolutionValue", "Resolution", "ResolutionFailed",
    "ResolutionRefused", "ReviewError", "SessionCredential", "customer_conflicts", "customer_history",
    "customer_summary", "get_conflict", "list_open_conflicts", "login_credential", "mapped_fields",
    "parse_version", "resolve_conflict", "session_principal",
]
