"""What a receiver worker holds (issue 12, item 3): one extension object, two connection pools, one close."""

from __future__ import annotations

import time

import sqlalchemy as sa

from tests.plugins.outbound import AUTH, receiver_config
from tests.plugins.signing import ROUTE, SECRET, body_of, property_change, v3_headers
from warp_sync_pipeline.core.db import make_engine
from webhook_receiver.app import close_app, create_app
from webhook_receiver.resources import EXTENSION, ReceiverResources, receiver_resources


def _server_connections(database_url: str) -> int:
    counter = make_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with counter.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).scalar_one()
    finally:
        counter.dispose()


def _connections_after_close(database_url: str, *, wait_s: float = 3.0) -> int:
    """The server's count once closed connections are gone: a backend exits a moment after its client hangs up,
    so pg_stat_activity can still list it right after the pools are disposed (seen under load)."""
    deadline = time.monotonic() + wait_s
    while (count := _server_connections(database_url)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_a_worker_holds_two_pools_in_one_extension_and_closes_them_once(database_url: str, sandbox) -> None:  # noqa: ANN001
    app = create_app(receiver_config(database_url, sandbox, HUBSPOT_CLIENT_SECRET=SECRET))
    resources = receiver_resources(app)
    assert [key for key, value in app.extensions.items() if isinstance(value, ReceiverResources)] == [EXTENSION]
    assert not any(isinstance(value, sa.Engine) for value in app.extensions.values())
    assert _server_connections(database_url) == 0  # building the app opened nothing

    client = app.test_client()
    assert client.post("/v1/customers", json={"company_name": "Two Pools Ltd"}, headers=AUTH).status_code == 201
    body = body_of([property_change(9001, "warp_credit_limit", "10")])
    assert client.post(ROUTE, data=body, headers=v3_headers("http://localhost" + ROUTE, body)).status_code == 200
    assert client.get("/healthz").status_code == 200

    hubspot = resources.hubspot()
    assert hubspot is not None and hubspot.budget is not None
    # The request budget takes its tokens on an AUTOCOMMIT view of the same pool: two pools in all.
    pools = {id(resources.db.pool), id(resources.webhook_db.pool), id(hubspot.budget.engine.pool)}
    assert len(pools) == 2
    assert 0 < _server_connections(database_url) <= 2 * resources.db.pool.size() + resources.webhook_db.pool.size() + 15

    close_app(app)
    assert EXTENSION not in app.extensions
    assert _connections_after_close(database_url) == 0
