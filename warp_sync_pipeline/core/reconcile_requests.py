"""On-demand reconciliation requests: recorded by the API, turned into runs by a sensor.

The receiver only writes and reads rows here (it needs no Dagster); the request's state comes from
the run row that names it, so there is one source of truth for how a run ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from warp_sync_pipeline.core.reconciliation_runs import get_run_for_request

requests_table = sa.table(
    "hubspot_reconcile_requests",
    sa.column("id"), sa.column("requested_by"), sa.column("dry_run"), sa.column("allow_mass_write"),
    sa.column("requested_at"), sa.column("submitted_at"),
)


@dataclass(frozen=True)
class ReconcileRequest:
    id: int
    requested_by: str
    dry_run: bool
    allow_mass_write: bool
    requested_at: datetime
    submitted_at: datetime | None


def record_request(engine: sa.Engine, *, requested_by: str, dry_run: bool = False,
                   allow_mass_write: bool = False) -> ReconcileRequest:
    with engine.begin() as conn:
        row = conn.execute(
            sa.insert(requests_table)
            .values(requested_by=requested_by, dry_run=dry_run, allow_mass_write=allow_mass_write)
            .returning(*requests_table.c)
        ).one()
    return ReconcileRequest(**row._mapping)


def get_request(engine: sa.Engine, request_id: int) -> ReconcileRequest | None:
    with engine.connect() as conn:
        row = conn.execute(sa.select(requests_table).where(requests_table.c.id == request_id)).first()
    return ReconcileRequest(**row._mapping) if row else None


def requests_after(engine: sa.Engine, last_id: int, limit: int = 50) -> list[ReconcileRequest]:
    """The sensor's one cheap query: requests newer than its cursor, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(requests_table).where(requests_table.c.id > last_id)
            .order_by(requests_table.c.id).limit(limit)
        ).all()
    return [ReconcileRequest(**r._mapping) for r in rows]


def mark_submitted(engine: sa.Engine, request_ids: list[int]) -> None:
    if not request_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            sa.update(requests_table)
            .where(requests_table.c.id.in_(request_ids), requests_table.c.submitted_at.is_(None))
            .values(submitted_at=sa.func.now())
        )


def request_status(engine: sa.Engine, request_id: int) -> dict[str, Any] | None:
    """pending (no run yet), running, succeeded or failed (a cancelled run counts as failed)."""
    request = get_request(engine, request_id)
    if request is None:
        return None
    run = get_run_for_request(engine, str(request_id))
    state: dict[str, Any] = {
        "request_id": request.id,
        "status": "pending" if run is None else run.status,
        "dry_run": request.dry_run,
        "requested_by": request.requested_by,
        "requested_at": request.requested_at.isoformat(),
        "submitted_at": request.submitted_at.isoformat() if request.submitted_at else None,
        "run_id": run.run_id if run else None,
        "started_at": run.started_at.isoformat() if run else None,
        "finished_at": run.finished_at.isoformat() if run and run.finished_at else None,
        "counts": dict(run.counts) if run and run.status != "running" else None,
        "failure_reason": run.failure_reason if run else None,
    }
    return state
