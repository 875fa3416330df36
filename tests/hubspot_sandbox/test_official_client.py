"""HubSpot's official Python client (hubspot-api-client) pointed at the sandbox with host=."""

from __future__ import annotations

import json

import httpx
import hubspot
import pytest
from hubspot.crm.companies import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchInputSimplePublicObjectBatchInputUpsert,
    BatchReadInputSimplePublicObjectId,
    BatchResponseSimplePublicObject,
    BatchResponseSimplePublicObjectWithErrors,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectBatchInputUpsert,
    SimplePublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from tests.plugins.sandbox import SandboxHandle


@pytest.fixture
def client(sandbox: SandboxHandle, warp_api: httpx.Client) -> hubspot.Client:
    return hubspot.Client.create(access_token=sandbox.access_token, host=sandbox.base_url)


def test_create_get_update_and_page(sandbox: SandboxHandle, client: hubspot.Client) -> None:
    basic = client.crm.companies.basic_api
    created = basic.create(SimplePublicObjectInputForCreate(properties={"name": "Acme", "domain": "acme.example"}))
    assert created.id.isdigit() and created.properties["name"] == "Acme"
    basic.update(created.id, SimplePublicObjectInput(properties={"warp_status": "ACTIVE"}))
    fetched = basic.get_by_id(created.id, properties=["name", "warp_status"], properties_with_history=["warp_status"],
                              archived=False)
    assert fetched.properties["warp_status"] == "ACTIVE"
    [entry] = fetched.properties_with_history["warp_status"]
    assert entry.value == "ACTIVE" and entry.source_type == "INTEGRATION"
    sandbox.control.seed([{"name": f"seeded {i}"} for i in range(6)])
    page = basic.get_page(limit=5, properties=["name", "domain"], archived=False)
    assert len(page.results) == 5 and page.paging.next.after
    everything = client.crm.companies.get_all(properties=["name"])
    assert len(everything) == 7


def test_batch_read_create_update_upsert(client: hubspot.Client) -> None:
    batch = client.crm.companies.batch_api
    created = batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(properties={"name": "A", "warp_ban": "ZT-000000001"}),
        SimplePublicObjectBatchInputForCreate(properties={"name": "B", "warp_ban": "ZT-000000002"})]))
    assert isinstance(created, BatchResponseSimplePublicObject) and created.status == "COMPLETE"
    ids = sorted(r.id for r in created.results)
    updated = batch.update(BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id=ids[0], properties={"warp_status": "CLOSED"})]))
    assert updated.results[0].properties["warp_status"] == "CLOSED"
    read = batch.read(BatchReadInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id="ZT-000000001"), SimplePublicObjectId(id="ZT-000000002")],
        id_property="warp_ban", properties=["name", "warp_status"], properties_with_history=[]), archived=False)
    assert sorted(r.properties["name"] for r in read.results) == ["A", "B"]
    upserted = batch.upsert(BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        SimplePublicObjectBatchInputUpsert(id="ZT-000000002", id_property="warp_ban", properties={"name": "B2"}),
        SimplePublicObjectBatchInputUpsert(id="ZT-000000003", id_property="warp_ban", properties={"name": "C"})]))
    assert sorted((r.properties["name"], r.new) for r in upserted.results) == [("B2", False), ("C", True)]


def test_207_deserialises_with_errors(client: hubspot.Client) -> None:
    batch = client.crm.companies.batch_api
    missing = batch.read(BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id="404")],
                                                            properties=["name"], properties_with_history=[]))
    assert isinstance(missing, BatchResponseSimplePublicObjectWithErrors)
    assert missing.num_errors == 1 and missing.errors[0].context == {"ids": ["404"]}
    partial = batch.create(BatchInputSimplePublicObjectBatchInputForCreate(inputs=[
        SimplePublicObjectBatchInputForCreate(properties={"name": "ok"}, object_write_trace_id="t1"),
        SimplePublicObjectBatchInputForCreate(properties={"warp_status": "NOPE"}, object_write_trace_id="t2")]))
    assert isinstance(partial, BatchResponseSimplePublicObjectWithErrors)
    assert partial.errors[0].category == "VALIDATION_ERROR"
    assert partial.errors[0].context["objectWriteTraceId"] == ["t2"]
    assert [r.object_write_trace_id for r in partial.results] == ["t1"]


def test_search(sandbox: SandboxHandle, client: hubspot.Client) -> None:
    sandbox.control.seed([{"name": "Alpha", "warp_status": "ACTIVE"}, {"name": "Beta", "warp_status": "CLOSED"}])
    found = client.crm.companies.search_api.do_search(PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="warp_status", operator="EQ", value="ACTIVE")])],
        properties=["name", "phone"], limit=10))
    assert found.total == 1 and found.results[0].properties == {**found.results[0].properties, "name": "Alpha",
                                                                 "phone": None}
    assert found.paging is None


def test_400_raises_api_exception_with_the_body(client: hubspot.Client) -> None:
    with pytest.raises(ApiException) as raised:
        client.crm.companies.basic_api.create(SimplePublicObjectInputForCreate(properties={"warp_credit_limit": "x"}))
    assert raised.value.status == 400
    body = json.loads(raised.value.body)
    assert body["category"] == "VALIDATION_ERROR" and body["errors"][0]["code"] == "INVALID_INTEGER"


def test_properties_api(client: hubspot.Client) -> None:
    names = {p.name for p in client.crm.properties.core_api.get_all("companies", archived=False).results}
    assert {"name", "domain", "warp_ban"} <= names


def test_the_hardest_default_forms_reach_the_official_client_intact(
    sandbox: SandboxHandle, client: hubspot.Client,
) -> None:
    basic, batch = client.crm.companies.basic_api, client.crm.companies.batch_api
    held = basic.create(SimplePublicObjectInputForCreate(properties={"name": "Held", "warp_ban": "ZT-000000009"}))
    # A duplicate unique value: HubSpot's 400 naming the holder in its message.
    with pytest.raises(ApiException) as duplicate:
        basic.create(SimplePublicObjectInputForCreate(properties={"name": "Again", "warp_ban": "ZT-000000009"}))
    assert duplicate.value.status == 400
    assert json.loads(duplicate.value.body)["message"].endswith(f"{held.id} already has that value.")
    # A batch update with a missing company fails whole: a 404 naming it, nothing written.
    with pytest.raises(ApiException) as missing:
        batch.update(BatchInputSimplePublicObjectBatchInput(inputs=[
            SimplePublicObjectBatchInput(id=held.id, properties={"warp_status": "CLOSED"}),
            SimplePublicObjectBatchInput(id="404", properties={"warp_status": "CLOSED"})]))
    assert missing.value.status == 404 and json.loads(missing.value.body)["context"] == {"ids": ["404"]}
    # A merge makes a new company, which the old id reads under its new id.
    other = basic.create(SimplePublicObjectInputForCreate(properties={"name": "Other"}))
    merged = sandbox.control.rep_merge(held.id, other.id)
    read = basic.get_by_id(other.id, properties=["name", "hs_merged_object_ids"])
    assert read.id == merged["id"] and read.properties["hs_merged_object_ids"] == f"{held.id};{other.id}"
    # A spent daily quota: HubSpot's DAILY 429.
    usage = sandbox.control.spend_daily_quota(0)
    sandbox.control.spend_daily_quota(usage["usageLimit"] - usage["currentUsage"])
    with pytest.raises(ApiException) as spent:
        basic.get_page(limit=1)
    assert spent.value.status == 429 and json.loads(spent.value.body)["policyName"] == "DAILY"
