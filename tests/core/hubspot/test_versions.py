"""HUBSPOT_API_VERSION chooses the paths of every call; a version warp-sync cannot speak stops a process at start."""

from __future__ import annotations

import pytest

from tests.core.hubspot.conftest import company_values
from tests.plugins.outbound import receiver_config
from tests.plugins.sandbox import SandboxHandle
from warp_sync_pipeline.core.hubspot import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    CompanyUpdate,
    HubSpotClient,
    HubSpotSettings,
)
from warp_sync_pipeline.core.settings import SettingsError
from warp_sync_pipeline.resources.hubspot import HubSpotResource
from webhook_receiver.app import create_app


@pytest.mark.parametrize("version", list(API_VERSIONS))
def test_every_call_goes_to_the_chosen_versions_paths(version: str, sandbox: SandboxHandle) -> None:
    with HubSpotClient(sandbox.base_url, sandbox.access_token, time_budget_s=10, version=version) as client:
        client.ensure_properties()
        sandbox.control.reset_counters()
        created = client.create_company(company_values(1))
        client.update_company(created.id, {"name": "Moved Ltd"})
        outcomes = client.batch_update_companies([CompanyUpdate(created.id, {"warp_status": "SUSPENDED"}),
                                                  CompanyUpdate("999999999", {"warp_status": "SUSPENDED"})])
        assert [o.ok for o in outcomes] == [True, False]  # the whole-batch 404 set aside, the rest written
        [read] = client.batch_read_companies([created.id], properties=["name", "warp_status"])
        assert read.company is not None
        assert (read.company.properties["name"], read.company.properties["warp_status"]) == ("Moved Ltd", "SUSPENDED")
        client.get_property("warp_ban")
        assert set(sandbox.control.counters()["by_version"]) == {version}


def test_the_default_is_the_current_date_version() -> None:
    assert DEFAULT_API_VERSION == "2026-09"
    assert HubSpotSettings.from_env({"HUBSPOT_ACCESS_TOKEN": "pat-x"}).api_version == "2026-09"
    assert HubSpotSettings.from_env({"HUBSPOT_ACCESS_TOKEN": "pat-x", "HUBSPOT_API_VERSION": "v3"}).api_version == "v3"


def test_an_unknown_version_is_refused_at_start_by_every_process(database_url: str, sandbox: SandboxHandle) -> None:
    with pytest.raises(ValueError, match="'2025-09' is not one warp-sync speaks; use one of v3, 2026-03, 2026-09"):
        HubSpotClient(sandbox.base_url, sandbox.access_token, version="2025-09")
    environ = {"HUBSPOT_ACCESS_TOKEN": "pat-x", "HUBSPOT_API_VERSION": "2026-9", "WARP_DATABASE_URL": database_url}
    with pytest.raises(SettingsError, match="HUBSPOT_API_VERSION: '2026-9' is not supported"):
        HubSpotSettings.from_env(environ)
    # The code location builds its resource when the definitions load: loading fails, naming the variable.
    with pytest.raises(SettingsError, match="HUBSPOT_API_VERSION"):
        HubSpotResource.from_env(environ)
    with pytest.raises(ValueError, match="'v4' is not one warp-sync speaks"):
        HubSpotResource(access_token="pat-x", api_version="v4")
    # A receiver worker does not boot.
    with pytest.raises(SettingsError, match="HUBSPOT_API_VERSION"):
        create_app(receiver_config(database_url, sandbox, HUBSPOT_API_VERSION="latest"))
