"""HubSpot's API versions warp-sync can speak, and the paths of each.

HubSpot versions its APIs by date (a release each March and September, supported for 18 months);
the legacy `v3` paths are due to lose support in 2027. The calls and bodies are the same; the paths
differ, and from 2026-09 a batch's partial failures come in a 200 (the client reads `errors[]` from
any 2xx, so only the paths live here). Supporting a new version is one entry in API_VERSIONS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from warp_sync_pipeline.core.settings import SettingsError, WarpSettings, load_settings

API_VERSION_VARIABLE = "HUBSPOT_API_VERSION"


@dataclass(frozen=True)
class ApiVersion:
    name: str
    companies: str  # the companies object API's root
    company_properties: str  # the company properties API's root
    exports: str  # the CRM Exports API's asynchronous export root

    @classmethod
    def dated(cls, name: str) -> ApiVersion:
        return cls(name, f"/crm/objects/{name}/companies", f"/crm/properties/{name}/companies",
                   f"/crm/exports/{name}/export/async")


API_VERSIONS: dict[str, ApiVersion] = {
    version.name: version
    for version in (
        ApiVersion("v3", "/crm/v3/objects/companies", "/crm/v3/properties/companies", "/crm/v3/exports/export/async"),
        ApiVersion.dated("2026-03"),
        ApiVersion.dated("2026-09"),
    )
}
DEFAULT_API_VERSION = "2026-09"


def api_version(name: str) -> ApiVersion:
    """The version called `name`; ValueError naming the known ones otherwise."""
    try:
        return API_VERSIONS[name]
    except KeyError:
        raise ValueError(
            f"HubSpot API version {name!r} is not one warp-sync speaks; use one of {', '.join(API_VERSIONS)}"
        ) from None


def api_version_from_env(environ: Mapping[str, str] | None = None) -> str:
    """HUBSPOT_API_VERSION, checked now so that a process refuses to start with a version it cannot speak."""
    return api_version_from_settings(load_settings(environ))


def api_version_from_settings(settings: WarpSettings) -> str:
    name = settings.hubspot_api_version or DEFAULT_API_VERSION
    if name not in API_VERSIONS:
        raise SettingsError(API_VERSION_VARIABLE, f"{name!r} is not supported; use one of {', '.join(API_VERSIONS)}")
    return name
