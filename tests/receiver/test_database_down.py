"""The receiver while its PostgreSQL is away (stopped for real: a cluster of the test's own), and after it
comes back: a stable 503, never a 500, and no restart needed (issue 12, item 8)."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from tests.plugins.database import PrivatePostgres
from tests.plugins.outbound import AUTH, running_receiver
from tests.plugins.signing import ROUTE, SECRET, body_of, object_event, property_change, v3_headers
from warp_sync_pipeline.core.db import make_engine
from webhook_receiver.app import close_app, create_app


def test_admin_routes_answer_503_database_unavailable_while_it_is_down_and_recover(
    private_postgres: PrivatePostgres, sandbox,  # noqa: ANN001 - the sandbox plugin's handle
) -> None:
    missing = f"/v1/customers/{uuid.uuid4()}"
    with running_receiver(private_postgres.database_url, sandbox) as receiver:
        assert receiver.client.get(missing, headers=AUTH).status_code == 404

        private_postgres.stop()
        for response in (receiver.client.get(missing, headers=AUTH),
                         receiver.client.patch(missing, json={"status": "ACTIVE"}, headers=AUTH),
                         receiver.client.get("/v1/conflicts", headers=AUTH)):
            assert response.status_code == 503, response.get_data(as_text=True)
            error = response.get_json()["error"]
            assert error["code"] == "DATABASE_UNAVAILABLE"
            assert "127.0.0.1" not in error["message"]  # the server's address stays in the log
        assert receiver.client.get("/healthz").status_code == 503

        private_postgres.start()
        assert receiver.client.get(missing, headers=AUTH).status_code == 404
        assert receiver.client.get("/healthz").status_code == 200


def test_the_receiver_boots_while_the_database_is_down_and_serves_once_it_is_back(
    private_postgres: PrivatePostgres, sandbox,  # noqa: ANN001
) -> None:
    private_postgres.stop()
    # Building the app (every blueprint, the HubSpot client) touches no network: a worker boots.
    with running_receiver(private_postgres.database_url, sandbox, properties_ensured=False) as receiver:
        live = receiver.client.get("/livez")
        assert live.status_code == 200 and live.get_json()["data"] == {"status": "alive"}
        assert receiver.client.get("/healthz").get_json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        created = receiver.post({"company_name": "Patient Ltd"})
        assert created.status_code == 503 and created.get_json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        assert sandbox.control.all_companies() == []  # nothing was sent to HubSpot

        private_postgres.start()
        assert receiver.client.get("/healthz").status_code == 200
        again = receiver.post({"company_name": "Patient Ltd"})
        assert again.status_code == 201, again.get_data(as_text=True)  # the properties are ensured first


def test_webhook_batches_sent_while_the_database_restarts_are_refused_then_stored_once_on_hubspots_retry(
    private_postgres: PrivatePostgres,
) -> None:
    app = create_app({"DATABASE_URL": private_postgres.database_url, "TESTING": True, "HUBSPOT_CLIENT_SECRET": SECRET})
    client = app.test_client()
    body = body_of([property_change(41, "warp_credit_limit", "7000"), object_event("company.creation", 42)])

    def deliver():  # noqa: ANN202 - HubSpot signs every attempt anew
        return client.post(ROUTE, data=body, headers=v3_headers("http://localhost" + ROUTE, body))

    engine = make_engine(private_postgres.database_url, poolclass=sa.pool.NullPool)
    try:
        private_postgres.stop()
        refused = deliver()
        # A 5xx makes HubSpot retry the batch later; nothing is half stored.
        assert refused.status_code == 503 and refused.get_json()["error"]["code"] == "DATABASE_UNAVAILABLE"
        private_postgres.start()
        assert deliver().status_code == 200
        assert deliver().status_code == 200  # a duplicate delivery is recognised
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM hubspot_webhook_events")).scalar_one() == 2
    finally:
        engine.dispose()
        close_app(app)
