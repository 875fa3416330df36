"""Per-property history with sources: API writes are the integration's, UI edits a user's."""

from __future__ import annotations

import httpx

from tests.hubspot_sandbox.conftest import COMPANIES, create_company
from tests.plugins.sandbox import SandboxHandle


def test_history_is_newest_first_with_sources(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme", warp_credit_limit="100")
    warp_api.patch(f"{COMPANIES}/{company['id']}", json={"properties": {"warp_credit_limit": "200"}})
    sandbox.control.rep_edit(company["id"], {"warp_credit_limit": "300"}, user_id=28604240)
    body = warp_api.get(f"{COMPANIES}/{company['id']}",
                        params={"propertiesWithHistory": "warp_credit_limit,name,phone"}).json()
    history = body["propertiesWithHistory"]["warp_credit_limit"]
    assert [h["value"] for h in history] == ["300", "200", "100"]
    assert history[0] == {"value": "300", "timestamp": history[0]["timestamp"], "sourceType": "CRM_UI",
                          "sourceId": "userId:28604240", "updatedByUserId": 28604240}
    assert history[1]["sourceType"] == "INTEGRATION" and history[1]["sourceId"] == "54321"
    assert "updatedByUserId" not in history[1]
    assert history[0]["timestamp"] >= history[1]["timestamp"] >= history[2]["timestamp"]
    assert [h["value"] for h in body["propertiesWithHistory"]["name"]] == ["Acme"]
    assert body["propertiesWithHistory"]["phone"] == []


def test_unchanged_values_add_no_history_and_clearing_does(warp_api: httpx.Client) -> None:
    company = create_company(warp_api, warp_status="ACTIVE")
    warp_api.patch(f"{COMPANIES}/{company['id']}", json={"properties": {"warp_status": "ACTIVE"}})
    warp_api.patch(f"{COMPANIES}/{company['id']}", json={"properties": {"warp_status": ""}})
    history = warp_api.get(f"{COMPANIES}/{company['id']}?propertiesWithHistory=warp_status").json()[
        "propertiesWithHistory"]["warp_status"]
    assert [h["value"] for h in history] == ["", "ACTIVE"]


def test_history_on_list_and_batch_read(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme")
    sandbox.control.rep_edit(company["id"], {"name": "Acme Corp"})
    listed = warp_api.get(COMPANIES, params={"propertiesWithHistory": "name", "limit": 50}).json()["results"][0]
    assert [h["sourceType"] for h in listed["propertiesWithHistory"]["name"]] == ["CRM_UI", "INTEGRATION"]
    read = warp_api.post(f"{COMPANIES}/batch/read", json={"inputs": [{"id": company["id"]}],
                                                          "propertiesWithHistory": ["name"]}).json()
    assert read["results"][0]["propertiesWithHistory"] == listed["propertiesWithHistory"]


def test_rep_edit_can_be_backdated_and_seed_sets_times(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    [company_id] = sandbox.control.seed([{"properties": {"name": "Old"}, "createdAt": "2023-01-01T00:00:00Z",
                                          "updatedAt": "2023-06-01T12:00:00.250Z"}])
    body = warp_api.get(f"{COMPANIES}/{company_id}?propertiesWithHistory=name").json()
    assert body["createdAt"] == "2023-01-01T00:00:00.000Z" and body["updatedAt"] == "2023-06-01T12:00:00.250Z"
    assert body["propertiesWithHistory"]["name"][0]["timestamp"] == "2023-06-01T12:00:00.250Z"
    assert body["propertiesWithHistory"]["name"][0]["sourceType"] == "IMPORT"
    sandbox.control.rep_edit(company_id, {"name": "Renamed"}, timestamp="2023-07-01T00:00:00Z")
    history = warp_api.get(f"{COMPANIES}/{company_id}?propertiesWithHistory=name").json()["propertiesWithHistory"]
    assert history["name"][0] == {"value": "Renamed", "timestamp": "2023-07-01T00:00:00.000Z", "sourceType": "CRM_UI",
                                  "sourceId": "userId:7001234", "updatedByUserId": 7001234}


def test_rep_edit_is_validated_like_the_ui(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme")
    from hubspot_sandbox.control import SandboxControlError

    try:
        sandbox.control.rep_edit(company["id"], {"warp_status": "WHATEVER"})
    except SandboxControlError as exc:
        assert exc.status == 400 and exc.body["category"] == "VALIDATION_ERROR"
    else:
        raise AssertionError("an invalid rep edit was accepted")
