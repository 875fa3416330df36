"""The sensor's skip and request paths, and the drain job run in process against the sandbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.plugins.outbound import company_values
from warp_sync_pipeline.defs.outbound import (
    DRAIN_JOB_NAME,
    hubspot_sync_queue,
    hubspot_sync_queue_job,
    hubspot_sync_queue_sensor,
)
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _evaluate(instance: dg.DagsterInstance, database_url: str) -> object:
    with dg.build_sensor_context(instance=instance, resources={"db": DatabaseResource(url=database_url)}) as context:
        return hubspot_sync_queue_sensor(context)


def _queue_a_change(engine: sa.Engine, make_customer: Callable) -> None:
    customer = make_customer()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET current_balance = 3 WHERE id = :id"), {"id": customer})


def test_the_sensor_skips_when_nothing_is_due(instance: dg.DagsterInstance, database_url: str) -> None:
    result = _evaluate(instance, database_url)
    assert isinstance(result, dg.SkipReason) and "due" in (result.skip_message or "")


def test_the_sensor_requests_a_run_when_rows_are_due(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, make_customer: Callable
) -> None:
    _queue_a_change(engine, make_customer)
    result = _evaluate(instance, database_url)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key is None
    assert result.tags["warp/flow"] == "queue-drain" and result.tags["warp/due-rows"] == "1"


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTED])
def test_the_sensor_skips_while_a_drain_run_is_waiting_or_running(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, make_customer: Callable,
    status: dg.DagsterRunStatus,
) -> None:
    _queue_a_change(engine, make_customer)
    run = instance.create_run_for_job(job_def=hubspot_sync_queue_job, status=status)
    result = _evaluate(instance, database_url)
    assert isinstance(result, dg.SkipReason) and "already queued or running" in (result.skip_message or "")
    instance.report_run_canceled(run)
    assert isinstance(_evaluate(instance, database_url), dg.RunRequest)


def _resources(database_url: str, sandbox) -> dict[str, object]:  # noqa: ANN001
    return {
        "db": DatabaseResource(url=database_url),
        "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token,
                                   database_url=database_url, time_budget_seconds=10, request_timeout_seconds=3,
                                   max_attempts=2),
    }


def test_the_job_drains_and_reports_counts_and_an_observation(
    instance: dg.DagsterInstance, database_url: str, sandbox, make_linked: Callable,  # noqa: ANN001
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARP_QUEUE_BACKOFF_SECONDS", "0")
    (first, second) = make_linked(2)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET current_balance = 21 WHERE id = :id"), {"id": first[0]})
        conn.execute(sa.text("UPDATE customers SET hubspot_link_status = 'deleted', status = 'CLOSED' "
                             "WHERE id = :id"), {"id": second[0]})
    result = hubspot_sync_queue_job.execute_in_process(instance=instance, resources=_resources(database_url, sandbox))
    assert result.success
    assert result.dagster_run.tags["warp/flow"] == "queue-drain"
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert (metadata["succeeded"].value, metadata["parked"].value, metadata["batch_updates"].value) == (1, 1, 1)
    table = metadata["dead_and_parked"].value
    assert [r.data["code"] for r in table.records] == ["COMPANY_DELETED"]
    observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert observations[0].asset_key == hubspot_sync_queue.key
    assert observations[0].event_specific_data.asset_observation.metadata["parked"].value == 1
    assert company_values(sandbox, first[1])["warp_current_balance"] in ("21", "21.00")


def test_a_drain_that_meets_a_refused_token_ends_paused_without_failing_its_run(
    instance: dg.DagsterInstance, database_url: str, sandbox, make_linked: Callable, engine: sa.Engine  # noqa: ANN001
) -> None:
    ((customer, _),) = make_linked(1)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET current_balance = 9 WHERE id = :id"), {"id": customer})
    sandbox.control.configure(access_token="revoked-token")
    result = hubspot_sync_queue_job.execute_in_process(
        instance=instance, resources=_resources(database_url, sandbox), raise_on_error=False)
    # A failed run every tick of an outage would bury real failures: the run succeeds, and says it paused.
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    shown = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert shown["paused"] is True and shown["pause_cause"] == "token_refused"
    assert "HUBSPOT_ACCESS_TOKEN" in shown["pause_reason"] and "next probe at" in shown["pause_reason"]
    with engine.connect() as conn:
        attempts = conn.execute(sa.text("SELECT attempts FROM hubspot_sync_queue")).scalar_one()
    assert attempts == 0

    # While the pause holds, the sensor skips, naming it and the next probe.
    skipped = _evaluate(instance, database_url)
    assert isinstance(skipped, dg.SkipReason)
    assert "token_refused" in (skipped.skip_message or "") and "next probe at" in (skipped.skip_message or "")
    # Once the probe is due, it requests a run (the run probes), rows due or not.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_pauses SET next_probe_at = now() - interval '1 second'"))
    requested = _evaluate(instance, database_url)
    assert isinstance(requested, dg.RunRequest) and requested.tags["warp/probe"] == "true"


def test_the_job_is_in_the_code_location() -> None:
    from warp_sync_pipeline.definitions import defs

    loaded = defs()
    assert loaded.get_job_def(DRAIN_JOB_NAME).tags["warp/flow"] == "queue-drain"
    (sensor,) = [s for s in loaded.sensors if s.name == "hubspot_sync_queue_sensor"]
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert hubspot_sync_queue.key in {spec.key for spec in loaded.resolve_all_asset_specs()}
