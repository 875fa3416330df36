"""Retention in Dagster: one daily job that purges every table that grows with traffic, and old frames."""


from typing import Any

import dagster as dg

from warp_sync_pipeline.core.retention import purge_all
from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.defs.inbound import hubspot_webhook_events
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager
from warp_sync_pipeline.runs import SMALL_RUN_POD, max_runtime_tags


@dg.op(description="Purges webhook events, ledger entries, leases, done queue rows, idempotency keys and "
                   "audit-log rows past their retention (WARP_*_RETENTION_DAYS and _HOURS), and stored frames past theirs.")
def purge_expired_rows(context: dg.OpExecutionContext, db: DatabaseResource,
                       parquet_io_manager: dg.ResourceParam[ParquetIOManager]) -> dict[str, int]:
    counts = purge_all(db.engine)
    counts["frame_files"] = len(parquet_io_manager.purge())
    metadata: dict[str, Any] = {f"purged_{name}": value for name, value in counts.items()}
    context.log_event(dg.AssetObservation(asset_key=hubspot_webhook_events.key, metadata={
        "purged_finished": counts["webhook_events_finished"], "purged_failed": counts["webhook_events_failed"]}))
    context.add_output_metadata(metadata)
    context.log.info("purged " + ", ".join(f"{name}={value}" for name, value in counts.items()))
    return counts


@dg.job(
    description="Daily retention of the tables that grow with traffic and of stored reconciliation frames.",
    tags={"warp/flow": "retention",
          **max_runtime_tags(load_settings().retention_max_runtime_seconds), **SMALL_RUN_POD},
    executor_def=dg.in_process_executor,
)
def retention_job() -> None:
    purge_expired_rows()


@dg.definitions
def retention() -> dg.Definitions:
    schedule = dg.ScheduleDefinition(
        name="retention_daily_schedule",
        job=retention_job,
        cron_schedule="20 3 * * *",
        execution_timezone=load_settings().schedule_timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Purges expired rows and frames daily at 03:20, after the nightly reconciliation.",
    )
    return dg.Definitions(jobs=[retention_job], schedules=[schedule])
