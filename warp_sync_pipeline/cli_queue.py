"""`warp-sync queue status|retry`: the outbound queue (hubspot_sync_queue) for operators."""

from __future__ import annotations

import sys

import click


def database_engine():  # noqa: ANN202
    from warp_sync_pipeline.core.db import make_engine
    from warp_sync_pipeline.devstack.runtime import ensure_runtime

    return make_engine(ensure_runtime(with_dagster=False, apply_env=False).database_url)


def echo_counts_and_pauses(engine, counts: dict[str, int], due: int) -> None:  # noqa: ANN001 - an sa.Engine
    """The status line of a queue (counts by status, due now), then one line per open pause of the HubSpot flows."""
    from warp_sync_pipeline.core.pauses import open_pauses

    click.echo("  ".join(f"{name}={count}" for name, count in counts.items()) + f"  due={due}")
    for pause in open_pauses(engine):
        click.echo(f"paused  {pause.describe()}")


@click.group("queue")
def queue() -> None:
    """The outbound queue: WARP changes waiting to be sent to HubSpot."""


@queue.command("status")
@click.option("--limit", default=20, show_default=True, help="Dead and parked rows to list.")
def status(limit: int) -> None:
    """Counts by status, rows due now, open pauses, and the latest dead and parked rows with their reasons."""
    from warp_sync_pipeline.core.outbound import queue_status

    engine = database_engine()
    snapshot = queue_status(engine, limit=limit)
    echo_counts_and_pauses(engine, snapshot.counts, snapshot.due)
    if snapshot.oldest_due_at is not None:
        click.echo(f"oldest due since {snapshot.oldest_due_at.isoformat()}")
    for row in snapshot.stopped:
        click.echo(f"{row.status:<7} customer {row.customer_id} ({row.ban or '?'}) {row.code}: {row.error} "
                   f"[fields: {', '.join(row.fields)}; attempts {row.attempts}]")


@queue.command("retry")
@click.option("--dead", is_flag=True, help="Put dead rows back (their last error is fixed).")
@click.option("--parked", is_flag=True, help="Put parked rows back (the customer's company link is fixed).")
@click.option("--customer", "customers", multiple=True, help="Only this customer id (repeatable).")
def retry(dead: bool, parked: bool, customers: tuple[str, ...]) -> None:
    """Queue dead (and/or parked) rows again with fresh attempts; the next drain sends them."""
    from warp_sync_pipeline.core.outbound import QueueStatus, retry_stopped

    statuses = [s for s, wanted in ((QueueStatus.DEAD, dead), (QueueStatus.PARKED, parked)) if wanted]
    if not statuses:
        click.echo("error: say which rows to retry: --dead and/or --parked", err=True)
        sys.exit(2)
    try:
        count = retry_stopped(database_engine(), statuses=statuses, customer_ids=list(customers) or None)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"queued {count} row(s) again")
