"""hasUniqueValue properties: a duplicate is refused in one of HubSpot's forms, by default its captured 400 whose
message alone names the holder (the second id), and by switch the errorTokens or 409 forms."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES, TLS_CONTEXT, create_company
from tests.plugins.sandbox import SandboxHandle

FORMS = ("validation_400", "validation_400_unnamed", "error_tokens", "conflict_409")


def assert_conflict(response: httpx.Response, existing_id: str | None, value: str = "ZT-000000001", *,
                    form: str = "validation_400") -> dict:
    body = response.json()
    assert body["status"] == "error", body
    if form.startswith("validation_400"):
        assert (response.status_code, body["category"]) == (400, "VALIDATION_ERROR"), response.text
        assert f"propertyName=warp_ban, value={value}}} on " in body["message"]
        holder = existing_id if existing_id is not None else "another input of this batch"
        if form == "validation_400_unnamed":
            holder = "another object"
        assert body["message"].endswith(f". {holder} already has that value.")
        assert "context" not in body  # the message is all HubSpot gives
    elif form == "error_tokens":
        assert (response.status_code, body["errorType"]) == (400, "UNIQUE_VALUE_CONFLICT"), response.text
        assert body["errorTokens"]["propertyName"] == ["warp_ban"]
        assert body["errorTokens"].get("existingObjectId") == ([existing_id] if existing_id else None)
    else:
        assert (response.status_code, body["category"]) == (409, "CONFLICT"), response.text
        assert body["context"]["propertyName"] == ["warp_ban"]
        assert body["context"]["propertyValue"] == [value]
        if existing_id is not None:
            assert body["context"]["existingObjectId"] == [existing_id]
            assert body["message"].endswith(f"Existing ID: {existing_id}")
    return body


@pytest.mark.parametrize("form", FORMS)
def test_each_form_refuses_a_taken_value(warp_api: httpx.Client, sandbox: SandboxHandle,
                                                      form: str) -> None:
    sandbox.control.configure(unique_conflict_form=form)
    holder = create_company(warp_api, name="First", warp_ban="ZT-000000001")
    assert_conflict(warp_api.post(COMPANIES, json={"properties": {"name": "Second", "warp_ban": "ZT-000000001"}}),
                    holder["id"], form=form)


def test_an_unknown_form_is_refused(sandbox: SandboxHandle) -> None:
    with pytest.raises(Exception, match="unique_conflict_form must be one of"):
        sandbox.control.configure(unique_conflict_form="teapot")


def test_create_with_a_taken_value_is_refused_naming_the_holder(warp_api: httpx.Client) -> None:
    holder = create_company(warp_api, name="First", warp_ban="ZT-000000001")
    assert_conflict(warp_api.post(COMPANIES, json={"properties": {"name": "Second", "warp_ban": "ZT-000000001"}}),
                    holder["id"])
    assert len(warp_api.get(COMPANIES).json()["results"]) == 1


def test_update_to_a_taken_value_is_refused_and_own_value_is_fine(warp_api: httpx.Client) -> None:
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
    assert error["category"] == "VALIDATION_ERROR" and error["status"] == "error"
    assert error["context"]["objectWriteTraceId"] == ["dup"]
    assert error["message"].endswith(f". {holder['id']} already has that value.")
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
    assert sorted(statuses) == [201] + [400] * 15
    assert len(sandbox.control.all_companies()) == 1
