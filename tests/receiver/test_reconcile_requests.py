from __future__ import annotations

import pytest
import sqlalchemy as sa

from warp_sync_pipeline.core.auth import issue
from warp_sync_pipeline.core.reconcile_requests import mark_submitted, requests_after
from warp_sync_pipeline.core.reconciliation_runs import finish_run, mark_failed, start_run
from webhook_receiver import create_app

TOKEN = "bootstrap-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(database_url: str):  # noqa: ANN201
    return create_app({"DATABASE_URL": database_url, "TESTING": True, "WARP_API_TOKEN": TOKEN}).test_client()


def test_a_request_is_recorded_and_reads_as_pending(client, engine: sa.Engine) -> None:  # noqa: ANN001
    answer = client.post("/v1/sync/reconcile", json={"dry_run": True}, headers=AUTH)
    assert answer.status_code == 202
    data = answer.get_json()["data"]
    assert data["status"] == "pending" and data["dry_run"] is True
    assert answer.headers["Location"] == f"/v1/sync/reconcile/{data['request_id']}"
    state = client.get(f"/v1/sync/reconcile/{data['request_id']}", headers=AUTH).get_json()["data"]
    assert state["status"] == "pending" and state["requested_by"] == "bootstrap" and state["run_id"] is None
    assert [r.id for r in requests_after(engine, 0)] == [data["request_id"]]
    assert requests_after(engine, data["request_id"]) == []


def test_the_state_follows_the_run_row_that_names_the_request(client, engine: sa.Engine) -> None:  # noqa: ANN001
    request_id = client.post("/v1/sync/reconcile", headers=AUTH).get_json()["data"]["request_id"]
    mark_submitted(engine, [request_id])
    start_run(engine, "run-1", request_id=str(request_id))
    running = client.get(f"/v1/sync/reconcile/{request_id}", headers=AUTH).get_json()["data"]
    assert running["status"] == "running" and running["run_id"] == "run-1" and running["counts"] is None
    assert running["submitted_at"] is not None
    finish_run(engine, "run-1", {"to_hubspot": 3, "to_warp": 2}, {"run_id": "run-1", "counts": {}})
    done = client.get(f"/v1/sync/reconcile/{request_id}", headers=AUTH).get_json()["data"]
    assert done["status"] == "succeeded" and done["counts"] == {"to_hubspot": 3, "to_warp": 2}


def test_a_cancelled_run_reads_as_failed_with_its_reason(client, engine: sa.Engine) -> None:  # noqa: ANN001
    request_id = client.post("/v1/sync/reconcile", headers=AUTH).get_json()["data"]["request_id"]
    mark_failed(engine, "run-2", "Run cancelled: by an operator", request_id=str(request_id))
    state = client.get(f"/v1/sync/reconcile/{request_id}", headers=AUTH).get_json()["data"]
    assert state["status"] == "failed" and state["failure_reason"].startswith("Run cancelled")


@pytest.mark.parametrize(
    "body", [{"dry_run": "yes"}, {"dry_run": True, "force": True}, [1, 2], "not json"],
)
def test_invalid_bodies_are_refused_and_record_nothing(client, engine: sa.Engine, body) -> None:  # noqa: ANN001
    kwargs = {"data": body, "content_type": "application/json"} if isinstance(body, str) else {"json": body}
    answer = client.post("/v1/sync/reconcile", headers=AUTH, **kwargs)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "VALIDATION_ERROR"
    assert requests_after(engine, 0) == []


def test_unknown_requests_are_404(client) -> None:  # noqa: ANN001
    answer = client.get("/v1/sync/reconcile/999", headers=AUTH)
    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "NOT_FOUND"


def test_only_admins_may_ask(client, engine: sa.Engine) -> None:  # noqa: ANN001
    resolver = issue(engine, "alice", ["resolver"])
    assert client.post("/v1/sync/reconcile").status_code == 401
    assert client.post("/v1/sync/reconcile", headers={"Authorization": "Bearer nope"}).status_code == 401
    forbidden = client.post("/v1/sync/reconcile", headers={"Authorization": f"Bearer {resolver.token}"})
    assert forbidden.status_code == 403 and forbidden.get_json()["error"]["code"] == "FORBIDDEN"
    assert requests_after(engine, 0) == []
