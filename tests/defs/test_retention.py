from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from warp_sync_pipeline.definitions import defs
from warp_sync_pipeline.defs.retention import retention_job
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager

OLD = "now() - interval '400 days'"


def _seed_old_and_new_rows(engine: sa.Engine) -> None:
    """One expired and one fresh row in every table the job purges."""
    with engine.begin() as conn:
        customer_id = conn.execute(sa.text(
            "INSERT INTO customers (ban, company_name) VALUES ('ZT-000000777', 'Keep Ltd') RETURNING id")).scalar()
        for age in (OLD, "now()"):
            event = {"eventId": uuid.uuid4().int % 10**9, "subscriptionType": "company.propertyChange",
                     "objectId": 1, "occurredAt": 1, "propertyName": "name", "propertyValue": age}
            conn.execute(sa.text(
                "INSERT INTO hubspot_webhook_events (dedupe_key, payload, status, subscription_type, object_id, "
                f"occurred_at, received_at, processed_at) VALUES (:key, CAST(:payload AS jsonb), 'processed', "
                f"'company.propertyChange', '1', now(), {age}, {age})"),
                {"key": uuid.uuid4().hex, "payload": __import__("json").dumps(event)})
            conn.execute(sa.text(
                "INSERT INTO hubspot_sync_log (ban, warp_field, direction, trigger, outcome, logged_at) "
                f"VALUES ('ZT-000000777', 'company_name', 'WARP_TO_HUBSPOT', 'queue', 'applied', {age})"))
            conn.execute(sa.text(
                "INSERT INTO customer_create_idempotency_keys (principal, idempotency_key, request_hash, status, "
                f"attempt_token, locked_until, created_at) VALUES ('ops', :key, 'h', 'failed', "
                f"gen_random_uuid(), now(), {age})"), {"key": uuid.uuid4().hex})
        conn.execute(sa.text(
            "INSERT INTO hubspot_customer_leases (customer_id, holder, token, expires_at) "
            "VALUES (:id, 'drain:old', gen_random_uuid(), now() - interval '1 hour')"), {"id": customer_id})


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()


def test_the_retention_job_purges_each_table_by_its_rule_and_reports_counts(
    engine: sa.Engine, database_url: str, tmp_path: Path
) -> None:
    _seed_old_and_new_rows(engine)
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "old.parquet").write_bytes(b"x")
    (frames / "new.parquet").write_bytes(b"y")
    stale = time.time() - 30 * 86400
    os.utime(frames / "old.parquet", (stale, stale))

    with dg.instance_for_test() as instance:
        result = retention_job.execute_in_process(instance=instance, resources={
            "db": DatabaseResource(url=database_url),
            "parquet_io_manager": ParquetIOManager(base_dir=str(frames), retention_days=7),
        })
    assert result.success
    counts = result.output_for_node("purge_expired_rows")
    assert counts["webhook_events_finished"] == 1
    assert counts["sync_log"] == 1
    assert counts["idempotency_keys"] == 1
    assert counts["customer_leases"] == 1
    # The IO manager purges when the run sets it up, so the op may find nothing left to remove.
    assert "frame_files" in counts
    assert sorted(p.name for p in frames.iterdir()) == ["new.parquet"]
    assert _count(engine, "hubspot_webhook_events") == 1
    assert _count(engine, "customer_create_idempotency_keys") == 1
    assert _count(engine, "hubspot_customer_leases") == 0
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_log WHERE logged_at < now() - "
                                    "interval '365 days'")).scalar() == 0
        assert conn.execute(sa.text("SELECT count(*) FROM hubspot_sync_log WHERE ban = 'ZT-000000777'")).scalar() == 1
    materialized = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert materialized, "the op reports its counts as output metadata"


def test_the_retention_schedule_is_defined_and_running_by_default() -> None:
    loaded = defs()
    schedule = loaded.get_schedule_def("retention_daily_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.job_name == "retention_job"
