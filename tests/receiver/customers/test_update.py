"""PATCH and GET /v1/customers/{id}: the update commits and answers at once; the outbox queues what changed."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from tests.plugins.outbound import Receiver, api_calls, queue_rows
from warp_sync_pipeline.core.leases import acquire_customers, release_customers


@pytest.fixture
def created(receiver: Receiver) -> dict:
    response = receiver.post({"company_name": "Patchable", "credit_limit": "100", "payment_terms": "NET30"})
    assert response.status_code == 201
    return response.get_json()["data"]["customer"]


def test_an_update_answers_before_any_hubspot_call(
    receiver: Receiver, engine: sa.Engine, sandbox, created: dict  # noqa: ANN001
) -> None:
    sandbox.control.reset_counters()
    response = receiver.patch(created["id"], {"current_balance": "42.10", "status": "ACTIVE"})
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["hubspot_sync"] == {"queued": True, "fields": ["current_balance", "status"]}
    assert data["customer"]["current_balance"] == "42.10" and data["customer"]["status"] == "ACTIVE"
    assert api_calls(sandbox) == 0
    (row,) = queue_rows(engine, uuid.UUID(created["id"]))
    assert row["status"] == "pending" and row["fields"] == ["current_balance", "status"]


def test_an_update_answers_while_a_drain_holds_the_customers_lease(
    receiver: Receiver, engine: sa.Engine, created: dict
) -> None:
    lease = acquire_customers(engine, [created["id"]], holder="drain:test-run")
    assert lease.acquired
    try:
        started = time.monotonic()
        response = receiver.patch(created["id"], {"company_name": "Renamed While Draining"})
        assert response.status_code == 200 and time.monotonic() - started < 2
        assert response.get_json()["data"]["hubspot_sync"]["queued"] is True
    finally:
        release_customers(engine, lease.acquired, lease.token)


def test_an_update_that_changes_nothing_queues_nothing(receiver: Receiver, created: dict) -> None:
    response = receiver.patch(created["id"], {"company_name": "Patchable"})
    assert response.status_code == 200
    assert response.get_json()["data"]["hubspot_sync"] == {"queued": False, "fields": []}


def test_immutable_and_hubspot_owned_fields_are_refused_with_reasons(
    receiver: Receiver, engine: sa.Engine, created: dict
) -> None:
    response = receiver.patch(created["id"], {
        "id": str(uuid.uuid4()), "ban": "ZT-999999999", "created_at": "2020-01-01T00:00:00Z",
        "payment_terms": "NET60", "status": "ACTIVE",
    })
    assert response.status_code == 400
    error = response.get_json()["error"]
    by_field = {f["field"]: f for f in error["fields"]}
    assert set(by_field) == {"id", "ban", "created_at", "payment_terms"}
    assert by_field["ban"]["code"] == "READ_ONLY_FIELD" and "never changes" in by_field["ban"]["message"]
    assert by_field["payment_terms"]["code"] == "HUBSPOT_OWNED_FIELD"
    assert "HubSpot" in by_field["payment_terms"]["message"]
    assert queue_rows(engine) == []  # nothing was applied, not even the valid status


def test_updates_are_validated_like_creates(receiver: Receiver, created: dict) -> None:
    response = receiver.patch(created["id"], {"company_name": "  ", "credit_limit": "-1", "services": []})
    assert response.status_code == 400
    codes = {f["field"]: f["code"] for f in response.get_json()["error"]["fields"]}
    assert codes == {"company_name": "VALUE_REQUIRED", "credit_limit": "AMOUNT_BELOW_MINIMUM",
                     "services": "INVALID_SERVICES"}
    empty = receiver.patch(created["id"], {})
    assert empty.status_code == 400 and empty.get_json()["error"]["fields"][0]["code"] == "NO_FIELDS"


@pytest.mark.parametrize("name", ["a\ud800b", "Acme\x00 Ltd", "x" * 65_537], ids=["lone-surrogate", "nul", "too-long"])
def test_an_update_with_unstorable_text_is_refused_and_queues_nothing(
    receiver: Receiver, engine: sa.Engine, created: dict, name: str
) -> None:
    response = receiver.patch(created["id"], {"company_name": name})
    assert response.status_code == 400
    [problem] = response.get_json()["error"]["fields"]
    assert problem["field"] == "company_name" and problem["code"] in {"INVALID_TEXT", "VALUE_TOO_LONG"}
    assert queue_rows(engine) == []
    assert receiver.get(created["id"]).get_json()["data"]["customer"]["company_name"] == "Patchable"


def test_clearing_a_nullable_field(receiver: Receiver, engine: sa.Engine, created: dict) -> None:
    response = receiver.patch(created["id"], {"credit_limit": None})
    assert response.status_code == 200
    assert response.get_json()["data"]["customer"]["credit_limit"] is None
    assert queue_rows(engine)[0]["fields"] == ["credit_limit"]


@pytest.mark.parametrize("customer_id", ["5b0f2a9e-7d1c-4e55-9a0b-3c2d1e0f9a87", "not-a-uuid"])  # no customer has it
def test_an_unknown_customer_is_404(receiver: Receiver, customer_id: str) -> None:
    response = receiver.patch(customer_id, {"status": "ACTIVE"})
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "CUSTOMER_NOT_FOUND"
    assert receiver.get(customer_id).status_code == 404


def test_updates_need_the_admin_token(receiver: Receiver, engine: sa.Engine, created: dict) -> None:
    response = receiver.client.patch(f"/v1/customers/{created['id']}", json={"status": "CLOSED"})
    assert response.status_code == 401
    assert queue_rows(engine) == []
    assert receiver.client.get(f"/v1/customers/{created['id']}").status_code == 401


def test_get_shows_the_customer_and_its_pending_sync(receiver: Receiver, created: dict) -> None:
    receiver.patch(created["id"], {"contact_email": "ops@patchable.example"})
    response = receiver.get(created["id"])
    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["customer"]["contact_email"] == "ops@patchable.example"
    assert data["hubspot_sync"]["link_status"] == "linked"
    assert data["hubspot_sync"]["hubspot_company_id"] == created["external_ids"]["hubspot_company_id"]
    (queued,) = data["hubspot_sync"]["queue"]
    assert queued["status"] == "pending" and queued["fields"] == ["contact_email"]
