"""Fixtures of the OpenAPI tests: the receiver on a fresh database and the sandbox, seeded so the document's
examples name real rows (a linked customer, an open MANUAL conflict on it, a reconciliation request)."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from flask import Flask

from warp_sync_pipeline.core.conflicts import open_or_update_conflict
from warp_sync_pipeline.core.decision import Observed
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue, upsert_field_state
from warp_sync_pipeline.core.fields import load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.normalize import to_hubspot, to_hubspot_iso
from warp_sync_pipeline.core.reconcile_requests import record_request
from warp_sync_pipeline.core.webhooks.signature import signing_uris, v3_signature
from webhook_receiver.app import close_app, create_app
from webhook_receiver.openapi import openapi_document
from webhook_receiver.webhooks import public_request_uri

BOOTSTRAP_TOKEN = "openapi-test-bootstrap-token"
PUBLIC_BASE_URL = "https://receiver.example"
# Put in the v3 signature header, it asks the test's signer to sign the request as HubSpot would.
SIGN_ME = "sign-me"


def _example(name: str) -> Any:
    return openapi_document()["components"]["parameters"][name]["example"]


EXAMPLE_CUSTOMER_ID = UUID(_example("CustomerId"))
EXAMPLE_CONFLICT_ID = int(_example("ConflictId"))


class HubSpotSigner:
    """WSGI middleware standing in for HubSpot's side of the webhook route: a request whose v3 signature
    header says SIGN_ME is signed with the real client secret over the public URI, body and timestamp."""

    def __init__(self, app: Callable[..., Iterable[bytes]], client_secret: str) -> None:
        self.app = app
        self.client_secret = client_secret

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_HUBSPOT_SIGNATURE_V3") == SIGN_ME:
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            timestamp = str(time.time_ns() // 1_000_000)
            uri = public_request_uri(environ, PUBLIC_BASE_URL, "https", "receiver.example")
            environ["HTTP_X_HUBSPOT_REQUEST_TIMESTAMP"] = timestamp
            environ["HTTP_X_HUBSPOT_SIGNATURE_V3"] = v3_signature(
                self.client_secret, environ["REQUEST_METHOD"], signing_uris(uri)[0], body, timestamp)
        return self.app(environ, start_response)


@dataclass
class Api:
    app: Flask
    engine: sa.Engine
    company_id: str


@pytest.fixture
def api(database_url: str, engine: sa.Engine, sandbox) -> Iterator[Api]:  # noqa: ANN001 - the sandbox plugin's handle
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, request_timeout_s=3) as portal:
        portal.ensure_properties()
    company_id = _seed(engine, sandbox)
    app = create_app({
        "TESTING": True,
        "DATABASE_URL": database_url,
        "WARP_API_TOKEN": BOOTSTRAP_TOKEN,
        "SECRET_KEY": "openapi-test-secret-key",
        "HUBSPOT_BASE_URL": sandbox.base_url,
        "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
        "HUBSPOT_CLIENT_SECRET": sandbox.client_secret,
        "WARP_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
        "HUBSPOT_MAX_ATTEMPTS": 2,
        "HUBSPOT_REQUEST_TIMEOUT_SECONDS": 3,
        "WARP_CREATE_TIME_BUDGET_SECONDS": 5,
        "WARP_PUSH_TIME_BUDGET_SECONDS": 5,
        "WARP_PUSH_LEASE_WAIT_SECONDS": 0.2,
        "RESOLUTION_TIME_BUDGET_SECONDS": 5,
        "RESOLUTION_LEASE_WAIT_SECONDS": 0.2,
    })
    app.wsgi_app = HubSpotSigner(app.wsgi_app, sandbox.client_secret)  # type: ignore[method-assign]
    try:
        yield Api(app, engine, company_id)
    finally:
        close_app(app)


def _seed(engine: sa.Engine, sandbox) -> str:  # noqa: ANN001
    """The example customer (linked, fields agreed an hour ago), an open MANUAL conflict on its contact email
    (id 1 in a fresh database), and a reconciliation request (id 1)."""
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = 'contact_email'"))
        rules = load_rules(conn)
    agreed_at = datetime.now(UTC) - timedelta(hours=1)
    values: dict[str, Any] = {
        "ban": "ZT-500000001", "company_name": "Example Telecom", "status": "ACTIVE", "credit_limit": "5000.00",
        "current_balance": "12.50", "payment_terms": "NET30", "contact_email": "billing@example.example",
        "services": {"voice": True, "messaging": False, "data": True},
    }
    (company_id,) = sandbox.control.seed([{
        "properties": {**{rules.hubspot_property(f): to_hubspot(rules[f].spec, values[f]) for f in rules},
                       "warp_contact_email": "rep@example.example"},
        "createdAt": to_hubspot_iso(agreed_at), "updatedAt": to_hubspot_iso(agreed_at),
    }])
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO customers (id, ban, company_name, status, credit_limit, current_balance, payment_terms, "
                "services, contact_email, external_ids, hubspot_link_status) VALUES (:id, :ban, :company_name, "
                ":status, :credit_limit, :current_balance, :payment_terms, CAST(:services AS jsonb), :contact_email, "
                "jsonb_build_object('hubspot_company_id', CAST(:company AS text)), 'linked')"
            ),
            {**values, "services": json.dumps(values["services"]), "id": EXAMPLE_CUSTOMER_ID, "company": company_id},
        )
        agreed = {**values, "contact_email": "old@example.example"}  # both sides moved since: the conflict
        upsert_field_state(conn, [
            FieldStateUpdate(EXAMPLE_CUSTOMER_ID, f, agreed=StateValue(agreed[f], agreed_at),
                             warp=StateValue(values[f], agreed_at), hubspot=StateValue(values[f], agreed_at))
            for f in rules
        ])
        conflict = open_or_update_conflict(
            conn, customer_id=EXAMPLE_CUSTOMER_ID, rule=rules["contact_email"], reason="CONFLICT_MANUAL_REVIEW",
            agreed="old@example.example", warp=Observed(values["contact_email"], agreed_at),
            hubspot=Observed("rep@example.example", agreed_at), detected_by="webhook",
        )
    assert conflict.id == EXAMPLE_CONFLICT_ID
    record_request(engine, requested_by="bootstrap", dry_run=True)
    return company_id


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """schemathesis names each operation's test (`test_...[POST /v1/customers]`) but gives them all one node id,
    and pytest-xdist's group scheduling keys work by node id: it ran one operation of twelve. Each gets the id
    its name says (in the field xdist's own grouping rewrites the same way)."""
    for item in items:
        label = getattr(item, "operation_label", None)
        if label and not item.nodeid.endswith("]"):
            item._nodeid = f"{item.nodeid}[{label}]"
