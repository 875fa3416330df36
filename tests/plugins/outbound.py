"""The outbound flow's fixtures, shared by its core, receiver, Dagster and CLI tests: the receiver on the sandbox,
clients with short waits, customers linked to seeded companies, queue helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.plugins.customers import next_ban
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue, upsert_field_state
from warp_sync_pipeline.core.fields import FieldRules
from warp_sync_pipeline.core.hubspot import HubSpotClient, RetryPolicy
from warp_sync_pipeline.core.normalize import to_hubspot, to_hubspot_iso
from warp_sync_pipeline.core.outbound import DrainSettings
from webhook_receiver.app import close_app, create_app
from webhook_receiver.resources import receiver_resources

# Short waits keep retry tests fast; the logic is the one production uses.
FAST_RETRY = RetryPolicy(max_attempts=4, backoff_initial_s=0.05, backoff_max_s=0.3, jitter_s=0.05,
                         rate_limit_wait_s=0.2)

def queue_rows(engine: sa.Engine, customer_id: UUID | None = None) -> list[dict]:
    sql = "SELECT * FROM hubspot_sync_queue"
    params: dict[str, object] = {}
    if customer_id is not None:
        sql += " WHERE customer_id = :c"
        params["c"] = customer_id
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY id"), params).mappings()]


# --- the receiver on the sandbox ---------------------------------------------------------------------------------

API_TOKEN = "outbound-test-admin-token"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Receiver:
    app: Flask
    client: FlaskClient

    def post(self, body: object, headers: dict[str, str] | None = None) -> TestResponse:
        return self.client.post("/v1/customers", json=body, headers={**AUTH, **(headers or {})})

    def patch(self, customer_id: object, body: object) -> TestResponse:
        return self.client.patch(f"/v1/customers/{customer_id}", json=body, headers=AUTH)

    def get(self, customer_id: object) -> TestResponse:
        return self.client.get(f"/v1/customers/{customer_id}", headers=AUTH)


def receiver_config(database_url: str, sandbox, **overrides: object) -> dict[str, object]:  # noqa: ANN001
    return {
        "DATABASE_URL": database_url,
        "WARP_API_TOKEN": API_TOKEN,
        "HUBSPOT_BASE_URL": sandbox.base_url,
        "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
        "HUBSPOT_REQUEST_TIMEOUT_SECONDS": 5,
        "WARP_CREATE_TIME_BUDGET_SECONDS": 3,
        "WARP_CREATE_CLEANUP_SECONDS": 3,
        **overrides,
    }


@contextmanager
def running_receiver(database_url: str, sandbox, *, properties_ensured: bool = True,  # noqa: ANN001
                     **overrides: object) -> Iterator[Receiver]:
    """The receiver on the sandbox. properties_ensured: as after its first create (the app ensures HubSpot's
    properties then, never while it is built), so a test's HubSpot faults meet the create itself."""
    app = create_app(receiver_config(database_url, sandbox, **overrides))
    try:
        resources = receiver_resources(app)
        hubspot = resources.hubspot()
        if properties_ensured and hubspot is not None:
            resources.properties.ensure(hubspot)
        yield Receiver(app, app.test_client())
    finally:
        close_app(app)


@pytest.fixture
def receiver(database_url: str, sandbox) -> Iterator[Receiver]:  # noqa: ANN001
    with running_receiver(database_url, sandbox) as running:
        yield running


@pytest.fixture
def hubspot(sandbox) -> Iterator[HubSpotClient]:  # noqa: ANN001
    """A client on the sandbox with short waits (the sandbox's rate limit is off by default)."""
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, request_timeout_s=3,
                           retry=FAST_RETRY)
    yield client
    client.close()


@pytest.fixture
def warp_hubspot(hubspot: HubSpotClient) -> HubSpotClient:
    hubspot.ensure_properties()
    return hubspot


def live_companies(sandbox) -> list[dict]:  # noqa: ANN001
    return [c for c in sandbox.control.all_companies() if not c.get("archived")]


def customer_rows(engine: sa.Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text("SELECT * FROM customers ORDER BY created_at")).mappings()]


def api_calls(sandbox, endpoint: str | None = None) -> int:  # noqa: ANN001
    counters = sandbox.control.counters()
    if endpoint is None:
        return sum(n for name, n in counters["by_endpoint"].items() if "/crm/" in name)
    return counters["by_endpoint"].get(endpoint, 0)


# --- customers already linked to sandbox companies ---------------------------------------------------------------

AGREED_AGO = timedelta(hours=1)


@pytest.fixture
def make_linked(engine: sa.Engine, sandbox, warp_hubspot: HubSpotClient, rules: FieldRules):  # noqa: ANN001, ANN201
    """make_linked(count, **columns) -> [(customer id, company id)]: WARP customers (plain SQL) whose companies
    are seeded in the sandbox with the same values, linked, with agreed field state from an hour ago."""

    def make(count: int = 1, **columns: object) -> list[tuple[UUID, str]]:
        base = {"company_name": "Linked Co", "status": "ACTIVE", "credit_limit": Decimal("1000.00"),
                "current_balance": Decimal("0.00"), "services": {"voice": True, "messaging": False, "data": True},
                "contact_email": "billing@linked.example", "payment_terms": "NET30", **columns}
        rows = [{**base, "ban": next_ban(), "company_name": f"{base['company_name']} {n}"} for n in range(count)]
        agreed_at = datetime.now(UTC) - AGREED_AGO
        companies = sandbox.control.seed([
            {"properties": {rules.hubspot_property(f): to_hubspot(rules[f].spec, row[f]) for f in rules},
             "createdAt": to_hubspot_iso(agreed_at), "updatedAt": to_hubspot_iso(agreed_at)}
            for row in rows
        ])
        names = list(rows[0])
        with engine.begin() as conn:
            ids = [
                conn.execute(
                    sa.text(
                        f"INSERT INTO customers ({', '.join(names)}, external_ids, hubspot_link_status) VALUES ("
                        + ", ".join("CAST(:services AS jsonb)" if n == "services" else f":{n}" for n in names)
                        + ", jsonb_build_object('hubspot_company_id', CAST(:company AS text)), 'linked') RETURNING id"
                    ),
                    {**row, "services": json.dumps(row["services"]), "company": company},
                ).scalar_one()
                for row, company in zip(rows, companies, strict=True)
            ]
            upsert_field_state(conn, [
                FieldStateUpdate(cid, f, agreed=StateValue(row[f], agreed_at), warp=StateValue(row[f], agreed_at),
                                 hubspot=StateValue(row[f], agreed_at))
                for cid, row in zip(ids, rows, strict=True) for f in rules
            ])
        return list(zip(ids, companies, strict=True))

    return make


def company_values(sandbox, company_id: str) -> dict[str, str]:  # noqa: ANN001
    for company in sandbox.control.all_companies():
        if company["id"] == company_id:
            return company["properties"]
    raise KeyError(company_id)


def fast_drain(**overrides: object) -> DrainSettings:
    """Drain settings for tests: no backoff waits (a run never re-claims what it put back anyway)."""
    values: dict[str, object] = {"backoff_s": 0.0, "lease_s": 30.0, "http_budget_s": 10.0, "run_budget_s": 60.0,
                                 "busy_retry_s": 0.0}
    values.update(overrides)
    return DrainSettings(**values)  # type: ignore[arg-type]
