"""`warp-sync events status` and `warp-sync events retry --failed` on a real database."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from tests.plugins.inbound import event_rows
from tests.plugins.signing import property_change
from warp_sync_pipeline.cli import main
from warp_sync_pipeline.core.pauses import PauseCause, PauseSettings, open_pause


def _failed_events(engine: sa.Engine, store: Callable[[list[dict[str, Any]]], Any], count: int) -> list[int]:
    store([property_change(700 + n, "warp_credit_limit", "10") for n in range(count)])
    with engine.begin() as conn:
        return list(conn.execute(sa.text(
            "UPDATE hubspot_webhook_events SET status = 'failed', attempts = 5, processed_at = now(), "
            "reason = 'HUBSPOT_FAILED: AuthFailed: 401', error = 'AuthFailed: 401' RETURNING id")).scalars())


def test_status_lists_counts_failed_events_and_open_pauses(
    database_url: str, engine: sa.Engine, store: Callable,
) -> None:
    (event_id,) = _failed_events(engine, store, 1)
    open_pause(engine, PauseCause.TOKEN_REFUSED, "HubSpot refused the token", opened_by="test",
               settings=PauseSettings())
    result = CliRunner().invoke(main, ["events", "status"], env={"WARP_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "failed=1" in result.output and "pending=0" in result.output
    assert f"event {event_id} company.propertyChange" in result.output and "no attempts left" in result.output
    assert "paused  HubSpot flows paused (token_refused" in result.output


def test_retry_failed_puts_failed_events_back_with_fresh_attempts(
    database_url: str, engine: sa.Engine, store: Callable,
) -> None:
    first, second = _failed_events(engine, store, 2)
    one = CliRunner().invoke(main, ["events", "retry", "--failed", "--event", str(first)],
                             env={"WARP_DATABASE_URL": database_url})
    assert one.exit_code == 0 and "queued 1 event(s) again" in one.output
    rest = CliRunner().invoke(main, ["events", "retry", "--failed"], env={"WARP_DATABASE_URL": database_url})
    assert rest.exit_code == 0 and "queued 1 event(s) again" in rest.output
    rows = {r["id"]: r for r in event_rows(engine)}
    assert {(rows[i]["status"], rows[i]["attempts"], rows[i]["reason"]) for i in (first, second)} == {
        ("pending", 0, None)}


def test_retry_needs_to_be_told_which_events(database_url: str) -> None:
    result = CliRunner().invoke(main, ["events", "retry"], env={"WARP_DATABASE_URL": database_url})
    assert result.exit_code == 2 and "--failed" in result.output
