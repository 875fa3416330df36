"""A reconcile request becomes a run: the API records it, the sensor asks for the run, the run
records its row under the request, and the API then reports how it ended."""

import contextlib
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from warp_sync_pipeline.defs.reconcile_requests import reconcile_requests_sensor
from warp_sync_pipeline.defs.reconciliation import RECONCILIATION_ASSETS, ReconciliationSettings
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from warp_sync_pipeline.resources.parquet_io import ParquetIOManager
from webhook_receiver import create_app

TOKEN = "bootstrap-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _evaluate(database_url: str, cursor: str | None,
              instance: dg.DagsterInstance | None = None) -> dg.SensorResult | dg.SkipReason:
    with contextlib.ExitStack() as stack:
        instance = instance or stack.enter_context(dg.instance_for_test())
        context = stack.enter_context(dg.build_sensor_context(
            instance=instance, cursor=cursor, resources={"db": DatabaseResource(url=database_url)}))
        return reconcile_requests_sensor(context)


def test_a_request_that_already_has_a_run_is_not_asked_for_again(database_url: str) -> None:
    """A cursor lost (or a tick that died after its runs were made) must not make a request run twice."""
    client = create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_API_TOKEN": TOKEN}).test_client()
    first = client.post("/v1/sync/reconcile", json={"dry_run": True}, headers=AUTH).get_json()["data"]["request_id"]
    second = client.post("/v1/sync/reconcile", json={"dry_run": True}, headers=AUTH).get_json()["data"]["request_id"]

    @dg.op
    def noop() -> None: ...

    @dg.job(name="reconciliation_job")
    def reconciliation_job() -> None:
        noop()

    with dg.instance_for_test() as instance:
        reconciliation_job.execute_in_process(instance=instance, tags={"warp/reconcile-request": str(first)})
        result = _evaluate(database_url, None, instance)
        assert [r.tags["warp/reconcile-request"] for r in result.run_requests] == [str(second)]
        assert result.cursor == str(second)
        reconciliation_job.execute_in_process(instance=instance, tags={"warp/reconcile-request": str(second)})
        again = _evaluate(database_url, None, instance)
    assert not again.run_requests and f"#{first}, #{second}" in again.skip_reason.skip_message
    assert again.cursor == str(second)


def test_the_sensor_skips_without_requests_and_requests_one_run_per_request(database_url: str) -> None:
    skipped = _evaluate(database_url, None)
    assert isinstance(skipped, dg.SkipReason) and "No reconciliation requests" in skipped.skip_message
    client = create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_API_TOKEN": TOKEN}).test_client()
    first = client.post("/v1/sync/reconcile", json={"dry_run": True}, headers=AUTH).get_json()["data"]["request_id"]
    second = client.post("/v1/sync/reconcile", headers=AUTH).get_json()["data"]["request_id"]

    result = _evaluate(database_url, None)
    assert [r.run_key for r in result.run_requests] == [f"reconcile-request-{first}", f"reconcile-request-{second}"]
    assert result.cursor == str(second)
    dry, wet = result.run_requests
    assert dry.tags["warp/reconcile-request"] == str(first) and dry.tags["warp/dry-run"] == "true"
    assert dry.run_config["resources"]["reconciliation"]["config"]["dry_run"] is True
    assert wet.run_config["resources"]["reconciliation"]["config"]["dry_run"] is False
    # The cursor moves on: the same requests never become runs again.
    assert isinstance(_evaluate(database_url, result.cursor), dg.SkipReason)
    assert client.get(f"/v1/sync/reconcile/{first}", headers=AUTH).get_json()["data"]["submitted_at"]


def test_a_reconcile_request_becomes_a_run_whose_outcome_the_api_reports(
    database_url: str, engine: sa.Engine, sandbox, tmp_path: Path  # noqa: ANN001
) -> None:
    client = create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_API_TOKEN": TOKEN}).test_client()
    request_id = client.post("/v1/sync/reconcile", json={"dry_run": True}, headers=AUTH).get_json()["data"]["request_id"]
    run_request = _evaluate(database_url, None).run_requests[0]

    resources = {
        "db": DatabaseResource(url=database_url),
        "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token, max_attempts=2,
                                   time_budget_seconds=20, request_timeout_seconds=5),
        "email": EmailResource(),
        "parquet_io_manager": ParquetIOManager(base_dir=str(tmp_path)),
        "reconciliation": ReconciliationSettings(
            dry_run=run_request.run_config["resources"]["reconciliation"]["config"]["dry_run"]),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(RECONCILIATION_ASSETS, resources=resources, instance=instance,
                                tags=run_request.tags, raise_on_error=False)
    assert result.success
    state = client.get(f"/v1/sync/reconcile/{request_id}", headers=AUTH).get_json()["data"]
    assert state["status"] == "succeeded" and state["run_id"] == result.run_id
    assert state["dry_run"] is True and state["counts"] is not None


@dg.job(tags={"warp/flow": "reconciliation"})
def cancellable_reconciliation_job() -> None:
    pass


def test_a_request_whose_run_is_cancelled_reads_as_failed_not_pending(database_url: str) -> None:
    from warp_sync_pipeline.defs.alerts import run_canceled_alert_sensor

    client = create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_API_TOKEN": TOKEN}).test_client()
    request_id = client.post("/v1/sync/reconcile", headers=AUTH).get_json()["data"]["request_id"]
    run_request = _evaluate(database_url, None).run_requests[0]
    with dg.instance_for_test() as instance:
        # Cancelled while queued: the run never started, so it never wrote its own row.
        dagster_run = instance.create_run_for_job(job_def=cancellable_reconciliation_job, tags=run_request.tags)
        event = instance.report_run_canceled(dagster_run, message="Cancelled from the UI.")
        with dg.build_run_status_sensor_context(
            sensor_name=run_canceled_alert_sensor.name, dagster_event=event, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(dagster_run.run_id),
            resources={"db": DatabaseResource(url=database_url), "email": EmailResource()},
        ) as context:
            run_canceled_alert_sensor(context)
    state = client.get(f"/v1/sync/reconcile/{request_id}", headers=AUTH).get_json()["data"]
    assert state["status"] == "failed" and state["run_id"] == dagster_run.run_id
    assert state["failure_reason"] == "Run cancelled: Cancelled from the UI."
