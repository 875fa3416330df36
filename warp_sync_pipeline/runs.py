"""Dagster-side helpers shared by the jobs and sensors: a run's maximum runtime, and the one-run-at-a-time check."""

import math

import dagster as dg

# Run monitoring (dagster.yaml) fails a run that is still STARTED this many seconds after it began. With the
# default run launcher it cannot see a run's process die together with its code server: this tag is what ends
# such a run, so its flow's sensor can start the next.
MAX_RUNTIME_TAG = "dagster/max_runtime"


def max_runtime_tags(seconds: float) -> dict[str, str]:
    """The tag that bounds a job's runs (set on the job, so runs from sensors, schedules, the UI and the shell
    all carry it)."""
    return {MAX_RUNTIME_TAG: str(math.ceil(seconds))}

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
