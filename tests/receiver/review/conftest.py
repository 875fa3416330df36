"""Fixtures of the review tests: the receiver on a fresh database, HubSpot = the sandbox over HTTP,
credentials with each role, and MANUAL conflicts between a WARP customer and its HubSpot company."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from warp_sync_pipeline.core.auth import issue
from warp_sync_pipeline.core.conflicts import open_or_update_conflict
from warp_sync_pipeline.core.decision import Observed
from warp_sync_pipeline.core.field_state import FieldStateUpdate, StateValue, upsert_field_state
from warp_sync_pipeline.core.fields import FieldRules, load_rules
from warp_sync_pipeline.core.hubspot import HubSpotClient, RetryPolicy
from webhook_receiver.app import close_app, create_app

BOOTSTRAP_TOKEN = "bootstrap-token-for-review-tests"
SECRET_KEY = "review-test-secret-key-0123456789abcdef"
# Short waits keep failure tests fast; the logic is production's.
FAST_RETRY = RetryPolicy(max_attempts=2, backoff_initial_s=0.05, backoff_max_s=0.1, jitter_s=0.01,
                         rate_limit_wait_s=0.1)
MANUAL_FIELDS = ("company_name", "credit_limit", "contact_email")

_ban_numbers = itertools.count(300_000_001)


@dataclass(frozen=True)
class Tokens:
    resolver: str  # "alice", resolver
    resolver2: str  # "bob", resolver
    admin: str  # "carol", admin only
    both: str  # "dave", admin + resolver


@dataclass(frozen=True)
class MadeConflict:
    id: int
    customer_id: UUID
    company_id: str
    field: str
    version: int


def receiver_config(database_url: str, sandbox: Any, **overrides: Any) -> dict[str, Any]:
    config = {
        "TESTING": True,
        "DATABASE_URL": database_url,
        "WARP_API_TOKEN": BOOTSTRAP_TOKEN,
        "SECRET_KEY": SECRET_KEY,
        "HUBSPOT_BASE_URL": sandbox.base_url,
        "HUBSPOT_ACCESS_TOKEN": sandbox.access_token,
        "HUBSPOT_MAX_ATTEMPTS": "2",
        "HUBSPOT_REQUEST_TIMEOUT_SECONDS": "2",
        "RESOLUTION_TIME_BUDGET_SECONDS": 5,
    }
    config.update(overrides)
    return config


@pytest.fixture
def manual_rules(engine: sa.Engine) -> FieldRules:
    """The seeded rules with the two-way fields under MANUAL review, as a data team would set them."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE hubspot_field_mappings SET strategy = 'MANUAL' WHERE warp_field = ANY(:fields)"),
            {"fields": list(MANUAL_FIELDS)},
        )
        return load_rules(conn)


@pytest.fixture
def portal(sandbox: Any) -> Iterator[HubSpotClient]:
    """A client on the sandbox portal, which has warp-sync's properties."""
    client = HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, request_timeout_s=2,
                           retry=FAST_RETRY)
    client.ensure_properties()
    yield client
    client.close()


@pytest.fixture
def make_app(database_url: str, sandbox: Any, manual_rules: FieldRules) -> Iterator[Callable[..., Flask]]:
    """create_app on this test's database and the sandbox; keyword arguments override config keys."""
    made: list[Flask] = []

    def make(**overrides: Any) -> Flask:
        application = create_app(receiver_config(database_url, sandbox, **overrides))
        made.append(application)
        return application

    yield make
    for application in made:
        close_app(application)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


def https_client(app: Flask) -> FlaskClient:
    # https: the session cookie is Secure, as it is in production.
    test_client = app.test_client()
    test_client.environ_base["wsgi.url_scheme"] = "https"
    return test_client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return https_client(app)


@pytest.fixture
def tokens(engine: sa.Engine) -> Tokens:
    return Tokens(
        resolver=issue(engine, "alice", ["resolver"]).token,
        resolver2=issue(engine, "bob", ["resolver"]).token,
        admin=issue(engine, "carol", ["admin"]).token,
        both=issue(engine, "dave", ["admin", "resolver"]).token,
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


WARP_DEFAULTS: dict[str, Any] = {
    "company_name": "Acme Telecom",
    "status": "ACTIVE",
    "credit_limit": "5000.00",
    "contact_email": "Ops@Acme.example",
}
HUBSPOT_DEFAULTS: dict[str, str] = {
    "name": "Acme Telecom",
    "warp_status": "ACTIVE",
    "warp_credit_limit": "5000",
    "warp_contact_email": "billing@acme.example",
}


@pytest.fixture
def make_conflict(engine: sa.Engine, portal: HubSpotClient, manual_rules: FieldRules) -> Callable[..., MadeConflict]:
    """A linked customer whose `field` differs between WARP and HubSpot, with its open MANUAL conflict.

    `warp` / `hubspot` override the two sides' values (WARP column names / HubSpot property names);
    `agreed` is the last agreed value of `field` (comparable text), `linked=False` leaves it unlinked.
    """

    def make(field: str = "contact_email", *, warp: dict[str, Any] | None = None,
             hubspot: dict[str, str] | None = None, agreed: str | None = "old@acme.example",
             linked: bool = True) -> MadeConflict:
        rule = manual_rules[field]
        ban = f"ZT-{next(_ban_numbers):09d}"
        warp_values = {**WARP_DEFAULTS, **(warp or {})}
        company = portal.create_company({**HUBSPOT_DEFAULTS, "warp_ban": ban, **(hubspot or {})})
        names = ", ".join(warp_values)
        params = ", ".join(f":{key}" for key in warp_values)
        with engine.begin() as conn:
            customer_id = conn.execute(
                sa.text(f"INSERT INTO customers (ban, {names}, external_ids, hubspot_link_status) "
                        f"VALUES (:ban, {params}, CAST(:external_ids AS jsonb), :link) RETURNING id"),
                {"ban": ban, **warp_values, "link": "linked" if linked else "unlinked",
                 "external_ids": f'{{"hubspot_company_id": "{company.id}"}}' if linked else "{}"},
            ).scalar_one()
            warp_at = datetime.now(UTC) - timedelta(minutes=5)
            hubspot_version = company.last_change(rule.hubspot_property)
            hubspot_at = hubspot_version.timestamp if hubspot_version else company.updated_at
            if agreed is not None:
                upsert_field_state(conn, [FieldStateUpdate(
                    customer_id, field, agreed=StateValue(agreed, warp_at - timedelta(days=1)),
                    warp=StateValue(warp_values[field], warp_at),
                )])
            ref = open_or_update_conflict(
                conn, customer_id=customer_id, rule=rule,
                reason="CONFLICT_MANUAL_REVIEW" if agreed is not None else "NO_AGREED_VALUE_MANUAL_REVIEW",
                agreed=agreed, warp=Observed(warp_values[field], warp_at),
                hubspot=Observed(company.get(rule.hubspot_property), hubspot_at),
                detected_by="webhook",
            )
        return MadeConflict(ref.id, customer_id, company.id, field, ref.version)

    return make


def warp_value(engine: sa.Engine, customer_id: UUID, field: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT {field} FROM customers WHERE id = :id"), {"id": customer_id}
        ).scalar_one()


def conflict_row(engine: sa.Engine, conflict_id: int) -> sa.RowMapping:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT * FROM hubspot_conflicts WHERE id = :id"), {"id": conflict_id}
        ).mappings().one()


def resolution_log(engine: sa.Engine, customer_id: UUID) -> list[sa.RowMapping]:
    with engine.connect() as conn:
        return list(conn.execute(
            sa.text("SELECT * FROM hubspot_sync_log WHERE customer_id = :id AND trigger = 'resolution' "
                    "ORDER BY id"), {"id": customer_id},
        ).mappings())


def queued_fields(engine: sa.Engine, customer_id: UUID) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(
            sa.text("SELECT fields FROM hubspot_sync_queue WHERE customer_id = :id"), {"id": customer_id}
        ).scalars())


def patch_count(sandbox: Any) -> int:
    counters = sandbox.control.counters()["by_endpoint"]
    return int(counters.get("PATCH /crm/v3/objects/companies/{companyId}", 0))


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


def sign_in(test_client: FlaskClient, token: str, next_url: str | None = None) -> Any:
    """Sign in through the login form, as a person would; returns the POST's response."""
    page = test_client.get("/review/login")
    assert page.status_code == 200
    form = {"csrf_token": csrf_from(page.get_data(as_text=True)), "token": token}
    if next_url is not None:
        form["next"] = next_url
    return test_client.post("/review/login", data=form)


@contextmanager
def serving(app: Flask, port: int = 0) -> Iterator[str]:
    """The app under a real HTTP server on a loopback port (a free one by default), stopped afterwards."""
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="review-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
