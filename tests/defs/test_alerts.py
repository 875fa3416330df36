"""The alert sensors as the daemon runs them: run failures of any job, and the conditions read from PostgreSQL."""
# No `from __future__ import annotations`: Dagster reads the op's context annotation at definition.
import json
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa
from pytest_httpserver import HTTPServer

from tests.plugins.alerts import EVERY_CONDITION, clear_every_condition, raise_every_condition
from tests.plugins.smtp import SmtpCatcher
from warp_sync_pipeline import runs as run_tags
from warp_sync_pipeline.core import reconciliation_runs as runs
from warp_sync_pipeline.defs.alerts import (
    run_canceled_alert_sensor,
    run_failure_alert_sensor,
    warp_alerts_sensor,
)
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.email import EmailResource, email_resource_from_env


@dg.op
def record_start(context: dg.OpExecutionContext, db: DatabaseResource) -> str:
    tags = context.run.tags
    record = runs.start_run(
        db.engine, context.run.run_id, run_tags.request_id_from_tags(tags), run_tags.dry_run_from_tags(tags)
    )
    return record.run_id


@dg.op
def explode(started_run_id: str) -> None:
    raise RuntimeError("HubSpot answered <b>503</b>")


@dg.job(tags={"warp/flow": "reconciliation"})
def tiny_reconciliation_job() -> None:
    explode(record_start())


@dg.op
def fail_quietly() -> None:
    raise RuntimeError("not ours")


@dg.job(tags={"warp/flow": "queue-drain"})
def other_job() -> None:
    fail_quietly()


def _email_resource(server: SmtpCatcher, **overrides: str) -> EmailResource:
    env = server.environ(**overrides)
    return EmailResource(
        host=env["SMTP_HOST"],
        port=env["SMTP_PORT"],
        starttls=env["SMTP_STARTTLS"],
        from_address=env["SMTP_FROM"],
        recipients=env["WARP_REPORT_RECIPIENTS"],
        timeout_seconds=env["SMTP_TIMEOUT_SECONDS"],
    )


# Launched runs carry their job's tags; runs made by hand in a test must be given them.
FLOW = {"warp/flow": "reconciliation"}


def _evaluate(
    sensor: dg.SensorDefinition,
    instance: dg.DagsterInstance,
    run_id: str,
    event: dg.DagsterEvent,
    resources: dict[str, object],
) -> object:
    # `with` is required: the resources set themselves up (setup_for_execution).
    with dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_event=event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources=resources,
    ) as context:
        return sensor(context)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_a_failed_reconciliation_run_is_marked_failed_and_alerted(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    db = DatabaseResource(url=database_url)
    result = tiny_reconciliation_job.execute_in_process(
        instance=instance,
        resources={"db": db},
        tags={"warp/reconcile-request": "42", "warp/dry-run": "true"},
        raise_on_error=False,
    )
    assert not result.success
    run_id = result.dagster_run.run_id
    assert runs.get_run(engine, run_id).status == "running"

    returned = _evaluate(
        run_failure_alert_sensor, instance, run_id, result.get_run_failure_event(),
        {"db": db, "email": _email_resource(smtp_server)},
    )
    assert returned is None

    record = runs.get_run(engine, run_id)
    assert record.status == "failed"
    assert record.request_id == "42" and record.dry_run is True
    assert record.failure_reason.startswith("Run failed: ")
    assert "explode: RuntimeError: HubSpot answered <b>503</b>" in record.failure_reason

    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == f"[warp-sync] ALERT: tiny_reconciliation_job failed - run {run_id[:8]}"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html_part = message.get_body(preferencelist=("html",)).get_content()
    assert run_id in text and "tiny_reconciliation_job" in text and "Request: 42" in text
    assert "HubSpot answered <b>503</b>" in text
    assert "HubSpot answered &lt;b&gt;503&lt;/b&gt;" in html_part


def test_a_cancelled_reconciliation_run_counts_as_failed(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    dagster_run = instance.create_run_for_job(
        job_def=tiny_reconciliation_job, tags={**FLOW, "warp/reconcile-request": "7"}
    )
    runs.start_run(engine, dagster_run.run_id, request_id="7")
    event = instance.report_run_canceled(dagster_run, message="Cancelled by an operator from the UI.")
    assert instance.get_run_by_id(dagster_run.run_id).status == dg.DagsterRunStatus.CANCELED

    _evaluate(
        run_canceled_alert_sensor, instance, dagster_run.run_id, event,
        {"db": DatabaseResource(url=database_url), "email": _email_resource(smtp_server)},
    )

    record = runs.get_run(engine, dagster_run.run_id)
    assert record.status == "failed" and record.request_id == "7"
    assert record.failure_reason == "Run cancelled: Cancelled by an operator from the UI."
    [message] = smtp_server.wait_for(1)
    assert message["Subject"].startswith("[warp-sync] ALERT: tiny_reconciliation_job cancelled - run ")


def test_a_run_whose_process_died_before_recording_itself_gets_a_failed_row(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    # What run monitoring reports when the run worker vanished: a run failure with no step failures.
    dagster_run = instance.create_run_for_job(job_def=tiny_reconciliation_job, tags={**FLOW, "warp/dry-run": "true"})
    event = instance.report_run_failed(dagster_run, message="Run worker process unexpectedly terminated.")
    _evaluate(
        run_failure_alert_sensor, instance, dagster_run.run_id, event,
        {"db": DatabaseResource(url=database_url), "email": _email_resource(smtp_server)},
    )
    record = runs.get_run(engine, dagster_run.run_id)
    assert record.status == "failed" and record.dry_run is True
    assert record.failure_reason == "Run failed: Run worker process unexpectedly terminated."
    smtp_server.wait_for(1)


def test_every_jobs_failures_alert_but_only_reconciliation_runs_get_a_row(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    result = other_job.execute_in_process(instance=instance, raise_on_error=False)
    _evaluate(
        run_failure_alert_sensor, instance, result.dagster_run.run_id, result.get_run_failure_event(),
        {"db": DatabaseResource(url=database_url), "email": _email_resource(smtp_server)},
    )
    assert runs.get_run(engine, result.dagster_run.run_id) is None
    [message] = smtp_server.wait_for(1)
    assert message["Subject"] == f"[warp-sync] ALERT: other_job failed - run {result.dagster_run.run_id[:8]}"
    assert "fail_quietly: RuntimeError: not ours" in message.get_body(preferencelist=("plain",)).get_content()


def test_without_email_the_row_is_still_marked(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("SMTP_HOST", "WARP_REPORT_RECIPIENTS"):
        monkeypatch.delenv(variable, raising=False)
    dagster_run = instance.create_run_for_job(job_def=tiny_reconciliation_job, tags=FLOW)
    event = instance.report_run_canceled(dagster_run)
    _evaluate(
        run_canceled_alert_sensor, instance, dagster_run.run_id, event,
        {"db": DatabaseResource(url=database_url), "email": email_resource_from_env()},
    )
    assert runs.get_run(engine, dagster_run.run_id).status == "failed"


def test_an_smtp_outage_fails_the_tick_after_marking_the_row(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    dagster_run = instance.create_run_for_job(job_def=tiny_reconciliation_job, tags=FLOW)
    event = instance.report_run_canceled(dagster_run)
    email = _email_resource(smtp_server, SMTP_PORT="1")  # nothing listens there
    with pytest.raises(RuntimeError, match="SMTP_UNAVAILABLE"):
        _evaluate(
            run_canceled_alert_sensor, instance, dagster_run.run_id, event,
            {"db": DatabaseResource(url=database_url), "email": email},
        )
    assert runs.get_run(engine, dagster_run.run_id).status == "failed"


def test_a_malformed_email_setting_still_lets_the_row_be_marked(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    dagster_run = instance.create_run_for_job(job_def=tiny_reconciliation_job, tags=FLOW)
    event = instance.report_run_canceled(dagster_run)
    email = _email_resource(smtp_server, SMTP_PORT="twenty-five")
    with pytest.raises(RuntimeError, match="SMTP_PORT"):
        _evaluate(
            run_canceled_alert_sensor, instance, dagster_run.run_id, event,
            {"db": DatabaseResource(url=database_url), "email": email},
        )
    assert runs.get_run(engine, dagster_run.run_id).status == "failed"


def test_the_sensor_finds_failed_runs_itself_and_skips_other_jobs(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher
) -> None:
    # The whole sensor as the daemon runs it: it watches every job of the location and filters.
    db = DatabaseResource(url=database_url)
    defs = dg.Definitions(
        jobs=[tiny_reconciliation_job, other_job],
        sensors=[run_failure_alert_sensor],
        resources={"db": db, "email": _email_resource(smtp_server)},
    )
    repository = defs.get_repository_def()

    def tick(cursor: str | None) -> dg.SensorEvaluationContext:
        return dg.build_sensor_context(
            instance=instance, cursor=cursor, repository_def=repository, resources={"db": db, "email": _email_resource(smtp_server)}
        )

    with tick(None) as first:  # the first tick only places the cursor
        run_failure_alert_sensor.evaluate_tick(first)
        cursor = first.cursor
    failed = tiny_reconciliation_job.execute_in_process(instance=instance, resources={"db": db}, raise_on_error=False)
    other = other_job.execute_in_process(instance=instance, raise_on_error=False)
    with tick(cursor) as second:
        run_failure_alert_sensor.evaluate_tick(second)

    assert runs.get_run(engine, failed.dagster_run.run_id).status == "failed"
    assert runs.get_run(engine, other.dagster_run.run_id) is None
    subjects = sorted(m["Subject"].rsplit(" - ", 1)[0] for m in smtp_server.wait_for(2))
    assert subjects == ["[warp-sync] ALERT: other_job failed", "[warp-sync] ALERT: tiny_reconciliation_job failed"]


def test_the_conditions_sensor_alerts_by_email_and_webhook_and_resolves_a_job_once_it_runs_again(
    instance: dg.DagsterInstance, database_url: str, engine: sa.Engine, smtp_server: SmtpCatcher,
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    httpserver.expect_request("/hooks/alerts", method="POST").respond_with_data("ok")
    monkeypatch.setenv("WARP_ALERT_WEBHOOK_URL", httpserver.url_for("/hooks/alerts"))
    resources = {"db": DatabaseResource(url=database_url), "email": _email_resource(smtp_server)}
    failed = other_job.execute_in_process(instance=instance, raise_on_error=False)
    _evaluate(run_failure_alert_sensor, instance, failed.dagster_run.run_id, failed.get_run_failure_event(), resources)
    raise_every_condition(engine)

    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        skipped = warp_alerts_sensor(context)
    assert f"{len(EVERY_CONDITION) + 1} condition(s) firing" in skipped.skip_message
    assert len(smtp_server.wait_for(1 + len(EVERY_CONDITION))) == 1 + len(EVERY_CONDITION)
    assert len(httpserver.log) == 1 + len(EVERY_CONDITION)

    # The job runs again and succeeds; the conditions are dealt with.
    @dg.job(name="other_job")
    def other_job_fixed() -> None:
        succeed()

    other_job_fixed.execute_in_process(instance=instance)
    clear_every_condition(engine)
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        warp_alerts_sensor(context)
    resolved = [json.loads(request.data)["text"].splitlines()[0] for request, _ in httpserver.log[-(1 + len(EVERY_CONDITION)):]]
    assert all(text.startswith("[warp-sync] RESOLVED: ") for text in resolved)
    assert f"[warp-sync] RESOLVED: other_job failed - run {failed.dagster_run.run_id[:8]}" in resolved


@dg.op
def succeed() -> None: ...


def test_the_sensors_are_defined_running_in_the_code_location() -> None:
    from warp_sync_pipeline.definitions import defs

    loaded = defs()
    sensors = {sensor.name: sensor for sensor in loaded.sensors or []}
    for name in ("run_failure_alert_sensor", "run_canceled_alert_sensor", "warp_alerts_sensor"):
        sensor = sensors[name]
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.required_resource_keys >= {"db", "email"}
    assert {"email", "parquet_io_manager"} <= set(loaded.resources)
