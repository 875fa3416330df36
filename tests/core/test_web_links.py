"""Links to the run, the review pages and HubSpot's record: exact shapes, none without a base, the HubSpot account
read once from the sandbox's /account-info/v3/details over HTTP and kept."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from tests.plugins.sandbox import SandboxHandle
from warp_sync_pipeline.core.hubspot import HubSpotClient
from warp_sync_pipeline.core.settings import load_settings
from warp_sync_pipeline.core.web_links import (
    HubSpotAccount,
    WebLinks,
    hubspot_account,
    stored_account,
    web_links,
)

CUSTOMER = "0b7f0c4e-4a38-4d55-9a53-7c1f2b0c9d11"
LINKS = WebLinks(dagster_ui_url="https://dagster.example.org", review_url="https://warp.example.org/sync",
                 hubspot=HubSpotAccount(62515, "app-eu1.hubspot.com"))


def test_each_kind_opens_its_page() -> None:
    assert LINKS.run("63c63536-0c3f-4bd5-9a3c-1f2e3d4c5b6a") == \
        "https://dagster.example.org/runs/63c63536-0c3f-4bd5-9a3c-1f2e3d4c5b6a"
    assert LINKS.customer(CUSTOMER) == f"https://warp.example.org/sync/review/customers/{CUSTOMER}"
    assert LINKS.conflicts() == "https://warp.example.org/sync/review/conflicts"
    assert LINKS.conflicts(customer="ZT-000000042", field="payment_terms") == \
        "https://warp.example.org/sync/review/conflicts?customer=ZT-000000042&field=payment_terms"
    # HubSpot's record URL: https://{uiDomain}/contacts/{portalId}/record/0-2/{companyId}
    assert LINKS.company("9001") == "https://app-eu1.hubspot.com/contacts/62515/record/0-2/9001"


def test_no_base_or_a_malformed_key_gives_no_link() -> None:
    bare = WebLinks()
    assert [bare.run("abc"), bare.customer(CUSTOMER), bare.conflicts(), bare.company("9001")] == [None] * 4
    assert LINKS.customer("ZT-000000042") is None  # a BAN is not a customer id
    assert LINKS.company("9001/../../x") is None and LINKS.company(None) is None
    assert LINKS.run("../admin") is None
    assert LINKS.open("nothing", {"customer": CUSTOMER}) is None


def test_the_settings_name_the_account_without_asking_hubspot() -> None:
    settings = load_settings({"WARP_HUBSPOT_PORTAL_ID": "777", "WARP_HUBSPOT_UI_DOMAIN": "app-eu1.hubspot.com"})
    assert hubspot_account(settings) == HubSpotAccount(777, "app-eu1.hubspot.com")
    assert hubspot_account(load_settings({"WARP_HUBSPOT_PORTAL_ID": "777"})) is None  # half set, no database


def test_the_account_is_read_from_hubspot_once_and_kept(engine: sa.Engine, sandbox: SandboxHandle,
                                                       hubspot_client: HubSpotClient) -> None:
    sandbox.control.configure(ui_domain="app-eu1.hubspot.com", time_zone="Europe/Berlin")
    settings = load_settings({"WARP_PUBLIC_BASE_URL": "https://warp.example.org"})
    links = web_links(settings, engine, hubspot_client)
    assert links.company("12") == "https://app-eu1.hubspot.com/contacts/62515/record/0-2/12"
    assert stored_account(engine) == HubSpotAccount(62515, "app-eu1.hubspot.com", "Europe/Berlin")
    assert links.run("abc") is None  # WARP_DAGSTER_UI_URL unset: no run links, never a guessed one
    # Kept: the receiver's pages (no client) and later runs read the row, not HubSpot.
    sandbox.control.configure(ui_domain="app.hubspot.com")
    assert hubspot_account(settings, engine, None) == HubSpotAccount(62515, "app-eu1.hubspot.com", "Europe/Berlin")
    assert hubspot_account(settings, engine, hubspot_client).ui_domain == "app-eu1.hubspot.com"


def test_hubspot_refusing_the_read_leaves_companies_unlinked(engine: sa.Engine, sandbox: SandboxHandle) -> None:
    with HubSpotClient(sandbox.base_url, "pat-na1-" + uuid.uuid4().hex, time_budget_s=5,
                       request_timeout_s=2) as stranger:
        assert hubspot_account(load_settings({}), engine, stranger) is None
    assert stored_account(engine) is None
