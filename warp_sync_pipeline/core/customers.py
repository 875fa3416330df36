"""WARP customers: validation, the synchronous create (DESIGN.md flow 1) and the queued update (flow 2).

Create, all or nothing: the customer row is inserted under a savepoint inside one transaction, the HubSpot
company is created while the transaction waits, and the transaction commits only once the company is linked.
- The BAN is drawn once per attempt and checked free in WARP (the savepoint insert; a collision draws again)
  before any HubSpot call. The create is a plain create: HubSpot's unique `warp_ban` refuses a BAN it already
  holds, and then the attempt draws a fresh BAN, re-inserts the row under it and creates again (bounded).
- After a call whose outcome is unknown (a timeout, a dropped connection) no BAN is drawn: the company is read
  by idProperty=warp_ban and taken only if HubSpot created it at or after the attempt began.
- The ledger entries of the create are committed before each call on a connection of their own, keyed by the
  BAN, voided when the call definitely failed and bound to the company id once HubSpot answers.
- Any failure rolls the customer back; when HubSpot had made the company, that company (and only that one)
  is archived by its id. The failed attempt is audited on a connection of its own.
- A COMMIT that raises (the connection lost while committing) is an unknown outcome: PostgreSQL is asked what
  became of the transaction (pg_xact_status of its id) before anything is compensated. Committed: the answer
  is 201. Aborted: the usual rollback and archive. Unknowable within the cleanup time: 503
  CREATE_OUTCOME_UNKNOWN, the company kept, and the Idempotency-Key's retry gives the outcome.
- With an Idempotency-Key, the BAN drawn is committed on the key before HubSpot is called. A retry that takes
  the key over (the first attempt failed, or died and its lock ran out) tries that BAN first and treats its
  company as its own unanswered create: adopted, or archived if the retry fails. One company per key.
- The whole HubSpot part runs under one deadline (`CreateSettings.time_budget_s`), at the synchronous priority
  of the shared request budget; cleanup after a failure has a few seconds of its own.

Update: the row is changed in one short transaction and the outbox trigger queues the changed fields; HubSpot is
never called (the drain in outbound.py sends them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from uuid import UUID, uuid4

import psycopg2.errors
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from warp_sync_pipeline.core.audit import Outcome, SyncLogEntry, Trigger, log_sync_many, name_writer
from warp_sync_pipeline.core.company_creates import initial_values
from warp_sync_pipeline.core.db import database_unreachable
from warp_sync_pipeline.core.errors import Failure, ServiceError
from warp_sync_pipeline.core.failures import refused_fields
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue, upsert_field_state
from warp_sync_pipeline.core.fields import Direction, FieldRules, load_rules
from warp_sync_pipeline.core.hubspot import (
    AuthFailed,
    BudgetExhausted,
    Company,
    HubSpotClient,
    HubSpotError,
    NotFound,
    OutcomeUnknown,
    Priority,
    PropertySchemaMismatch,
    RateLimited,
    RequestFailed,
    ServiceUnavailable,
    UniqueValueConflict,
)
from warp_sync_pipeline.core.hubspot.properties import BAN_PROPERTY, TEXT_VALUE_LIMIT
from warp_sync_pipeline.core.ledger import LedgerWrite, bind_company, record_writes, void_writes
from warp_sync_pipeline.core.links import link_created
from warp_sync_pipeline.core.normalize import (
    FIELD_SPECS,
    FieldType,
    InvalidFieldValue,
    amount_decimal,
    comparable,
    services_enabled,
    to_hubspot,
)
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings
from warp_sync_pipeline.core.sync_tables import customers

log = logging.getLogger("warp_sync.customers")


idempotency_keys = sa.table(
    "customer_create_idempotency_keys",
    sa.column("principal", sa.Text), sa.column("idempotency_key", sa.Text), sa.column("request_hash", sa.Text),
    sa.column("status", sa.Text), sa.column("attempt_token", sa.Uuid), sa.column("locked_until"),
    sa.column("customer_id", sa.Uuid), sa.column("response_status", sa.Integer), sa.column("response", JSONB),
    sa.column("attempt_ban", sa.Text), sa.column("attempt_started_at"), sa.column("created_at"),
    sa.column("updated_at"),
)

# The columns a caller may give, in the order a customer is shown.
WRITABLE_FIELDS = (
    "company_name", "status", "credit_limit", "current_balance", "services", "contact_email", "payment_terms",
)
# Columns only WARP sets, and why a caller cannot.
MANAGED_FIELDS = {
    "id": "is assigned by WARP and never changes",
    "ban": "is drawn by WARP at creation and never changes",
    "created_at": "is set by WARP at creation and never changes",
    "updated_at": "is maintained by WARP",
    "external_ids": "is maintained by warp-sync (the HubSpot company link)",
    "hubspot_link_status": "is maintained by warp-sync",
}


# --- validation ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class CustomerValidationError(ServiceError, ValueError):
    """The body names fields that are unknown, managed, owned by HubSpot, or hold invalid values (all listed)."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        self.problems = problems
        listed = "; ".join(f"{p.field}: {p.message}" for p in problems)
        super().__init__(Failure.INVALID, "VALIDATION_ERROR", f"Invalid customer: {listed}",
                         fields=[p.as_dict() for p in problems])


def _check_text(name: str, value: str) -> None:
    """Text that WARP could store but not keep as given, or HubSpot would refuse on every send, is refused here,
    before anything is stored or queued."""
    if "\x00" in value:
        raise InvalidFieldValue(name, "INVALID_TEXT", "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidFieldValue(name, "INVALID_TEXT", "is not valid Unicode (it holds an unpaired surrogate)") from None
    if len(value) > TEXT_VALUE_LIMIT:
        raise InvalidFieldValue(name, "VALUE_TOO_LONG", f"must be at most {TEXT_VALUE_LIMIT:,} characters "
                                "(HubSpot's limit for a text value)")


def _parse_field(name: str, value: object) -> object:
    """One field's value as WARP's column holds it; raises InvalidFieldValue."""
    spec = FIELD_SPECS[name]
    if isinstance(value, str):
        _check_text(name, value)
    if name == "services":
        if not isinstance(value, Mapping):
            raise InvalidFieldValue(name, "INVALID_SERVICES",
                                    'must be an object {"voice": bool, "messaging": bool, "data": bool}')
        services_enabled(spec, value)  # unknown keys, non-boolean flags
        missing = [s for s in spec.options if s not in value]
        if missing:
            raise InvalidFieldValue(name, "INVALID_SERVICES", f"needs all of voice, messaging, data (missing {', '.join(missing)})")
        return {s: bool(value[s]) for s in spec.options}
    if spec.type is FieldType.AMOUNT:
        if isinstance(value, float):
            value = Decimal(repr(value))
        if isinstance(value, bool) or not isinstance(value, str | int | Decimal | None):
            raise InvalidFieldValue(name, "WRONG_TYPE", "must be an amount (a number or a numeric string)")
        number = None if value is None else amount_decimal(spec, value)
        if number is None and not spec.nullable:
            raise InvalidFieldValue(name, "VALUE_REQUIRED", "a value is required")
        return number
    if value is not None and not isinstance(value, str):
        raise InvalidFieldValue(name, "WRONG_TYPE", "must be text")
    canonical = comparable(spec, value)  # raises VALUE_REQUIRED / INVALID_OPTION / INVALID_EMAIL ...
    if canonical == "":
        return None
    if spec.type is FieldType.EMAIL:
        return value.strip()  # type: ignore[union-attr]  # keep the case the caller typed
    return canonical


def validate_customer(body: object, rules: FieldRules, *, for_update: bool) -> dict[str, object]:
    """The column values of a create or update body; raises CustomerValidationError naming every bad field."""
    if not isinstance(body, Mapping):
        raise CustomerValidationError([FieldProblem("body", "INVALID_BODY", "must be a JSON object")])
    problems: list[FieldProblem] = []
    values: dict[str, object] = {}
    for name, value in body.items():
        name = str(name)
        if name in MANAGED_FIELDS:
            problems.append(FieldProblem(name, "READ_ONLY_FIELD", f"{name} {MANAGED_FIELDS[name]}"))
            continue
        if name not in WRITABLE_FIELDS:
            problems.append(FieldProblem(name, "UNKNOWN_FIELD", f"{name} is not a customer field"))
            continue
        rule = rules.get(name)
        if for_update and rule is not None and rule.direction is Direction.HUBSPOT_TO_WARP:
            problems.append(FieldProblem(
                name, "HUBSPOT_OWNED_FIELD",
                f"{name} flows only from HubSpot ({rule.hubspot_property}); change it in HubSpot",
            ))
            continue
        try:
            values[name] = _parse_field(name, value)
        except InvalidFieldValue as exc:
            problems.append(FieldProblem(name, exc.code, exc.message))
    if not for_update and "company_name" not in body:
        problems.append(FieldProblem("company_name", "VALUE_REQUIRED", "company_name is required"))
    if for_update and not body and not problems:
        problems.append(FieldProblem("body", "NO_FIELDS", "name at least one field to change"))
    if problems:
        raise CustomerValidationError(problems)
    return values


def customer_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A customer as the API shows it: amounts as two-decimal strings (no float rounding), times ISO-8601."""

    def amount(value: Decimal | None) -> str | None:
        return None if value is None else format(Decimal(value).quantize(Decimal("0.01")), "f")

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": str(row["id"]),
        "ban": row["ban"],
        "company_name": row["company_name"],
        "status": row["status"],
        "credit_limit": amount(row["credit_limit"]),
        "current_balance": amount(row["current_balance"]),
        "payment_terms": row["payment_terms"],
        "services": dict(row["services"]),
        "contact_email": row["contact_email"],
        "external_ids": dict(row["external_ids"]),
        "hubspot_link_status": row["hubspot_link_status"],
        "created_at": moment(row["created_at"]),
        "updated_at": moment(row["updated_at"]),
    }


class CustomerNotFound(ServiceError, LookupError):
    def __init__(self, customer_id: object) -> None:
        super().__init__(Failure.NOT_FOUND, "CUSTOMER_NOT_FOUND", f"No customer {customer_id}")


def _customer_uuid(customer_id: UUID | str) -> UUID:
    try:
        return UUID(str(customer_id))
    except ValueError:
        raise CustomerNotFound(customer_id) from None


def get_customer(engine: sa.Engine, customer_id: UUID | str) -> dict[str, Any]:
    """A customer with its outbound sync state (pending fields, dead or parked rows)."""
    cid = _customer_uuid(customer_id)
    with engine.connect() as conn:
        row = conn.execute(sa.select(customers).where(customers.c.id == cid)).mappings().first()
        if row is None:
            raise CustomerNotFound(customer_id)
        queue = conn.execute(
            sa.text(
                "SELECT status, fields, attempts, next_attempt_at, last_error_code, last_error "
                "FROM hubspot_sync_queue WHERE customer_id = :id AND status IN ('pending', 'claimed', 'dead', 'parked') "
                "ORDER BY id"
            ),
            {"id": cid},
        ).mappings().all()
    return {
        "customer": customer_json(row),
        "hubspot_sync": {
            "link_status": row["hubspot_link_status"],
            "hubspot_company_id": row["external_ids"].get("hubspot_company_id"),
            "queue": [
                {
                    "status": q["status"],
                    "fields": list(q["fields"]),
                    "attempts": q["attempts"],
                    "next_attempt_at": q["next_attempt_at"].isoformat(),
                    "last_error_code": q["last_error_code"],
                    "last_error": q["last_error"],
                }
                for q in queue
            ],
        },
    }


# --- update (queued) -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdatedCustomer:
    customer: dict[str, Any]
    queued_fields: list[str]

    def body(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "hubspot_sync": {"queued": bool(self.queued_fields), "fields": self.queued_fields},
        }


def update_customer(
    engine: sa.Engine, customer_id: UUID | str, body: object, *, actor: str | None = None
) -> UpdatedCustomer:
    """Change a customer in one short transaction; the outbox trigger queues what changed. No HubSpot call."""
    cid = _customer_uuid(customer_id)
    with engine.begin() as conn:
        values = validate_customer(body, load_rules(conn), for_update=True)
        name_writer(conn, actor=actor)
        row = conn.execute(
            sa.update(customers).where(customers.c.id == cid).values(**values).returning(*customers.c)
        ).mappings().first()
        if row is None:
            raise CustomerNotFound(customer_id)
        queued = conn.execute(
            sa.text("SELECT fields FROM hubspot_sync_queue WHERE customer_id = :id AND status = 'pending'"),
            {"id": cid},
        ).scalar_one_or_none()
    return UpdatedCustomer(customer_json(row), list(queued or []))


# --- create (synchronous) ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateSettings:
    # The HubSpot part of a create, retries and budget waits included: a few seconds below the web
    # server's request timeout (gunicorn's --timeout, 30 s by default), leaving room for the cleanup.
    time_budget_s: float = DEFAULTS.create_time_budget_seconds
    # Archiving a company this attempt made, after a failure; and, after a COMMIT that raised, asking
    # PostgreSQL what became of the transaction.
    cleanup_s: float = DEFAULTS.create_cleanup_seconds
    # BANs drawn when the one drawn is taken in WARP (no HubSpot call is made for those).
    max_warp_ban_draws: int = 10
    # Creates refused because HubSpot already holds the BAN, before giving up.
    max_hubspot_ban_conflicts: int = 3
    # How long the insert may wait on another transaction's uncommitted row with the same BAN.
    lock_timeout_ms: int = 2000
    # HubSpot's clock against ours when telling whether a company was made by this attempt.
    clock_skew_s: float = 2.0
    idempotency_retention: timedelta = timedelta(hours=DEFAULTS.idempotency_retention_hours)
    # Added to the longest an attempt can take (its HubSpot budget, the commit check and the cleanup) for how
    # long its key stays locked: a retry takes the key over only once the attempt must have ended.
    idempotency_lock_margin_s: float = DEFAULTS.idempotency_lock_margin_seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CreateSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> CreateSettings:
        return cls(
            time_budget_s=settings.create_time_budget_seconds,
            cleanup_s=settings.create_cleanup_seconds,
            idempotency_retention=timedelta(hours=settings.idempotency_retention_hours),
            idempotency_lock_margin_s=settings.idempotency_lock_margin_seconds,
        )

    @property
    def idempotency_lock(self) -> timedelta:
        """How long a key stays 'in_progress' before a retry may take it over (its attempt died)."""
        return timedelta(seconds=self.time_budget_s + 2 * self.cleanup_s + self.idempotency_lock_margin_s)


class CreateFailed(ServiceError):
    """The create rolled back. `kind`/`code`/`message` and `extra` (failed_fields, ...) form the answer."""


class IdempotencyRejected(ServiceError):
    """CONFLICT (the key's first request is still running) or CONTRADICTS_EARLIER (the key was used with another
    body)."""


@dataclass(frozen=True)
class StoredAnswer:
    """The answer of a key's first successful create, returned again for a retry."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class IdempotencyClaim:
    principal: str
    key: str
    token: UUID
    # The BAN an earlier attempt with this key drew, and when it began: it may have made a company before it
    # died (or before its answer was lost), which this attempt adopts or archives.
    prior_ban: str | None = None
    prior_started_at: datetime | None = None


@dataclass(frozen=True)
class CreatedCustomer:
    customer: dict[str, Any]
    hubspot_company_id: str
    fields_synced: list[str]

    def body(self) -> dict[str, Any]:
        return {
            "customer": self.customer,
            "hubspot_sync": {
                "success": True,
                "hubspot_company_id": self.hubspot_company_id,
                "fields_synced": self.fields_synced,
                "message": "Customer synced successfully",
            },
        }


def draw_ban() -> str:
    return f"ZT-{secrets.randbelow(10**9):09d}"


def request_hash(body: object) -> str:
    """SHA-256 of the body in a canonical JSON form (key order and spacing do not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def claim_idempotency_key(
    engine: sa.Engine,
    principal: str,
    key: str,
    body_hash: str,
    *,
    lock_for: timedelta,
    retention: timedelta,
) -> IdempotencyClaim | StoredAnswer:
    """Commit the key before the create starts. Returns the claim, or the first answer for a retry;
    raises IdempotencyRejected for a key in use (409) or one used with another body (422)."""
    if not key or len(key) > 255 or not key.isprintable():
        raise IdempotencyRejected(Failure.INVALID, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1 to 255 printable characters.")
    token = uuid4()
    with engine.begin() as conn:
        # Retention, a little at a time (every create pays for a few rows at most).
        conn.execute(
            sa.text(
                "DELETE FROM customer_create_idempotency_keys WHERE ctid IN ("
                " SELECT ctid FROM customer_create_idempotency_keys"
                " WHERE created_at < clock_timestamp() - CAST(:age AS interval) LIMIT 100)"
            ),
            {"age": retention},
        )
        taken = conn.execute(
            sa.text(
                """
                INSERT INTO customer_create_idempotency_keys AS k
                    (principal, idempotency_key, request_hash, attempt_token, locked_until)
                VALUES (:principal, :key, :hash, CAST(:token AS uuid), clock_timestamp() + CAST(:lock AS interval))
                ON CONFLICT (principal, idempotency_key) DO UPDATE SET
                    status = 'in_progress', attempt_token = EXCLUDED.attempt_token,
                    locked_until = EXCLUDED.locked_until, updated_at = now()
                -- A failed first attempt created nothing; one whose lock ran out died with its process.
                WHERE k.request_hash = EXCLUDED.request_hash
                  AND (k.status = 'failed' OR (k.status = 'in_progress' AND k.locked_until < clock_timestamp()))
                -- attempt_ban is left as the earlier attempt wrote it: this attempt starts from it.
                RETURNING attempt_ban, attempt_started_at
                """
            ),
            {"principal": principal, "key": key, "hash": body_hash, "token": str(token), "lock": lock_for},
        ).first()
        if taken is not None:
            return IdempotencyClaim(principal, key, token, taken.attempt_ban, taken.attempt_started_at)
        row = conn.execute(
            sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.status,
                      idempotency_keys.c.response_status, idempotency_keys.c.response)
            .where(idempotency_keys.c.principal == principal, idempotency_keys.c.idempotency_key == key)
        ).one()
    if row.request_hash != body_hash:
        raise IdempotencyRejected(
            Failure.CONTRADICTS_EARLIER, "IDEMPOTENCY_KEY_REUSED", "This Idempotency-Key was used with a different request body."
        )
    if row.status == "succeeded":
        return StoredAnswer(row.response_status, row.response)
    raise IdempotencyRejected(
        Failure.CONFLICT, "IDEMPOTENCY_KEY_IN_USE", "A request with this Idempotency-Key is still being processed; retry later."
    )


def _complete_idempotency(conn: sa.Connection, claim: IdempotencyClaim, customer_id: UUID, body: dict[str, Any]) -> None:
    done = conn.execute(
        sa.update(idempotency_keys)
        .where(idempotency_keys.c.principal == claim.principal, idempotency_keys.c.idempotency_key == claim.key,
               idempotency_keys.c.attempt_token == claim.token)
        .values(status="succeeded", customer_id=customer_id, response_status=201,
                response=body, updated_at=sa.func.now())
    ).rowcount
    if done != 1:
        raise RuntimeError("the idempotency key was taken over by another attempt")


def _record_attempt_ban(engine: sa.Engine, claim: IdempotencyClaim, ban: str, started_at: datetime) -> None:
    """Commit the BAN this attempt is about to create a company with, before HubSpot is called."""
    with engine.begin() as conn:
        held = conn.execute(
            sa.update(idempotency_keys)
            .where(idempotency_keys.c.principal == claim.principal, idempotency_keys.c.idempotency_key == claim.key,
                   idempotency_keys.c.attempt_token == claim.token, idempotency_keys.c.status == "in_progress")
            .values(attempt_ban=ban, attempt_started_at=started_at, updated_at=sa.func.now())
        ).rowcount
    if held != 1:
        # Another attempt took the key over (this one outlived its lock): it owns the create now.
        raise CreateFailed(Failure.CONFLICT, "IDEMPOTENCY_KEY_IN_USE",
                           "A later request with this Idempotency-Key took it over; retry later for its answer.")


def release_idempotency_key(engine: sa.Engine, claim: IdempotencyClaim) -> None:
    """The attempt failed, or its commit's outcome is unknown: a retry with the same key may run again.

    Safe when the commit did happen after all: that transaction marked the key 'succeeded', which this update
    (only of an 'in_progress' key) leaves alone; it waits for that transaction when it is still committing."""
    with engine.begin() as conn:
        conn.execute(
            sa.update(idempotency_keys)
            .where(idempotency_keys.c.principal == claim.principal, idempotency_keys.c.idempotency_key == claim.key,
                   idempotency_keys.c.attempt_token == claim.token, idempotency_keys.c.status == "in_progress")
            .values(status="failed", locked_until=sa.func.clock_timestamp(), updated_at=sa.func.now())
        )


class PropertiesGate:
    """ensure_properties() once per process: at start, and again before the first write if it failed then."""

    def __init__(self) -> None:
        self._ready = False
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._ready

    def ensure(self, client: HubSpotClient) -> None:
        if self._ready:
            return
        with self._lock:
            if not self._ready:
                client.ensure_properties()
                self._ready = True


def _roll_back(tx: sa.RootTransaction) -> None:
    if not tx.is_active:
        return
    try:
        tx.rollback()
    except sa.exc.DBAPIError as exc:
        # A lost connection: the server aborts the transaction itself, and the failure goes on to be answered.
        if database_unreachable(exc) is None:
            raise


def _is_ban_collision(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    if isinstance(orig, psycopg2.errors.UniqueViolation):
        return getattr(orig.diag, "constraint_name", None) == "customers_ban_key"
    # Another attempt holds an uncommitted row with this BAN: treat it as taken rather than wait on it.
    return isinstance(orig, psycopg2.errors.LockNotAvailable)


@dataclass
class _CreateAttempt:
    engine: sa.Engine
    side: sa.Engine  # short transactions of their own: ledger, audit, idempotency
    hubspot: HubSpotClient
    rules: FieldRules
    values: dict[str, object]
    actor: str | None
    settings: CreateSettings
    ban_source: Callable[[], str]
    idempotency: IdempotencyClaim | None
    gate: PropertiesGate | None
    customer_id: UUID = field(default_factory=uuid4)
    ban: str | None = None
    started_at: datetime | None = None
    ledger_ids: list[int] = field(default_factory=list)
    company: Company | None = None  # the company this attempt made (known to be ours)
    unanswered: bool = False  # a create for the current BAN went unanswered (or an earlier attempt's did)
    row: dict[str, Any] = field(default_factory=dict)
    savepoint: Any = None
    xid: str | None = None  # the create transaction's id, to ask PostgreSQL its fate after a failed COMMIT

    # The values sent: every mapped field the customer has a value for, payment_terms included (its initial
    # value in HubSpot, which owns it afterwards).
    def _column_values(self) -> dict[str, object]:
        return {name: self.row.get(name) for name in self.rules}

    def _properties(self) -> dict[str, str]:
        return {v.rule.hubspot_property: v.text for v in initial_values(self.rules, self.row)}

    def run(self) -> CreatedCustomer:
        client = self.hubspot.with_priority(Priority.SYNC).with_deadline(self.settings.time_budget_s)
        with self.engine.connect() as conn:
            self.started_at = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
            conn.rollback()
            tx = conn.begin()
            try:
                conn.execute(sa.text("SELECT set_config('lock_timeout', :ms, true)"),
                             {"ms": f"{self.settings.lock_timeout_ms}ms"})
                name_writer(conn, actor=self.actor)
                if self.gate is not None:
                    self.gate.ensure(client)
                self._insert(conn)
                company = self._create_company(conn, client)
                bind_company(self.side, self.ban, company.id)  # type: ignore[arg-type]
                created = self._link(conn, company)
            except Exception as exc:
                _roll_back(tx)
                raise self._failed(exc) from exc
            except BaseException:
                _roll_back(tx)
                raise
            try:
                tx.commit()
            except Exception as exc:
                # The COMMIT raised: the transaction may have committed all the same (the connection was lost
                # after the server received it). Compensating now could archive the company of a stored
                # customer, so ask PostgreSQL first.
                self._settle_commit(exc)
        log.info("customer %s (%s) created with HubSpot company %s", self.customer_id, self.ban, company.id)
        return created

    def _settle_commit(self, exc: Exception) -> None:
        """Return when the failed COMMIT committed after all; otherwise raise the answer to give."""
        fate = self._transaction_fate()
        if fate == "committed":
            log.warning("the COMMIT of customer %s (%s) raised %s, but PostgreSQL committed it",
                        self.customer_id, self.ban, type(exc).__name__)
            return
        if fate == "aborted":
            raise self._failed(exc) from exc
        raise self._outcome_unknown(exc) from exc

    def _transaction_fate(self) -> str | None:
        """'committed' or 'aborted' as PostgreSQL tells (pg_xact_status exists for exactly this), or None when
        it cannot be asked within the cleanup time. 'in progress' means the server is still finishing the
        COMMIT it received: ask again."""
        deadline = time.monotonic() + self.settings.cleanup_s
        while True:
            try:
                with self.side.connect() as conn:
                    fate = conn.execute(sa.text("SELECT pg_xact_status(CAST(:xid AS xid8))"),
                                        {"xid": self.xid}).scalar_one()
                if fate in ("committed", "aborted"):
                    return fate
            except sa.exc.DBAPIError as db_exc:
                if database_unreachable(db_exc) is None:
                    raise
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.1)

    def _outcome_unknown(self, exc: Exception) -> CreateFailed:
        """Neither compensate nor claim success: the company is kept (it may be a stored customer's)."""
        log.error("the COMMIT of customer %s (%s) raised %s and PostgreSQL could not be asked what became of it",
                  self.customer_id, self.ban, type(exc).__name__)
        failure = CreateFailed(
            Failure.UNAVAILABLE, "CREATE_OUTCOME_UNKNOWN",
            "WARP's database connection was lost while the customer was being committed, and whether it was "
            "stored is not known yet. Retry with the same Idempotency-Key, or read the customer, to learn the "
            "outcome; nothing is created twice.",
            customer_id=str(self.customer_id), ban=self.ban,
            hubspot_company_id=self.company.id if self.company else None,
        )
        self._audit_failure(failure, exc)
        self._release_key()
        return failure

    # --- the row ---------------------------------------------------------------------------------------------

    def _insert(self, conn: sa.Connection) -> None:
        """Insert the customer under a savepoint with a BAN that is free in WARP; record the create's ledger."""
        prior = self._prior_ban()
        for draw in range(self.settings.max_warp_ban_draws):
            ban = prior if draw == 0 and prior is not None and self.ban is None else self.ban_source()
            savepoint = conn.begin_nested()
            try:
                insert = sa.insert(customers).values(id=self.customer_id, ban=ban, **self.values)
                row = conn.execute(insert.returning(*customers.c)).mappings().one()
            except sa.exc.DBAPIError as exc:
                savepoint.rollback()
                if _is_ban_collision(exc):
                    continue
                raise
            self.savepoint, self.ban, self.row = savepoint, ban, dict(row)
            # An earlier attempt with this key may have made a company with this BAN: treat it as our own
            # unanswered create, so the company is adopted (or archived if this attempt fails).
            self.unanswered = self._prior_ban() == ban
            if self.idempotency is not None:
                assert self.started_at is not None
                _record_attempt_ban(self.side, self.idempotency, ban, self.started_at)
            writes = [LedgerWrite(v.rule, v.value, ban=ban) for v in initial_values(self.rules, self.row)]
            self.ledger_ids = record_writes(self.side, writes)
            return
        raise CreateFailed(Failure.UNAVAILABLE, "BAN_UNAVAILABLE", "No free BAN could be drawn; retry the request.")

    def _prior_ban(self) -> str | None:
        return self.idempotency.prior_ban if self.idempotency is not None else None

    def _redraw(self, conn: sa.Connection, reason: str) -> None:
        void_writes(self.side, self.ledger_ids, reason)
        self.savepoint.rollback()
        self._insert(conn)

    # --- HubSpot ---------------------------------------------------------------------------------------------

    def _own_company(self, client: HubSpotClient) -> tuple[str, Company | None]:
        """('absent', None), ('ours', company) or ('other', company) for the current BAN."""
        try:
            company = client.get_company(str(self.ban), id_property=BAN_PROPERTY)
        except NotFound:
            return "absent", None
        since = self.started_at
        if self.idempotency is not None and self.ban == self.idempotency.prior_ban:
            since = self.idempotency.prior_started_at or since
        assert since is not None
        if company.created_at is None or company.created_at >= since - timedelta(seconds=self.settings.clock_skew_s):
            return "ours", company
        return "other", company

    def _holder_of_ban(self, client: HubSpotClient, conflict: UniqueValueConflict) -> str | None:
        """The company holding the current BAN: as HubSpot's answer named it, else read by warp_ban."""
        try:
            return client.unique_holder(conflict, property_name=BAN_PROPERTY, value=str(self.ban))
        except HubSpotError:
            return None  # only for the record; the fresh BAN is drawn all the same

    def _create_company(self, conn: sa.Connection, client: HubSpotClient) -> Company:
        conflicts = 0
        for _ in range(20):  # bounded; the deadline ends it sooner
            try:
                self.company = client.create_company(self._properties())
                return self.company
            except UniqueValueConflict as exc:
                if exc.property_name not in (None, BAN_PROPERTY):
                    raise
                if self.unanswered:
                    # Our own unanswered create may be what holds the BAN now.
                    state, company = self._own_company(client)
                    if state == "ours" and company is not None:
                        self.company = company
                        return company
                # Not this attempt's own company: the BAN is taken, draw a fresh one (adopting a holder is only
                # for linking existing data). The holder is named for the record.
                conflicts += 1
                holder = self._holder_of_ban(client, exc)
                reason = f"HubSpot already holds this BAN (company {holder or 'unknown'})"
                if conflicts > self.settings.max_hubspot_ban_conflicts:
                    void_writes(self.side, self.ledger_ids, reason)
                    raise
                log.warning("HubSpot already holds BAN %s (company %s); drawing another", self.ban, holder)
                self._redraw(conn, reason)
            except OutcomeUnknown:
                self.unanswered = True
                state, company = self._own_company(client)
                if state == "ours" and company is not None:
                    self.company = company
                    return company
                if state == "other":
                    conflicts += 1
                    reason = f"HubSpot already holds this BAN (company {company.id if company else '?'})"
                    if conflicts > self.settings.max_hubspot_ban_conflicts:
                        void_writes(self.side, self.ledger_ids, reason)
                        raise
                    self._redraw(conn, reason)
                # 'absent': the create was not applied; send it again with the same BAN.
            except RequestFailed as exc:
                void_writes(self.side, self.ledger_ids, f"create failed: {type(exc).__name__}")
                raise
        raise CreateFailed(Failure.HUBSPOT_FAILED, "HUBSPOT_SYNC_FAILED", "Customer creation rolled back: HubSpot kept refusing the create.")

    # --- linking ---------------------------------------------------------------------------------------------

    def _link(self, conn: sa.Connection, company: Company) -> CreatedCustomer:
        row = link_created(conn, self.customer_id, company.id)
        now, self.xid = conn.execute(sa.text("SELECT clock_timestamp(), CAST(pg_current_xact_id() AS text)")).one()
        hubspot_at = company.created_at or now
        updates: list[FieldStateUpdate] = []
        entries: list[SyncLogEntry] = []
        synced: list[str] = []
        for name, value in self._column_values().items():
            rule = self.rules[name]
            text = comparable(rule.spec, value)
            updates.append(FieldStateUpdate(
                self.customer_id, name, agreed=StateValue(text, now), warp=StateValue(text, now),
                hubspot=StateValue(text, hubspot_at),
            ))
            sent = to_hubspot(rule.spec, value) != ""
            if sent:
                synced.append(name)
            entries.append(SyncLogEntry(
                trigger=Trigger.CREATE, outcome=Outcome.APPLIED if sent else Outcome.IN_SYNC,
                customer_id=self.customer_id, ban=self.ban, warp_field=name, hubspot_property=rule.hubspot_property,
                direction=Direction.WARP_TO_HUBSPOT if sent else None, new_value=text,
                action="WRITE_TO_HUBSPOT" if sent else "IN_SYNC", reason="CREATE" if sent else "EQUAL",
                actor=self.actor, details={"hubspot_company_id": company.id},
            ))
        upsert_field_state(conn, updates, values_are_comparable=True)
        log_sync_many(conn, entries)
        created = CreatedCustomer(customer_json(row), company.id, synced)
        if self.idempotency is not None:
            _complete_idempotency(conn, self.idempotency, self.customer_id, created.body())
        return created

    # --- failure ---------------------------------------------------------------------------------------------

    def _archive_own(self) -> tuple[str | None, str | None]:
        """Archive the company this attempt made, if any: (archived id, problem)."""
        cleanup = self.hubspot.with_priority(Priority.SYNC).with_deadline(self.settings.cleanup_s)
        company = self.company
        try:
            if company is None and self.unanswered and self.ban is not None:
                state, found = self._own_company(cleanup)
                company = found if state == "ours" else None
            if company is None:
                return None, None
            cleanup.archive_company(company.id)
        except HubSpotError as exc:
            target = company.id if company is not None else f"with BAN {self.ban}"
            log.error("could not archive HubSpot company %s after a rolled-back create: %s", target, exc)
            return None, f"company {target} could not be archived ({type(exc).__name__}); the nightly run reports it"
        try:
            void_writes(self.side, self.ledger_ids, "create rolled back; company archived")
        except sa.exc.SQLAlchemyError as db_exc:
            # The entries lapse by age; the archive (the point of this cleanup) is done.
            log.error("could not void the ledger entries of %s: %s", self.ban, type(db_exc).__name__)
        log.warning("archived HubSpot company %s: the create of %s rolled back", company.id, self.ban)
        return company.id, None

    def _failed(self, exc: Exception) -> CreateFailed:
        archived, orphan = self._archive_own()
        failure = self._describe(exc)
        if archived:
            failure.extra["hubspot_company_archived"] = archived
        if orphan:
            failure.extra["orphan"] = orphan
        self._audit_failure(failure, exc)
        self._release_key()
        return failure

    def _release_key(self) -> None:
        if self.idempotency is None:
            return
        try:
            release_idempotency_key(self.side, self.idempotency)
        except sa.exc.SQLAlchemyError as db_exc:
            # The key's lock runs out instead; the retry then adopts or archives what this attempt made.
            log.error("could not release idempotency key: %s", type(db_exc).__name__)

    def _describe(self, exc: Exception) -> CreateFailed:
        if isinstance(exc, CreateFailed):
            return exc
        prefix = "Customer creation rolled back due to HubSpot sync failure: Failed to create HubSpot company."
        if isinstance(exc, PropertySchemaMismatch):
            return CreateFailed(Failure.HUBSPOT_FAILED, "HUBSPOT_SYNC_FAILED",
                                f"{prefix} HubSpot's properties do not match warp-sync's schema: {exc}",
                                failed_fields=[{"field": "hubspot_properties", "reason": str(exc)}])
        if isinstance(exc, HubSpotError):
            failed = self._failed_fields(exc)
            listed = ", ".join(f"{f['field']}: {f['reason']}" for f in failed)
            kind = (Failure.REJECTED_BY_HUBSPOT if self._rejected_values(exc) and not isinstance(exc, UniqueValueConflict)
                    else Failure.HUBSPOT_FAILED)
            if isinstance(exc, AuthFailed):
                log.error("HubSpot refused warp-sync's credentials (%s): check HUBSPOT_ACCESS_TOKEN", exc.status)
            return CreateFailed(kind, "HUBSPOT_SYNC_FAILED", f"{prefix} Failed fields: [{listed}]",
                                failed_fields=failed)
        cause = database_unreachable(exc)
        if cause is not None:
            log.error("create of %s rolled back: PostgreSQL could not be reached (%s)", self.ban, cause)
            return CreateFailed(Failure.UNAVAILABLE, "DATABASE_UNAVAILABLE",
                                "Customer creation rolled back: WARP's database could not be reached. Retry later.")
        log.error("create of %s rolled back after a WARP-side failure: %s", self.ban, type(exc).__name__)
        return CreateFailed(Failure.INTERNAL, "CUSTOMER_CREATE_FAILED",
                            "Customer creation rolled back: the customer could not be stored in WARP.")

    @staticmethod
    def _rejected_values(exc: HubSpotError) -> bool:
        """HubSpot refused what we sent (a 4xx about the values), rather than being unreachable or busy."""
        if isinstance(exc, AuthFailed | RateLimited | BudgetExhausted | ServiceUnavailable | OutcomeUnknown):
            return False
        return isinstance(exc, RequestFailed) and exc.status is not None and 400 <= exc.status < 500

    def _failed_fields(self, exc: HubSpotError) -> list[dict[str, str]]:
        if exc.property_errors:
            return [{"field": field, "reason": reason} for field, reason in refused_fields(exc, self.rules).items()]
        if isinstance(exc, UniqueValueConflict):
            return [{"field": "ban", "reason": "HubSpot already holds every BAN drawn"}]
        return [{"field": "hubspot_api", "reason": _api_reason(exc)}]

    def _audit_failure(self, failure: CreateFailed, exc: Exception) -> None:
        details = {"kind": failure.kind.value, "attempted_customer_id": str(self.customer_id),
                   "failed_fields": failure.extra.get("failed_fields", []),
                   "hubspot_company_archived": failure.extra.get("hubspot_company_archived"),
                   "orphan": failure.extra.get("orphan"), "exception": type(exc).__name__}
        entries = [SyncLogEntry(
            trigger=Trigger.CREATE, outcome=Outcome.ROLLED_BACK, ban=self.ban, action="CREATE",
            reason=failure.code, error_code=failure.code, error=failure.message, actor=self.actor, details=details,
        )]
        for failed in failure.extra.get("failed_fields", []):
            rule = self.rules.get(failed["field"])
            if rule is not None:
                entries.append(SyncLogEntry(
                    trigger=Trigger.CREATE, outcome=Outcome.FAILED, ban=self.ban, warp_field=rule.warp_field,
                    hubspot_property=rule.hubspot_property, direction=Direction.WARP_TO_HUBSPOT,
                    new_value=self.row.get(rule.warp_field), action="WRITE_TO_HUBSPOT", reason="CREATE",
                    error_code=failure.code, error=failed["reason"], actor=self.actor,
                ))
        try:
            with self.side.begin() as conn:
                log_sync_many(conn, entries)
        except sa.exc.SQLAlchemyError as db_exc:
            log.error("could not audit the rolled-back create of %s: %s", self.ban, type(db_exc).__name__)


def _api_reason(exc: HubSpotError) -> str:
    if isinstance(exc, RateLimited):
        return "Too Many Requests (429): HubSpot kept answering 429 until the time budget ran out"
    if isinstance(exc, AuthFailed):
        return f"Authentication failed ({exc.status or 401}): HubSpot refused warp-sync's credentials"
    if isinstance(exc, BudgetExhausted):
        return "No answer within the time budget (HubSpot request budget or time exhausted)"
    if isinstance(exc, OutcomeUnknown) and exc.status is None:
        return "Timed out: HubSpot did not answer within the time budget"
    if exc.status is not None:
        try:
            phrase = HTTPStatus(exc.status).phrase
        except ValueError:
            phrase = "Error"
        return f"{phrase} ({exc.status})"
    return "HubSpot could not be reached"


def create_customer(
    engine: sa.Engine,
    hubspot: HubSpotClient,
    values: Mapping[str, object],
    *,
    actor: str | None = None,
    settings: CreateSettings | None = None,
    side_engine: sa.Engine | None = None,
    idempotency: IdempotencyClaim | None = None,
    properties_gate: PropertiesGate | None = None,
    ban_source: Callable[[], str] = draw_ban,
    rules: FieldRules | None = None,
) -> CreatedCustomer:
    """Create a customer and its HubSpot company, all or nothing (see the module docstring).

    `values` come from validate_customer(for_update=False). Raises CreateFailed (the answer to give) when the
    create rolled back. `side_engine` (default: `engine`) runs the short side transactions (ledger, audit,
    idempotency) on connections beside the create's own: a create holds two at once, so a caller running many
    creates on one pool bounds them to half its connections (webhook_receiver.resources does).
    `rules`: the field rules the values were validated with (read from the database when not given).
    """
    if rules is None:
        with engine.connect() as conn:
            rules = load_rules(conn)
    attempt = _CreateAttempt(
        engine=engine, side=side_engine or engine, hubspot=hubspot, rules=rules, values=dict(values), actor=actor,
        settings=settings or CreateSettings(), ban_source=ban_source, idempotency=idempotency, gate=properties_gate,
    )
    return attempt.run()
