"""Dagster-side names and helpers shared by the jobs, sensors and the CLI: run tags, a run's maximum runtime, and the
one-run-at-a-time check. The names are pinned by tests/defs/test_definitions_snapshot.py (stored runs filter by
them)."""

import json
import math
from collections.abc import Mapping
from importlib.metadata import version
from typing import Any

import dagster as dg

from warp_sync_pipeline.core.settings import load_settings

# The code location's name (workspace.yaml, the demo's code server, the Helm values): runs record it.
CODE_LOCATION = "warp_sync_pipeline"
FLOW_TAG = "warp/flow"
# What every asset carries in the catalog: its owners (WARP_ASSET_OWNERS, read when the definitions load) and the
# package's version as its code version.
CATALOG: dict[str, Any] = {"owners": load_settings().asset_owners.split(","), "code_version": version("warp-sync")}
RECONCILIATION_FLOW = "reconciliation"
RECONCILIATION_JOB_NAME = "reconciliation_job"
# The id of the reconciliation request that asked for the run (set by the request sensor).
REQUEST_TAG = "warp/reconcile-request"
# "true" when the run is a dry run (mirrors the run's dry_run resource, for filtering).
DRY_RUN_TAG = "warp/dry-run"
# The rule draft a run previews (core/rule_drafts.py): such a run is always a dry run, whatever its config says.
RULE_DRAFT_TAG = "warp/rule-draft"
# full or incremental (core/reconcile/incremental.py): the schedule picks it by weekday; unset, a full sweep.
RECONCILE_MODE_TAG = "warp/reconcile-mode"
# "shell" on runs that `warp-sync reconcile` submitted (for filtering the run list).
STARTED_FROM_TAG = "warp/started-from"
ONBOARDING_FLOW = "onboarding"
ONBOARDING_PREVIEW_JOB_NAME = "onboarding_preview_job"
ONBOARDING_EXECUTE_JOB_NAME = "onboarding_execute_job"
# Jobs that pull every company (the nightly, the onboarding): dagster.yaml lets one of them run at a time, so two
# full pulls never split HubSpot's budget.
BULK_TAG = "warp/hubspot-bulk"
BULK_TAGS = {BULK_TAG: "pull"}

def is_reconciliation_run(job_name: str | None, tags: Mapping[str, str]) -> bool:
    """A run of the reconciliation job: tagged `warp/flow=reconciliation`, or the job by name."""
    return tags.get(FLOW_TAG) == RECONCILIATION_FLOW or job_name == RECONCILIATION_JOB_NAME


def request_id_from_tags(tags: Mapping[str, str]) -> str | None:
    value = (tags.get(REQUEST_TAG) or "").strip()
    return value or None


def root_error_message(error: object) -> str:
    """Dagster wraps the exception raised in a step; its innermost cause is the one a person needs."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return str(getattr(error, "message", "") or "").strip()


# Step errors quoted in a failed run's reason, at most (the rest is in the run's event log).
MAX_STEP_ERRORS = 5


def failure_messages(instance: dg.DagsterInstance, run_id: str, limit: int = MAX_STEP_ERRORS) -> list[str]:
    """Why the run failed, as its event log holds it: the run's failure (or cancellation) message, then each failed
    step's root error (the alerts' reason and the shell's both read it here)."""
    ended = instance.get_records_for_run(
        run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED}).records
    messages = [(record.event_log_entry.dagster_event.message or "").strip() for record in ended[-1:]
                if record.event_log_entry.dagster_event is not None]
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records[:limit]:
        event = record.event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None) if event is not None else None
        message = root_error_message(error) if error is not None else ""
        messages.append(f"{event.step_key if event is not None else 'step'}: {message or 'no error message'}")
    return [message for message in messages if message]


def dry_run_from_tags(tags: Mapping[str, str]) -> bool:
    return (tags.get(DRY_RUN_TAG) or "").strip().lower() in {"1", "true", "yes", "on"}



# Run monitoring (dagster.yaml) fails a run that is still STARTED this many seconds after it began. With the
# default run launcher it cannot see a run's process die together with its code server: this tag is what ends
# such a run, so its flow's sensor can start the next.
MAX_RUNTIME_TAG = "dagster/max_runtime"


def max_runtime_tags(seconds: float) -> dict[str, str]:
    """The tag that bounds a job's runs (set on the job, so runs from sensors, schedules, the UI and the shell
    all carry it)."""
    return {MAX_RUNTIME_TAG: str(math.ceil(seconds))}


# What a run's pod asks of Kubernetes. The Kubernetes run launcher reads this tag (dagster-k8s); every other run
# launcher ignores it. A run may carry its own to override the job's (a larger portal, say).
K8S_CONFIG_TAG = "dagster-k8s/config"


def pod_size_tags(*, cpu: str, memory: str, memory_limit: str, ephemeral_storage: str) -> dict[str, str]:
    """The pod's requests and limits, as the job's dagster-k8s/config tag. No CPU limit (a throttled run only
    runs longer); a memory limit, since an out-of-memory pod fails its run cleanly where a starved node would not.
    Ephemeral storage covers the frames the run writes to its emptyDir (docs/DEPLOY.md)."""
    resources = {"requests": {"cpu": cpu, "memory": memory, "ephemeral-storage": ephemeral_storage},
                 "limits": {"memory": memory_limit, "ephemeral-storage": ephemeral_storage}}
    return {K8S_CONFIG_TAG: json.dumps({"container_config": {"resources": resources}}, sort_keys=True)}


# Sized from docs/BENCHMARKS.md. A drain, webhook or retention run peaks at 226-230 MiB with the code location loaded
# (bench/bench_run_memory.py); a claimed batch adds little. 512Mi leaves room, 1Gi stops a runaway.
SMALL_RUN_POD = pod_size_tags(cpu="250m", memory="512Mi", memory_limit="1Gi", ephemeral_storage="256Mi")
# The nightly and the onboarding hold a portal's frames in memory: at 1,000,000 customers a full nightly run grows
# its process by 3.3 GiB at its peak and day-one matching peaks near 2.2 GB. Their frames on disk are small (17 MiB
# at 100,000 customers, so about 170 MiB at a million): 1Gi leaves room for logs. Sized for a million.
BULK_RUN_POD = pod_size_tags(cpu="1", memory="4Gi", memory_limit="6Gi", ephemeral_storage="1Gi")

# A run in any of these states will take the waiting work; another would only wait for the same leases.
ACTIVE_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def active_runs(instance: dg.DagsterInstance, job_name: str) -> int:
    """How many runs of `job_name` are queued or running (the sensors' one-run-at-a-time check)."""
    return instance.get_runs_count(dg.RunsFilter(job_name=job_name, statuses=ACTIVE_RUN_STATUSES))
