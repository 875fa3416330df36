"""Property typing and validation as HubSpot does it, answered as 400 VALIDATION_ERROR."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES, create_company

PREFIX = "Property values were not valid: "


def refused(response: httpx.Response) -> list[dict]:
    """The per-property entries of a validation error, checked against the structured errors[]."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["category"] == "VALIDATION_ERROR" and body["status"] == "error"
    assert body["message"].startswith(PREFIX)
    entries = json.loads(body["message"][len(PREFIX):])
    assert [(e["code"], e["context"]["propertyName"]) for e in body["errors"]] == \
        [(e["error"], [e["name"]]) for e in entries]
    for entry in entries:
        assert entry["isValid"] is False and entry["message"] and entry["localizedErrorMessage"]
        assert entry["portalId"] == 62515
    return entries


@pytest.mark.parametrize(("name", "value", "code"), [
    ("warp_credit_limit", "ten", "INVALID_INTEGER"),
    ("warp_credit_limit", "1.42e-14", "INVALID_INTEGER"),
    ("warp_credit_limit", " 100", "LEADING_TRAILING_WHITESPACE"),
    ("warp_status", "OPEN", "INVALID_OPTION"),
    ("warp_status", "ACTIVE ", "LEADING_TRAILING_WHITESPACE"),
    ("warp_status", "active", "INVALID_OPTION"),
    ("warp_services", "voice;fax", "INVALID_OPTION"),
    ("warp_services", "voice; data", "LEADING_TRAILING_WHITESPACE"),
    ("is_public", "yes", "INVALID_BOOLEAN"),
    ("closedate", "next week", "INVALID_DATETIME"),
    ("no_such_property", "x", "PROPERTY_DOESNT_EXIST"),
    ("hs_object_id", "5", "READ_ONLY_VALUE"),
    ("hs_lastmodifieddate", "2024-01-01T00:00:00Z", "READ_ONLY_VALUE"),
])
def test_invalid_values_are_refused_with_hubspot_codes(warp_api: httpx.Client, name: str, value: str,
                                                       code: str) -> None:
    entries = refused(warp_api.post(COMPANIES, json={"properties": {"name": "Acme", name: value}}))
    assert [(e["name"], e["error"], e.get("propertyValue")) for e in entries] == [(name, code, value)]
    assert warp_api.get(COMPANIES).json()["results"] == []  # nothing was written


def test_unknown_property_message_names_it(api: httpx.Client) -> None:
    [entry] = refused(api.post(COMPANIES, json={"properties": {"colour": "red"}}))
    assert entry["message"] == 'Property "colour" does not exist'


def test_every_bad_property_is_reported_at_once(warp_api: httpx.Client) -> None:
    entries = refused(warp_api.post(COMPANIES, json={"properties": {
        "warp_credit_limit": "x", "warp_status": "nope", "name": "fine"}}))
    assert {e["name"] for e in entries} == {"warp_credit_limit", "warp_status"}


def test_update_validation_changes_nothing(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme", warp_credit_limit="100")
    refused(warp_api.patch(f"{COMPANIES}/{company['id']}",
                           json={"properties": {"name": "Changed", "warp_credit_limit": "lots"}}))
    props = warp_api.get(f"{COMPANIES}/{company['id']}?properties=name,warp_credit_limit").json()["properties"]
    assert props["name"] == "Acme" and props["warp_credit_limit"] == "100"


@pytest.mark.parametrize(("name", "sent", "stored"), [
    ("warp_credit_limit", "1500.50", "1500.5"),
    ("warp_credit_limit", "10000.00", "10000"),
    ("warp_credit_limit", 2500, "2500"),
    ("warp_current_balance", "-12.30", "-12.3"),
    ("warp_services", "voice;data", "voice;data"),
    ("warp_status", "SUSPENDED", "SUSPENDED"),
    ("is_public", "TRUE", "true"),
    ("is_public", False, "false"),
    ("closedate", "2024-03-05T10:15:00+01:00", "2024-03-05T09:15:00.000Z"),
    ("closedate", "1709633700000", "2024-03-05T10:15:00.000Z"),
    ("name", "  spaced name  ", "  spaced name  "),  # strings keep their whitespace
])
def test_valid_values_are_stored_as_hubspot_strings(warp_api: httpx.Client, name: str, sent: object,
                                                    stored: str) -> None:
    company = create_company(warp_api, **{name: sent})
    assert company["properties"][name] == stored
    assert warp_api.get(f"{COMPANIES}/{company['id']}?properties={name}").json()["properties"][name] == stored


def test_date_properties_hold_a_day(warp_api: httpx.Client) -> None:
    created = warp_api.post("/crm/v3/properties/companies", json={
        "name": "contract_start", "label": "Contract start", "type": "date", "fieldType": "date",
        "groupName": "companyinformation"})
    assert created.status_code == 201
    assert create_company(warp_api, contract_start="2024-03-05")["properties"]["contract_start"] == "2024-03-05"
    assert create_company(warp_api, contract_start="1709596800000")["properties"]["contract_start"] == "2024-03-05"
    [entry] = refused(warp_api.post(COMPANIES, json={"properties": {"contract_start": "1709633700000"}}))
    assert entry["error"] == "INVALID_DATE"


def test_forced_validation_fault_refuses_a_good_value(warp_api: httpx.Client, sandbox) -> None:
    sandbox.control.set_faults(validation={"property": "warp_credit_limit", "calls": 2, "code": "INVALID_INTEGER"})
    [entry] = refused(warp_api.post(COMPANIES, json={"properties": {"warp_credit_limit": "100"}}))
    assert entry["name"] == "warp_credit_limit" and entry["error"] == "INVALID_INTEGER"
    # A write without the property is not affected and does not use the fault up.
    create_company(warp_api, name="unaffected")
    refused(warp_api.post(COMPANIES, json={"properties": {"warp_credit_limit": "100"}}))
    assert create_company(warp_api, warp_credit_limit="100")["properties"]["warp_credit_limit"] == "100"
