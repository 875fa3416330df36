"""What every flow does once the two sides hold the same value of a field: record it as agreed in the field state,
and close the field's open conflict, which the agreement settles (status `superseded`, resolution `sides_agree`).

The webhook processor, the drain (and the push) and the nightly record field state through `record_field_state`,
so a conflict the sides have since settled never stays in the review queue, whichever flow saw them agree. Only a
conflict last detected at or before the agreement closes: one detected since (the nightly agrees as of its pull) is
newer than the agreement and stays open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import sqlalchemy as sa

from warp_sync_pipeline.core.conflicts import SIDES_AGREE
from warp_sync_pipeline.core.field_state import FieldStateUpdate, upsert_field_state
from warp_sync_pipeline.core.normalize import comparable

_SUPERSEDE = sa.text(
    """
    UPDATE hubspot_conflicts AS k
    SET status = 'superseded', closed_at = now(), closed_by = :closed_by, resolution = :resolution,
        resolved_value = v.value, updated_at = now(), version = k.version + 1
    FROM unnest(CAST(:customers AS uuid[]), CAST(:fields AS text[]), CAST(:values AS text[]),
                CAST(:agreed_at AS timestamptz[])) AS v(customer_id, warp_field, value, agreed_at)
    WHERE k.customer_id = v.customer_id AND k.warp_field = v.warp_field AND k.status = 'open'
      AND k.updated_at <= v.agreed_at
    RETURNING k.id
    """
)


@dataclass(frozen=True)
class Settled:
    """The sides hold the same value (comparable text) of a customer's field as of `at`."""

    customer_id: UUID | str
    warp_field: str
    value: str | None
    at: datetime


def close_settled_conflicts(conn: sa.Connection, settled: Sequence[Settled], *, closed_by: str) -> list[int]:
    """Close the open conflicts these agreements settle (last detected at or before the agreement); their ids."""
    if not settled:
        return []
    return list(conn.execute(_SUPERSEDE, {
        "closed_by": closed_by, "resolution": SIDES_AGREE,
        "customers": [str(UUID(str(s.customer_id))) for s in settled], "fields": [s.warp_field for s in settled],
        "values": [s.value for s in settled], "agreed_at": [s.at for s in settled],
    }).scalars())


def record_field_state(conn: sa.Connection, updates: Sequence[FieldStateUpdate], *, closed_by: str,
                       values_are_comparable: bool = False) -> list[int]:
    """Upsert the field state (upsert_field_state) and close the open conflicts its agreements settle; returns the
    ids of the conflicts closed."""
    upsert_field_state(conn, updates, values_are_comparable=values_are_comparable)
    settled = []
    for update in updates:
        if update.agreed is None or update.agreed.at is None:
            continue
        value = (update.agreed.value if values_are_comparable
                 else comparable(update.spec or update.warp_field, update.agreed.value))
        settled.append(Settled(update.customer_id, update.warp_field, None if value is None else str(value),
                               update.agreed.at))
    return close_settled_conflicts(conn, settled, closed_by=closed_by)
