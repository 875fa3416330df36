"""Batch read, create, update, upsert and archive: limits, 207s, objectWriteTraceId, upsert's `new`."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES, create_company
from tests.plugins.sandbox import SandboxHandle

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
NOT_FOUND_MESSAGE = ("Could not get some COMPANY objects, they may be deleted or not exist. "
                     "Check that ids are valid.")


def assert_batch_envelope(body: dict) -> None:
    assert body["status"] == "COMPLETE"
    assert ISO_MS.match(body["startedAt"]) and ISO_MS.match(body["completedAt"])
    assert body["startedAt"] <= body["completedAt"]


@pytest.mark.parametrize("operation", ["read", "create", "update", "upsert", "archive"])
def test_more_than_100_inputs_is_a_400(warp_api: httpx.Client, operation: str) -> None:
    inputs = [{"id": str(i), "idProperty": "warp_ban", "properties": {}} for i in range(101)]
    response = warp_api.post(f"{COMPANIES}/batch/{operation}", json={"inputs": inputs})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert warp_api.post(f"{COMPANIES}/batch/read", json={"inputs": inputs[:100]}).status_code in (200, 207)


def test_batch_read_missing_ids_give_207_with_one_grouped_error(api: httpx.Client) -> None:
    first = create_company(api, name="one", city="Oslo")
    second = create_company(api, name="two")
    response = api.post(f"{COMPANIES}/batch/read?archived=false", json={
        "inputs": [{"id": first["id"]}, {"id": "1"}, {"id": second["id"]}, {"id": "2"}],
        "properties": ["name", "city"]})
    assert response.status_code == 207
    body = response.json()
    assert_batch_envelope(body)
    assert body["numErrors"] == 1
    assert body["errors"] == [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": NOT_FOUND_MESSAGE,
                               "context": {"ids": ["1", "2"]}}]
    by_id = {r["id"]: r["properties"] for r in body["results"]}
    assert by_id[first["id"]]["city"] == "Oslo" and by_id[second["id"]]["city"] is None


def test_batch_read_all_found_is_200_and_takes_id_property_in_the_body(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="one", warp_ban="ZT-000000001")
    response = warp_api.post(f"{COMPANIES}/batch/read", json={
        "inputs": [{"id": "ZT-000000001"}], "idProperty": "warp_ban", "properties": ["warp_ban"]})
    assert response.status_code == 200
    body = response.json()
    assert "numErrors" not in body and "errors" not in body
    assert [r["id"] for r in body["results"]] == [company["id"]]


def test_batch_read_with_history_takes_at_most_50(api: httpx.Client) -> None:
    inputs = [{"id": str(i)} for i in range(51)]
    response = api.post(f"{COMPANIES}/batch/read", json={"inputs": inputs, "propertiesWithHistory": ["name"]})
    assert response.status_code == 400


def test_batch_create_answers_201_echoing_written_and_system_properties(warp_api: httpx.Client) -> None:
    response = warp_api.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"name": "A", "warp_status": "ACTIVE"}},
        {"properties": {"name": "B", "warp_credit_limit": 10}, "associations": []}]})
    assert response.status_code == 201
    body = response.json()
    assert_batch_envelope(body)
    assert [r["properties"]["name"] for r in body["results"]] == ["A", "B"]
    assert set(body["results"][0]["properties"]) == {"name", "warp_status", "createdate", "hs_lastmodifieddate",
                                                     "hs_object_id"}
    assert body["results"][1]["properties"]["warp_credit_limit"] == "10"


def test_batch_create_without_trace_ids_fails_whole_and_writes_nothing(warp_api: httpx.Client) -> None:
    response = warp_api.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"name": "good"}}, {"properties": {"warp_status": "BROKEN"}}]})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"
    assert "warp_status" in response.json()["message"]
    assert warp_api.get(COMPANIES).json()["results"] == []


def test_batch_create_with_trace_ids_answers_207_per_input(warp_api: httpx.Client) -> None:
    response = warp_api.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"name": "good"}, "objectWriteTraceId": "t-1"},
        {"properties": {"warp_status": "BROKEN"}, "objectWriteTraceId": "t-2"},
        {"properties": {"name": "also good"}, "objectWriteTraceId": "t-3"}]})
    assert response.status_code == 207
    body = response.json()
    assert_batch_envelope(body)
    assert body["numErrors"] == 1
    [error] = body["errors"]
    assert error["category"] == "VALIDATION_ERROR"
    assert error["context"]["objectWriteTraceId"] == ["t-2"]
    assert error["message"].startswith("Property values were not valid: ")
    assert error["errors"][0]["code"] == "INVALID_OPTION"
    assert sorted(r["objectWriteTraceId"] for r in body["results"]) == ["t-1", "t-3"]
    assert len(warp_api.get(COMPANIES).json()["results"]) == 2


def test_duplicate_trace_ids_are_refused(api: httpx.Client) -> None:
    response = api.post(f"{COMPANIES}/batch/create", json={"inputs": [
        {"properties": {"name": "a"}, "objectWriteTraceId": "same"},
        {"properties": {"name": "b"}, "objectWriteTraceId": "same"}]})
    assert response.status_code == 400


def test_batch_update_by_id_and_by_unique_property(warp_api: httpx.Client) -> None:
    first = create_company(warp_api, name="one", warp_ban="ZT-000000001")
    second = create_company(warp_api, name="two", warp_ban="ZT-000000002")
    response = warp_api.post(f"{COMPANIES}/batch/update", json={"inputs": [
        {"id": first["id"], "properties": {"warp_status": "ACTIVE"}},
        {"id": "ZT-000000002", "idProperty": "warp_ban", "properties": {"warp_status": "CLOSED"}}]})
    assert response.status_code == 200
    by_id = {r["id"]: r["properties"] for r in response.json()["results"]}
    assert by_id == {first["id"]: by_id[first["id"]], second["id"]: by_id[second["id"]]}
    assert by_id[first["id"]]["warp_status"] == "ACTIVE" and by_id[second["id"]]["warp_status"] == "CLOSED"


def test_batch_update_missing_companies_fail_the_whole_batch_by_default_trace_ids_or_not(
    warp_api: httpx.Client,
) -> None:
    company = create_company(warp_api, name="one")
    for traced in (False, True):
        inputs = [{"id": company["id"], "properties": {"city": "Oslo"}}, {"id": "77", "properties": {"city": "Oslo"}},
                  {"id": "78", "properties": {"city": "Oslo"}}]
        if traced:
            inputs = [{**entry, "objectWriteTraceId": f"t{n}"} for n, entry in enumerate(inputs)]
        whole = warp_api.post(f"{COMPANIES}/batch/update", json={"inputs": inputs})
        assert whole.status_code == 404
        assert whole.json()["category"] == "OBJECT_NOT_FOUND"
        assert whole.json()["context"] == {"ids": ["77", "78"]}  # every missing id, nothing written
        assert warp_api.get(f"{COMPANIES}/{company['id']}?properties=city").json()["properties"]["city"] is None


@pytest.mark.parametrize(("form", "status"), [("multi_status", 207), ("multi_status_200", 200)])
def test_batch_update_reports_missing_companies_per_input_by_switch(
    warp_api: httpx.Client, sandbox: SandboxHandle, form: str, status: int,
) -> None:
    sandbox.control.configure(batch_write_errors=form)
    company = create_company(warp_api, name="one")
    partial = warp_api.post(f"{COMPANIES}/batch/update", json={"inputs": [
        {"id": company["id"], "properties": {"city": "Oslo"}, "objectWriteTraceId": "a"},
        {"id": "77", "properties": {"city": "Oslo"}, "objectWriteTraceId": "b"}]})
    assert partial.status_code == status and partial.json()["numErrors"] == 1
    [error] = partial.json()["errors"]
    assert error["category"] == "OBJECT_NOT_FOUND"
    assert error["context"] == {"ids": ["77"], "objectWriteTraceId": ["b"]}
    assert partial.json()["results"][0]["properties"]["city"] == "Oslo"


def test_batch_update_refuses_duplicate_ids_and_non_unique_id_property(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="one")
    duplicate = warp_api.post(f"{COMPANIES}/batch/update", json={"inputs": [
        {"id": company["id"], "properties": {"city": "a"}}, {"id": company["id"], "properties": {"city": "b"}}]})
    assert duplicate.status_code == 400
    assert "Duplicate IDs" in duplicate.json()["message"]
    by_name = warp_api.post(f"{COMPANIES}/batch/update", json={"inputs": [
        {"id": "one", "idProperty": "name", "properties": {"city": "a"}}]})
    assert by_name.status_code == 400
    assert "non-unique" in by_name.json()["message"]


def test_upsert_creates_and_updates_and_says_which(warp_api: httpx.Client) -> None:
    existing = create_company(warp_api, name="old", warp_ban="ZT-000000001")
    response = warp_api.post(f"{COMPANIES}/batch/upsert", json={"inputs": [
        {"id": "ZT-000000001", "idProperty": "warp_ban", "properties": {"name": "renamed"}},
        {"id": "ZT-000000002", "idProperty": "warp_ban", "properties": {"name": "fresh"}}]})
    assert response.status_code == 200
    body = response.json()
    assert_batch_envelope(body)
    [updated] = [r for r in body["results"] if r["id"] == existing["id"]]
    [created] = [r for r in body["results"] if r["id"] != existing["id"]]
    assert updated["new"] is False and updated["id"] == existing["id"]
    assert created["new"] is True and created["properties"]["name"] == "fresh"
    assert warp_api.get(f"{COMPANIES}/ZT-000000002?idProperty=warp_ban").json()["id"] == created["id"]


@pytest.mark.parametrize("id_property", ["hs_object_id", "name", None])
def test_upsert_needs_a_unique_id_property(warp_api: httpx.Client, id_property: str | None) -> None:
    entry = {"id": "1", "properties": {"city": "Oslo"}}
    if id_property:
        entry["idProperty"] = id_property
    response = warp_api.post(f"{COMPANIES}/batch/upsert", json={"inputs": [entry]})
    assert response.status_code == 400
    assert response.json()["message"].startswith("Unable to perform upsert by non-unique 0-2 property")


def test_upsert_refuses_duplicate_ids(warp_api: httpx.Client) -> None:
    response = warp_api.post(f"{COMPANIES}/batch/upsert", json={"inputs": [
        {"id": "ZT-000000001", "idProperty": "warp_ban", "properties": {"name": "a"}},
        {"id": "ZT-000000001", "idProperty": "warp_ban", "properties": {"name": "b"}}]})
    assert response.status_code == 400
    assert warp_api.get(COMPANIES).json()["results"] == []


def test_batch_archive_answers_204_and_skips_unknown_ids(sandbox: SandboxHandle, api: httpx.Client) -> None:
    first = create_company(api, name="one")
    second = create_company(api, name="two")
    response = api.post(f"{COMPANIES}/batch/archive", json={"inputs": [{"id": first["id"]}, {"id": "5"}]})
    assert response.status_code == 204
    assert [c["id"] for c in api.get(COMPANIES).json()["results"]] == [second["id"]]
    archived = {c["id"]: c["archived"] for c in sandbox.control.all_companies()}
    assert archived == {first["id"]: True, second["id"]: False}
