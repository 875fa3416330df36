"""Fixtures of the sync-state tests: rules as seeded, and customers in a real database."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from uuid import UUID

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules, load_rules

_ban_numbers = itertools.count(100_000_001)


@pytest.fixture
def rules(engine: sa.Engine) -> FieldRules:
    with engine.connect() as conn:
        return load_rules(conn)


@pytest.fixture
def make_customer(engine: sa.Engine) -> Callable[..., UUID]:
    """Insert a customer and return its id (a fresh BAN each call)."""

    def make(name: str = "Acme Telecom", **columns: object) -> UUID:
        values = {"ban": f"ZT-{next(_ban_numbers):09d}", "company_name": name, "status": "ACTIVE", **columns}
        names = ", ".join(values)
        params = ", ".join(f":{key}" for key in values)
        with engine.begin() as conn:
            return conn.execute(
                sa.text(f"INSERT INTO customers ({names}) VALUES ({params}) RETURNING id"), values
            ).scalar_one()

    return make
