"""What day one reads from a portal: every domain a company has, its record source, and other apps' writes."""

from __future__ import annotations

import httpx

from tests.hubspot_sandbox.conftest import COMPANIES, create_company
from tests.plugins.sandbox import SandboxHandle


def test_record_source_says_who_made_the_company_and_cannot_be_written(sandbox: SandboxHandle,
                                                                        warp_api: httpx.Client) -> None:
    by_api = create_company(warp_api, name="Made by API", hs_additional_domains="a.example;b.example")
    by_rep = sandbox.control.rep_create({"name": "Made by a rep"})
    [seeded] = sandbox.control.seed([{"name": "Imported", "hs_object_source": "IMPORT"}])
    shown = {
        company_id: warp_api.get(f"{COMPANIES}/{company_id}",
                                 params={"properties": "hs_object_source,hs_additional_domains"}).json()["properties"]
        for company_id in (by_api["id"], by_rep["id"], seeded)
    }
    assert shown[by_api["id"]]["hs_object_source"] == "INTEGRATION"
    assert shown[by_api["id"]]["hs_additional_domains"] == "a.example;b.example"
    assert shown[by_rep["id"]]["hs_object_source"] == "CRM_UI"
    assert shown[seeded]["hs_object_source"] == "IMPORT"
    refused = warp_api.patch(f"{COMPANIES}/{by_api['id']}", json={"properties": {"hs_object_source": "CRM_UI"}})
    assert refused.status_code == 400 and "READ_ONLY_VALUE" in refused.text


def test_a_contacts_domain_makes_a_company_named_by_hubspot_unless_free_mail_or_taken(
        sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    made = sandbox.control.contact_company("jane@Quintara.com")
    assert made["created"] is True
    company = warp_api.get(f"{COMPANIES}/{made['id']}",
                           params={"properties": "name,domain,website,hs_object_source"}).json()["properties"]
    assert (company["name"], company["domain"], company["hs_object_source"]) == ("Quintara", "quintara.com",
                                                                                "CRM_SETTING")
    assert company["website"] == "quintara.com"  # HubSpot fills website from domain
    assert sandbox.control.contact_company("bob@quintara.com") == {"created": False, "companyId": made["id"]}
    assert sandbox.control.contact_company("someone@gmail.com")["created"] is False


def test_another_apps_writes_show_its_source_in_the_history(sandbox: SandboxHandle, warp_api: httpx.Client) -> None:
    company = create_company(warp_api, name="Acme", warp_credit_limit="100")
    sandbox.control.integration_edit(company["id"], {"warp_credit_limit": "250"}, app_id="777")
    history = warp_api.get(f"{COMPANIES}/{company['id']}", params={"propertiesWithHistory": "warp_credit_limit"}
                           ).json()["propertiesWithHistory"]["warp_credit_limit"]
    assert [(h["value"], h["sourceType"], h["sourceId"]) for h in history] == [
        ("250", "INTEGRATION", "777"), ("100", "INTEGRATION", "54321")]
