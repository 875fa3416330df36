"""`warp-sync events status|retry`: stored HubSpot webhook events (hubspot_webhook_events) for operators."""

from __future__ import annotations

import sys

import click

from warp_sync_pipeline.cli_queue import database_engine, echo_counts_and_pauses


@click.group("events")
def events() -> None:
    """Stored HubSpot webhook events: what waits, what failed and why."""


@events.command("status")
@click.option("--limit", default=20, show_default=True, help="Failed events to list.")
def status(limit: int) -> None:
    """Counts by status, events due now, open pauses, and the latest failed events with their reasons."""
    from warp_sync_pipeline.core.inbound import events_status

    engine = database_engine()
    snapshot = events_status(engine, limit=limit)
    echo_counts_and_pauses(engine, snapshot.counts, snapshot.due)
    for event in snapshot.failed:
        retry = f"next try {event.next_attempt_at.isoformat()}" if event.next_attempt_at else "no attempts left"
        click.echo(f"failed  event {event.id} {event.subscription_type or '?'} company {event.object_id or '?'}: "
                   f"{event.reason} [attempts {event.attempts}; {retry}]")


@events.command("retry")
@click.option("--failed", is_flag=True, help="Put failed events back (their cause is fixed).")
@click.option("--event", "event_ids", multiple=True, type=int, help="Only this event id (repeatable).")
def retry(failed: bool, event_ids: tuple[int, ...]) -> None:
    """Queue failed events again with fresh attempts; the next webhook run applies them."""
    from warp_sync_pipeline.core.inbound import retry_failed_events

    if not failed:
        click.echo("error: say which events to retry: --failed", err=True)
        sys.exit(2)
    count = retry_failed_events(database_engine(), event_ids=list(event_ids) or None)
    click.echo(f"queued {count} event(s) again")
