"""`warp-sync hubspot ...`: HubSpot-side setup."""

from __future__ import annotations

import sys

import click


@click.group("hubspot")
def hubspot() -> None:
    """HubSpot: the company properties warp-sync relies on."""


@hubspot.command("setup")
def setup() -> None:
    """Create warp-sync's company properties in HubSpot (HUBSPOT_BASE_URL, HUBSPOT_ACCESS_TOKEN).

    Safe to run again: existing properties are left alone, missing enumeration options are
    added, and a property whose type or uniqueness differs is reported (exit status 2).
    It makes a handful of requests and uses no database (so no shared request budget).
    """
    from warp_sync_pipeline.core.hubspot import HubSpotError, PropertySchemaMismatch, client_from_env
    from warp_sync_pipeline.core.settings import SettingsError

    try:
        with client_from_env() as client:
            click.echo(f"HubSpot: {client.base_url}")
            result = client.ensure_properties()
    except (SettingsError, HubSpotError, PropertySchemaMismatch) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    for name in result.created:
        click.echo(f"created  {name}")
    for name in result.existing:
        added = result.options_added.get(name)
        click.echo(f"exists   {name}" + (f" (options added: {', '.join(added)})" if added else ""))
    click.echo(f"{len(result.created)} created, {len(result.existing)} already present")
