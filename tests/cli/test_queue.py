"""`warp-sync queue status` and `warp-sync queue retry --dead` on a real database."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from click.testing import CliRunner

from tests.plugins.outbound import queue_rows
from warp_sync_pipeline.cli import main


def _dead_row(engine: sa.Engine, make_customer: Callable) -> object:
    customer = make_customer()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET current_balance = 4 WHERE id = :id"), {"id": customer})
        conn.execute(sa.text(
            "UPDATE hubspot_sync_queue SET status = 'dead', attempts = 3, finished_at = now(), "
            "last_error_code = 'HUBSPOT_UNAVAILABLE', last_error = 'ServiceUnavailable: HubSpot answered 503'"))
    return customer


def test_status_lists_counts_and_dead_rows_with_reasons(
    database_url: str, engine: sa.Engine, make_customer: Callable
) -> None:
    customer = _dead_row(engine, make_customer)
    result = CliRunner().invoke(main, ["queue", "status"], env={"WARP_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "dead=1" in result.output and "pending=0" in result.output
    assert f"customer {customer}" in result.output and "HUBSPOT_UNAVAILABLE" in result.output


def test_retry_dead_puts_dead_rows_back_with_fresh_attempts(
    database_url: str, engine: sa.Engine, make_customer: Callable
) -> None:
    customer = _dead_row(engine, make_customer)
    result = CliRunner().invoke(main, ["queue", "retry", "--dead"], env={"WARP_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "queued 1 row(s) again" in result.output
    (row,) = queue_rows(engine, customer)
    assert (row["status"], row["attempts"], row["fields"]) == ("pending", 0, ["current_balance"])
    assert "retry_dead" in row["reasons"]


def test_retry_needs_to_be_told_which_rows(database_url: str) -> None:
    result = CliRunner().invoke(main, ["queue", "retry"], env={"WARP_DATABASE_URL": database_url})
    assert result.exit_code == 2 and "--dead" in result.output
