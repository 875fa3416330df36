"""The outbound queue in Dagster: `hubspot_sync_queue_sensor` finds due rows, `hubspot_sync_queue_job` drains them.

The sensor runs one cheap indexed query per tick and requests a run, or skips with a reason (also while a drain
run is queued or running: one drain at a time; the `warp/flow=queue-drain` tag limit in dagster.yaml backs this
up). It uses no run_key: a key derived from the rows would block a retry of the same rows. The job is an op job
(rows are processed, no data produced) whose one op calls core.outbound.drain_queue, reports its counts as output
metadata and logs an AssetObservation on `hubspot_sync_queue` so the queue shows in the catalog. While the HubSpot
flows are paused (core.pauses) the sensor skips, naming the pause and its next probe; when the probe is due it
requests a run even with no rows due, and that run probes. A drain that meets a pause ends without failing, with
`paused` and the pause in its metadata (a failed run every tick of an outage would bury real failures).
"""

from typing import Any

import dagster as dg

from warp_sync_pipeline.core.outbound import (
    DrainReport,
    DrainSettings,
    QueueSnapshot,
    count_due,
    drain_queue,
    queue_status,
)
from warp_sync_pipeline.core.pauses import open_pauses, sensor_skip
from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.defs.systems import SYSTEMS, WRITES_HUBSPOT
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.runs import CATALOG, FLOW_TAG, SMALL_RUN_POD, active_runs, max_runtime_tags

DRAIN_JOB_NAME = "hubspot_sync_queue_job"
DRAIN_TAGS = {FLOW_TAG: "queue-drain"}
SENSOR_INTERVAL_SECONDS = load_settings().queue_sensor_interval_seconds
STOPPED_ROWS_SHOWN = 50

hubspot_sync_queue = dg.AssetSpec(
    "hubspot_sync_queue",
    description=(
        "The outbound outbox (PostgreSQL table hubspot_sync_queue): WARP changes waiting to be sent to HubSpot. "
        "Observed by every drain run: rows pending, claimed, dead and parked."
    ),
    group_name="outbound",
    kinds={"postgres"},
    # It reads WARP's changes and writes HubSpot's companies (re-read before each write).
    deps=SYSTEMS,
    metadata=WRITES_HUBSPOT,
    **CATALOG,
)

_STOPPED_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("status", "string"),
        dg.TableColumn("customer_id", "string"),
        dg.TableColumn("ban", "string"),
        dg.TableColumn("code", "string"),
        dg.TableColumn("error", "string"),
        dg.TableColumn("fields", "string"),
        dg.TableColumn("attempts", "int"),
    ]
)


def _stopped_table(snapshot: QueueSnapshot) -> dg.MetadataValue:
    # A table, not Markdown: error texts can quote HubSpot's values.
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord({
                "status": row.status, "customer_id": row.customer_id, "ban": row.ban or "", "code": row.code,
                "error": row.error, "fields": ", ".join(row.fields), "attempts": int(row.attempts),
            })
            for row in snapshot.stopped[:STOPPED_ROWS_SHOWN]
        ],
        schema=_STOPPED_SCHEMA,
    )


def drain_metadata(report: DrainReport, snapshot: QueueSnapshot) -> dict[str, Any]:
    metadata: dict[str, Any] = {name: int(value) for name, value in report.counts().items()}
    metadata["paused"] = report.paused
    if report.pause_reason:
        metadata["pause_reason"] = report.pause_reason
        metadata["pause_cause"] = report.pause_cause or ""
    metadata["queue_pending"] = int(snapshot.counts.get("pending", 0))
    metadata["queue_dead"] = int(snapshot.counts.get("dead", 0))
    metadata["queue_parked"] = int(snapshot.counts.get("parked", 0))
    metadata["dead_and_parked"] = _stopped_table(snapshot)
    return metadata


@dg.op(
    description="Send the due rows of hubspot_sync_queue to HubSpot (batch reads and updates, 100 a call).",
    out=dg.Out(dg.Nothing),
)
def drain_hubspot_sync_queue(context: dg.OpExecutionContext, db: DatabaseResource, hubspot: HubSpotResource) -> None:
    report = drain_queue(db.engine, hubspot.client, run_id=context.run.run_id, settings=DrainSettings.from_env())
    snapshot = queue_status(db.engine, limit=STOPPED_ROWS_SHOWN)
    metadata = drain_metadata(report, snapshot)
    context.log_event(dg.AssetObservation(
        asset_key=hubspot_sync_queue.key,
        metadata={
            "pending": int(snapshot.counts.get("pending", 0)), "claimed": int(snapshot.counts.get("claimed", 0)),
            "dead": int(snapshot.counts.get("dead", 0)), "parked": int(snapshot.counts.get("parked", 0)),
            "due": int(snapshot.due), "dead_and_parked": metadata["dead_and_parked"],
        },
    ))
    if report.dead or report.parked:
        context.log.warning(f"{report.dead} queue rows died and {report.parked} were parked in this run")
    if report.paused:
        context.log.warning(f"{report.pause_reason}; unfinished rows wait with no attempt spent")
    context.log.info(
        f"sent {report.sent} companies ({report.fields_sent} fields) in {report.batch_updates} batch updates and "
        f"{report.batch_reads} batch reads; {report.succeeded} done, {report.retried} to retry"
    )
    context.add_output_metadata(metadata)


@dg.job(
    name=DRAIN_JOB_NAME,
    # Read when the definitions load, like the drain's own budgets the maximum runtime is derived from.
    tags={**DRAIN_TAGS, **max_runtime_tags(DrainSettings.from_env().max_runtime_s), **SMALL_RUN_POD},
    # In process: a run worker killed with its step process beside it would leave the step draining on.
    executor_def=dg.in_process_executor,
    description="Drain hubspot_sync_queue to HubSpot (DESIGN.md flow 2).",
)
def hubspot_sync_queue_job() -> None:
    drain_hubspot_sync_queue()


@dg.sensor(
    job=hubspot_sync_queue_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a drain of hubspot_sync_queue when rows are due and no drain is queued or running.",
)
def hubspot_sync_queue_sensor(context: dg.SensorEvaluationContext, db: DatabaseResource) -> dg.RunRequest | dg.SkipReason:
    active = active_runs(context.instance, DRAIN_JOB_NAME)
    if active:
        return dg.SkipReason(f"A drain run is already queued or running ({active}); it takes the due rows.")
    with db.engine.connect() as conn:
        pauses = open_pauses(conn)
        pause = sensor_skip(pauses)
        if pause is not None:
            return dg.SkipReason(pause.describe())
        due = count_due(conn)
        probe = bool(pauses)  # open, and its probe is due: a run makes it
    if not due and not probe:
        return dg.SkipReason("No hubspot_sync_queue rows are due.")
    return dg.RunRequest(tags={**DRAIN_TAGS, "warp/due-rows": str(due), **({"warp/probe": "true"} if probe else {})})
