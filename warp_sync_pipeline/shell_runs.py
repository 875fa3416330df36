"""Runs started from a shell go through the instance like the UI's, and the shell follows them.

`launch` submits a job with Dagster's public `dagster job launch -w WORKSPACE -j JOB`: the run is built from the
code location (it carries the location's origin, so it is in the job's run list, the Overview timeline and
"Re-execute" works), lands in the run queue (the tag limits of dagster.yaml apply: a shell run waits for the
scheduled nightly rather than overlapping it) and is seen by every run-status sensor. Queued runs need the
daemon, so `daemon_problem` is asked first. `watch` follows a run through the instance's public API and the
flow's own progress row until it ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

# The daemon that takes runs off the queue, and how old its heartbeat may be (it beats every 30 s).
QUEUE_DAEMON = "QUEUED_RUN_COORDINATOR"
DAEMON_STALE_SECONDS = 90.0
LAUNCH_TIMEOUT_SECONDS = 300.0
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


class ShellRunError(Exception):
    """The run could not be submitted or followed; the message says what to do."""


def daemon_problem(instance: dg.DagsterInstance, *, now: float | None = None) -> str | None:
    """Why no daemon would start a queued run on this instance, or None when one is alive."""
    beat = instance.get_daemon_heartbeats().get(QUEUE_DAEMON)
    if beat is None:
        return "no Dagster daemon has run on this instance"
    age = (time.time() if now is None else now) - beat.timestamp
    if age > DAEMON_STALE_SECONDS:
        return f"the Dagster daemon last reported {age:.0f}s ago"
    return None


def launch(workspace: Path, job_name: str, *, run_id: str, tags: Mapping[str, str],
           run_config: Mapping[str, Any]) -> None:
    """Submit `job_name` from the code location of `workspace` to the run queue as run `run_id`."""
    dagster = Path(sys.executable).parent / "dagster"
    argv = [str(dagster), "job", "launch", "-w", str(workspace), "-j", job_name, "--run-id", run_id,
            "--tags", json.dumps(dict(tags)), "--config-json", json.dumps(run_config)]
    try:
        # From the workspace's folder: a workspace file names its code relative to itself.
        done = subprocess.run(argv, cwd=workspace.parent, capture_output=True, text=True,
                              timeout=LAUNCH_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        raise ShellRunError(f"`dagster job launch` did not finish within {LAUNCH_TIMEOUT_SECONDS:.0f}s") from None
    if done.returncode != 0:
        raise ShellRunError(f"`dagster job launch` failed: {_launch_error(done.stderr or done.stdout)}")


def _launch_error(output: str) -> str:
    """The innermost error message of a launch's traceback (what a person can act on), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line.rsplit("Error: ", 1)[1] for line in lines if "Error: " in line]
    return (errors or lines or ["no output"])[-1]


@dataclass(frozen=True)
class RunEvent:
    """Something to show while following a run: its status changed, or a stage made progress."""

    status: dg.DagsterRunStatus
    progress: str | None = None


def watch(instance: dg.DagsterInstance, run_id: str, progress: Callable[[], Mapping[str, str]], *,
          interval: float = 1.0, daemon_check_every: float = 15.0) -> Iterator[RunEvent]:
    """Yield each status change of the run and each new progress line (from `progress()`, read every `interval`)
    until the run has finished. Raises ShellRunError when the run vanishes, or stays queued with no daemon."""
    status: dg.DagsterRunStatus | None = None
    seen: dict[str, str] = {}
    checked = time.monotonic()
    while True:
        run = instance.get_run_by_id(run_id)
        if run is None:
            raise ShellRunError(f"run {run_id} is not in the instance (deleted?)")
        if run.status != status:
            status = run.status
            yield RunEvent(status)
        for stage, line in progress().items():
            if seen.get(stage) != line:
                seen[stage] = line
                yield RunEvent(status, line)
        if status in FINISHED:
            return
        if status == dg.DagsterRunStatus.QUEUED and time.monotonic() - checked > daemon_check_every:
            checked = time.monotonic()
            problem = daemon_problem(instance)
            if problem:
                raise ShellRunError(f"run {run_id} is queued but {problem}: start it (`make dev`, or "
                                    "`dagster-daemon run -w workspace.yaml`) and the run will start")
        time.sleep(interval)


def queued_behind(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The running runs that share a limited tag with `run` (what it waits for in the queue)."""
    running = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]))
    return [f"{other.job_name} {other.run_id[:8]}" for other in running
            if other.run_id != run.run_id and any(other.tags.get(key) == value for key, value in run.tags.items()
                                                  if key.startswith("warp/"))]


def materialization_metadata(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict[str, Any]:
    """The metadata values of `asset`'s materialization in the run (empty when it was not materialized)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    for record in records:
        materialization = record.event_log_entry.asset_materialization
        if materialization is not None and materialization.asset_key == dg.AssetKey(asset):
            return {name: value.value for name, value in materialization.metadata.items()}
    return {}
