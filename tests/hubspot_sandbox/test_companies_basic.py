"""Create, read, update, archive and list companies: HubSpot's shapes, encodings and limits."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.hubspot_sandbox.conftest import COMPANIES, create_company
from tests.plugins.sandbox import SandboxHandle

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


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


def test_get_accepts_repeated_and_comma_separated_properties_and_python_style_booleans(api: httpx.Client) -> None:
    company = create_company(api, name="Acme", domain="acme.example", city="Oslo")
    url = f"{COMPANIES}/{company['id']}?properties=name&properties=city,phone&archived=False"
    body = api.get(url).json()
    props = body["properties"]
    assert props["name"] == "Acme" and props["city"] == "Oslo"
    assert props["phone"] is None  # requested, unset
    assert "domain" not in props  # not requested: only the system properties join in
    assert {"createdate", "hs_lastmodifieddate", "hs_object_id"} <= set(props)
    assert api.get(f"{COMPANIES}/{company['id']}?archived=TRUE").status_code == 404  # it is not archived
    assert api.get(f"{COMPANIES}/{company['id']}?archived=maybe").status_code == 400


def test_default_read_returns_name_and_domain(api: httpx.Client) -> None:
    company = create_company(api, name="Acme", domain="acme.example", city="Oslo")
    props = api.get(f"{COMPANIES}/{company['id']}").json()["properties"]
    assert set(props) == {"name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"}


@pytest.mark.parametrize("object_type", ["companies", "COMPANY", "0-2"])
def test_object_type_aliases(api: httpx.Client, object_type: str) -> None:
    response = api.post(f"/crm/v3/objects/{object_type}", json={"properties": {"name": "Alias"}})
    assert response.status_code == 201
    assert api.get(f"/crm/v3/objects/{object_type}/{response.json()['id']}").status_code == 200


def test_other_object_types_are_not_served(api: httpx.Client) -> None:
    response = api.get("/crm/v3/objects/contacts/1")
    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


def test_update_overwrites_given_values_and_empty_string_clears(api: httpx.Client) -> None:
    company = create_company(api, name="Acme", city="Oslo", phone="+47 1234")
    response = api.patch(f"{COMPANIES}/{company['id']}", json={"properties": {"city": "Bergen", "phone": ""}})
    assert response.status_code == 200
    assert response.json()["properties"]["city"] == "Bergen"
    props = api.get(f"{COMPANIES}/{company['id']}?properties=city,phone,name").json()["properties"]
    assert props == {**props, "city": "Bergen", "phone": None, "name": "Acme"}
    assert props["hs_lastmodifieddate"] >= company["properties"]["hs_lastmodifieddate"]


def test_update_of_unknown_company_is_404(api: httpx.Client) -> None:
    response = api.patch(f"{COMPANIES}/123", json={"properties": {"city": "Bergen"}})
    assert response.status_code == 404
    assert response.json()["category"] == "OBJECT_NOT_FOUND"


def test_get_and_update_by_unique_id_property(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme", warp_ban="ZT-000000001")
    found = warp_api.get(f"{COMPANIES}/ZT-000000001?idProperty=warp_ban&properties=name")
    assert found.status_code == 200 and found.json()["id"] == company["id"]
    patched = warp_api.patch(f"{COMPANIES}/ZT-000000001?idProperty=warp_ban", json={"properties": {"name": "Acme 2"}})
    assert patched.status_code == 200 and patched.json()["id"] == company["id"]
    assert warp_api.get(f"{COMPANIES}/ZT-999999999?idProperty=warp_ban").status_code == 404
    not_unique = warp_api.get(f"{COMPANIES}/Acme?idProperty=name")
    assert not_unique.status_code == 400
    assert not_unique.json()["category"] == "VALIDATION_ERROR"


def test_archive_answers_204_and_the_company_moves_to_the_archived_view(api: httpx.Client) -> None:
    company = create_company(api, name="Gone")
    response = api.delete(f"{COMPANIES}/{company['id']}")
    assert response.status_code == 204 and response.content == b""
    assert api.get(f"{COMPANIES}/{company['id']}").status_code == 404
    archived = api.get(f"{COMPANIES}/{company['id']}?archived=true").json()
    assert archived["archived"] is True and ISO_MS.match(archived["archivedAt"])
    listed = api.get(f"{COMPANIES}?archived=true").json()["results"]
    assert [c["id"] for c in listed] == [company["id"]]
    assert api.get(COMPANIES).json()["results"] == []


def test_list_default_limit_is_10_and_last_page_has_no_paging(sandbox: SandboxHandle, api: httpx.Client) -> None:
    sandbox.control.seed([{"name": f"c{i}"} for i in range(12)])
    first = api.get(COMPANIES).json()
    assert len(first["results"]) == 10
    after = first["paging"]["next"]["after"]
    assert first["paging"]["next"]["link"].endswith(f"after={after}")
    second = api.get(COMPANIES, params={"after": after}).json()
    assert len(second["results"]) == 2 and "paging" not in second


@pytest.mark.parametrize(("params", "status"), [
    ({"limit": 100}, 200),
    ({"limit": 101}, 400),
    ({"limit": 0}, 400),
    ({"limit": 50, "propertiesWithHistory": "name"}, 200),
    ({"limit": 51, "propertiesWithHistory": "name"}, 400),
    ({"limit": "ten"}, 400),
    ({"after": "not-a-cursor"}, 400),
])
def test_list_limits(api: httpx.Client, params: dict, status: int) -> None:
    response = api.get(COMPANIES, params=params)
    assert response.status_code == status
    if status == 400:
        assert response.json()["category"] == "VALIDATION_ERROR"


def test_paging_through_2500_companies_sees_each_once_in_id_order(sandbox: SandboxHandle, api: httpx.Client) -> None:
    ids = sandbox.control.seed([{"name": f"company {i}", "domain": f"c{i}.example"} for i in range(2500)])
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params: dict = {"limit": 100, "properties": ["name", "domain"]}
        if after:
            params["after"] = after
        body = api.get(COMPANIES, params=params).json()
        pages += 1
        seen.extend(c["id"] for c in body["results"])
        if "paging" not in body:
            break
        after = body["paging"]["next"]["after"]
    assert pages == 25
    assert seen == ids
    assert sandbox.control.counters()["by_endpoint"]["GET /crm/v3/objects/companies"] == 25


def test_invalid_json_is_a_400_in_hubspot_shape(api: httpx.Client) -> None:
    response = api.post(COMPANIES, content=b'{"properties": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "error" and body["category"] == "VALIDATION_ERROR"
    assert body["message"].startswith("Invalid input JSON")


def test_merge_makes_a_new_company_with_the_primarys_values_that_both_old_ids_resolve_to(
    sandbox: SandboxHandle, api: httpx.Client,
) -> None:
    primary = create_company(api, name="Primary", city="Oslo")
    other = create_company(api, name="Other", city="Bergen", phone="+47 555")
    response = api.post(f"{COMPANIES}/merge", json={"primaryObjectId": primary["id"], "objectIdToMerge": other["id"]})
    assert response.status_code == 200
    new_id = response.json()["id"]
    assert new_id not in (primary["id"], other["id"])  # HubSpot's merges make a new record
    for old_id in (primary["id"], other["id"]):
        merged = api.get(f"{COMPANIES}/{old_id}?properties=name,city,phone,hs_merged_object_ids").json()
        assert merged["id"] == new_id  # either old id reads the merged record, under its new id
        assert merged["properties"]["name"] == "Primary" and merged["properties"]["city"] == "Oslo"
        assert merged["properties"]["phone"] == "+47 555"
        assert merged["properties"]["hs_merged_object_ids"] == f"{primary['id']};{other['id']}"
    assert [c["id"] for c in api.get(COMPANIES).json()["results"]] == [new_id]
    snapshot = {c["id"]: c for c in sandbox.control.all_companies()}
    assert snapshot[primary["id"]]["mergedInto"] == new_id and snapshot[other["id"]]["mergedInto"] == new_id
    # Archiving a merged-away id does not archive the merged record.
    assert api.delete(f"{COMPANIES}/{other['id']}").status_code == 204
    assert api.get(f"{COMPANIES}/{new_id}").status_code == 200


def test_after_a_merge_only_the_primarys_unique_value_survives(warp_api: httpx.Client) -> None:
    primary = create_company(warp_api, name="Primary", warp_ban="ZT-000000101")
    other = create_company(warp_api, name="Other", warp_ban="ZT-000000102")
    new_id = warp_api.post(f"{COMPANIES}/merge", json={"primaryObjectId": primary["id"],
                                                 "objectIdToMerge": other["id"]}).json()["id"]
    assert warp_api.get(f"{COMPANIES}/ZT-000000101?idProperty=warp_ban").json()["id"] == new_id
    assert warp_api.get(f"{COMPANIES}/ZT-000000102?idProperty=warp_ban").status_code == 404
    create_company(warp_api, name="Takes the freed BAN", warp_ban="ZT-000000102")
