"""HubSpot's path families (hubspot-api.md, section 12): the legacy /crm/v3/... paths and the date versions'
/crm/objects/{version}/... and /crm/properties/{version}/... serve the same portal; from 2026-09 a batch's
partial failures come in a 200."""

from __future__ import annotations

import httpx
import pytest

from tests.hubspot_sandbox.conftest import create_company
from tests.plugins.sandbox import SandboxHandle

FAMILIES = {
    "v3": ("/crm/v3/objects/companies", "/crm/v3/properties/companies"),
    "2026-03": ("/crm/objects/2026-03/companies", "/crm/properties/2026-03/companies"),
    "2026-09": ("/crm/objects/2026-09/0-2", "/crm/properties/2026-09/companies"),
}


@pytest.mark.parametrize("version", list(FAMILIES))
def test_each_path_family_serves_the_same_companies_and_properties(
    version: str, warp_api: httpx.Client, sandbox: SandboxHandle,
) -> None:
    objects, properties = FAMILIES[version]
    legacy = create_company(warp_api, name="Both Paths Ltd", warp_ban="ZT-000000411")
    sandbox.control.reset_counters()

    read = warp_api.get(f"{objects}/{legacy['id']}", params={"properties": "name,warp_ban"})
    assert read.status_code == 200, read.text
    assert read.json()["properties"]["warp_ban"] == "ZT-000000411"
    patched = warp_api.patch(f"{objects}/{legacy['id']}", json={"properties": {"name": "Renamed Ltd"}})
    assert patched.status_code == 200, patched.text
    listed = warp_api.get(objects, params={"limit": 100, "properties": "name"}).json()["results"]
    assert [c["properties"]["name"] for c in listed if c["id"] == legacy["id"]] == ["Renamed Ltd"]
    assert warp_api.get(f"{properties}/warp_ban").json()["hasUniqueValue"] is True

    counters = sandbox.control.counters()
    # Counters and fault switches name each operation by its v3 path, whichever family was called.
    assert counters["by_version"] == {version: 4}
    assert counters["by_endpoint"]["GET /crm/v3/objects/companies/{companyId}"] == 1


@pytest.mark.parametrize(("version", "status"), [("v3", 207), ("2026-03", 207), ("2026-09", None)])
def test_partial_failures_come_in_a_207_until_2026_09_answers_them_with_the_success_status(
    version: str, status: int | None, warp_api: httpx.Client,
) -> None:
    objects, properties = FAMILIES[version]
    company = create_company(warp_api, name="Partial Ltd")
    read = warp_api.post(f"{objects}/batch/read", json={"inputs": [{"id": company["id"]}, {"id": "999999999"}],
                                                         "properties": ["name"]})
    assert read.status_code == (status or 200), read.text
    assert [e["context"]["ids"] for e in read.json()["errors"]] == [["999999999"]]
    assert [r["id"] for r in read.json()["results"]] == [company["id"]]

    names = warp_api.post(f"{properties}/batch/read", json={"inputs": [{"name": "warp_ban"}, {"name": "nope"}]})
    assert names.status_code == (status or 200), names.text
    assert names.json()["numErrors"] == 1

    created = warp_api.post(f"{objects}/batch/create", json={"inputs": [
        {"properties": {"name": "Fine Ltd"}, "objectWriteTraceId": "a"},
        {"properties": {"no_such_property": "x"}, "objectWriteTraceId": "b"},
    ]})
    assert created.status_code == (status or 201), created.text
    assert [e["context"]["objectWriteTraceId"] for e in created.json()["errors"]] == [["b"]]


def test_an_unknown_or_unreleased_version_is_not_found(warp_api: httpx.Client) -> None:
    for path in ("/crm/objects/2025-09/companies", "/crm/objects/2027-03/companies",
                 "/crm/properties/2024-01/companies", "/crm/v9/objects/companies"):
        response = warp_api.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")
