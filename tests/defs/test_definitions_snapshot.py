"""Every name the Dagster instance keys state by stays byte-identical (issue 14): sensor cursors and run keys are
stored per sensor name, run history and backfills per job and asset, run filters per tag. Renaming
`reconcile_requests_sensor` would replay every past reconciliation request. A refactor that changes one of these
must change this snapshot on purpose, with a migration of the stored state."""

from __future__ import annotations

from warp_sync_pipeline import runs
from warp_sync_pipeline.definitions import defs
from warp_sync_pipeline.defs import inbound, outbound

JOBS = {
    "hubspot_sync_queue_job": "queue-drain",
    "hubspot_webhook_events_job": "webhook-apply",
    "reconciliation_job": "reconciliation",
    "retention_job": "retention",
    "onboarding_preview_job": "onboarding",
    "onboarding_execute_job": "onboarding",
}
SENSORS = {
    "hubspot_sync_queue_sensor": "hubspot_sync_queue_job",
    "hubspot_webhook_events_sensor": "hubspot_webhook_events_job",
    "reconcile_requests_sensor": "reconciliation_job",
    # Renamed in issue 16 (they alert for every job now): a deployment's old sensor state stays under the old names.
    "run_canceled_alert_sensor": None,
    "run_failure_alert_sensor": None,
    "warp_alerts_sensor": None,
}
SCHEDULES = {
    "reconciliation_daily_schedule": ("reconciliation_job", "0 2 * * *", "UTC"),
    "retention_daily_schedule": ("retention_job", "20 3 * * *", "UTC"),
}
ASSETS = [
    "field_differences", "hubspot/companies", "hubspot_companies", "hubspot_property_history", "hubspot_sync_queue",
    "hubspot_webhook_events", "hubspot_writeback", "onboarding_hubspot_companies", "onboarding_preview",
    "onboarding_warp_customers", "reconciliation_plan", "reconciliation_report", "reconciliation_scope", "rule_draft_preview", "warp/customers", "warp_customers",
    "warp_writeback",
]
CHECKS = [
    "field_differences:drift_below_limit", "field_differences:every_customer_linked",
    "hubspot_companies:unique_warp_ban", "hubspot_writeback:without_errors", "reconciliation_report:emailed",
    "warp_writeback:without_errors",
]
TAGS = {"flow": "warp/flow", "request": "warp/reconcile-request", "dry_run": "warp/dry-run",
        "max_runtime": "dagster/max_runtime", "bulk": "warp/hubspot-bulk"}


def test_job_sensor_schedule_asset_and_check_names_are_unchanged() -> None:
    repository = defs().get_repository_def()
    jobs = {job.name: job for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert {name: job.tags.get(TAGS["flow"]) for name, job in jobs.items()} == JOBS
    assert all(runs.MAX_RUNTIME_TAG in job.tags for job in jobs.values())
    assert {s.name: (s.job_name if s.has_jobs else None) for s in repository.sensor_defs} == SENSORS
    assert {s.name: (s.job_name, s.cron_schedule, s.execution_timezone) for s in repository.schedule_defs} == SCHEDULES
    graph = repository.asset_graph
    assert sorted(key.to_user_string() for key in graph.get_all_asset_keys()) == ASSETS
    assert sorted(f"{key.asset_key.to_user_string()}:{key.name}" for key in graph.asset_check_keys) == CHECKS


def test_tag_keys_and_values_are_unchanged() -> None:
    in_code = {
        "flow": runs.FLOW_TAG, "request": runs.REQUEST_TAG, "dry_run": runs.DRY_RUN_TAG,
        "max_runtime": runs.MAX_RUNTIME_TAG, "bulk": runs.BULK_TAG,
    }
    assert in_code == TAGS
    names = {
        "reconciliation": (runs.RECONCILIATION_JOB_NAME, runs.RECONCILIATION_FLOW),
        "drain": (outbound.DRAIN_JOB_NAME, outbound.DRAIN_TAGS), "webhooks": inbound.FLOW_TAGS,
    }
    assert names == {
        "reconciliation": ("reconciliation_job", "reconciliation"),
        "drain": ("hubspot_sync_queue_job", {TAGS["flow"]: "queue-drain"}),
        "webhooks": {TAGS["flow"]: "webhook-apply"},
    }


def test_tags_identify_reconciliation_runs() -> None:
    assert runs.is_reconciliation_run("anything", {"warp/flow": "reconciliation"})
    assert runs.is_reconciliation_run("reconciliation_job", {})
    assert not runs.is_reconciliation_run("queue_drain_job", {"warp/flow": "queue-drain"})
    assert runs.request_id_from_tags({"warp/reconcile-request": " 17 "}) == "17"
    assert runs.request_id_from_tags({}) is None
    assert runs.dry_run_from_tags({"warp/dry-run": "true"}) is True
    assert runs.dry_run_from_tags({"warp/dry-run": "false"}) is False
