"""Every job's runs carry a maximum runtime derived from the flow's own budgets, so run monitoring fails a run
whose process died with its code server, and the flow's sensor starts the next (issue 12, item 1)."""

from __future__ import annotations

import yaml

from tests import REPO
from warp_sync_pipeline.core.inbound import InboundSettings
from warp_sync_pipeline.core.outbound import DrainSettings
from warp_sync_pipeline.definitions import defs
from warp_sync_pipeline.defs import inbound as inbound_defs
from warp_sync_pipeline.defs import outbound as outbound_defs
from warp_sync_pipeline.runs import MAX_RUNTIME_TAG

FIVE_MINUTES = 300.0


def _job(name: str):  # noqa: ANN202
    return defs().resolve_job_def(name)


def test_every_job_carries_a_maximum_runtime() -> None:
    jobs = {job.name: job for job in defs().resolve_all_job_defs() if not job.name.startswith("__")}
    assert set(jobs) >= {"hubspot_sync_queue_job", "hubspot_webhook_events_job", "reconciliation_job", "retention_job"}
    assert all(float(job.tags[MAX_RUNTIME_TAG]) > 0 for job in jobs.values())


def test_the_flows_limits_come_from_their_budgets() -> None:
    assert float(_job("hubspot_sync_queue_job").tags[MAX_RUNTIME_TAG]) == DrainSettings.from_env().max_runtime_s
    assert float(_job("hubspot_webhook_events_job").tags[MAX_RUNTIME_TAG]) == (
        InboundSettings.from_env().max_runtime.total_seconds())
    custom = DrainSettings.from_env({"WARP_QUEUE_RUN_SECONDS": "10", "WARP_QUEUE_HTTP_BUDGET_SECONDS": "20",
                                     "WARP_QUEUE_LEASE_SECONDS": "30", "WARP_RUN_MARGIN_SECONDS": "5"})
    assert custom.max_runtime_s == 35


def test_with_default_settings_a_dead_run_stalls_its_flow_at_most_five_minutes() -> None:
    # A run that dies silently is failed once past its maximum runtime, at the next monitoring poll (the instance
    # template's setting); the flow's sensor requests the next run at its next tick.
    poll = float(yaml.safe_load((REPO / "warp_sync_pipeline" / "instance" / "dagster.yaml").read_text())["run_monitoring"]["poll_interval_seconds"])
    drain, inbound = DrainSettings(), InboundSettings()
    assert drain.max_runtime_s + poll + outbound_defs.SENSOR_INTERVAL_SECONDS <= FIVE_MINUTES
    assert inbound.max_runtime.total_seconds() + poll + inbound_defs.SENSOR_INTERVAL_SECONDS <= FIVE_MINUTES
    # And what the dead run had claimed (at most a run budget after it began) has lapsed by then.
    assert drain.run_budget_s + drain.lease_s <= FIVE_MINUTES
    assert (inbound.run_time_budget + inbound.lease_ttl).total_seconds() <= FIVE_MINUTES


def test_the_drain_runs_in_process() -> None:
    # With the multiprocess executor a killed run worker left its step process draining beside the next run.
    assert _job("hubspot_sync_queue_job").executor_def.name == "in_process"
