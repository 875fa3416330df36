"""Dagster-side helper shared by the sensors that must not start a second run of their job."""

import dagster as dg

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
