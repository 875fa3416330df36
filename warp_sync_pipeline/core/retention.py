"""Retention for the tables that grow with traffic (DESIGN.md, Security).

One pass purges, each by its own rule: finished webhook events (kept at least three days, the
dedupe window must outlast HubSpot's day of retries), expired write-ledger entries (three days),
expired customer leases, finished queue rows, old create idempotency keys, and audit-log rows past
a configurable period (a year by default). Stored reconciliation frames are purged by the IO
manager, which owns their folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa

from warp_sync_pipeline.core.audit import purge_sync_log
from warp_sync_pipeline.core.inbound import InboundSettings, purge_webhook_events
from warp_sync_pipeline.core.leases import purge_expired_leases
from warp_sync_pipeline.core.ledger import purge_expired as purge_expired_ledger
from warp_sync_pipeline.core.outbound import purge_finished as purge_finished_queue_rows
from warp_sync_pipeline.core.settings import DEFAULTS, WarpSettings, load_settings


@dataclass(frozen=True)
class RetentionSettings:
    audit_log_days: int = DEFAULTS.audit_retention_days
    # The window an Idempotency-Key is honoured for; each create also purges a few keys past it.
    idempotency_key_hours: int = DEFAULTS.idempotency_retention_hours
    queue_done_days: int = DEFAULTS.queue_retention_days

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RetentionSettings:
        return cls.from_settings(load_settings(environ))

    @classmethod
    def from_settings(cls, settings: WarpSettings) -> RetentionSettings:
        return cls(
            audit_log_days=settings.audit_retention_days,
            idempotency_key_hours=settings.idempotency_retention_hours,
            queue_done_days=settings.queue_retention_days,
        )


def purge_idempotency_keys(engine: sa.Engine, *, older_than: timedelta) -> int:
    """Keys of finished creates older than the window; an in-progress key is never removed."""
    with engine.begin() as conn:
        return conn.execute(
            sa.text(
                "DELETE FROM customer_create_idempotency_keys "
                "WHERE status <> 'in_progress' AND created_at < clock_timestamp() - CAST(:age AS interval)"
            ),
            {"age": older_than},
        ).rowcount


def purge_all(engine: sa.Engine, settings: RetentionSettings | None = None,
              inbound: InboundSettings | None = None) -> dict[str, int]:
    """Run every table's purge; returns rows removed per table (the job's run metadata)."""
    settings = settings or RetentionSettings.from_env()
    events = purge_webhook_events(engine, settings=inbound or InboundSettings.from_env())
    return {
        "webhook_events_finished": events.finished,
        "webhook_events_failed": events.failed,
        "write_ledger": purge_expired_ledger(engine),
        "customer_leases": purge_expired_leases(engine),
        "sync_queue_done": purge_finished_queue_rows(engine, older_than=timedelta(days=settings.queue_done_days)),
        "idempotency_keys": purge_idempotency_keys(engine, older_than=timedelta(hours=settings.idempotency_key_hours)),
        "sync_log": purge_sync_log(engine, older_than=timedelta(days=settings.audit_log_days)),
    }
