"""Malformed input answers HubSpot's 400 error shape, never a 500; a 204 carries no body type."""

from __future__ import annotations

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES, PROPERTIES, create_company


@pytest.mark.parametrize("id_property", [["warp_ban"], 7, {"name": "warp_ban"}])
def test_a_non_string_id_property_on_batch_read_is_a_400(warp_api: httpx.Client, id_property: object) -> None:
    response = warp_api.post(f"{COMPANIES}/batch/read", json={"inputs": [{"id": "1"}], "properties": [],
                                                              "idProperty": id_property})
    assert response.status_code == 400, response.text
    assert response.json()["category"] == "VALIDATION_ERROR" and "idProperty" in response.json()["message"]


@pytest.mark.parametrize(("key", "value"), [("propertiesWithHistory", True), ("properties", "name"),
                                            ("properties", [1, 2]), ("propertiesWithHistory", {"a": 1})])
def test_property_lists_on_batch_read_that_are_not_lists_of_names_are_a_400(
    warp_api: httpx.Client, key: str, value: object,
) -> None:
    # Found by the fuzz run against HubSpot's documents (hubspot_sandbox/README.md): a TypeError, answered 500.
    response = warp_api.post(f"{COMPANIES}/batch/read", json={"inputs": [{"id": "1"}], key: value})
    assert response.status_code == 400, response.text
    assert response.json()["category"] == "VALIDATION_ERROR" and key in response.json()["message"]


@pytest.mark.parametrize("company_id", ["\u00b2", "\u0663", "12\u00b3"])
def test_ids_of_non_ascii_digits_are_no_ids(warp_api: httpx.Client, company_id: str) -> None:
    # Found by the fuzz run: "²" passes str.isdigit but not int(), and batch archive answered 500.
    assert warp_api.post(f"{COMPANIES}/batch/archive", json={"inputs": [{"id": company_id}]}).status_code == 204
    assert warp_api.get(f"{COMPANIES}/{company_id}").status_code == 404
    assert warp_api.get(COMPANIES, params={"after": company_id}).status_code == 400


@pytest.mark.parametrize("order", ["first", 1.5, True, None])
def test_a_non_integer_display_order_on_a_group_is_a_400(warp_api: httpx.Client, order: object) -> None:
    created = warp_api.post(f"{PROPERTIES}/groups", json={"name": "odd", "label": "Odd", "displayOrder": order})
    assert created.status_code == 400, created.text
    assert warp_api.post(f"{PROPERTIES}/groups", json={"name": "odd", "label": "Odd", "displayOrder": 3}).status_code \
        == 201
    updated = warp_api.patch(f"{PROPERTIES}/groups/odd", json={"displayOrder": order})
    assert updated.status_code == 400, updated.text


def test_a_204_has_no_body_and_no_content_type(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Gone Soon")
    response = warp_api.delete(f"{COMPANIES}/{company['id']}")
    assert response.status_code == 204 and response.content == b""
    assert "content-type" not in response.headers
