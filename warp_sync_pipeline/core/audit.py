"""The audit trail (`hubspot_sync_log`): the one helper every flow uses to record a decision or a write.

Both helpers take the caller's Connection, so a log row commits (or rolls back) with the change it
describes; for a create that rolls back, log on a connection of its own after the rollback, by BAN.
Mapping-table changes are logged by a database trigger (trigger = 'mapping'); `name_writer()` lets that
trigger, and anything else reading the settings, know who is writing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.decision import Decision
from warp_sync_pipeline.core.fields import Direction, FieldRule
from warp_sync_pipeline.core.sync_tables import in_transaction, sync_log

ERROR_TEXT_LIMIT = 2000


class Trigger(StrEnum):
    CREATE = "create"
    QUEUE = "queue"
    WEBHOOK = "webhook"
    RECONCILIATION = "reconciliation"
    MANUAL = "manual"
    RESOLUTION = "resolution"
    MAPPING = "mapping"
    ONBOARDING = "onboarding"


class Outcome(StrEnum):
    APPLIED = "applied"
    IN_SYNC = "in_sync"
    CONFLICT = "conflict"
    SKIPPED = "skipped"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    DRY_RUN = "dry_run"


@dataclass(frozen=True, kw_only=True)
class SyncLogEntry:
    trigger: Trigger
    outcome: Outcome
    customer_id: UUID | str | None = None
    ban: str | None = None
    warp_field: str | None = None
    hubspot_property: str | None = None
    direction: Direction | None = None
    old_value: object = None
    new_value: object = None
    action: str | None = None
    reason: str | None = None
    error_code: str | None = None
    error: str | None = None
    actor: str | None = None  # who, for a person's action (a resolver's credential name)
    run_id: str | None = None  # the Dagster run id, where there is one
    details: Mapping[str, Any] | None = None

    @classmethod
    def for_decision(
        cls,
        rule: FieldRule,
        decision: Decision,
        *,
        trigger: Trigger,
        outcome: Outcome,
        old_value: object = None,
        **extra: Any,
    ) -> SyncLogEntry:
        """A row for one field decision: field names, direction, action and reason filled in."""
        error = decision.error
        return cls(
            trigger=trigger,
            outcome=outcome,
            warp_field=rule.warp_field,
            hubspot_property=rule.hubspot_property,
            direction=decision.write_direction,
            old_value=old_value,
            new_value=extra.pop("new_value", decision.value),
            action=extra.pop("action", decision.action.value),
            reason=extra.pop("reason", decision.reason.value),
            error_code=extra.pop("error_code", error.code if error else None),
            error=extra.pop("error", str(error) if error else None),
            **extra,
        )

    def row(self) -> dict[str, Any]:
        return {
            "customer_id": UUID(str(self.customer_id)) if self.customer_id is not None else None,
            "ban": self.ban,
            "warp_field": self.warp_field,
            "hubspot_property": self.hubspot_property,
            "direction": Direction(self.direction).value if self.direction else None,
            "trigger": Trigger(self.trigger).value,
            "old_value": as_log_text(self.old_value),
            "new_value": as_log_text(self.new_value),
            "action": self.action,
            "reason": self.reason,
            "outcome": Outcome(self.outcome).value,
            "error_code": self.error_code,
            "error": self.error[:ERROR_TEXT_LIMIT] if self.error else self.error,
            "actor": self.actor,
            "dagster_run_id": self.run_id,
            "details": dict(self.details) if self.details is not None else None,
        }


def as_log_text(value: object) -> str | None:
    """Values as the log shows them: text as is, amounts in plain notation, services as sorted JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple | bool):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def log_sync(conn: sa.Connection, entry: SyncLogEntry) -> int:
    """Write one audit row inside the caller's transaction; returns its id."""
    return conn.execute(sa.insert(sync_log).values(entry.row()).returning(sync_log.c.id)).scalar_one()


def log_sync_many(conn: sa.Connection, entries: Iterable[SyncLogEntry]) -> int:
    """Write many audit rows in batched statements; returns how many."""
    rows = [entry.row() for entry in entries]
    if rows:
        conn.execute(sa.insert(sync_log), rows)
    return len(rows)


def purge_sync_log(bind: sa.Engine | sa.Connection, *, older_than: timedelta) -> int:
    """Retention: delete audit rows logged more than `older_than` ago; returns how many."""
    with in_transaction(bind) as conn:
        return conn.execute(
            sa.text("DELETE FROM hubspot_sync_log WHERE logged_at < clock_timestamp() - CAST(:age AS interval)"),
            {"age": older_than},
        ).rowcount


def name_writer(conn: sa.Connection, *, actor: str | None = None, run_id: str | None = None) -> None:
    """Name who writes in this transaction (SET LOCAL warp_sync.actor / warp_sync.run_id).

    The mapping-table audit trigger records these instead of the database role.
    """
    if actor is not None:
        conn.execute(sa.text("SELECT set_config('warp_sync.actor', :actor, true)"), {"actor": actor})
    if run_id is not None:
        conn.execute(sa.text("SELECT set_config('warp_sync.run_id', :run_id, true)"), {"run_id": run_id})
