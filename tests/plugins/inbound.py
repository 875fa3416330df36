"""The inbound flow's fixtures, shared by its core and Dagster tests: stored events, the processor, reading back.

Events are HubSpot's real payloads (tests/plugins/signing.py builds them) stored through the
receiver's own store (core.webhooks.store_batch), so the processor sees exactly what the route stores.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.inbound import InboundSettings, ProcessSummary, process_events
from warp_sync_pipeline.core.webhooks import store_batch

_company_ids = itertools.count(70_000_000_001)



def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A fixed day, so tests can speak of 9:00 and 9:05 as the original note does."""
    return datetime(2025, 10, 13, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def new_company_id() -> Callable[[], int]:
    return lambda: next(_company_ids)


@pytest.fixture
def store(engine: sa.Engine) -> Callable[[list[dict[str, Any]]], Any]:
    """Store a batch of events as the receiver does."""
    return lambda events: store_batch(engine, events)


@pytest.fixture
def process(engine: sa.Engine) -> Callable[..., ProcessSummary]:
    """Run the processor once over whatever is due."""

    def run(hubspot: Any = None, **settings: Any) -> ProcessSummary:
        return process_events(engine, hubspot=hubspot, settings=InboundSettings(**settings), run_id="test-run")

    return run


# --- reading back ------------------------------------------------------------------------------------------------
def customer_row(engine: sa.Engine, customer_id: UUID) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT * FROM customers WHERE id = :id"), {"id": customer_id}).one()._mapping)


def event_rows(engine: sa.Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT id, status, reason, result, error, attempts, property_name, property_value, subscription_type, "
            "object_id, occurred_at, lease_token, next_attempt_at FROM hubspot_webhook_events "
            "ORDER BY occurred_at, id"
        ))
        return [dict(r._mapping) for r in rows]


def reason_codes(engine: sa.Engine) -> list[str | None]:
    return [None if r["reason"] is None else r["reason"].split(":")[0] for r in event_rows(engine)]


def sync_log(engine: sa.Engine, customer_id: UUID | None = None) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        sql = "SELECT * FROM hubspot_sync_log WHERE trigger = 'webhook'"
        params: dict[str, Any] = {}
        if customer_id is not None:
            sql += " AND customer_id = :id"
            params["id"] = customer_id
        return [dict(r._mapping) for r in conn.execute(sa.text(sql + " ORDER BY id"), params)]


def queue_rows(engine: sa.Engine, customer_id: UUID | None = None) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        sql = "SELECT * FROM hubspot_sync_queue"
        params: dict[str, Any] = {}
        if customer_id is not None:
            sql += " WHERE customer_id = :id"
            params["id"] = customer_id
        return [dict(r._mapping) for r in conn.execute(sa.text(sql + " ORDER BY id"), params)]


def field_state(engine: sa.Engine, customer_id: UUID, field: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT * FROM hubspot_field_state WHERE customer_id = :id AND warp_field = :f"),
            {"id": customer_id, "f": field},
        ).first()
        return None if row is None else dict(row._mapping)


def set_agreed(engine: sa.Engine, customer_id: UUID, field: str, value: str, when: datetime, *,
               warp: tuple[str, datetime] | None = None, hubspot: tuple[str, datetime] | None = None) -> None:
    """Record the last agreed value (and optionally each side's last known change) as a sync would have."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO hubspot_field_state (customer_id, warp_field, agreed_value, agreed_at, warp_value, "
                "warp_changed_at, hubspot_value, hubspot_changed_at) VALUES (:id, :f, :v, :at, :wv, :wat, :hv, :hat) "
                "ON CONFLICT (customer_id, warp_field) DO UPDATE SET agreed_value = EXCLUDED.agreed_value, "
                "agreed_at = EXCLUDED.agreed_at, warp_value = EXCLUDED.warp_value, "
                "warp_changed_at = EXCLUDED.warp_changed_at, hubspot_value = EXCLUDED.hubspot_value, "
                "hubspot_changed_at = EXCLUDED.hubspot_changed_at"
            ),
            {"id": customer_id, "f": field, "v": value, "at": when,
             "wv": warp[0] if warp else value, "wat": warp[1] if warp else when,
             "hv": hubspot[0] if hubspot else value, "hat": hubspot[1] if hubspot else when},
        )
