"""The properties API: standard properties from the start, custom ones, batches and groups."""

from __future__ import annotations

import httpx
import pytest

from tests.hubspot_sandbox.conftest import PROPERTIES, WARP_PROPERTIES, create_company
from tests.plugins.sandbox import SandboxHandle

STANDARD = {"name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id", "website", "phone", "city",
            "industry", "lifecyclestage", "numberofemployees", "annualrevenue"}


def test_a_new_portal_has_hubspots_standard_company_properties(api: httpx.Client) -> None:
    results = api.get(PROPERTIES).json()["results"]
    by_name = {p["name"]: p for p in results}
    assert set(by_name) >= STANDARD
    assert not any(name.startswith("warp_") for name in by_name)
    assert by_name["hs_object_id"]["modificationMetadata"]["readOnlyValue"] is True
    assert by_name["name"]["type"] == "string" and by_name["name"]["fieldType"] == "text"
    assert by_name["createdate"]["type"] == "datetime"


def test_create_custom_properties_as_warp_sync_does(api: httpx.Client) -> None:
    for definition in WARP_PROPERTIES:
        response = api.post(PROPERTIES, json=dict(definition, groupName="companyinformation"))
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["name"] == definition["name"] and created["type"] == definition["type"]
        assert created["hasUniqueValue"] is bool(definition.get("hasUniqueValue"))
        assert created["archived"] is False
    services = api.get(f"{PROPERTIES}/warp_services").json()
    assert services["fieldType"] == "checkbox"
    assert [o["value"] for o in services["options"]] == ["voice", "messaging", "data"]


def test_creating_an_existing_property_is_409(warp_api: httpx.Client) -> None:
    response = warp_api.post(PROPERTIES, json=dict(WARP_PROPERTIES[0], groupName="companyinformation"))
    assert response.status_code == 409
    body = response.json()
    assert body["category"] == "OBJECT_ALREADY_EXISTS"
    assert body["message"] == "Property named 'warp_ban' already exists."


@pytest.mark.parametrize("definition", [
    {"name": "x1", "label": "X", "type": "enumeration", "fieldType": "select", "groupName": "companyinformation"},
    {"name": "x2", "label": "X", "type": "number", "fieldType": "text", "groupName": "companyinformation"},
    {"name": "x3", "label": "X", "type": "string", "fieldType": "text", "groupName": "no_such_group"},
    {"name": "X4", "label": "X", "type": "string", "fieldType": "text", "groupName": "companyinformation"},
    {"name": "x5", "type": "string", "fieldType": "text", "groupName": "companyinformation"},
    {"name": "x6", "label": "X", "type": "money", "fieldType": "text", "groupName": "companyinformation"},
])
def test_invalid_definitions_are_400(api: httpx.Client, definition: dict) -> None:
    response = api.post(PROPERTIES, json=definition)
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


def test_batch_read_and_create_report_missing_and_existing_names(warp_api: httpx.Client) -> None:
    read = warp_api.post(f"{PROPERTIES}/batch/read", json={"inputs": [{"name": "warp_ban"}, {"name": "nope"}]})
    assert read.status_code == 207
    assert [p["name"] for p in read.json()["results"]] == ["warp_ban"]
    assert read.json()["errors"][0]["context"] == {"names": ["nope"]}
    created = warp_api.post(f"{PROPERTIES}/batch/create", json={"inputs": [
        dict(WARP_PROPERTIES[0], groupName="companyinformation"),
        {"name": "warp_region", "label": "Region", "type": "string", "fieldType": "text",
         "groupName": "companyinformation"}]})
    assert created.status_code == 207
    assert [p["name"] for p in created.json()["results"]] == ["warp_region"]
    assert created.json()["errors"][0]["category"] == "OBJECT_ALREADY_EXISTS"


def test_archive_hides_the_property_and_its_values(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, warp_status="ACTIVE")
    assert warp_api.delete(f"{PROPERTIES}/warp_status").status_code == 204
    assert warp_api.get(f"{PROPERTIES}/warp_status").status_code == 404
    assert warp_api.get(f"{PROPERTIES}/warp_status?archived=true").json()["archived"] is True
    props = warp_api.get(f"/crm/v3/objects/companies/{company['id']}?properties=warp_status").json()["properties"]
    assert "warp_status" not in props
    write = warp_api.post("/crm/v3/objects/companies", json={"properties": {"warp_status": "ACTIVE"}})
    assert write.status_code == 400 and "PROPERTY_DOESNT_EXIST" in write.text


def test_batch_archive_answers_204_even_for_unknown_names_but_keeps_standard_ones(warp_api: httpx.Client) -> None:
    response = warp_api.post(f"{PROPERTIES}/batch/archive", json={"inputs": [{"name": "warp_ban"}, {"name": "nope"}]})
    assert response.status_code == 204
    assert warp_api.get(f"{PROPERTIES}/warp_ban").status_code == 404
    assert warp_api.post(f"{PROPERTIES}/batch/archive", json={"inputs": [{"name": "name"}]}).status_code == 400
    assert warp_api.delete(f"{PROPERTIES}/domain").status_code == 400


def test_update_changes_options_but_not_uniqueness(warp_api: httpx.Client) -> None:
    response = warp_api.patch(f"{PROPERTIES}/warp_payment_terms", json={"options": [
        {"label": "Prepaid", "value": "PREPAID"}, {"label": "Net 90", "value": "NET90"}]})
    assert response.status_code == 200
    assert [o["value"] for o in response.json()["options"]] == ["PREPAID", "NET90"]
    assert create_company(warp_api, warp_payment_terms="NET90")["properties"]["warp_payment_terms"] == "NET90"
    assert warp_api.patch(f"{PROPERTIES}/warp_ban", json={"hasUniqueValue": False}).status_code == 400


def test_at_most_ten_unique_properties(warp_api: httpx.Client) -> None:
    for index in range(9):  # warp_ban is the first
        created = warp_api.post(PROPERTIES, json={"name": f"unique_{index}", "label": "U", "type": "string",
                                                  "fieldType": "text", "groupName": "companyinformation",
                                                  "hasUniqueValue": True})
        assert created.status_code == 201
    eleventh = warp_api.post(PROPERTIES, json={"name": "unique_x", "label": "U", "type": "string",
                                               "fieldType": "text", "groupName": "companyinformation",
                                               "hasUniqueValue": True})
    assert eleventh.status_code == 400


def test_groups(api: httpx.Client) -> None:
    assert "companyinformation" in {g["name"] for g in api.get(f"{PROPERTIES}/groups").json()["results"]}
    created = api.post(f"{PROPERTIES}/groups", json={"name": "warp_sync", "label": "WARP sync", "displayOrder": 5})
    assert created.status_code == 201
    assert created.json() == {"name": "warp_sync", "label": "WARP sync", "displayOrder": 5, "archived": False}
    assert api.post(f"{PROPERTIES}/groups", json={"name": "warp_sync", "label": "again"}).status_code == 409
    assert api.patch(f"{PROPERTIES}/groups/warp_sync", json={"label": "WARP"}).json()["label"] == "WARP"
    assert api.get(f"{PROPERTIES}/groups/warp_sync").status_code == 200
    assert api.delete(f"{PROPERTIES}/groups/warp_sync").status_code == 204
    assert api.get(f"{PROPERTIES}/groups/warp_sync").status_code == 404


def test_reset_brings_properties_back_to_standard(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    assert warp_api.get(f"{PROPERTIES}/warp_ban").status_code == 200
    sandbox.control.reset()
    assert warp_api.get(f"{PROPERTIES}/warp_ban").status_code == 404
