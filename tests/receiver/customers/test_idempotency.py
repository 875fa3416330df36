"""Idempotency-Key on POST /v1/customers, and many creates at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from tests.plugins.outbound import AUTH, Receiver, api_calls, customer_rows, live_companies

CREATE = "POST /crm/v3/objects/companies"
BODY = {"company_name": "Idem Corp", "credit_limit": "100"}


def _key_status(engine: sa.Engine, key: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT status FROM customer_create_idempotency_keys WHERE idempotency_key = :k"), {"k": key}
        ).scalar_one_or_none()


def test_a_retry_after_success_returns_the_first_answer(receiver: Receiver, engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    first = receiver.post(BODY, {"Idempotency-Key": "key-1"})
    assert first.status_code == 201
    again = receiver.post({"credit_limit": "100", "company_name": "Idem Corp"}, {"Idempotency-Key": "key-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert len(customer_rows(engine)) == 1 and len(live_companies(sandbox)) == 1
    assert api_calls(sandbox, CREATE) == 1


def test_the_same_key_with_another_body_is_refused(receiver: Receiver, engine: sa.Engine) -> None:
    assert receiver.post(BODY, {"Idempotency-Key": "key-2"}).status_code == 201
    other = receiver.post({**BODY, "credit_limit": "200"}, {"Idempotency-Key": "key-2"})
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(customer_rows(engine)) == 1


def test_a_key_whose_create_failed_may_be_retried(receiver: Receiver, engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(outage={"seconds": 30})
    assert receiver.post(BODY, {"Idempotency-Key": "key-3"}).status_code == 502
    assert _key_status(engine, "key-3") == "failed"
    sandbox.control.clear_faults()
    retried = receiver.post(BODY, {"Idempotency-Key": "key-3"})
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert _key_status(engine, "key-3") == "succeeded"


def test_keys_are_per_credential(receiver: Receiver, engine: sa.Engine) -> None:
    from warp_sync_pipeline.core.auth import issue

    other = issue(engine, "portal", ["admin"])
    assert receiver.post(BODY, {"Idempotency-Key": "shared"}).status_code == 201
    response = receiver.client.post(
        "/v1/customers", json=BODY, headers={"Authorization": f"Bearer {other.token}", "Idempotency-Key": "shared"}
    )
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert len(customer_rows(engine)) == 2


def test_an_unusable_key_is_refused(receiver: Receiver) -> None:
    response = receiver.post(BODY, {"Idempotency-Key": "x" * 300})
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "INVALID_IDEMPOTENCY_KEY"


def test_two_concurrent_requests_with_one_key_create_once(
    receiver: Receiver, engine: sa.Engine, sandbox  # noqa: ANN001
) -> None:
    sandbox.control.set_faults(latency_ms=800)  # the first create is still waiting on HubSpot ...
    results: dict[str, object] = {}

    def first() -> None:
        results["first"] = receiver.app.test_client().post(
            "/v1/customers", json=BODY, headers={**AUTH, "Idempotency-Key": "key-c"})

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.monotonic() + 5
    while _key_status(engine, "key-c") != "in_progress" and time.monotonic() < deadline:
        time.sleep(0.01)
    second = receiver.app.test_client().post("/v1/customers", json=BODY, headers={**AUTH, "Idempotency-Key": "key-c"})
    thread.join(10)
    assert second.status_code == 409  # ... when the duplicate arrives
    assert second.get_json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert results["first"].status_code == 201  # type: ignore[attr-defined]
    sandbox.control.clear_faults()
    replay = receiver.post(BODY, {"Idempotency-Key": "key-c"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert len(customer_rows(engine)) == 1 and len(live_companies(sandbox)) == 1


def test_twenty_concurrent_creates(receiver: Receiver, engine: sa.Engine, sandbox) -> None:  # noqa: ANN001
    sandbox.control.set_faults(latency_ms=100)

    def create(n: int):  # noqa: ANN202
        return receiver.app.test_client().post(
            "/v1/customers", json={"company_name": f"Parallel {n}", "current_balance": n}, headers=AUTH)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(create, range(20)))
    assert [r.status_code for r in responses] == [201] * 20, [r.get_json() for r in responses if r.status_code != 201]
    rows = customer_rows(engine)
    companies = live_companies(sandbox)
    assert len(rows) == 20 and len(companies) == 20
    assert len({r["ban"] for r in rows}) == 20
    by_company = {c["id"]: c for c in companies}
    for row in rows:
        company = by_company[row["external_ids"]["hubspot_company_id"]]
        assert company["properties"]["warp_ban"] == row["ban"]
        assert company["properties"]["name"] == row["company_name"]
