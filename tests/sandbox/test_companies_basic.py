"""Create, read, update, archive and list companies: HubSpot's shapes and encodings."""

from __future__ import annotations

import re

import httpx

from tests.plugins.sandbox import SandboxHandle

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
COMPANIES = "/crm/v3/objects/companies"


def test_create_answers_201_with_string_values_numeric_id_and_millisecond_times(api: httpx.Client) -> None:
    response = api.post(COMPANIES, json={"properties": {"name": "Acme", "domain": "acme.example",
                                                        "numberofemployees": 25}})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    body = response.json()
    assert body["id"].isdigit()
    assert body["archived"] is False
    assert ISO_MS.match(body["createdAt"]) and ISO_MS.match(body["updatedAt"])
    props = body["properties"]
    assert props["numberofemployees"] == "25"  # a JSON number comes back as a string
    assert props["hs_object_id"] == body["id"]
    assert props["website"] == "acme.example"  # HubSpot fills website from domain
    assert ISO_MS.match(props["createdate"]) and props["hs_lastmodifieddate"] == props["createdate"]
    assert all(isinstance(v, str) for v in props.values())


def test_sandbox_fixture_resets_between_tests(sandbox: SandboxHandle) -> None:
    assert sandbox.control.all_companies() == []
