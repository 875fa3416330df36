"""The outbound queue (DESIGN.md flow 2): `hubspot_sync_queue`, filled by the customers UPDATE trigger
(sql/007_outbound.sql) and drained to HubSpot by batch updates.

This part is the queue itself; the drain lives beside it (see `drain_queue`).
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

import sqlalchemy as sa

ENQUEUE = sa.text(
    "SELECT hubspot_sync_enqueue(CAST(:customer_id AS uuid), CAST(:fields AS text[]), :reason)"
)


def enqueue_fields(conn: sa.Connection, customer_id: UUID | str, fields: Iterable[str], *, reason: str) -> None:
    """Queue these WARP fields of a customer for sending, merging into its pending row as the trigger does.

    Runs in the caller's transaction (commits or rolls back with it), also one that carries
    SET LOCAL warp_sync.origin = 'hubspot'. The drain sends the fields' values as they are when it runs.
    """
    names = [str(field) for field in fields]
    if not names:
        return
    conn.execute(ENQUEUE, {"customer_id": str(UUID(str(customer_id))), "fields": names, "reason": reason})
