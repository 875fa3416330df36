"""Retention: finished events go after three days (the dedupe window outlasts HubSpot's day of retries),
failed ones without attempts left after thirty; waiting events never."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.plugins.inbound import event_rows
from tests.plugins.signing import property_change
from warp_sync_pipeline.core.inbound import InboundSettings, purge_webhook_events

# (label, status, received days ago, next attempt set)
ROWS = [
    ("processed-old", "processed", 4, False),
    ("processed-recent", "processed", 2, False),
    ("ignored-old", "ignored", 10, False),
    ("pending-old", "pending", 40, False),
    ("failed-retrying-old", "failed", 40, True),
    ("failed-final-recent", "failed", 20, False),
    ("failed-final-old", "failed", 31, False),
]


def test_purge_deletes_only_finished_events_past_their_retention(
    engine: sa.Engine, new_company_id: Callable, store: Callable
) -> None:
    store([property_change(new_company_id(), "name", label) for label, *_ in ROWS])
    with engine.begin() as conn:
        for label, status, days, retrying in ROWS:
            conn.execute(
                sa.text(
                    "UPDATE hubspot_webhook_events SET status = :status, received_at = now() - :age, "
                    "reason = CASE WHEN :status IN ('ignored', 'failed') THEN 'TEST: set by the test' END, "
                    "next_attempt_at = CASE WHEN :retrying THEN now() END WHERE property_value = :label"
                ),
                {"status": status, "age": timedelta(days=days), "retrying": retrying, "label": label},
            )

    result = purge_webhook_events(engine, batch_size=1)  # batches of one: the loop runs to the end

    assert (result.finished, result.failed) == (2, 1)
    assert sorted(e["property_value"] for e in event_rows(engine)) == sorted(
        ["processed-recent", "pending-old", "failed-retrying-old", "failed-final-recent"])
    assert purge_webhook_events(engine) == type(result)(0, 0)


def test_retention_shorter_than_three_days_is_refused() -> None:
    with pytest.raises(ValueError, match="three days"):
        InboundSettings(failed_retention=timedelta(days=1))
