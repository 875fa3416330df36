"""The Dagster adapters: the sensor finds waiting events (and skips while a run is active), the job applies them
with counts as metadata and an observation of hubspot_webhook_events, and retention purges old events."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa

from tests.plugins.inbound import customer_row
from tests.plugins.signing import property_change
from warp_sync_pipeline.defs.inbound import (
    hubspot_webhook_events_job,
    hubspot_webhook_events_sensor,
)
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.resources.hubspot import HubSpotResource


def _tick(instance: dg.DagsterInstance, database_url: str) -> Any:
    with dg.build_sensor_context(instance=instance, resources={"db": DatabaseResource(url=database_url)}) as context:
        return hubspot_webhook_events_sensor.evaluate_tick(context)


def test_the_sensor_requests_a_run_only_while_events_wait_and_none_is_active(
    database_url: str, make_customer: Callable, new_company_id: Callable, store: Callable
) -> None:
    assert hubspot_webhook_events_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.instance_for_test() as instance:
        idle = _tick(instance, database_url)
        assert idle.run_requests == [] and "No webhook events" in idle.skip_message

        company = new_company_id()
        make_customer(company_id=company)
        store([property_change(company, "warp_payment_terms", "NET45")])
        due = _tick(instance, database_url)
        [request] = due.run_requests
        assert request.run_key is None
        assert request.tags["warp/flow"] == "webhook-apply" and request.tags["warp/due-events"] == "1"

        instance.create_run_for_job(job_def=hubspot_webhook_events_job, status=dg.DagsterRunStatus.STARTED)
        busy = _tick(instance, database_url)
        assert busy.run_requests == [] and "already queued or running" in busy.skip_message


def test_the_job_applies_events_and_reports_counts_by_outcome(
    engine: sa.Engine, database_url: str, sandbox: Any, make_customer: Callable, new_company_id: Callable,
    store: Callable,
) -> None:
    company = new_company_id()
    customer = make_customer(company_id=company, credit_limit=Decimal("5000"))
    store([property_change(company, "warp_credit_limit", "10000", occurredAt=1_760_000_000_000),
           property_change(company, "domain", "acme.example", occurredAt=1_760_000_000_001),
           property_change(new_company_id(), "name", "Unknown Ltd", occurredAt=1_760_000_000_002)])
    assert hubspot_webhook_events_job.tags["warp/flow"] == "webhook-apply"

    with dg.instance_for_test() as instance:
        result = hubspot_webhook_events_job.execute_in_process(
            instance=instance,
            resources={
                "db": DatabaseResource(url=database_url),
                "hubspot": HubSpotResource(base_url=sandbox.base_url, access_token=sandbox.access_token),
            },
        )

    assert result.success
    assert customer_row(engine, customer)["credit_limit"] == Decimal("10000.00")
    summary = result.output_for_node("apply_hubspot_webhook_events")
    assert (summary["processed"], summary["ignored"], summary["failed"]) == (1, 2, 0)
    assert summary["reasons"] == {"NO_AGREED_VALUE_HUBSPOT_WINS": 1, "UNKNOWN_COMPANY": 1, "UNMAPPED_PROPERTY": 1}
    [observation] = result.asset_observations_for_node("apply_hubspot_webhook_events")
    assert observation.asset_key == dg.AssetKey("hubspot_webhook_events")
    assert observation.metadata["processed"].value == 1 and observation.metadata["ignored"].value == 2
    # The run id is on the audit row.
    with engine.connect() as conn:
        run_ids = conn.execute(sa.text("SELECT DISTINCT dagster_run_id FROM hubspot_sync_log WHERE trigger = 'webhook'"))
        assert list(run_ids.scalars()) == [result.run_id]
