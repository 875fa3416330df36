"""Customers and field rules in the test's database, shared by the areas that need them.

`make_customer(name, *, company_id=None, **columns)` inserts a customer in plain SQL (no HubSpot) and returns
its id: a fresh BAN each call (`next_ban`), dict values stored as JSON, and with `company_id` the customer is
linked to that HubSpot company (hubspot_link_status 'linked' unless given).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.fields import FieldRules, load_rules

_ban_numbers = itertools.count(300_000_001)
_JSON_COLUMNS = ("services", "external_ids")


def next_ban() -> str:
    """A BAN no other call in this test session has drawn."""
    return f"ZT-{next(_ban_numbers):09d}"


@pytest.fixture
def rules(engine: sa.Engine) -> FieldRules:
    """The field rules as the migrations seed them."""
    with engine.connect() as conn:
        return load_rules(conn)


@pytest.fixture
def make_customer(engine: sa.Engine) -> Callable[..., UUID]:
    def make(name: str = "Acme Telecom", *, company_id: int | str | None = None, **columns: Any) -> UUID:
        values: dict[str, Any] = {"ban": next_ban(), "company_name": name, "status": "ACTIVE", **columns}
        if company_id is not None:
            values.setdefault("hubspot_link_status", "linked")
            values["external_ids"] = {"hubspot_company_id": str(company_id)}
        values = {key: json.dumps(value) if isinstance(value, dict) else value for key, value in values.items()}
        names = ", ".join(values)
        params = ", ".join(f"CAST(:{key} AS jsonb)" if key in _JSON_COLUMNS else f":{key}" for key in values)
        with engine.begin() as conn:
            return conn.execute(
                sa.text(f"INSERT INTO customers ({names}) VALUES ({params}) RETURNING id"), values
            ).scalar_one()

    return make
