"""Turns reconciliation requests (POST /v1/sync/reconcile) into runs of reconciliation_job.

A cursor on the request id, one run_key per request (a request never becomes two runs), and the
request id as a run tag, which the first asset records in the run row the API reads back. A request that already
has a run (a cursor reset, or a tick that died after submitting) is skipped, not asked for again.
"""

import dagster as dg

from warp_sync_pipeline.core.reconcile_requests import mark_submitted, requests_after
from warp_sync_pipeline.defs.reconciliation import reconciliation_job
from warp_sync_pipeline.resources.database import DatabaseResource
from warp_sync_pipeline.runs import DRY_RUN_TAG, FLOW_TAG, RECONCILIATION_FLOW, REQUEST_TAG


@dg.sensor(
    job=reconciliation_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a reconciliation run for each request recorded through the API.",
)
def reconcile_requests_sensor(context: dg.SensorEvaluationContext, db: DatabaseResource) -> dg.SensorResult | dg.SkipReason:
    last_id = int(context.cursor or 0)
    pending = requests_after(db.engine, last_id)
    if not pending:
        return dg.SkipReason(f"No reconciliation requests after #{last_id}.")
    submitted = _requests_with_runs(context.instance, [request.id for request in pending])
    cursor = str(pending[-1].id)
    if submitted:
        mark_submitted(db.engine, sorted(submitted))
        pending = [request for request in pending if request.id not in submitted]
        if not pending:
            return dg.SensorResult(skip_reason=f"Requests {', '.join(f'#{i}' for i in sorted(submitted))} have "
                                               "runs already.", cursor=cursor)
    run_requests = [
        dg.RunRequest(
            run_key=f"reconcile-request-{request.id}",
            tags={FLOW_TAG: RECONCILIATION_FLOW, REQUEST_TAG: str(request.id),
                  DRY_RUN_TAG: "true" if request.dry_run else "false",
                  "warp/requested-by": request.requested_by},
            run_config=dg.RunConfig(resources={"reconciliation": {"config": {
                "dry_run": request.dry_run, "allow_mass_write": request.allow_mass_write}}}),
        )
        for request in pending
    ]
    mark_submitted(db.engine, [request.id for request in pending])
    return dg.SensorResult(run_requests=run_requests, cursor=cursor)


def _requests_with_runs(instance: dg.DagsterInstance, request_ids: list[int]) -> set[int]:
    runs = instance.get_runs(dg.RunsFilter(tags={REQUEST_TAG: [str(i) for i in request_ids]}))
    return {int(run.tags[REQUEST_TAG]) for run in runs if (run.tags.get(REQUEST_TAG) or "").isdigit()}
