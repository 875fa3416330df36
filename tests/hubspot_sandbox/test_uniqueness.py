"""hasUniqueValue properties: a duplicate answers 409 CONFLICT naming the existing company."""

from __future__ import annotations

import threading

import httpx

from tests.hubspot_sandbox.conftest import COMPANIES, TLS_CONTEXT, create_company
from tests.plugins.sandbox import SandboxHandle


def assert_conflict(response: httpx.Response, existing_id: str | None, value: str = "ZT-000000001") -> dict:
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["status"] == "error" and body["category"] == "CONFLICT"
    assert body["context"]["propertyName"] == ["warp_ban"]
    assert body["context"]["propertyValue"] == [value]
    if existing_id is not None:
        assert body["context"]["existingObjectId"] == [existing_id]
        assert body["message"].endswith(f"Existing ID: {existing_id}")
    return body


def test_create_with_a_taken_value_is_409_naming_the_holder(warp_api: httpx.Client) -> None:
    holder = create_company(warp_api, name="First", warp_ban="ZT-000000001")
    assert_conflict(warp_api.post(COMPANIES, json={"properties": {"name": "Second", "warp_ban": "ZT-000000001"}}),
                    holder["id"])
    assert len(warp_api.get(COMPANIES).json()["results"]) == 1


def test_update_to_a_taken_value_is_409_and_own_value_is_fine(warp_api: httpx.Client) -> None:
    holder = create_company(warp_api, warp_ban="ZT-000000001")
    other = create_company(warp_api, warp_ban="ZT-000000002")
    assert_conflict(warp_api.patch(f"{COMPANIES}/{other['id']}", json={"properties": {"warp_ban": "ZT-000000001"}}),
                    holder["id"])
    same = warp_api.patch(f"{COMPANIES}/{holder['id']}", json={"properties": {"warp_ban": "ZT-000000001"}})
    assert same.status_code == 200


def test_archiving_frees_the_value(warp_api: httpx.Client) -> None:
    holder = create_company(warp_api, warp_ban="ZT-000000001")
    assert warp_api.delete(f"{COMPANIES}/{holder['id']}").status_code == 204
    create_company(warp_api, warp_ban="ZT-000000001")


def test_two_inputs_of_one_batch_cannot_share_a_value(warp_api: httpx.Client) -> None:
    response = warp_api.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"warp_ban": "ZT-000000001"}}, {"properties": {"warp_ban": "ZT-000000001"}}]})
    assert_conflict(response, None)
    assert warp_api.get(COMPANIES).json()["results"] == []


def test_batch_with_trace_ids_reports_the_conflict_per_input(warp_api: httpx.Client) -> None:
    holder = create_company(warp_api, warp_ban="ZT-000000001")
    response = warp_api.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"warp_ban": "ZT-000000001"}, "objectWriteTraceId": "dup"},
        {"properties": {"warp_ban": "ZT-000000002"}, "objectWriteTraceId": "fresh"}]})
    assert response.status_code == 207
    body = response.json()
    assert body["numErrors"] == 1
    [error] = body["errors"]
    assert error["category"] == "CONFLICT" and error["status"] == "error"
    assert error["context"]["objectWriteTraceId"] == ["dup"]
    assert error["context"]["existingObjectId"] == [holder["id"]]
    [created] = body["results"]
    assert created["objectWriteTraceId"] == "fresh" and created["properties"]["warp_ban"] == "ZT-000000002"


def test_seed_bypasses_uniqueness_and_lookups_then_find_the_lowest_id(sandbox: SandboxHandle,
                                                                      warp_api: httpx.Client) -> None:
    ids = sandbox.control.seed([{"warp_ban": "ZT-000000001", "name": "a"}, {"warp_ban": "ZT-000000001", "name": "b"}])
    assert len(set(ids)) == 2
    found = warp_api.get(f"{COMPANIES}/ZT-000000001?idProperty=warp_ban").json()
    assert found["id"] == min(ids, key=int)
    assert_conflict(warp_api.post(COMPANIES, json={"properties": {"warp_ban": "ZT-000000001"}}), min(ids, key=int))


def test_concurrent_creates_of_one_value_leave_exactly_one_company(sandbox: SandboxHandle,
                                                                   warp_api: httpx.Client) -> None:
    statuses: list[int] = []
    lock = threading.Lock()

    def create() -> None:
        with httpx.Client(base_url=sandbox.base_url, trust_env=False, verify=TLS_CONTEXT,
                          headers={"Authorization": f"Bearer {sandbox.access_token}"}) as client:
            status = client.post(COMPANIES, json={"properties": {"warp_ban": "ZT-000000007"}}).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] + [409] * 15
    assert len(sandbox.control.all_companies()) == 1
