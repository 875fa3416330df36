"""Inbound webhooks in Dagster: a sensor that finds stored events, the job that applies them, and retention.

Thin adapters over warp_sync_pipeline/core/inbound.py. The sensor runs one cheap query and requests a run;
the run claims and applies events (DESIGN.md flow 3). One run at a time: the sensor skips while one is
queued or running (no run_key, which would block retries of the same events), and the tag concurrency
limit on warp/flow=webhook-apply in dagster.yaml backs that up. While the HubSpot flows are paused
(core.pauses) the sensor skips, naming the pause and its next probe; a run that meets a pause ends without
failing, `paused` in its metadata.
"""

# No `from __future__ import annotations`: Dagster reads the ops' annotations when they are defined.
from dataclasses import replace
from datetime import timedelta
from typing import Any

import dagster as dg
from pydantic import Field

from warp_sync_pipeline.core.inbound import (
    InboundSettings,
    ProcessSummary,
    count_due_events,
    process_events,
)
from warp_sync_pipeline.core.pauses import PauseSettings, open_pauses, sensor_skip
from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.defs.systems import SYSTEMS, WRITES_WARP
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.runs import CATALOG, FLOW_TAG, SMALL_RUN_POD, active_runs, max_runtime_tags

hubspot_webhook_events = dg.AssetSpec(
    "hubspot_webhook_events",
    description=(
        "Every signed HubSpot webhook event the receiver stored (POST /v1/webhooks/hubspot/company), once "
        "each, and what applying it did: processed, ignored (with the reason) or failed (retried a bounded "
        "number of times). Processed and ignored events are kept three days, then purged."
    ),
    group_name="inbound",
    kinds={"postgres"},
    # It reads HubSpot's changes and WARP's customers, and writes WARP's customers.
    deps=SYSTEMS,
    metadata=WRITES_WARP,
    **CATALOG,
)

FLOW_TAGS = {FLOW_TAG: "webhook-apply"}
SENSOR_INTERVAL_SECONDS = load_settings().webhook_sensor_interval_seconds


class HubSpotWebhookEventsConfig(dg.Config):
    time_budget_seconds: float | None = Field(
        default=None,
        description="Stop applying events after this many seconds and hand the rest of the claim back (default: "
                    "WARP_WEBHOOK_RUN_SECONDS). A longer budget needs a longer dagster/max_runtime tag on the run.",
    )


def _metadata(summary: ProcessSummary) -> dict[str, Any]:
    data = summary.as_dict()
    return {
        "processed": data["processed"],
        "ignored": data["ignored"],
        "failed": data["failed"],
        "deferred": data["deferred"],
        "lost": data["lost"],
        "paused": bool(data["paused"]),
        **({"pause_reason": data["paused"], "pause_cause": data["pause_cause"]} if data["paused"] else {}),
        "companies": data["companies"],
        "dagster/row_count": data["claimed"],
        "by_reason": dg.MetadataValue.json(data["reasons"]),
        "by_action": dg.MetadataValue.json(data["actions"]),
        "elapsed_seconds": data["elapsed_s"],
    }


@dg.op(
    description="Claims stored HubSpot webhook events per company and applies them to WARP through the field rules.",
    tags=FLOW_TAGS,
)
def apply_hubspot_webhook_events(
    context: dg.OpExecutionContext,
    config: HubSpotWebhookEventsConfig,
    db: DatabaseResource,
    hubspot: HubSpotResource,
) -> dict:
    settings = InboundSettings.from_env()
    if config.time_budget_seconds:
        settings = replace(settings, run_time_budget=timedelta(seconds=config.time_budget_seconds))
    run_id = context.run.run_id
    summary = process_events(
        db.engine, hubspot=hubspot.client, settings=settings, run_id=run_id, holder=f"webhook-apply:{run_id}",
        pause=PauseSettings.from_env(),
    )
    metadata = _metadata(summary)
    context.log.info(
        f"Webhook events: {summary.processed} processed, {summary.ignored} ignored, {summary.failed} failed, "
        f"{summary.deferred} deferred, across {summary.companies} companies"
    )
    if summary.paused:
        context.log.warning(f"{summary.paused}; the events wait with their attempts returned")
    context.log_event(dg.AssetObservation(asset_key=hubspot_webhook_events.key, metadata=metadata))
    context.add_output_metadata(metadata)
    return summary.as_dict()


@dg.job(
    description="Applies the pending HubSpot webhook events (requested by hubspot_webhook_events_sensor).",
    # A run given a longer time_budget_seconds in its config needs a matching dagster/max_runtime tag.
    tags={**FLOW_TAGS, **max_runtime_tags(InboundSettings.from_env().max_runtime.total_seconds()), **SMALL_RUN_POD},
    executor_def=dg.in_process_executor,
)
def hubspot_webhook_events_job() -> None:
    apply_hubspot_webhook_events()


@dg.sensor(
    job=hubspot_webhook_events_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a run of hubspot_webhook_events_job while webhook events wait and none is running.",
)
def hubspot_webhook_events_sensor(
    context: dg.SensorEvaluationContext, db: DatabaseResource
) -> dg.RunRequest | dg.SkipReason:
    active = active_runs(context.instance, hubspot_webhook_events_job.name)
    if active:
        return dg.SkipReason(
            f"A run of {hubspot_webhook_events_job.name} is already queued or running; it takes the waiting events."
        )
    with db.engine.connect() as conn:
        pause = sensor_skip(open_pauses(conn))
        if pause is not None:
            return dg.SkipReason(pause.describe())
        due = count_due_events(conn)
    if not due:
        return dg.SkipReason("No webhook events are waiting to be applied.")
    return dg.RunRequest(tags={**FLOW_TAGS, "warp/due-events": str(due)})
