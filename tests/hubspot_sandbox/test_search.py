"""CRM search: operators, groups, sorts, paging, limits and the 10,000-result cap."""

from __future__ import annotations

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES
from tests.plugins.sandbox import SandboxHandle

SEARCH = f"{COMPANIES}/search"


def search(api: httpx.Client, **body: object) -> dict:
    response = api.post(SEARCH, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def names(body: dict) -> list[str]:
    return [r["properties"]["name"] for r in body["results"]]


def eq(name: str, value: object) -> dict:
    return {"filters": [{"propertyName": name, "operator": "EQ", "value": value}]}


@pytest.fixture
def seeded(sandbox: SandboxHandle, warp_api: httpx.Client) -> httpx.Client:
    sandbox.control.seed([
        {"properties": {"name": "Alpha Telecom", "domain": "alpha.example", "warp_credit_limit": "500",
                        "warp_status": "ACTIVE", "warp_services": "voice;data"}, "updatedAt": "2024-01-01T00:00:00Z"},
        {"properties": {"name": "Beta Networks", "domain": "beta.example", "warp_credit_limit": "1500",
                        "warp_status": "SUSPENDED", "warp_services": "messaging"}, "updatedAt": "2024-02-01T00:00:00Z"},
        {"properties": {"name": "Gamma Telecom", "warp_credit_limit": "2500", "warp_status": "ACTIVE"},
         "updatedAt": "2024-03-01T00:00:00Z"},
    ])
    return warp_api


def test_eq_is_case_insensitive_and_unset_requested_properties_are_null(seeded: httpx.Client) -> None:
    body = search(seeded, filterGroups=[eq("domain", "ALPHA.example")], properties=["name", "phone"])
    assert body["total"] == 1 and "paging" not in body
    props = body["results"][0]["properties"]
    assert props["name"] == "Alpha Telecom" and props["phone"] is None
    assert {"createdate", "hs_lastmodifieddate", "hs_object_id"} <= set(props)


@pytest.mark.parametrize(("filters", "expected"), [
    ([{"propertyName": "warp_credit_limit", "operator": "GT", "value": "500"}], ["Beta Networks", "Gamma Telecom"]),
    ([{"propertyName": "warp_credit_limit", "operator": "LTE", "value": 1500}], ["Alpha Telecom", "Beta Networks"]),
    ([{"propertyName": "warp_credit_limit", "operator": "BETWEEN", "value": "1000", "highValue": "3000"}],
     ["Beta Networks", "Gamma Telecom"]),
    ([{"propertyName": "warp_status", "operator": "IN", "values": ["SUSPENDED", "CLOSED"]}], ["Beta Networks"]),
    ([{"propertyName": "warp_status", "operator": "NOT_IN", "values": ["ACTIVE"]}], ["Beta Networks"]),
    ([{"propertyName": "warp_status", "operator": "NEQ", "value": "ACTIVE"}], ["Beta Networks"]),
    ([{"propertyName": "domain", "operator": "HAS_PROPERTY"}], ["Alpha Telecom", "Beta Networks"]),
    ([{"propertyName": "domain", "operator": "NOT_HAS_PROPERTY"}], ["Gamma Telecom"]),
    ([{"propertyName": "name", "operator": "CONTAINS_TOKEN", "value": "telecom"}], ["Alpha Telecom", "Gamma Telecom"]),
    ([{"propertyName": "name", "operator": "CONTAINS_TOKEN", "value": "net*"}], ["Beta Networks"]),
    ([{"propertyName": "name", "operator": "NOT_CONTAINS_TOKEN", "value": "telecom"}], ["Beta Networks"]),
    ([{"propertyName": "warp_services", "operator": "EQ", "value": "data"}], ["Alpha Telecom"]),
    ([{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "2024-02-01T00:00:00Z"}],
     ["Beta Networks", "Gamma Telecom"]),
    ([{"propertyName": "hs_lastmodifieddate", "operator": "LT", "value": "1706745600000"}], ["Alpha Telecom"]),
])
def test_operators(seeded: httpx.Client, filters: list, expected: list[str]) -> None:
    body = search(seeded, filterGroups=[{"filters": filters}], properties=["name"], limit=100)
    assert sorted(names(body)) == expected
    assert body["total"] == len(expected)


def test_groups_are_ored_and_filters_anded(seeded: httpx.Client) -> None:
    body = search(seeded, properties=["name"], filterGroups=[
        {"filters": [{"propertyName": "warp_status", "operator": "EQ", "value": "ACTIVE"},
                     {"propertyName": "warp_credit_limit", "operator": "GT", "value": "1000"}]},
        eq("domain", "beta.example")])
    assert sorted(names(body)) == ["Beta Networks", "Gamma Telecom"]


@pytest.mark.parametrize("sorts", [
    [{"propertyName": "warp_credit_limit", "direction": "DESCENDING"}],
    ["-warp_credit_limit"],
])
def test_sorts_as_objects_or_strings(seeded: httpx.Client, sorts: list) -> None:
    body = search(seeded, properties=["name"], sorts=sorts)
    assert names(body) == ["Gamma Telecom", "Beta Networks", "Alpha Telecom"]


def test_query_matches_word_prefixes(seeded: httpx.Client) -> None:
    assert names(search(seeded, query="gamm", properties=["name"])) == ["Gamma Telecom"]


def test_paging_by_offset_and_none_on_the_last_page(seeded: httpx.Client) -> None:
    first = search(seeded, limit=2, properties=["name"], sorts=["name"])
    assert names(first) == ["Alpha Telecom", "Beta Networks"]
    assert first["paging"] == {"next": {"after": "2"}} and first["total"] == 3
    last = search(seeded, limit=2, after=first["paging"]["next"]["after"], properties=["name"], sorts=["name"])
    assert names(last) == ["Gamma Telecom"] and "paging" not in last


def test_empty_result(api: httpx.Client) -> None:
    assert search(api, filterGroups=[eq("name", "nobody")]) == {"total": 0, "results": []}


@pytest.mark.parametrize("body", [
    {"limit": 201},
    {"after": "10000"},
    {"after": 10100, "limit": 10},
    {"filterGroups": [eq("name", "x")] * 6},
    {"filterGroups": [{"filters": eq("name", "x")["filters"] * 11}]},
    {"filterGroups": [{"filters": eq("name", "x")["filters"] * 9}] * 3},
    {"filterGroups": [{"filters": [{"propertyName": "name", "operator": "LIKE", "value": "x"}]}]},
    {"filterGroups": [eq("no_such_property", "x")]},
    {"sorts": [{"propertyName": "name", "direction": "SIDEWAYS"}]},
    {"query": "x" * 3001},
])
def test_limits_and_bad_requests_are_400(api: httpx.Client, body: dict) -> None:
    response = api.post(SEARCH, json=body)
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


def test_limit_200_and_the_10000_cap(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.seed([{"name": f"c{i}"} for i in range(10_050)])
    page = search(api, limit=200, after="9800", properties=["name"])
    assert len(page["results"]) == 200 and page["total"] == 10_050
    assert page["paging"]["next"]["after"] == "10000"
    beyond = api.post(SEARCH, json={"limit": 200, "after": page["paging"]["next"]["after"]})
    assert beyond.status_code == 400
    assert "10000" in beyond.json()["message"]


def test_archived_companies_are_not_found(api: httpx.Client, sandbox: SandboxHandle) -> None:
    [company_id] = sandbox.control.seed([{"name": "gone"}])
    api.delete(f"{COMPANIES}/{company_id}")
    assert search(api, filterGroups=[eq("name", "gone")])["total"] == 0
