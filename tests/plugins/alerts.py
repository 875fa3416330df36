"""Rows that raise every alert condition read from PostgreSQL (core.alerts.observe), and their undoing."""

from __future__ import annotations

import json
import uuid

import sqlalchemy as sa

# The condition keys `raise_every_condition` makes fire.
EVERY_CONDITION = {
    "queue_dead_letters", "webhook_events_failed", "check_failed:hubspot_companies.unique_warp_ban", "queue_lag",
    "webhook_lag", "nightly_missed", "report_unsent", "brake_tripped", "hubspot_paused", "daily_quota_low",
    "full_sweep_missed",
}


def raise_every_condition(engine: sa.Engine) -> None:
    """As a bad day leaves the database: a dead and an overdue queue row, an event given up on and an overdue one,
    a failed ERROR check (and a failed WARN one, which must not alert), the last good nightly three days ago (braked,
    its report unsent, incremental: no full sweep since installation a month ago), a pause open for an hour, and the
    daily quota nearly spent."""
    with engine.begin() as conn:
        customer = conn.execute(sa.text("INSERT INTO customers (ban, company_name) VALUES (:ban, 'Alert Ltd') "
                                        "RETURNING id"), {"ban": f"ZT-{uuid.uuid4().int % 10**9:09d}"}).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO hubspot_sync_queue (customer_id, fields, reasons, status, attempts, last_error_code, "
            "last_error, finished_at) VALUES (:id, ARRAY['company_name'], ARRAY['update'], 'dead', 3, 'INVALID', "
            "'HubSpot refused the value', now())"), {"id": customer})
        # A second customer: one pending row per customer.
        other = conn.execute(sa.text("INSERT INTO customers (ban, company_name) VALUES (:ban, 'Late Ltd') "
                                     "RETURNING id"), {"ban": f"ZT-{uuid.uuid4().int % 10**9:09d}"}).scalar_one()
        conn.execute(sa.text(
            "INSERT INTO hubspot_sync_queue (customer_id, fields, reasons, next_attempt_at, created_at) "
            "VALUES (:id, ARRAY['company_name'], ARRAY['update'], now() - interval '1 hour', "
            "now() - interval '1 hour')"), {"id": other})
        for status, extra in (("failed", "'gave up', NULL"), ("pending", "NULL, now() - interval '1 hour'")):
            event = {"eventId": uuid.uuid4().int % 10**9, "subscriptionType": "company.propertyChange",
                     "objectId": 1, "occurredAt": 1, "propertyName": "name", "propertyValue": "x"}
            conn.execute(sa.text(
                "INSERT INTO hubspot_webhook_events (dedupe_key, payload, status, subscription_type, object_id, "
                f"occurred_at, received_at, reason, next_attempt_at) VALUES (:key, CAST(:payload AS jsonb), "
                f"'{status}', 'company.propertyChange', '1', now(), now() - interval '1 hour', {extra})"),
                {"key": uuid.uuid4().hex, "payload": json.dumps(event)})
        conn.execute(sa.text(
            "INSERT INTO warp_check_results (asset, check_name, severity, passed, description, run_id) VALUES "
            "('hubspot_companies', 'unique_warp_ban', 'ERROR', false, '1 new duplicate BAN(s)', 'run-1'), "
            "('field_differences', 'drift_below_limit', 'WARN', false, '9% of pairs differ', 'run-1')"))
        conn.execute(sa.text(
            "INSERT INTO hubspot_reconciliation_runs (run_id, status, started_at, finished_at, braked, email_outcome, "
            "mode) VALUES ('run-three-days-ago', 'succeeded', now() - interval '3 days', now() - interval '3 days', "
            "true, 'failed: SMTP_UNAVAILABLE', 'incremental')"))
        conn.execute(sa.text("UPDATE warp_schema_migrations SET applied_at = now() - interval '30 days'"))
        conn.execute(sa.text(
            "INSERT INTO hubspot_pauses (cause, reason, opened_by, opened_at, next_probe_at) VALUES ('token_refused', "
            "'HubSpot refused the access token (401)', 'queue drain', now() - interval '1 hour', now() + interval "
            "'1 hour')"))
        conn.execute(sa.text("INSERT INTO hubspot_daily_quota (daily_limit, remaining) VALUES (250000, 1000)"))


def clear_every_condition(engine: sa.Engine) -> None:
    """What fixing everything leaves: no stopped rows or events, checks passing, a good nightly just now, no pause."""
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM hubspot_sync_queue"))
        conn.execute(sa.text("DELETE FROM hubspot_webhook_events"))
        conn.execute(sa.text("UPDATE warp_check_results SET passed = true"))
        conn.execute(sa.text(
            "INSERT INTO hubspot_reconciliation_runs (run_id, status, finished_at, email_outcome) "
            "VALUES ('run-just-now', 'succeeded', now(), 'sent to 2 recipient(s)')"))
        conn.execute(sa.text("DELETE FROM hubspot_pauses"))
        conn.execute(sa.text("UPDATE hubspot_daily_quota SET remaining = daily_limit"))
