"""The review queue (`hubspot_conflicts`): at most one open conflict per customer and field.

A later detection of the same conflict updates the open row (a partial unique index guarantees there is
only one). `version` moves only when the values under review change, so a reviewer's resolution can be
compare-and-set against the version the reviewer saw (`close_open_conflict(expected_version=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.audit import as_log_text
from warp_sync_pipeline.core.decision import Observed
from warp_sync_pipeline.core.fields import FieldRule
from warp_sync_pipeline.core.normalize import InvalidFieldValue, comparable

OPEN = "open"
RESOLVED = "resolved"
SUPERSEDED = "superseded"
# The resolution of a conflict closed because the sides came to hold the same value (core.agreements, review).
SIDES_AGREE = "sides_agree"


@dataclass(frozen=True)
class ConflictRef:
    id: int
    opened: bool  # False when an open conflict was updated
    version: int


def review_text(rule: FieldRule, value: object) -> str | None:
    """The text a conflict row stores and shows for a side's value: comparable text where the value is valid (stable
    across detections), else the value as given. The resolution's compare-and-set compares against it."""
    try:
        return comparable(rule.spec, value)
    except InvalidFieldValue:
        return as_log_text(value)


def open_or_update_conflict(
    conn: sa.Connection,
    *,
    customer_id: UUID | str,
    rule: FieldRule,
    reason: str,
    agreed: str | None,
    warp: Observed,
    hubspot: Observed,
    detected_by: str,
    run_id: str | None = None,
) -> ConflictRef:
    """Open a conflict, or update the open one for this customer and field (in the caller's transaction)."""
    row = conn.execute(
        sa.text(
            """
            INSERT INTO hubspot_conflicts AS c (
                customer_id, warp_field, hubspot_property, reason, agreed_value, warp_value,
                warp_changed_at, hubspot_value, hubspot_changed_at, detected_by, dagster_run_id)
            VALUES (:customer_id, :warp_field, :hubspot_property, :reason, :agreed_value, :warp_value,
                    :warp_changed_at, :hubspot_value, :hubspot_changed_at, :detected_by, :run_id)
            ON CONFLICT (customer_id, warp_field) WHERE status = 'open' DO UPDATE SET
                hubspot_property = EXCLUDED.hubspot_property,
                reason = EXCLUDED.reason,
                agreed_value = EXCLUDED.agreed_value,
                warp_value = EXCLUDED.warp_value,
                warp_changed_at = EXCLUDED.warp_changed_at,
                hubspot_value = EXCLUDED.hubspot_value,
                hubspot_changed_at = EXCLUDED.hubspot_changed_at,
                detected_by = EXCLUDED.detected_by,
                dagster_run_id = EXCLUDED.dagster_run_id,
                detection_count = c.detection_count + 1,
                version = c.version + CASE
                    WHEN (c.agreed_value, c.warp_value, c.hubspot_value)
                         IS DISTINCT FROM (EXCLUDED.agreed_value, EXCLUDED.warp_value, EXCLUDED.hubspot_value)
                    THEN 1 ELSE 0 END,
                updated_at = now()
            RETURNING id, version, (xmax = 0) AS opened
            """
        ),
        {
            "customer_id": str(UUID(str(customer_id))),
            "warp_field": rule.warp_field,
            "hubspot_property": rule.hubspot_property,
            "reason": reason,
            "agreed_value": agreed,
            "warp_value": review_text(rule, warp.value),
            "warp_changed_at": warp.changed_at,
            "hubspot_value": review_text(rule, hubspot.value),
            "hubspot_changed_at": hubspot.changed_at,
            "detected_by": detected_by,
            "run_id": run_id,
        },
    ).one()
    return ConflictRef(id=row.id, opened=bool(row.opened), version=row.version)


def close_open_conflict(
    conn: sa.Connection,
    customer_id: UUID | str,
    warp_field: str,
    *,
    status: str = SUPERSEDED,
    closed_by: str | None = None,
    resolution: str | None = None,
    resolved_value: str | None = None,
    expected_version: int | None = None,
) -> int | None:
    """Close the open conflict of this customer and field; its id, or None when there is none (or, with
    expected_version, when it changed since: the caller re-reads and asks again)."""
    if status not in (RESOLVED, SUPERSEDED):
        raise ValueError(f"a conflict closes as {RESOLVED!r} or {SUPERSEDED!r}, not {status!r}")
    return conn.execute(
        sa.text(
            """
            UPDATE hubspot_conflicts
            SET status = :status, closed_at = now(), closed_by = :closed_by, resolution = :resolution,
                resolved_value = :resolved_value, updated_at = now(), version = version + 1
            WHERE customer_id = :customer_id AND warp_field = :warp_field AND status = 'open'
              AND (CAST(:expected_version AS integer) IS NULL OR version = :expected_version)
            RETURNING id
            """
        ),
        {
            "status": status,
            "closed_by": closed_by,
            "resolution": resolution,
            "resolved_value": resolved_value,
            "customer_id": str(UUID(str(customer_id))),
            "warp_field": warp_field,
            "expected_version": expected_version,
        },
    ).scalar_one_or_none()
