"""Fixtures of the outbound tests: rules as seeded, customers in a real database."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from uuid import UUID

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules, load_rules

_ban_numbers = itertools.count(300_000_001)


def next_ban() -> str:
    return f"ZT-{next(_ban_numbers):09d}"


@pytest.fixture
def rules(engine: sa.Engine) -> FieldRules:
    with engine.connect() as conn:
        return load_rules(conn)


@pytest.fixture
def make_customer(engine: sa.Engine) -> Callable[..., UUID]:
    """Insert a customer in plain SQL (no HubSpot) and return its id; a fresh BAN each call."""

    def make(name: str = "Acme Telecom", **columns: object) -> UUID:
        values = {"ban": next_ban(), "company_name": name, "status": "ACTIVE", **columns}
        values = {k: json.dumps(v) if isinstance(v, dict) else v for k, v in values.items()}
        names = ", ".join(values)
        params = ", ".join(
            f"CAST(:{key} AS jsonb)" if key in ("services", "external_ids") else f":{key}" for key in values
        )
        with engine.begin() as conn:
            return conn.execute(
                sa.text(f"INSERT INTO customers ({names}) VALUES ({params}) RETURNING id"), values
            ).scalar_one()

    return make


def queue_rows(engine: sa.Engine, customer_id: UUID | None = None) -> list[dict]:
    sql = "SELECT * FROM hubspot_sync_queue"
    params: dict[str, object] = {}
    if customer_id is not None:
        sql += " WHERE customer_id = :c"
        params["c"] = customer_id
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY id"), params).mappings()]
